r"""Command-line entry point for training one T5 model (a drafter or a verifier).

    python -m spec_cascade_jax.train --gin_file=runs/train_demo_drafter.gin
    python -m spec_cascade_jax.train --gin_file=runs/train_t5_wmt.gin \
        --gin.INIT_CHECKPOINT="'/ckpt/t5_1_1_small/checkpoint_1000000'" \
        --gin.VOCAB_PATH="'/data/t5/sentencepiece.model'" --gin.MODEL_DIR="'/tmp/wmt_small'"

Flags are those of `spec_cascade_jax.main` (`--gin_file`, `--gin_bindings`, `--gin_search_paths`,
and the `--gin.NAME=VALUE` shorthand). The run file binds `run_train`, which builds the model and
the data, calls `training.train` and exports the final parameters. Running the same command again
after an interruption resumes from the newest checkpoint in `CHECKPOINT_DIR`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import gin
import jax
from absl import app, flags, logging

from spec_cascade_jax import main as cli
from spec_cascade_jax.evaluation.job_config import resolve_path
from spec_cascade_jax.training import batches as batches_lib
from spec_cascade_jax.training import export, trainer

FLAGS = flags.FLAGS
DEFAULT_GIN_FILE = "runs/train_demo_drafter.gin"
DATA_SOURCES = ("jsonl", "seqio")


def padded_vocab_size(size: int, multiple: int = 128) -> int:
    """`size` rounded up to a multiple of `multiple` (T5 pads 32100 ids to 32128 logits)."""
    if size < 1 or multiple < 1:
        raise ValueError(f"need size >= 1 and multiple >= 1, got {size!r}, {multiple!r}")
    return -(-size // multiple) * multiple


def sentencepiece_size(vocab_path: str) -> int:
    """Number of pieces in a local SentencePiece model (checked to use pad 0 / eos 1)."""
    return int(batches_lib.load_sentencepiece(vocab_path).get_piece_size())


def build_config(
    preset: str,
    overrides: Mapping[str, Any] | None = None,
    vocab_size: int | str | None = None,
    vocab_path: str | None = None,
) -> Any:
    """The `T5Config` for a preset, overrides and vocabulary choice.

    Args:
        preset: a `models.t5.config` preset name.
        overrides: `T5Config` fields to replace.
        vocab_size: None keeps the preset's; an int sets `vocab_size` (and `real_vocab_size`,
            unless `overrides` sets it); "spm" sets `real_vocab_size` to the SentencePiece model's
            size and `vocab_size` to that rounded up to a multiple of 128.
        vocab_path: the SentencePiece model, needed for "spm".
    """
    from spec_cascade_jax.models.t5.config import get_config

    fields = dict(overrides or {})
    if vocab_size == "spm":
        if vocab_path is None:
            raise ValueError("vocab_size='spm' needs vocab_path (a SentencePiece model)")
        real = sentencepiece_size(vocab_path)
        fields.update(vocab_size=padded_vocab_size(real), real_vocab_size=real)
    elif isinstance(vocab_size, int) and not isinstance(vocab_size, bool):
        fields["vocab_size"] = vocab_size
        fields.setdefault("real_vocab_size", vocab_size)
    elif vocab_size is not None:
        raise ValueError(f"vocab_size must be None, an int or 'spm', got {vocab_size!r}")
    return get_config(preset, **fields)


def build_data(
    *,
    data_source: str,
    batch_size: int,
    input_length: int,
    target_length: int,
    seed: int,
    train_file: str | None,
    vocab_path: str | None,
    input_prefix: str,
    drop_too_long: bool,
    length_buckets: Sequence[int],
    task: str | None,
    split: str,
    tfds_data_dir: str | None,
    extra_ids: int,
) -> batches_lib.ArrayBatches | batches_lib.SeqioBatches:
    """The batch source `run_train` trains on; see `run_train` for the arguments."""
    if data_source not in DATA_SOURCES:
        raise ValueError(f"data_source must be one of {DATA_SOURCES}, got {data_source!r}")
    if data_source == "jsonl":
        if train_file is None or vocab_path is None:
            raise ValueError("data_source='jsonl' needs train_file and vocab_path")
        return batches_lib.jsonl_batches(
            train_file,
            vocab_path,
            batch_size=batch_size,
            input_length=input_length,
            target_length=target_length,
            seed=seed,
            input_prefix=input_prefix,
            drop_too_long=drop_too_long,
            length_buckets=length_buckets,
        )
    if length_buckets:
        raise ValueError("length_buckets work with data_source='jsonl' only")
    if task is None or vocab_path is None:
        raise ValueError("data_source='seqio' needs task (e.g. 'wmt14_ende_v003') and vocab_path")
    from spec_cascade_jax.data import tasks

    if train_file is not None:
        name = tasks.register_local_task(
            f"{task}_train_local", task, {split: train_file}, vocab_path, extra_ids
        )
    else:
        (name,) = tasks.register_tasks(vocab_path, extra_ids, tfds_data_dir, task_names=[task])
    return batches_lib.seqio_batches(
        name,
        split=split,
        batch_size=batch_size,
        input_length=input_length,
        target_length=target_length,
        seed=seed,
    )


@gin.configurable
def run_train(
    *,
    model_preset: str = gin.REQUIRED,
    model_overrides: Mapping[str, Any] | None = None,
    vocab_size: int | str | None = None,
    vocab_path: str | None = None,
    data_source: str = "jsonl",
    train_file: str | None = None,
    input_prefix: str = "",
    drop_too_long: bool = False,
    length_buckets: Sequence[int] = (),
    task: str | None = None,
    split: str = "train",
    tfds_data_dir: str | None = None,
    extra_ids: int = 0,
    input_length: int = gin.REQUIRED,
    target_length: int = gin.REQUIRED,
    batch_size: int = gin.REQUIRED,
    num_steps: int = gin.REQUIRED,
    optimizer: str = "adafactor",
    learning_rate: float = 1e-3,
    warmup_steps: int = 0,
    schedule: str = "constant",
    weight_decay: float = 0.0,
    max_grad_norm: float | None = None,
    dropout_rate: float = 0.0,
    label_smoothing: float = 0.0,
    z_loss: float = 1e-4,
    init_checkpoint_kind: str = "random",
    init_checkpoint_path: str | None = None,
    model_dir: str | None = None,
    checkpoint_dir: str | None = None,
    checkpoint_every: int = 1000,
    max_checkpoints_to_keep: int = 2,
    export_dir: str | None = None,
    seed: int = 0,
    log_every: int = 100,
    progress: bool = True,
) -> trainer.TrainResult:
    """Builds model and data from gin, trains, and exports the result.

    Args:
        model_preset: `models.t5.config` preset, e.g. "t5_1_1_small" or "tiny".
        model_overrides: `T5Config` fields to replace (sizes, "dtype": "bfloat16", ...).
        vocab_size: None (preset's), an int, or "spm" (SentencePiece size padded to 128s).
        vocab_path: SentencePiece model (`pkg://` allowed); `gs://` works only for seqio data.
        data_source: "jsonl" (`train_file` lines {"input", "target"}, tokenised in memory) or
            "seqio" (the `spec_cascade_jax.data.tasks` task `task`, from TFDS or `train_file`).
        train_file: JSONL training file (`pkg://` allowed).
        input_prefix: text prepended to each JSONL input, e.g. "translate English to German: ";
            seqio tasks add their own.
        drop_too_long: JSONL only: skip pairs longer than the lengths instead of truncating.
        length_buckets: JSONL only: narrower batch widths that cut padding (`ArrayBatches`).
        task: seqio task name (one of `data.tasks.TASK_NAMES`) for data_source "seqio".
        split: seqio split to train on.
        tfds_data_dir: TFDS data directory for seqio tasks.
        extra_ids: sentinel ids appended to the seqio vocabulary (T5: 100).
        input_length: encoder length S, EOS included.
        target_length: decoder length L, EOS included.
        batch_size: examples per step (split over local devices).
        num_steps: total optimiser steps.
        optimizer: "adafactor" or "adamw".
        learning_rate: peak learning rate, reached after `warmup_steps` linear warm-up.
        warmup_steps: warm-up steps.
        schedule: after warm-up: "constant", "rsqrt" or "cosine" (to 10% at `num_steps`).
        weight_decay: decoupled weight decay.
        max_grad_norm: global-norm gradient clipping (None: none).
        dropout_rate: dropout during training (T5 fine-tuning: 0.1).
        label_smoothing: label smoothing mass.
        z_loss: auxiliary `logsumexp**2` loss weight.
        init_checkpoint_kind: "random", or a `checkpoint.load_params` kind ("t5x", "orbax", "hf",
            "auto") to start from `init_checkpoint_path`.
        init_checkpoint_path: checkpoint to fine-tune from (`pkg://` allowed).
        model_dir: default parent of `checkpoint_dir` (`model_dir/checkpoints`) and `export_dir`
            (`model_dir/export`).
        checkpoint_dir: train-state checkpoints (resumed automatically).
        checkpoint_every: steps between checkpoints.
        max_checkpoints_to_keep: train-state checkpoints kept.
        export_dir: where `training.export.export_model` writes the final params and config
            (None: `model_dir/export`, or no export without model_dir). An existing export is
            replaced.
        seed: seeds initialisation, shuffling and dropout.
        log_every: steps between log lines.
        progress: show a tqdm bar.
    """
    # Gin passes a macro bound to %gin.REQUIRED through as the sentinel instead of failing.
    missing = [name for name, value in locals().items() if value is gin.REQUIRED]
    if missing:
        raise ValueError(
            f"run_train: required settings are missing: {', '.join(missing)}; bind them, or the "
            "macros the run file binds them to (e.g. --gin.MODEL_DIR=\"'/tmp/run'\")"
        )
    vocab_path = resolve_path(vocab_path)
    train_file = resolve_path(train_file)
    model_dir = resolve_path(model_dir)
    checkpoint_dir = resolve_path(checkpoint_dir)
    export_dir = resolve_path(export_dir)
    if model_dir is not None:
        checkpoint_dir = checkpoint_dir or os.path.join(model_dir, "checkpoints")
        export_dir = export_dir or os.path.join(model_dir, "export")
    if checkpoint_dir is None:
        raise ValueError("run_train: set model_dir or checkpoint_dir (MODEL_DIR / CHECKPOINT_DIR)")
    config = build_config(model_preset, model_overrides, vocab_size, vocab_path)
    data = build_data(
        data_source=data_source,
        batch_size=batch_size,
        input_length=input_length,
        target_length=target_length,
        seed=seed,
        train_file=train_file,
        vocab_path=vocab_path,
        input_prefix=input_prefix,
        drop_too_long=drop_too_long,
        length_buckets=length_buckets,
        task=task,
        split=split,
        tfds_data_dir=tfds_data_dir,
        extra_ids=extra_ids,
    )
    init_params = None
    if init_checkpoint_kind != "random":
        from spec_cascade_jax.models.t5 import checkpoint

        init_params = checkpoint.load_params(
            init_checkpoint_kind, resolve_path(init_checkpoint_path), config
        )
    logging.info(
        "Training %s (%s) for %d steps on %s.", model_preset, config, num_steps, data.data_state()
    )
    start = time.time()
    result = trainer.train(
        config,
        data,
        num_steps=num_steps,
        optimizer=optimizer,
        learning_rate=learning_rate,
        warmup_steps=warmup_steps,
        schedule=schedule,
        weight_decay=weight_decay,
        max_grad_norm=max_grad_norm,
        batch_size=batch_size,
        dropout_rate=dropout_rate,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        init_params=init_params,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        max_checkpoints_to_keep=max_checkpoints_to_keep,
        seed=seed,
        log_every=log_every,
        progress=progress,
    )
    info = {
        "model_preset": model_preset,
        "num_steps": result.final_step,
        "optimizer": dataclasses.asdict(
            trainer.OptimizerConfig(
                name=optimizer,
                learning_rate=learning_rate,
                warmup_steps=warmup_steps,
                schedule=schedule,
                decay_steps=num_steps if schedule == "cosine" else None,
                weight_decay=weight_decay,
                max_grad_norm=max_grad_norm,
            )
        ),
        "batch_size": batch_size,
        "dropout_rate": dropout_rate,
        "label_smoothing": label_smoothing,
        "z_loss": z_loss,
        "init_checkpoint": init_checkpoint_path if init_checkpoint_kind != "random" else None,
        "data": data.data_state(),
        "seed": seed,
        "final_losses": [float(x) for x in result.losses[-100:]],
        "seconds_this_run": round(time.time() - start, 1),
        "device": str(jax.devices()[0].device_kind),
        "jax_version": jax.__version__,
    }
    if export_dir is not None:
        export.export_model(export_dir, config, result.params, info=info, overwrite=True)
        logging.info("Exported the model of step %d to %s.", result.final_step, export_dir)
    return result


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        cli.configure(
            FLAGS.gin_file or [DEFAULT_GIN_FILE], FLAGS.gin_bindings, FLAGS.gin_search_paths
        )
    except cli.GinConfigError as e:
        logging.error("%s", e)
        sys.exit(f"error: {e}")
    run_train()


def run_main() -> None:
    try:
        argv = cli.rewrite_gin_args(sys.argv)
    except cli.GinConfigError as e:
        sys.exit(f"error: {e}")
    app.run(main, argv=argv)


if __name__ == "__main__":
    run_main()
