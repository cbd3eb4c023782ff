"""The gin-configurable evaluation job: one task, one drafter/verifier pair, many (method, α).

`run_eval` follows SPEC §5–§7:

1. Validates the whole configuration first (task, split, methods, α values, models, lengths), so a
   bad setting fails before any data or weights are loaded.
2. Loads the evaluation split (`data.tasks.get_eval_dataset`), the SentencePiece vocabulary and
   both models (`models.t5.checkpoint.load_params`).
3. Evaluates, resumably (`sweeps.run_sweep`, one JSONL record per point, flushed as it finishes):
   verifier-only (quality reference, over `verifier_seeds` seeds, and latency denominator),
   drafter-only and lossless SpecDecode (reference lines), then every configured method × α.
   Each point decodes all examples in batches (quality via the task's metric; per-example seeds,
   so outputs do not depend on batching) and, unless disabled, times `latency_examples` examples
   drawn once with a fixed seed at `latency_batch_size` (SPEC: 1) for `latency_trials` trials.
4. Writes `report.md` (setup, reference lines, Table-2, every point, the [choice] fields),
   `cost_quality.png`, `deferral_quality.png` and `operative_config.gin`.

Record fields (besides the point's `method`, `alpha`, `sampling`, `tag`, and the `choices` and
`fingerprint` added by `run_sweep`):

    quality            the task's primary metric (BLEU or ROUGE-2 F1, × 100)
    metric             its name; metric_scores: every metric the task computes
    num_examples       examples decoded for quality
    stats              `decoding.summarize_stats` over those examples (SPEC §5)
    latency            `latency.LatencyResult` as a dict, or None (quality-only points)
    l_rel              latency.mean_s / verifier-only latency.mean_s
    encoder_latency    (drafter/verifier-only) time of that model's encoder pass alone
    per_token_s        (drafter/verifier-only) (latency − encoder time) / mean N_tok
    cost_model         c, a, γ, measured τ, τ*, S*, S*₊, S = 1/L_rel, ε = S/S*, S/S*₊ (SPEC §6)
    samples            the first few (input, prediction, reference) texts
    environment        device, JAX version, dtype, commit

Paths starting with `pkg://` are resolved inside the installed `spec_cascade_jax` package (the
bundled demo data).

This module holds the job itself; its building blocks live beside it and are re-exported here
(`runner.X` keeps working): `job_config.py` (`pkg://` paths, required-argument checks),
`model_loading.py` (`ModelSpec`, the `model_spec` gin factory, `load_model`), `batch_decode.py`
(`DecodeSetup`, `decode_examples`, `detokenize`, `score`) and `multiprocess.py` (gathering to and
broadcasting from process 0).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import gin
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from spec_cascade_jax.decoding import compiler
from spec_cascade_jax.evaluation import latency as latency_lib
from spec_cascade_jax.evaluation import report as report_lib
from spec_cascade_jax.evaluation import sweeps, tables

# Split out of this module and re-exported: tests and `decode_job.py` use them as `runner.X`, and
# importing this module registers the `model_spec` gin configurable (`main` relies on it).
from spec_cascade_jax.evaluation.batch_decode import (
    DecodeSetup,
    bucket_length,
    decode_examples,
    detokenize,
    generate_fn,
    pad_rows,
    score,
    shard_setup,
)
from spec_cascade_jax.evaluation.job_config import (  # noqa: F401
    MACRO_OF,
    PACKAGE_DIR,
    PKG_PREFIX,
    check_positive_ints,
    check_required,
    resolve_path,
)
from spec_cascade_jax.evaluation.model_loading import (  # noqa: F401
    CHECKPOINT_KINDS,
    ModelSpec,
    load_model,
    model_spec,
)
from spec_cascade_jax.evaluation.multiprocess import (
    broadcast_from_writer,
    gather_example_texts,
    gather_rows,
)

RESULTS_FILENAME = "results.jsonl"
NUM_SAMPLES = 3

# SPEC [choice] fields that do not depend on the run's arguments.
FIXED_CHOICES: Mapping[str, str] = {
    "warping": (
        "float32 log_softmax with padded ids masked -> /T -> top-k -> top-p -> renormalise; "
        "T=0: one-hot argmax (lowest id on ties); identical for drafter and verifier"
    ),
    "criteria_inputs": "raw T=1 distributions q1/p1 (OPT's TV term uses warped q^T/p^T)",
    "lossy_greedy_lenience": "at T=0 lossy SD accepts argmax q1 iff p1(d) >= (1-alpha) max p1",
    "seq_cascade_score": "mean over emitted positions (incl. EOS) of max q1_t",
    "bild_star_discrepancy": "raw total variation D_TV(q1, p1)",
    "token_row": "SpecCascade [Token] in Table-2 is Token-v3",
    "interpolation": "linear between adjacent Pareto-front points (L_rel lower, Q higher)",
    "q_ver": "mean verifier-only quality over the verifier seeds",
    "latency": (
        "wall clock from padded ids on device to output ids on host; compilation excluded "
        "(one untimed call per shape first); mean over examples per trial, mean +- std over trials"
    ),
    "cost_model_c": "(latency - encoder time) / N_tok, drafter-only over verifier-only",
}


def _validate_methods(methods: Sequence[sweeps.MethodSweep | str]) -> list[sweeps.MethodSweep]:
    from spec_cascade_jax import decoding

    out = []
    for spec in methods:
        sweep = sweeps.as_method_sweep(spec)
        if sweep.method not in decoding.METHODS:
            raise ValueError(
                f"unknown method {sweep.method!r}; known: {', '.join(decoding.METHODS)}"
            )
        for alpha in sweep.alphas:
            if alpha is not None:
                decoding.validate_method_alpha(sweep.method, alpha)
        out.append(sweep)
    return out


def _cost_model(
    record: Mapping[str, Any], refs: Mapping[str, Mapping[str, Any]], gamma: int
) -> dict[str, Any] | None:
    """SPEC §6 quantities for one point (None fields where not measurable)."""
    from spec_cascade_jax import decoding

    t_dr = (refs.get("drafter") or {}).get("per_token_s")
    t_ver = (refs.get("verifier") or {}).get("per_token_s")
    c = t_dr / t_ver if t_dr and t_ver and t_ver > 0 else None
    l_rel = record.get("l_rel")
    out: dict[str, Any] = {
        "c": c,
        "t_drafter_s": t_dr,
        "t_verifier_s": t_ver,
        "gamma": gamma,
        "speedup": 1.0 / l_rel if l_rel else None,
    }
    stats = record.get("stats") or {}
    a = stats.get("acceptance_rate")
    if record["method"] in decoding.SPECULATIVE_METHODS and a is not None:
        out.update(a=a, tau=stats.get("block_efficiency"), tau_star=tables.tau_star(a, gamma))
        if c is not None:
            s_star = tables.ideal_speedup(a, gamma, c)
            s_sync = tables.ideal_speedup_sync(a, gamma, c)
            out.update(
                ideal_speedup=s_star,
                ideal_speedup_sync=s_sync,
                best_gamma=tables.best_gamma(a, c),
            )
            if out["speedup"] is not None:
                out.update(
                    efficiency=out["speedup"] / s_star, efficiency_sync=out["speedup"] / s_sync
                )
    return out


def _latency_sample(num_examples: int, latency_examples: int, seed: int) -> list[int]:
    """Positions of the timed subset: uniform without replacement, fixed seed, sorted."""
    k = min(latency_examples, num_examples)
    return sorted(np.random.default_rng(seed).choice(num_examples, size=k, replace=False).tolist())


@gin.configurable(denylist=["examples"])
def run_eval(
    task: str = gin.REQUIRED,
    output_dir: str = gin.REQUIRED,
    drafter: ModelSpec = gin.REQUIRED,
    verifier: ModelSpec = gin.REQUIRED,
    vocab_path: str = gin.REQUIRED,
    methods: Sequence[sweeps.MethodSweep | str] = (),
    drafter_checkpoint: str | None = None,
    verifier_checkpoint: str | None = None,
    extra_ids: int = 100,
    split: str = "validation",
    num_examples: int | None = None,
    tfds_data_dir: str | None = None,
    data_file: str | None = None,
    max_input_len: int | None = None,
    max_decode_len: int | None = None,
    sampling: sweeps.SamplingConfig | None = None,
    batch_size: int = 16,
    verifier_seeds: int = 3,
    references: Sequence[str] = ("drafter", "spec_decode"),
    latency_examples: int = 500,
    latency_trials: int = 3,
    latency_batch_size: int = 1,
    latency_seed: int = 0,
    input_buckets: Sequence[int] | None = None,
    progress: bool = True,
    resume: bool = True,
    make_plot: bool = True,
    write_outputs: bool = False,
    title: str | None = None,
    mesh: Any = None,
    shared_program: bool = True,
    examples: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Runs the evaluation job (module docstring) and returns paths and headline numbers.

    Args:
      task: a `data.tasks` task name (`wmt14_ende_v003`, `cnn_dailymail_v002`, `xsum_v110`, ...);
        fixes prefix, lengths, metric and TFDS source.
      output_dir: where results.jsonl, report.md and the plots go (created).
      drafter, verifier: `ModelSpec`s (gin: `@t5_1_1_small/model_spec()` etc.).
      vocab_path: SentencePiece model (`pkg://` allowed).
      methods: `MethodSweep`s or method ids (SPEC §7 default grid); references are added.
      drafter_checkpoint, verifier_checkpoint: replace the specs' checkpoint paths when set.
      extra_ids: sentinel ids of the vocabulary (T5: 100).
      split: evaluation split. num_examples: first N examples (None: the whole split).
      tfds_data_dir: TFDS data directory. data_file: local JSONL/TSV read instead of TFDS.
      max_input_len, max_decode_len: None takes the task's lengths (EOS included).
      sampling: the shared sampler (`sweeps.sampling_config`); None = T=1, γ=5, target bonus.
      batch_size: rows per decode call for quality (outputs do not depend on it).
      verifier_seeds: seeds averaged for Q_ver (SPEC: 3); extra seeds are skipped at T=0.
      references: reference lines run besides verifier-only (always run): any of "drafter",
        "spec_decode". Without "drafter" the cost ratio c is not measured.
      latency_examples: examples timed per point (SPEC: 500); 0 disables timing (no Table-2).
      latency_trials: timed passes (SPEC: 3). latency_batch_size: SPEC: 1.
      latency_seed: seed of the timed subset (same subset for every method).
      input_buckets: pad timed inputs to the smallest bucket >= their length (None: max length).
      progress: tqdm bars. resume: skip points already in results.jsonl (False: start over,
        keeping the old file as results.jsonl.bak).
      make_plot: write the PNGs. write_outputs: write every point's predictions as JSONL.
      title: report title.
      mesh: a `parallel` ("data", "model") mesh (gin: `run_eval.mesh = @build_mesh()`): decode
        with `parallel.sharded_generate` (batch split over `data`, verifier over `model`; the
        same tokens as without a mesh). None: plain `decoding.generate` on the default device.
        With several processes (`main --coordinator_address=...`) each reads its own shard of
        the split, results are gathered to process 0 (sorted by example index) and only process 0
        writes results.jsonl, the report and the plots; the other processes return only their
        `records` (latency of their own rows, no quality). With several processes and a mesh the
        encoder-only timing (hence c and per_token_s) is skipped and `input_buckets` is ignored.
      shared_program: every speculative method runs one shared compiled program per shape (the
        rule picked by `lax.switch`; `decoding.generate(shared_program=True)`): a full sweep
        compiles 5 programs per shape instead of 13. Same outputs; every speculative point pays
        the same switch, so latency comparisons among them stay fair.
      examples: pre-loaded examples (tests; bypasses the data loader); with several processes,
        this process's share.
    """
    # 1. Validate everything cheap first.
    check_required(
        run_eval,
        task=task,
        output_dir=output_dir,
        drafter=drafter,
        verifier=verifier,
        vocab_path=vocab_path,
    )
    from spec_cascade_jax import decoding
    from spec_cascade_jax.data import tasks as tasks_lib
    from spec_cascade_jax.data import vocab as vocab_lib

    task_spec = tasks_lib.get_task_spec(task)
    if data_file is None and examples is None and split not in task_spec.splits:
        raise ValueError(f"task {task!r} has no split {split!r}; splits: {task_spec.splits}")
    sampling = sampling or sweeps.SamplingConfig()
    method_sweeps = _validate_methods(methods)
    bad_refs = [m for m in references if m not in ("drafter", "spec_decode")]
    if bad_refs or isinstance(references, str):
        raise ValueError(
            f"references must be a list of 'drafter' / 'spec_decode', got {references!r}"
        )
    max_input_len = task_spec.max_input_len if max_input_len is None else max_input_len
    max_decode_len = task_spec.max_target_len if max_decode_len is None else max_decode_len
    check_positive_ints(
        batch_size=batch_size,
        latency_trials=latency_trials,
        latency_batch_size=latency_batch_size,
        verifier_seeds=verifier_seeds,
        max_input_len=max_input_len,
        max_decode_len=max_decode_len,
    )
    if latency_examples < 0:
        raise ValueError(f"latency_examples must be >= 0, got {latency_examples!r}")
    if drafter_checkpoint is not None:
        drafter = dataclasses.replace(drafter, checkpoint_path=drafter_checkpoint)
    if verifier_checkpoint is not None:
        verifier = dataclasses.replace(verifier, checkpoint_path=verifier_checkpoint)
    vocab_path = resolve_path(vocab_path)
    data_file = resolve_path(data_file)
    tfds_data_dir = resolve_path(tfds_data_dir)
    vocab_lib.check_vocab_file(vocab_path)
    multiprocess = jax.process_count() > 1
    writer = True
    if multiprocess:
        from spec_cascade_jax.parallel import distributed

        writer = distributed.is_writer()
        if mesh is not None and input_buckets:
            logging.warning("several processes with a mesh: input_buckets ignored (lockstep)")
            input_buckets = None
    os.makedirs(output_dir, exist_ok=True)
    results_path = os.path.join(output_dir, RESULTS_FILENAME)
    if writer and not resume and os.path.exists(results_path):
        os.replace(results_path, results_path + ".bak")
        logging.warning("resume=False: moved the old results to %s.bak", results_path)

    # 2. Data, vocabulary, models.
    vocabulary = vocab_lib.get_vocabulary(vocab_path, extra_ids)
    if examples is None:
        examples = tasks_lib.get_eval_dataset(
            task,
            split,
            vocab_path,
            num_examples=num_examples,
            extra_ids=extra_ids,
            tfds_data_dir=tfds_data_dir,
            data_file=data_file,
            max_input_len=max_input_len,
            max_target_len=max_decode_len,
            **({"shard_info": distributed.shard_info()} if multiprocess else {}),
        )
    examples = list(examples)
    total_examples = len(examples)
    if multiprocess:
        total_examples = int(distributed.allgather_ints([len(examples)]).sum())
    if not total_examples:
        raise ValueError(f"task {task!r} split {split!r} gave no examples")
    drafter_model, drafter_params, drafter_desc = load_model(
        drafter, "drafter", vocabulary.vocab_size
    )
    verifier_model, verifier_params, verifier_desc = load_model(
        verifier, "verifier", vocabulary.vocab_size
    )
    setup = DecodeSetup(
        drafter=drafter_model,
        drafter_params=drafter_params,
        verifier=verifier_model,
        verifier_params=verifier_params,
        max_input_len=max_input_len,
        max_decode_len=max_decode_len,
        shared_program=shared_program,
    )
    if mesh is not None:
        setup = shard_setup(setup, mesh)
    environment = latency_lib.environment_info(dtype=verifier.dtype)
    # What the report needs of every example: process 0's view of all processes' examples.
    report_examples: Sequence[Mapping[str, Any]] | None = examples
    if multiprocess:
        report_examples = gather_example_texts(examples)
    reference_texts = (
        None if report_examples is None else [ex["targets_pretokenized"] for ex in report_examples]
    )
    timed = _latency_sample(len(examples), latency_examples, latency_seed)
    if multiprocess and mesh is not None:
        # Timing calls are collective: every process times as many units as the smallest shard.
        num_units = -(-len(timed) // latency_batch_size)
        num_units = int(distributed.allgather_ints([num_units]).min())
        timed = timed[: num_units * latency_batch_size]

    fingerprint = {
        "task": task,
        "split": split,
        "num_examples": total_examples,
        "data": data_file or tfds_data_dir or "tfds default",
        "vocab_path": vocab_path,
        "drafter": drafter_desc,
        "verifier": verifier_desc,
        "max_input_len": max_input_len,
        "max_decode_len": max_decode_len,
        "sampling": {k: v for k, v in sampling.to_dict().items() if k != "seed"},
        "base_seed": sampling.seed,
        "latency": {
            "examples": len(timed),
            "trials": latency_trials,
            "batch_size": latency_batch_size,
            "seed": latency_seed,
            "input_buckets": list(input_buckets) if input_buckets else None,
        },
    }
    choices = {
        **FIXED_CHOICES,
        "bonus_source": sampling.bonus_source,
        "lossy_beta": sampling.lossy_beta,
        "lengths": {"max_input_len": max_input_len, "max_decode_len": max_decode_len},
        "alpha_grids": {s.method: list(s.alphas) for s in method_sweeps},
        "verifier_seeds": verifier_seeds,
        "input_padding": f"buckets {list(input_buckets)}" if input_buckets else "max_input_len",
    }

    # Timed units: latency_batch_size examples per unit, padded to their bucket.
    units = []
    for start in range(0, len(timed), latency_batch_size):
        chunk = [examples[i] for i in timed[start : start + latency_batch_size]]
        real = len(chunk)
        chunk += [chunk[0]] * (latency_batch_size - real)
        length = max(bucket_length(len(ex["inputs"]), input_buckets, max_input_len) for ex in chunk)
        units.append(
            {
                "inputs": pad_rows([ex["inputs"] for ex in chunk], length),
                "ids": np.asarray([ex["index"] for ex in chunk], np.int32),
                "size": real,
            }
        )

    def time_point(run_fn, seed: int) -> latency_lib.LatencyResult:
        rng = jax.random.PRNGKey(seed)

        def prepare(unit):
            return latency_lib.to_device((unit["inputs"], unit["ids"], rng))

        def run(args):
            out = run_fn(*args)
            return out.tokens, out.lengths

        return latency_lib.time_units(
            units,
            prepare,
            run,
            trials=latency_trials,
            unit_size=lambda u: u["size"],
            shape_key=lambda u: u["inputs"].shape,
        )

    def time_encoder(model, params) -> latency_lib.LatencyResult:
        def total(p, x):
            leaves = jax.tree.leaves(model.encode(p, x))
            return sum(jnp.sum(leaf.astype(jnp.float32)) for leaf in leaves)

        encode = compiler.jit(total)
        return latency_lib.time_units(
            units,
            lambda unit: latency_lib.to_device(unit["inputs"]),
            lambda x: encode(params, x),
            trials=latency_trials,
            unit_size=lambda u: u["size"],
            shape_key=lambda u: u["inputs"].shape,
        )

    refs: dict[str, Mapping[str, Any]] = {}
    outputs_dir = os.path.join(output_dir, "outputs")

    def evaluate(point: sweeps.SweepPoint) -> dict[str, Any]:
        outputs, row_stats = decode_examples(
            setup,
            examples,
            point.method,
            point.alpha,
            point.sampling,
            batch_size=batch_size,
            progress=progress,
        )
        timed_lengths = [len(outputs[i]) for i in timed]
        if multiprocess:
            outputs, row_stats = gather_rows(examples, outputs, row_stats)
        if writer:
            predictions = [detokenize(vocabulary, ids) for ids in outputs]
            scores = score(task_spec, reference_texts, predictions)
            result: dict[str, Any] = {
                "quality": scores[task_spec.primary_metric],
                "metric": task_spec.primary_metric,
                "metric_scores": scores,
                "num_examples": len(report_examples),
                "stats": decoding.summarize_stats(row_stats, point.method),
                "samples": [
                    {
                        "index": report_examples[i]["index"],
                        "input": report_examples[i]["inputs_pretokenized"],
                        "prediction": predictions[i],
                        "reference": reference_texts[i],
                    }
                    for i in range(min(NUM_SAMPLES, len(report_examples)))
                ],
                "environment": environment,
                "latency": None,
                "l_rel": None,
            }
            if write_outputs:
                _write_outputs(outputs_dir, point, report_examples, predictions, outputs)
        else:  # Quality lives on process 0; this process only times its own rows.
            result = {"quality": None, "environment": environment, "latency": None, "l_rel": None}
        if units and not point.tag:
            alpha = 0.0 if point.alpha is None else point.alpha
            run_fn = generate_fn(setup, point.method, alpha, point.sampling)
            lat = time_point(run_fn, point.sampling.seed)
            result["latency"] = lat.to_dict()
            verifier_lat = lat.mean_s if point.method == "verifier" else None
            if verifier_lat is None and refs.get("verifier", {}).get("latency"):
                verifier_lat = refs["verifier"]["latency"]["mean_s"]
            result["l_rel"] = lat.mean_s / verifier_lat if verifier_lat else None
            if point.method in ("drafter", "verifier") and not (multiprocess and mesh is not None):
                model, params = (
                    (drafter_model, drafter_params)
                    if point.method == "drafter"
                    else (verifier_model, verifier_params)
                )
                enc = time_encoder(model, params)
                result["encoder_latency"] = enc.to_dict()
                mean_tok = float(np.mean(timed_lengths))
                result["per_token_s"] = max(lat.mean_s - enc.mean_s, 0.0) / max(mean_tok, 1.0)
        result["cost_model"] = _cost_model(
            {"method": point.method, **result}, refs, point.sampling.gamma
        )
        return result

    # 3. References first (the latency denominator and c), then the sweep.
    main_sampling = sampling
    ref_points = [
        sweeps.SweepPoint(method=m, alpha=None, sampling=main_sampling)
        for m in ("verifier", *references)
    ]
    extra_seeds = verifier_seeds - 1
    if extra_seeds and sampling.temperature == 0:
        logging.info("T=0 is deterministic: skipping %d extra verifier seeds", extra_seeds)
        extra_seeds = 0
    seed_points = [
        sweeps.SweepPoint(
            method="verifier",
            alpha=None,
            sampling=dataclasses.replace(main_sampling, seed=main_sampling.seed + k),
            tag=f"seed{k}",
        )
        for k in range(1, extra_seeds + 1)
    ]
    ref_keys = {p.key() for p in ref_points}
    sweep_points = [
        p
        for p in sweeps.expand_points(method_sweeps, main_sampling)
        if p.key() not in ref_keys and p.method not in ("drafter", "verifier")
    ]
    common = dict(fingerprint=fingerprint, choices=choices, progress=progress)
    done: set[str] = set()
    scratch = results_path
    if multiprocess:
        # Every process must decode the same points (the decodes are collective): the others
        # skip what process 0 has stored and keep their records in a private scratch file.
        stored = sweeps.load_records(results_path) if writer else []
        done = set(broadcast_from_writer([r["key"] for r in stored if "key" in r]))
        if not writer:
            scratch = os.path.join(tempfile.mkdtemp(prefix="run_eval_"), RESULTS_FILENAME)

    def run_points(points: list[sweeps.SweepPoint], description: str) -> list[dict[str, Any]]:
        if not writer:
            points = [p for p in points if p.key() not in done]
        return sweeps.run_sweep(points, evaluate, scratch, description=description, **common)

    ref_records = []
    for point in ref_points + seed_points:  # One at a time: later ones read earlier ones.
        for record in run_points([point], point.method):
            ref_records.append(record)
            if not record.get("tag"):
                refs.setdefault(record["method"], record)
    records = ref_records + run_points(sweep_points, "sweep")
    if not writer:
        return {"paths": {}, "q_ver": None, "table2": [], "records": records, "summary_text": ""}

    # 4. Report.
    title = title or f"{task} / {split}: {drafter.preset} → {verifier.preset}"
    paths = report_lib.write_report(
        records, output_dir, title=title, make_plot=make_plot, choices=choices
    )
    paths["results"] = results_path
    config_path = os.path.join(output_dir, "operative_config.gin")
    with open(config_path, "w", encoding="utf-8") as f:
        f.write(gin.operative_config_str())
    paths["operative_config"] = config_path
    summary = report_lib.summarize(records)
    logging.info("wrote %s", ", ".join(f"{k}={v}" for k, v in paths.items()))
    return {
        "summary_text": report_lib.render_summary(records, title=title, paths=paths),
        "paths": paths,
        "q_ver": summary.q_ver,
        "table2": [dataclasses.asdict(r) for r in summary.rows],
        "records": records,
    }


def _write_outputs(directory, point, examples, predictions, outputs) -> None:
    os.makedirs(directory, exist_ok=True)
    alpha = "none" if point.alpha is None else f"{point.alpha:g}"
    name = f"{point.method}_alpha{alpha}{('_' + point.tag) if point.tag else ''}.jsonl"
    with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
        for ex, text, ids in zip(examples, predictions, outputs, strict=True):
            f.write(
                json.dumps(
                    {"index": ex["index"], "prediction": text, "ids": [int(i) for i in ids]},
                    ensure_ascii=False,
                )
                + "\n"
            )
