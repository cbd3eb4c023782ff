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
"""

from __future__ import annotations

import dataclasses
import functools
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
from tqdm import tqdm

from spec_cascade_jax.evaluation import latency as latency_lib
from spec_cascade_jax.evaluation import report as report_lib
from spec_cascade_jax.evaluation import sweeps, tables

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG_PREFIX = "pkg://"
RESULTS_FILENAME = "results.jsonl"
NUM_SAMPLES = 3

CHECKPOINT_KINDS = ("t5x", "orbax", "hf", "random", "auto")

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


def resolve_path(path: str | None) -> str | None:
    """`pkg://x/y` -> `<spec_cascade_jax package dir>/x/y`; other paths unchanged."""
    if path is None:
        return None
    path = os.fspath(path)
    if path.startswith(PKG_PREFIX):
        return os.path.join(PACKAGE_DIR, path[len(PKG_PREFIX) :])
    return os.path.expanduser(path)


# Where each gin-required argument usually comes from, for error messages.
MACRO_OF = {
    "task": "TASK",
    "output_dir": "OUTPUT_DIR",
    "drafter": "DRAFTER",
    "verifier": "VERIFIER",
    "vocab_path": "VOCAB_PATH",
    "preset": "the model file (models/*.gin)",
}


def check_required(fn, **values: Any) -> None:
    """Raises ValueError naming every argument still set to `gin.REQUIRED` (or None).

    Gin passes a macro bound to `%gin.REQUIRED` through as the `gin.REQUIRED` sentinel instead of
    failing, so each job checks its required arguments itself before doing any work.
    """
    missing = [name for name, value in values.items() if value is gin.REQUIRED or value is None]
    if missing:
        hints = ", ".join(
            f"{fn.__name__}.{m} (macro {MACRO_OF.get(m, m.upper())})" for m in missing
        )
        raise ValueError(f"required settings are missing: {hints}")


def check_positive_ints(**values: Any) -> None:
    """Raises ValueError naming the first value that is not an integer >= 1."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


# ----------------------------------------------------------------------------------------------
# Models.


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """How to build one model (see `model_spec` for the fields)."""

    preset: str
    overrides: tuple[tuple[str, Any], ...] = ()
    vocab_size: int | str | None = None
    dtype: str = "float32"
    checkpoint_kind: str = "auto"
    checkpoint_path: str | None = None
    seed: int = 0
    missing_ok: bool = False
    config_from_checkpoint: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "overrides": dict(self.overrides),
            "vocab_size": self.vocab_size,
            "dtype": self.dtype,
            "checkpoint_kind": self.checkpoint_kind,
            "checkpoint_path": self.checkpoint_path,
            "seed": self.seed if self.checkpoint_kind == "random" or self.missing_ok else None,
            "config_from_checkpoint": self.config_from_checkpoint,
        }


@gin.configurable
def model_spec(
    preset: str = gin.REQUIRED,
    overrides: Mapping[str, Any] | None = None,
    vocab_size: int | str | None = None,
    dtype: str = "float32",
    checkpoint_kind: str = "auto",
    checkpoint_path: str | None = None,
    seed: int = 0,
    missing_ok: bool = False,
    config_from_checkpoint: bool = False,
) -> ModelSpec:
    """Gin factory for a `ModelSpec`.

    Args:
      preset: a `models.t5.config` preset ("tiny", "t5_1_1_small", "t5_1_1_large", ...).
      overrides: `T5Config` fields to replace (e.g. {"num_decoder_layers": 1}).
      vocab_size: None keeps the preset's; an int sets the padded vocabulary size; "vocabulary"
        sets both `vocab_size` and `real_vocab_size` to the SentencePiece vocabulary's size
        (for randomly initialised models).
      dtype: "float32" or "bfloat16": compute dtype and parameter dtype.
      checkpoint_kind: "t5x", "orbax", "hf", "auto" (detected) or "random" (no checkpoint).
      checkpoint_path: checkpoint directory/file (`pkg://` allowed); required unless "random".
        The run's DRAFTER_CHECKPOINT / VERIFIER_CHECKPOINT macros replace it when set.
      seed: initialisation seed for random weights.
      missing_ok: if the checkpoint path does not exist, use random weights with a warning
        instead of failing (for the bundled demo before its trained pair exists).
      config_from_checkpoint: take the model's `T5Config` from `config.json` in the checkpoint
        directory (as `training.export` writes it) instead of preset + overrides + vocab_size,
        which then only describe the random fallback of `missing_ok`; `dtype` still applies.
    """
    check_required(model_spec, preset=preset)
    if checkpoint_kind not in CHECKPOINT_KINDS:
        raise ValueError(
            f"checkpoint_kind must be one of {CHECKPOINT_KINDS}, got {checkpoint_kind!r}"
        )
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {dtype!r}")
    if isinstance(vocab_size, str) and vocab_size != "vocabulary":
        raise ValueError(f"vocab_size must be an int, None or 'vocabulary', got {vocab_size!r}")
    return ModelSpec(
        preset=preset,
        overrides=tuple(sorted(dict(overrides or {}).items())),
        vocab_size=vocab_size,
        dtype=dtype,
        checkpoint_kind=checkpoint_kind,
        checkpoint_path=checkpoint_path,
        seed=seed,
        missing_ok=missing_ok,
        config_from_checkpoint=config_from_checkpoint,
    )


def _model_config(spec: ModelSpec, vocabulary_size: int | None):
    from spec_cascade_jax.models.t5 import config as t5_config

    if spec.preset not in t5_config.preset_names():
        raise ValueError(
            f"unknown model preset {spec.preset!r}; known: {', '.join(t5_config.preset_names())}"
        )
    overrides = dict(spec.overrides)
    if spec.vocab_size == "vocabulary":
        if vocabulary_size is not None:
            overrides.update(vocab_size=vocabulary_size, real_vocab_size=vocabulary_size)
    elif spec.vocab_size is not None:
        overrides["vocab_size"] = int(spec.vocab_size)
    overrides["dtype"] = spec.dtype
    return t5_config.get_config(spec.preset, **overrides)


def load_model(spec: ModelSpec, role: str, vocabulary_size: int | None = None):
    """Builds `T5Model` and its parameters; returns (model, params, description dict)."""
    from spec_cascade_jax.models.t5 import T5Config, T5Model
    from spec_cascade_jax.models.t5 import checkpoint as ckpt

    config = _model_config(spec, vocabulary_size)
    kind, path = spec.checkpoint_kind, resolve_path(spec.checkpoint_path)
    description = {"role": role, **spec.describe()}
    if kind != "random" and not path:
        raise ValueError(
            f"{role} model {spec.preset!r} has no checkpoint path: set "
            f"{role.upper()}_CHECKPOINT (or checkpoint_kind='random' for random weights)"
        )
    if kind != "random" and not os.path.exists(path) and "://" not in path:
        if not spec.missing_ok:
            raise FileNotFoundError(f"{role} checkpoint not found: {path!r}")
        logging.warning(
            "%s checkpoint %s not found: using RANDOM weights (seed %d)", role, path, spec.seed
        )
        kind = "random"
        description["checkpoint_kind"] = "random (checkpoint missing)"
    elif kind != "random" and spec.config_from_checkpoint:
        config_file = os.path.join(path, "config.json")
        if not os.path.isfile(config_file):
            raise FileNotFoundError(
                f"{role}: config_from_checkpoint needs {config_file!r} (a training export)"
            )
        with open(config_file, encoding="utf-8") as f:
            fields = json.load(f)
        config = T5Config(**fields).replace(dtype=spec.dtype)
        description["config"] = {k: v for k, v in sorted(fields.items()) if k != "dtype"}
    params = ckpt.load_params(kind, path, config, seed=spec.seed, dtype=spec.dtype)
    model = T5Model(config)
    description.update(
        vocab_size=config.vocab_size,
        real_vocab_size=config.real_vocab_size,
        num_params=int(sum(np.prod(x.shape) for x in jax.tree.leaves(params))),
    )
    if vocabulary_size is not None and config.real_vocab_size < vocabulary_size:
        raise ValueError(
            f"{role} model has real_vocab_size {config.real_vocab_size} but the vocabulary has "
            f"{vocabulary_size} ids; use vocab_size='vocabulary' or a matching preset"
        )
    return model, params, description


# ----------------------------------------------------------------------------------------------
# Decoding a list of examples.


def pad_rows(rows: Sequence[np.ndarray], length: int) -> np.ndarray:
    """Right-pads int32 rows with 0 to `[len(rows), length]`; raises if a row is longer."""
    out = np.zeros((len(rows), length), np.int32)
    for i, row in enumerate(rows):
        if len(row) > length:
            raise ValueError(f"row {i} has {len(row)} tokens, more than the padded length {length}")
        out[i, : len(row)] = row
    return out


def bucket_length(length: int, buckets: Sequence[int] | None, max_len: int) -> int:
    """Smallest bucket >= length (the max length itself when `buckets` is None)."""
    if not buckets:
        return max_len
    for b in sorted(buckets):
        if b >= length:
            return b
    return max_len


@dataclasses.dataclass(frozen=True, kw_only=True)
class DecodeSetup:
    """Everything `decode_examples` needs besides the point."""

    drafter: Any
    drafter_params: Any
    verifier: Any
    verifier_params: Any
    max_input_len: int
    max_decode_len: int
    mesh: Any = None  # a `parallel` ("data", "model") mesh: decode with `sharded_generate`.


def shard_setup(setup: DecodeSetup, mesh) -> DecodeSetup:
    """`setup` decoding over `mesh`: the verifier split by `parallel.DEFAULT_RULES`, the drafter
    replicated (as `sharded_generate` places them), once rather than on every call."""
    from spec_cascade_jax import parallel

    return dataclasses.replace(
        setup,
        mesh=mesh,
        drafter_params=parallel.shard_params(
            setup.drafter_params, mesh, parallel.data_parallel_rules()
        ),
        verifier_params=parallel.shard_params(setup.verifier_params, mesh),
    )


def generate_fn(setup: DecodeSetup, method: str, alpha: float, sampling: sweeps.SamplingConfig):
    """`(inputs [B, S], example_ids [B], rng) -> DecodeOutput` for one point.

    With `setup.mesh` the call is `parallel.sharded_generate` (the same tokens, as host arrays;
    with several processes every process calls it, each with its own rows).
    """
    from spec_cascade_jax import decoding

    decode = decoding.generate
    if setup.mesh is not None:
        from spec_cascade_jax import parallel

        decode = functools.partial(parallel.sharded_generate, setup.mesh)

    def run(inputs, example_ids, rng):
        return decode(
            setup.drafter,
            setup.drafter_params,
            setup.verifier,
            setup.verifier_params,
            inputs,
            method=method,
            alpha=alpha,
            gamma=sampling.gamma,
            temperature=sampling.temperature,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            max_decode_len=setup.max_decode_len,
            rng=rng,
            example_ids=example_ids,
            bonus_source=sampling.bonus_source,
            lossy_beta=sampling.lossy_beta,
        )

    return run


def decode_examples(
    setup: DecodeSetup,
    examples: Sequence[Mapping[str, Any]],
    method: str,
    alpha: float | None,
    sampling: sweeps.SamplingConfig,
    *,
    batch_size: int,
    progress: bool = False,
) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Decodes every example; returns (output ids per example, EOS included; per-row stats).

    Batches are padded to `batch_size` rows (copies of the batch's first row, dropped) and to
    `max_input_len` columns, so each method compiles once. Row seeds come from `example["index"]`.
    With a mesh and several processes (each passing its own examples) every process makes as many
    calls as the one with the most batches, with dummy rows once its own run out.
    """
    run = generate_fn(setup, method, 0.0 if alpha is None else alpha, sampling)
    rng = jax.random.PRNGKey(sampling.seed)
    outputs: list[np.ndarray] = []
    parts: list[dict[str, np.ndarray]] = []
    num_batches = -(-len(examples) // batch_size)
    if setup.mesh is not None and jax.process_count() > 1:
        from spec_cascade_jax.parallel import distributed

        num_batches = max(int(distributed.allgather_ints([num_batches]).max()), 1)
    starts = range(0, num_batches * batch_size, batch_size)
    for start in tqdm(starts, desc=f"{method} α={alpha}", disable=not progress, leave=False):
        batch = list(examples[start : start + batch_size])
        real = len(batch)
        if batch:
            batch += [batch[0]] * (batch_size - real)
            inputs = pad_rows([ex["inputs"] for ex in batch], setup.max_input_len)
            ids = np.asarray([ex["index"] for ex in batch], np.int32)
        else:  # This process's shard ran out: keep in step with the others (rows dropped).
            from spec_cascade_jax.data.vocab import EOS_ID

            inputs = np.zeros((batch_size, setup.max_input_len), np.int32)
            inputs[:, 0] = EOS_ID
            ids = np.zeros((batch_size,), np.int32)
        out = jax.device_get(run(inputs, ids, rng))
        tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
        outputs += [tokens[i, : lengths[i]] for i in range(real)]
        parts.append({k: np.asarray(v)[:real] for k, v in out.stats.as_dict().items()})
    stats = {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}
    return outputs, stats


def detokenize(vocabulary, ids: np.ndarray) -> str:
    """Text of output ids up to (not including) the first EOS."""
    from spec_cascade_jax.data.vocab import EOS_ID

    ids = [int(i) for i in ids]
    if EOS_ID in ids:
        ids = ids[: ids.index(EOS_ID)]
    return vocabulary.decode([i for i in ids if i != 0])


def score(task_spec, references: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """Every metric of the task (seqio signature: references first)."""
    scores: dict[str, float] = {}
    for fn in task_spec.metric_fns:
        scores.update(fn(list(references), list(predictions)))
    if task_spec.primary_metric not in scores:
        raise ValueError(f"metrics {sorted(scores)} lack the primary {task_spec.primary_metric!r}")
    return scores


# ----------------------------------------------------------------------------------------------
# The job.


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
    )
    if mesh is not None:
        setup = shard_setup(setup, mesh)
    environment = latency_lib.environment_info(dtype=verifier.dtype)
    # What the report needs of every example: process 0's view of all processes' examples.
    report_examples: Sequence[Mapping[str, Any]] | None = examples
    if multiprocess:
        report_examples = _gather_example_texts(examples)
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

        encode = jax.jit(total)
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
        done = set(_broadcast_from_writer([r["key"] for r in stored if "key" in r]))
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
        return {"paths": {}, "q_ver": None, "table2": [], "records": records}

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
        "paths": paths,
        "q_ver": summary.q_ver,
        "table2": [dataclasses.asdict(r) for r in summary.rows],
        "records": records,
    }


def _gather_example_texts(examples: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
    """Every process's examples' index and texts on process 0, sorted by index; else None."""
    from spec_cascade_jax.parallel import distributed

    rows = distributed.gather_objects_to_host0(
        [
            [int(ex["index"]), ex["inputs_pretokenized"], ex["targets_pretokenized"]]
            for ex in examples
        ]
    )
    if rows is None:
        return None
    return [
        {"index": i, "inputs_pretokenized": x, "targets_pretokenized": y}
        for i, x, y in sorted(rows, key=lambda row: row[0])
    ]


def gather_rows(
    examples: Sequence[Mapping[str, Any]],
    outputs: Sequence[np.ndarray],
    row_stats: Mapping[str, np.ndarray],
) -> tuple[list[np.ndarray] | None, dict[str, np.ndarray] | None]:
    """Every process's output ids and per-row stats on process 0, sorted by example index.

    Returns (None, None) on the other processes. Every process must call it (collective).
    """
    from spec_cascade_jax.parallel import distributed

    rows = distributed.gather_objects_to_host0(
        [
            [int(ex["index"]), [int(t) for t in ids]]
            for ex, ids in zip(examples, outputs, strict=True)
        ]
    )
    stats = distributed.gather_to_host0({k: np.asarray(v) for k, v in row_stats.items()})
    if rows is None:
        return None, None
    order = np.argsort([row[0] for row in rows], kind="stable")
    return (
        [np.asarray(rows[i][1], np.int32) for i in order],
        {k: np.asarray(v)[order] for k, v in stats.items()},
    )


def _broadcast_from_writer(value: Any) -> Any:
    """Process 0's JSON-able `value` on every process (the others pass anything)."""
    from jax.experimental import multihost_utils

    from spec_cascade_jax.parallel import distributed

    payload = np.zeros(0, np.uint8)
    if distributed.is_writer():
        payload = np.frombuffer(json.dumps(value).encode("utf-8"), np.uint8)
    size = int(multihost_utils.broadcast_one_to_all(np.int32(payload.size)))
    buffer = np.zeros(size, np.uint8)
    buffer[: payload.size] = payload
    data = np.asarray(multihost_utils.broadcast_one_to_all(buffer), np.uint8)
    return json.loads(data.tobytes().decode("utf-8"))


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
