"""Wall-clock latency per SPEC §5: warm every compiled shape, synchronise, time, repeat.

Per example (or per batch, divided by its size), the clock runs from the moment the padded token
ids are on the device until the output ids are on the host: `prepare` (untimed) moves the inputs
to the device and waits for them; `run` (timed) launches the decode; the timer then copies the
outputs to the host (`jax.device_get`, which waits for the device) before stopping the clock.
Compilation is excluded: before any timing, one call per distinct `shape_key` (input-length
bucket, batch size, ...) is made and discarded.

A trial times every unit once; its value is the mean latency per example. The result is the mean
and the sample standard deviation across trials. `environment_info` records what the numbers were
measured on (device, JAX version, dtype, commit).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging
from tqdm import tqdm


@dataclasses.dataclass(frozen=True, kw_only=True)
class LatencyResult:
    """Timing of one decode configuration over a fixed set of examples.

    Attributes:
      mean_s: mean over trials of the per-example mean latency, seconds.
      std_s: sample standard deviation of the trial means (0 for a single trial).
      trial_means_s: per trial, the mean latency per example.
      per_example_s: per unit, the latency per example averaged over trials (a batch's time is
        divided by its size).
      num_examples: examples timed per trial.
      num_units: timed calls per trial (examples at batch size 1, else batches).
      warmup_calls: untimed calls made first (one per distinct shape).
      warmup_s: their total time (compilation included).
    """

    mean_s: float
    std_s: float
    trial_means_s: tuple[float, ...]
    per_example_s: tuple[float, ...]
    num_examples: int
    num_units: int
    warmup_calls: int
    warmup_s: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def time_units(
    units: Sequence[Any],
    prepare: Callable[[Any], Any],
    run: Callable[[Any], Any],
    *,
    trials: int = 3,
    unit_size: Callable[[Any], int] = lambda unit: 1,
    shape_key: Callable[[Any], Hashable] = lambda unit: None,
    progress: bool = False,
    description: str = "latency",
) -> LatencyResult:
    """Times `run(prepare(unit))` for every unit, `trials` times, after warming every shape.

    Args:
      units: examples (batch size 1) or batches.
      prepare: untimed; puts a unit's inputs on the device and returns what `run` takes. It
        should block until the transfer is done (e.g. `jax.block_until_ready`).
      run: timed; returns the outputs (any pytree of arrays), which the timer copies to the host
        inside the timed region.
      trials: number of timed passes over all units (>= 1).
      unit_size: examples per unit (to turn a batch's time into a per-example latency).
      shape_key: units with equal keys share one compiled program; one of each is run untimed
        first.
      progress: show a tqdm bar over trials.
      description: bar label.
    """
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials!r}")
    if not units:
        raise ValueError("no units to time")
    sizes = [int(unit_size(u)) for u in units]
    if min(sizes) < 1:
        raise ValueError(f"unit sizes must be >= 1, got {sizes}")

    warm_start = time.perf_counter()
    warmed: set[Hashable] = set()
    for unit in units:
        key = shape_key(unit)
        if key in warmed:
            continue
        warmed.add(key)
        jax.device_get(run(prepare(unit)))
    warmup_s = time.perf_counter() - warm_start
    logging.info("%s: %d warm-up calls took %.2f s", description, len(warmed), warmup_s)

    per_unit = np.zeros((trials, len(units)))
    for trial in tqdm(range(trials), desc=description, disable=not progress, leave=False):
        for i, unit in enumerate(units):
            args = prepare(unit)
            start = time.perf_counter()
            jax.device_get(run(args))
            per_unit[trial, i] = time.perf_counter() - start
    total_examples = sum(sizes)
    trial_means = per_unit.sum(axis=1) / total_examples
    per_example = per_unit.mean(axis=0) / np.asarray(sizes)
    return LatencyResult(
        mean_s=float(trial_means.mean()),
        std_s=float(trial_means.std(ddof=1)) if trials > 1 else 0.0,
        trial_means_s=tuple(float(t) for t in trial_means),
        per_example_s=tuple(float(t) for t in per_example),
        num_examples=total_examples,
        num_units=len(units),
        warmup_calls=len(warmed),
        warmup_s=warmup_s,
    )


def to_device(tree: Any) -> Any:
    """`jax.device_put` that waits for the transfer (the start of the timed region)."""
    return jax.block_until_ready(jax.device_put(tree))


def git_commit(path: str | os.PathLike | None = None) -> str:
    """The current git commit of the repository holding `path` (or "unknown")."""
    path = path or os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def environment_info(dtype: str | None = None) -> dict[str, Any]:
    """Device, platform, JAX/jaxlib versions, dtype, python version, host and git commit."""
    devices = jax.devices()
    import jaxlib

    return {
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind if devices else "none",
        "num_devices": len(devices),
        "jax_version": jax.__version__,
        "jaxlib_version": getattr(jaxlib, "__version__", "unknown"),
        "dtype": dtype,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "commit": git_commit(),
    }
