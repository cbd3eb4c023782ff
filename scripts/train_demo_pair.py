r"""Trains the bundled demo pair: a drafter and a verifier on the EN→DE demo data.

    PYTHONPATH=. python scripts/train_demo_pair.py         # both, sizes from the gin files
    python scripts/train_demo_pair.py --roles=drafter --gin.NUM_STEPS=2000
    python scripts/train_demo_pair.py --measure_steps=20   # time 20 steps each; trains nothing

Each role runs `spec_cascade_jax.train.run_train` with `gin_configs/runs/train_demo_{role}.gin`
(model size, seed, directories; shared optimiser and data settings in `runs/train_demo.gin`).
Train-state checkpoints go to `outputs/train_demo/{role}` (relative to the working directory), so
an interrupted run resumes where it stopped when the same command is run again. The final
parameters are saved with `checkpoint.save_params` into
`spec_cascade_jax/demo_data/ende/models/{role}/params`, next to its `config.json` and
`train_info.json` (see `spec_cascade_jax.training.export`).

`--gin.NAME=VALUE` / `--gin_bindings` apply to every role; `--measure_steps=N` trains N steps of
each model in temporary directories (see `measure`), and reports seconds per step with the step
already compiled, and the time the configured NUM_STEPS would take on this machine.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Sequence

import gin
from absl import app, flags, logging

from spec_cascade_jax import main as cli
from spec_cascade_jax import train as train_lib

ROLES = ("drafter", "verifier")

_ROLES = flags.DEFINE_list("roles", list(ROLES), "Which models to train, in order.")
_MEASURE_STEPS = flags.DEFINE_integer(
    "measure_steps", 0, "If > 0: time this many steps per role (compile excluded); no export."
)
FLAGS = flags.FLAGS


def configure_role(role: str, bindings: Sequence[str]) -> None:
    """Parses `runs/train_demo_{role}.gin` plus the extra bindings."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
    cli.configure([f"runs/train_demo_{role}.gin"], bindings, FLAGS.gin_search_paths)


def measure(role: str, steps: int) -> dict[str, float]:
    """Seconds per step of `role`, compile excluded, from three runs in fresh temporary dirs.

    Run 1 trains `steps` steps (compiling the step for every batch-width pair they meet), run 2
    only loads the data and initialises (overhead), run 3 repeats run 1 with everything compiled:
    seconds per step = (run 3 - run 2) / steps.
    """
    configure_role(role, FLAGS.gin_bindings)
    num_steps = int(gin.query_parameter("%NUM_STEPS"))
    tmp = tempfile.mkdtemp(prefix=f"measure_{role}_")
    seconds, cpu_seconds = [], []
    try:
        for run, n in enumerate((steps, 0, steps)):
            bindings = [
                *FLAGS.gin_bindings,
                f"CHECKPOINT_DIR = '{tmp}/ckpt{run}'",
                "EXPORT_DIR = None",
                "run_train.progress = False",
                f"run_train.log_every = {max(steps, 1)}",
                f"run_train.checkpoint_every = {10**9}",
                # The schedule does not change the cost; a constant one is valid for short runs.
                "run_train.schedule = 'constant'",
                f"NUM_STEPS = {n}",
            ]
            configure_role(role, bindings)
            start, cpu_start = time.perf_counter(), time.process_time()
            train_lib.run_train()
            seconds.append(time.perf_counter() - start)
            cpu_seconds.append(time.process_time() - cpu_start)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    per_step = (seconds[2] - seconds[1]) / steps
    cpu_per_step = (cpu_seconds[2] - cpu_seconds[1]) / steps
    estimate_h = per_step * num_steps / 3600
    logging.info(
        "%s: first run %.1f s (data, init, compiling, %d steps); %.3f s/step compiled (%.3f CPU "
        "s/step over all cores); the configured %d steps would take about %.2f h here.",
        role,
        seconds[0],
        steps,
        per_step,
        cpu_per_step,
        num_steps,
        estimate_h,
    )
    return {
        "first_s": seconds[0],
        "s_per_step": per_step,
        "cpu_s_per_step": cpu_per_step,
        "num_steps": num_steps,
        "hours": estimate_h,
    }


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    for role in _ROLES.value:
        if role not in ROLES:
            raise app.UsageError(f"unknown role {role!r}; expected some of {ROLES}")
    results = {}
    for role in _ROLES.value:
        if _MEASURE_STEPS.value > 0:
            results[role] = measure(role, _MEASURE_STEPS.value)
            continue
        configure_role(role, FLAGS.gin_bindings)
        start = time.time()
        result = train_lib.run_train()
        logging.info(
            "%s: trained to step %d in %.0f s; last loss %.3f; exported to %s.",
            role,
            result.final_step,
            time.time() - start,
            float(result.losses[-1]) if len(result.losses) else float("nan"),
            train_lib.resolve_path(gin.query_parameter("%EXPORT_DIR")),
        )
    for role, r in results.items():
        sys.stdout.write(
            f"{role}: {r['s_per_step']:.3f} s/step ({r['cpu_s_per_step']:.3f} CPU s/step), first "
            f"run {r['first_s']:.1f} s, "
            f"{r['num_steps']} steps ~ {r['hours']:.2f} h\n"
        )


if __name__ == "__main__":
    app.run(main, argv=cli.rewrite_gin_args(sys.argv))
