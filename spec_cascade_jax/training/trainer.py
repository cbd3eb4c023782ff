"""Teacher-forced training of a T5 drafter or verifier, with exact resume from orbax checkpoints.

`train` runs `num_steps` optimiser steps of one jitted function:

    decoder_input = shift_right(targets)          # [0, y_1, ..., y_{L-1}]; PAD = 0 starts decoding
    logits = model.forward(params, inputs, decoder_input)            # [B, L, V] float32
    loss = sum_t w_t * (CE_smoothed(logits_t, y_t) + z_loss * logsumexp(logits_t) ** 2) / sum_t w_t
    with w_t = (y_t != 0)

and the optimiser (Adafactor as in T5 fine-tuning, or AdamW). Every `checkpoint_every` steps, and
at the end, it saves the full train state with an orbax `CheckpointManager`: parameters, optimiser
state, and a JSON record of the step, seed, optimiser settings and data position. A later call
with the same arguments and `resume=True` restores the newest checkpoint and carries on from there;
with a `BatchSource` (see `batches.py`) and the same seed, the result equals an uninterrupted run.
An interrupted run loses the steps after its last checkpoint (they are recomputed identically).

Each distinct batch shape compiles the step once per process; the step is keyed on its static
arguments (model, optimiser settings, loss weights), so repeated `train` calls reuse it.

Randomness: parameters are initialised from `fold_in(key(seed), 0)`; dropout at step `t` uses
`fold_in(fold_in(key(seed), 1), t)`, so it does not depend on where a run was interrupted.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from spec_cascade_jax.models.t5 import checkpoint
from spec_cascade_jax.models.t5.config import T5Config
from spec_cascade_jax.models.t5.network import T5Model, shift_right
from spec_cascade_jax.training.batches import PAD_ID, Batch, BatchSource

Params = Any
OPTIMIZERS = ("adafactor", "adamw")
SCHEDULES = ("constant", "rsqrt", "cosine")
_TRAIN_STATE = "train_state"
_TRAIN_META = "train_meta"


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What `train` returns.

    Attributes:
        params: the parameters (jax arrays) after `final_step` steps.
        opt_state: the optimiser state after `final_step` steps.
        start_step: the step this call started from (> 0 after a resume).
        final_step: the number of optimiser steps applied in total.
        losses: float32 [final_step - start_step], the training objective of each step of this call
            (`losses[i]` belongs to step `start_step + i`, before that step's update).
        metrics: per-step arrays of the same length: "loss", "cross_entropy" (unsmoothed NLL per
            target token), "accuracy" (greedy next-token accuracy), "num_tokens".
    """

    params: Params
    opt_state: Any
    start_step: int
    final_step: int
    losses: np.ndarray
    metrics: dict[str, np.ndarray]


def token_losses(
    logits: jax.Array,  # [B, L, V] float
    targets: jax.Array,  # [B, L] int
    *,
    real_vocab_size: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
) -> tuple[jax.Array, jax.Array]:
    """Per-token training objective and plain cross-entropy, both float32 [B, L].

    The objective is the cross-entropy against smoothed targets (mass `1 - label_smoothing` on the
    true token, the rest spread evenly over the other real ids), minus its minimum possible value
    (so a perfect model scores 0), plus `z_loss * logsumexp(logits) ** 2`. Logits at ids
    `>= real_vocab_size` (vocabulary padding) are excluded from the softmax.
    """
    logits = logits.astype(jnp.float32)
    vocab = logits.shape[-1]
    real = vocab if real_vocab_size is None else real_vocab_size
    if real < vocab:
        is_real = jnp.arange(vocab) < real
        logits = jnp.where(is_real, logits, jnp.finfo(jnp.float32).min)
    log_z = jax.nn.logsumexp(logits, axis=-1)  # [B, L]
    log_probs = logits - log_z[..., None]
    true_log_prob = jnp.take_along_axis(log_probs, targets[..., None].astype(jnp.int32), -1)[..., 0]
    cross_entropy = -true_log_prob
    if label_smoothing > 0.0:
        on = 1.0 - label_smoothing
        off = label_smoothing / (real - 1)
        real_log_probs = log_probs[..., :real]
        sum_log_probs = jnp.sum(real_log_probs, axis=-1)
        smoothed = -(on * true_log_prob + off * (sum_log_probs - true_log_prob))
        floor = -(on * math.log(on) + (real - 1) * off * math.log(off))
        objective = smoothed - floor
    else:
        objective = cross_entropy
    if z_loss:
        objective = objective + z_loss * jnp.square(log_z)
    return objective, cross_entropy


@dataclasses.dataclass(frozen=True, kw_only=True)
class OptimizerConfig:
    """Optimiser settings; hashable, so the jitted train step can take it as a static argument.

    Attributes:
        name: "adafactor" (optax's factored Adafactor with T5's settings: decay rate 0.8, update
            clipping 1.0, updates scaled by the parameter RMS, no momentum) or "adamw"
            (b1 0.9, b2 0.999).
        learning_rate: peak learning rate.
        warmup_steps: linear warm-up from 0 over this many steps (0: none).
        schedule: after warm-up, "constant" (T5 fine-tuning), "rsqrt" (`lr * sqrt(warmup / step)`,
            T5 pre-training; needs warmup_steps >= 1) or "cosine" (to 10% of `lr` at
            `decay_steps`).
        decay_steps: the step where the cosine schedule ends (the run's `num_steps`).
        weight_decay: decoupled weight decay (AdamW) or Adafactor's `weight_decay_rate`.
        max_grad_norm: clip gradients to this global norm first (None: no clipping).
    """

    name: str = "adafactor"
    learning_rate: float = 1e-3
    warmup_steps: int = 0
    schedule: str = "constant"
    decay_steps: int | None = None
    weight_decay: float = 0.0
    max_grad_norm: float | None = None

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.name!r}; expected one of {OPTIMIZERS}")
        if not (isinstance(self.learning_rate, int | float) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a number > 0, got {self.learning_rate!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an int >= 0, got {self.warmup_steps!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; expected one of {SCHEDULES}")
        if self.schedule == "rsqrt" and self.warmup_steps < 1:
            raise ValueError("schedule 'rsqrt' needs warmup_steps >= 1")
        if self.schedule == "cosine" and not (
            isinstance(self.decay_steps, int) and self.decay_steps > self.warmup_steps
        ):
            raise ValueError(
                f"schedule 'cosine' needs decay_steps > warmup_steps ({self.warmup_steps}), got "
                f"{self.decay_steps!r}"
            )
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0 or None, got {self.max_grad_norm!r}")

    def learning_rate_fn(self) -> optax.Schedule:
        """The learning rate as a function of the step."""
        lr, warmup = float(self.learning_rate), self.warmup_steps
        if self.schedule == "cosine":
            return optax.schedules.warmup_cosine_decay_schedule(
                0.0, lr, max(warmup, 0), self.decay_steps, end_value=0.1 * lr
            )
        if self.schedule == "rsqrt":

            def rsqrt(step: jax.Array) -> jax.Array:
                step = jnp.asarray(step, jnp.float32)
                ramp = lr * step / warmup
                return jnp.where(step < warmup, ramp, lr * jnp.sqrt(warmup / jnp.maximum(step, 1)))

            return rsqrt
        if warmup:
            return optax.schedules.warmup_constant_schedule(0.0, lr, warmup)
        return optax.schedules.constant_schedule(lr)

    def build(self) -> optax.GradientTransformation:
        constant = self.schedule == "constant" and not self.warmup_steps
        schedule: Any = float(self.learning_rate) if constant else self.learning_rate_fn()
        if self.name == "adafactor":
            tx = optax.adafactor(
                learning_rate=schedule,
                decay_rate=0.8,
                clipping_threshold=1.0,
                multiply_by_parameter_scale=True,
                factored=True,
                weight_decay_rate=self.weight_decay or None,
            )
        else:
            tx = optax.adamw(schedule, b1=0.9, b2=0.999, weight_decay=self.weight_decay)
        if self.max_grad_norm is not None:
            tx = optax.chain(optax.clip_by_global_norm(self.max_grad_norm), tx)
        return tx


def make_optimizer(
    optimizer: str = "adafactor", learning_rate: float = 1e-3, **kwargs: Any
) -> optax.GradientTransformation:
    """The optax transformation of `OptimizerConfig(name=optimizer, learning_rate, **kwargs)`."""
    return OptimizerConfig(name=optimizer, learning_rate=learning_rate, **kwargs).build()


def _as_model(model: Any, dropout_rate: float | None) -> Any:
    """A `T5Model` from a model or a `T5Config`, with `dropout_rate` applied if given."""
    if isinstance(model, T5Config):
        config = model
    elif hasattr(model, "config") and isinstance(model.config, T5Config):
        config = model.config
    else:
        raise TypeError(f"model must be a T5Model or a T5Config, got {type(model).__name__}")
    if dropout_rate is not None and dropout_rate != config.dropout_rate:
        config = config.replace(dropout_rate=float(dropout_rate))
    if isinstance(model, T5Config) or model.config is not config:
        return T5Model(config)
    return model


def _check_batch(batch: Any, step: int, vocab_size: int, batch_size: int | None) -> Batch:
    if not isinstance(batch, dict) or "inputs" not in batch or "targets" not in batch:
        got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(
            f"batch at step {step} must be a dict with 'inputs' and 'targets', got {got}"
        )
    out = {}
    for key in ("inputs", "targets"):
        value = np.asarray(batch[key])
        if value.ndim != 2 or not np.issubdtype(value.dtype, np.integer):
            raise ValueError(
                f"batch[{key!r}] at step {step} must be a 2-D integer array, got "
                f"{value.dtype}{list(value.shape)}"
            )
        if value.size and (value.min() < 0 or value.max() >= vocab_size):
            raise ValueError(
                f"batch[{key!r}] at step {step} has token ids outside [0, {vocab_size}): "
                f"min {value.min()}, max {value.max()}"
            )
        out[key] = value.astype(np.int32)
    rows = {out["inputs"].shape[0], out["targets"].shape[0]}
    if len(rows) != 1:
        raise ValueError(f"batch at step {step}: inputs and targets have different batch sizes")
    if batch_size is not None and rows != {batch_size}:
        raise ValueError(f"batch at step {step} has {rows.pop()} rows, expected {batch_size}")
    return out


def _batch_iterator(data: Any, start_step: int) -> Iterator[Batch]:
    if isinstance(data, BatchSource):
        return iter(data.iterate_from(start_step))
    iterator = iter(data)
    if start_step:
        logging.info("Resuming a plain batch iterator: skipping its first %d batches.", start_step)
        for skipped in range(start_step):
            try:
                next(iterator)
            except StopIteration:
                raise ValueError(
                    f"the data iterator ended after {skipped} batches while skipping to the "
                    f"checkpointed step {start_step}"
                ) from None
    return iterator


def _data_state(data: Any) -> dict[str, Any]:
    if isinstance(data, BatchSource):
        return data.data_state()
    return {"kind": "iterator", "type": type(data).__name__}


def _param_shapes(model: T5Model) -> Params:
    """The parameter tree as `jax.ShapeDtypeStruct`s, without initialising anything."""
    if hasattr(model, "param_shapes"):
        return model.param_shapes()
    return jax.eval_shape(model.init_params, jax.random.key(0))


@functools.partial(jax.jit, static_argnames=("opt",))
def _init_opt_state(params: Params, *, opt: OptimizerConfig) -> Any:
    return opt.build().init(params)


@functools.partial(
    jax.jit,
    static_argnames=("model", "opt", "label_smoothing", "z_loss"),
    donate_argnums=(0, 1),
)
def _train_step(
    params: Params,
    opt_state: Any,
    batch: dict[str, jax.Array],
    dropout_key: jax.Array,
    *,
    model: T5Model,
    opt: OptimizerConfig,
    label_smoothing: float,
    z_loss: float,
) -> tuple[Params, Any, dict[str, jax.Array]]:
    """One optimiser step. Module-level and keyed on static hashable arguments, so repeated
    `train` calls in one process (e.g. a resume) reuse the compiled step."""
    config = model.config
    inputs, targets = batch["inputs"], batch["targets"]
    weights = (targets != PAD_ID).astype(jnp.float32)
    num_tokens = jnp.maximum(weights.sum(), 1.0)

    def loss_fn(p: Params) -> tuple[jax.Array, dict[str, jax.Array]]:
        kwargs = {"dropout_rng": dropout_key} if config.dropout_rate > 0.0 else {}
        logits = model.forward(p, inputs, shift_right(targets), **kwargs)
        objective, cross_entropy = token_losses(
            logits,
            targets,
            real_vocab_size=config.real_vocab_size,
            label_smoothing=label_smoothing,
            z_loss=z_loss,
        )
        loss = jnp.sum(objective * weights) / num_tokens
        correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
        aux = {
            "loss": loss,
            "cross_entropy": jnp.sum(cross_entropy * weights) / num_tokens,
            "accuracy": jnp.sum(correct * weights) / num_tokens,
            "num_tokens": weights.sum(),
        }
        return loss, aux

    grads, metrics = jax.grad(loss_fn, has_aux=True)(params)
    updates, opt_state = opt.build().update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, opt_state, metrics


def _shardings(batch_size: int | None, data_parallel: bool) -> tuple[Any, Any]:
    """(replicated sharding for the state, sharding for batches)."""
    devices = jax.local_devices()
    if data_parallel and len(devices) > 1:
        if batch_size is not None and batch_size % len(devices):
            raise ValueError(
                f"batch_size {batch_size} is not divisible by the {len(devices)} local devices; "
                "change it or pass data_parallel=False"
            )
        mesh = Mesh(np.array(devices), ("data",))
        return NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    single = jax.sharding.SingleDeviceSharding(devices[0])
    return single, single


def _checkpoint_manager(directory: str, max_to_keep: int) -> Any:
    import orbax.checkpoint as ocp

    return ocp.CheckpointManager(
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
    )


def _save(manager: Any, step: int, params: Params, opt_state: Any, meta: dict[str, Any]) -> None:
    import orbax.checkpoint as ocp

    manager.save(
        step,
        args=ocp.args.Composite(
            **{
                _TRAIN_STATE: ocp.args.StandardSave({"params": params, "opt_state": opt_state}),
                _TRAIN_META: ocp.args.JsonSave({**meta, "step": step}),
            }
        ),
    )
    logging.info("Saving checkpoint of step %d to %s.", step, manager.directory)


def _restore_meta(manager: Any, step: int) -> dict[str, Any]:
    import orbax.checkpoint as ocp

    restored = manager.restore(
        step, args=ocp.args.Composite(**{_TRAIN_META: ocp.args.JsonRestore()})
    )
    return restored[_TRAIN_META]


def _restore_state(manager: Any, step: int, abstract_state: Any) -> Any:
    import orbax.checkpoint as ocp

    restored = manager.restore(
        step, args=ocp.args.Composite(**{_TRAIN_STATE: ocp.args.StandardRestore(abstract_state)})
    )
    return restored[_TRAIN_STATE]


def _check_resume_meta(saved: dict[str, Any], current: dict[str, Any], directory: str) -> None:
    for key in ("optimizer", "model_config"):
        if saved.get(key) != current[key]:
            raise ValueError(
                f"checkpoint in {directory!r} was written with {key}={saved.get(key)!r}, but this "
                f"run has {key}={current[key]!r}; use another checkpoint_dir"
            )
    for key in (
        "seed",
        "data",
        "learning_rate",
        "warmup_steps",
        "schedule",
        "weight_decay",
        "loss",
    ):
        if saved.get(key) != current[key]:
            logging.warning(
                "Resuming from %s with %s=%r, but the checkpoint was written with %r; the run "
                "will not match an uninterrupted one.",
                directory,
                key,
                current[key],
                saved.get(key),
            )


class _MetricsLogger:
    """Keeps per-step device metrics and fetches them in bulk (one host sync per log line)."""

    def __init__(self, history: dict[str, list[float]]) -> None:
        self.history = history
        self.pending: list[dict[str, jax.Array]] = []
        self.t0 = time.perf_counter()

    def add(self, metrics: dict[str, jax.Array]) -> None:
        self.pending.append(metrics)

    def flush(self, step: int) -> None:
        if not self.pending:
            return
        values = jax.device_get(self.pending)
        for m in values:
            for k, v in self.history.items():
                v.append(float(m[k]))
        n, elapsed = len(values), time.perf_counter() - self.t0
        mean = {k: float(np.mean(v[-n:])) for k, v in self.history.items()}
        logging.info(
            "step %d: loss %.4f, cross-entropy %.4f, accuracy %.3f (mean of the last %d steps); "
            "%.2f steps/s",
            step,
            mean["loss"],
            mean["cross_entropy"],
            mean["accuracy"],
            n,
            n / max(elapsed, 1e-9),
        )
        self.pending.clear()
        self.t0 = time.perf_counter()


def train(
    model: Any,
    data: Iterable[Batch] | BatchSource,
    *,
    num_steps: int,
    optimizer: str = "adafactor",
    learning_rate: float = 1e-3,
    warmup_steps: int = 0,
    schedule: str = "constant",
    weight_decay: float = 0.0,
    max_grad_norm: float | None = None,
    batch_size: int | None = None,
    dropout_rate: float | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 1e-4,
    init_params: Params | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 1000,
    max_checkpoints_to_keep: int = 2,
    resume: bool = True,
    seed: int = 0,
    log_every: int = 100,
    progress: bool = True,
    data_parallel: bool = True,
) -> TrainResult:
    """Trains `model` by teacher forcing for `num_steps` steps (counted from step 0, not this call).

    Args:
        model: a `T5Model` or a `T5Config`.
        data: batches `{'inputs': int[B, S], 'targets': int[B, L]}` (0-padded, EOS-terminated),
            one per step. A `BatchSource` resumes exactly via `iterate_from(step)`; a plain iterable
            is re-iterated from its start and the first `step` batches are skipped.
        num_steps: total optimiser steps; a resumed run stops at the same step as a fresh one.
        optimizer: "adafactor" (T5's choice) or "adamw"; see `make_optimizer`.
        learning_rate: peak learning rate; T5 fine-tunes at a constant 1e-3.
        warmup_steps: linear learning-rate warm-up steps.
        schedule: "constant", "rsqrt" or "cosine" (decays to 10% at `num_steps`) after warm-up.
        weight_decay: decoupled weight decay (0 = none).
        max_grad_norm: global gradient-norm clipping (None = none; Adafactor clips its updates).
        batch_size: if given, every batch must have exactly this many rows.
        dropout_rate: overrides the config's dropout rate (None keeps it); dropout draws a fresh
            key per step from `seed` and the step number.
        label_smoothing: mass moved from the true token to the other real ids (0 = none).
        z_loss: weight of the `logsumexp(logits) ** 2` auxiliary loss (t5x uses 1e-4).
        init_params: starting parameters (e.g. a converted t5x checkpoint); default: random init
            from `seed`. Ignored when a checkpoint is resumed.
        checkpoint_dir: where to keep train-state checkpoints (None: no checkpointing).
        checkpoint_every: save every this many steps (and always at the end).
        max_checkpoints_to_keep: older checkpoints are deleted.
        resume: restore the newest checkpoint in `checkpoint_dir` if there is one.
        seed: seeds initialisation and dropout; also stored with checkpoints.
        log_every: log the mean metrics every this many steps.
        progress: show a tqdm progress bar.
        data_parallel: with several local devices, split each batch across them (replicated
            parameters); batch size must divide evenly. Single host only.

    Returns:
        A `TrainResult` with the final parameters and the per-step loss history of this call.
    """
    opt = OptimizerConfig(
        name=optimizer,
        learning_rate=learning_rate,
        warmup_steps=warmup_steps,
        schedule=schedule,
        decay_steps=num_steps if schedule == "cosine" else None,
        weight_decay=weight_decay,
        max_grad_norm=max_grad_norm,
    )
    for name, value, low in (
        ("num_steps", num_steps, 0),
        ("checkpoint_every", checkpoint_every, 1),
        ("log_every", log_every, 1),
        ("max_checkpoints_to_keep", max_checkpoints_to_keep, 1),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    if z_loss < 0:
        raise ValueError(f"z_loss must be >= 0, got {z_loss!r}")
    model = _as_model(model, dropout_rate)
    config = model.config

    state_sharding, batch_sharding = _shardings(batch_size, data_parallel)
    root_key = jax.random.key(seed)
    init_key, dropout_root = jax.random.fold_in(root_key, 0), jax.random.fold_in(root_key, 1)
    abstract_params = _param_shapes(model)
    abstract_state = {
        "params": abstract_params,
        "opt_state": jax.eval_shape(opt.build().init, abstract_params),
    }
    abstract_state = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=state_sharding), abstract_state
    )
    meta = {
        "optimizer": optimizer,
        "learning_rate": learning_rate,
        "warmup_steps": warmup_steps,
        "schedule": [schedule, opt.decay_steps],
        "weight_decay": weight_decay,
        "loss": {"label_smoothing": label_smoothing, "z_loss": z_loss},
        "seed": seed,
        "model_config": dataclasses.asdict(config),
        "data": _data_state(data),
    }

    manager = None
    start_step = 0
    params = opt_state = None
    if checkpoint_dir is not None:
        manager = _checkpoint_manager(os.fspath(checkpoint_dir), max_checkpoints_to_keep)
        latest = manager.latest_step()
        if latest is not None and not resume:
            raise ValueError(
                f"checkpoint_dir {os.fspath(checkpoint_dir)!r} already holds checkpoints (latest "
                f"step {latest}) and resume=False; pass resume=True or use an empty directory"
            )
        if latest is not None:
            _check_resume_meta(_restore_meta(manager, latest), meta, os.fspath(checkpoint_dir))
            state = _restore_state(manager, latest, abstract_state)
            params, opt_state, start_step = state["params"], state["opt_state"], int(latest)
            logging.info("Resumed from step %d in %s.", start_step, os.fspath(checkpoint_dir))
    if params is None:
        if init_params is not None:
            checkpoint.validate_params(config, init_params, source="init_params")
            # A float32 copy (checkpoints may hold bfloat16): the train step donates its inputs,
            # and the caller keeps `init_params`.
            params = jax.tree.map(
                lambda x, a: jax.device_put(x, state_sharding, may_alias=False).astype(a.dtype),
                init_params,
                abstract_params,
            )
        else:
            # Not under jit: T5Model.init_params draws its normals eagerly.
            params = jax.device_put(model.init_params(init_key), state_sharding)
        opt_state = _init_opt_state(params, opt=opt)
    step_fn = functools.partial(
        _train_step, model=model, opt=opt, label_smoothing=label_smoothing, z_loss=z_loss
    )
    history: dict[str, list[float]] = {
        k: [] for k in ("loss", "cross_entropy", "accuracy", "num_tokens")
    }
    logger = _MetricsLogger(history)
    step = start_step
    last_saved = start_step if manager is not None and start_step > 0 else None
    try:
        if start_step >= num_steps:
            logging.info("Checkpoint is already at step %d >= num_steps %d.", start_step, num_steps)
        else:
            from tqdm.auto import tqdm

            batches = _batch_iterator(data, start_step)
            bar = tqdm(total=num_steps, initial=start_step, disable=not progress, desc="train")
            with bar:
                while step < num_steps:
                    try:
                        raw = next(batches)
                    except StopIteration:
                        logging.warning("Data ran out after step %d of %d.", step, num_steps)
                        break
                    batch = _check_batch(raw, step, config.vocab_size, batch_size)
                    batch = jax.device_put(batch, batch_sharding)
                    dropout_key = jax.random.fold_in(dropout_root, step)
                    params, opt_state, metrics = step_fn(params, opt_state, batch, dropout_key)
                    logger.add(metrics)
                    step += 1
                    bar.update(1)
                    if step % log_every == 0:
                        logger.flush(step)
                    if manager is not None and step % checkpoint_every == 0:
                        _save(manager, step, params, opt_state, meta)
                        last_saved = step
            logger.flush(step)
            if manager is not None and last_saved != step:
                _save(manager, step, params, opt_state, meta)
    finally:
        if manager is not None:
            manager.wait_until_finished()
            manager.close()
    metrics_out = {k: np.asarray(v, np.float32) for k, v in history.items()}
    return TrainResult(
        params=params,
        opt_state=opt_state,
        start_step=start_step,
        final_step=step,
        losses=metrics_out["loss"],
        metrics=metrics_out,
    )
