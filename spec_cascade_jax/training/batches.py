"""Training batches `{'inputs': int32[B, S], 'targets': int32[B, L]}`, 0-padded, ending in EOS.

The trainer takes any iterable of such batches. For an exact resume after an interruption it prefers
a `BatchSource`: an object whose `iterate_from(step)` yields the batches of steps `step, step + 1,
...`, the same ones an uninterrupted run would have seen. Two sources are provided:

- `ArrayBatches` (built by `jsonl_batches` from a JSONL file and a SentencePiece model, or by
  `array_batches` from token lists): the whole set is tokenised once and kept in memory; the batch
  at step `t` is a pure function of `(seed, t)`, so resuming costs nothing.
- `SeqioBatches` (built by `seqio_batches`): wraps a registered seqio task or mixture; resuming
  replays the seeded `tf.data` pipeline and skips the batches already trained on.

Lengths include EOS: a sequence longer than its length is cut to `length - 1` tokens and EOS is
appended after the cut (as the evaluation tasks do). PAD = 0, EOS = 1.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from absl import logging

from spec_cascade_jax.data.vocab import EOS_ID, PAD_ID

Batch = dict[str, np.ndarray]  # {'inputs': int32[B, S], 'targets': int32[B, L]}


@runtime_checkable
class BatchSource(Protocol):
    """A resumable stream of training batches."""

    def iterate_from(self, step: int) -> Iterator[Batch]:
        """Yields the batches for steps `step, step + 1, ...` (the same as a run from step 0)."""

    def data_state(self) -> dict[str, Any]:
        """JSON-serialisable description stored with checkpoints and compared on resume."""


def pack_sequence(ids: Sequence[int], length: int) -> np.ndarray:
    """Truncates `ids` to `length - 1` tokens, appends EOS, pads with 0 to `length`."""
    if length < 1:
        raise ValueError(f"sequence length must be >= 1, got {length!r}")
    out = np.zeros((length,), np.int32)
    body = list(ids)[: length - 1]
    out[: len(body)] = body
    out[len(body)] = EOS_ID
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class ArrayBatches:
    """Tokenised examples in memory; the batch at step `t` depends only on `(seed, t)`.

    Without `length_buckets`, example `i` of the endless stream (`i = t * batch_size + row`) is
    `permutation(seed, epoch=i // N)[i % N]`, each epoch with its own seeded permutation (identity
    when `shuffle` is False); batches never drop examples and cross epoch boundaries, and every
    batch has the full widths `[B, S]` / `[B, L]`.

    With `length_buckets` (e.g. `(16, 32)`), padding is cut: each epoch's permutation is split
    into windows of `64 * batch_size` examples, each window is sorted by padded length, cut into
    batches, and the epoch's `N // batch_size` batches are shuffled (seeded); the `N % batch_size`
    left-over examples sit out that epoch. Each batch is as wide as the smallest bucket (or the
    full length) holding its longest row, so the trainer compiles one step per width pair.

    Attributes:
        inputs: int32 [N, S] encoder inputs (0-padded).
        targets: int32 [N, L] decoder targets (0-padded).
        batch_size: rows per batch B.
        seed: shuffling seed.
        shuffle: whether to permute each epoch.
        length_buckets: increasing widths below the full lengths; () for fixed shapes.
    """

    inputs: np.ndarray = dataclasses.field(repr=False)
    targets: np.ndarray = dataclasses.field(repr=False)
    batch_size: int
    seed: int = 0
    shuffle: bool = True
    length_buckets: tuple[int, ...] = ()
    _cache: dict[str, Any] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.inputs.ndim != 2 or self.targets.ndim != 2:
            raise ValueError(
                f"inputs and targets must be 2-D [N, length], got shapes {self.inputs.shape} "
                f"and {self.targets.shape}"
            )
        if self.inputs.shape[0] != self.targets.shape[0]:
            raise ValueError(
                f"inputs and targets disagree on the number of examples: "
                f"{self.inputs.shape[0]} vs {self.targets.shape[0]}"
            )
        if self.inputs.shape[0] == 0:
            raise ValueError("ArrayBatches needs at least one example, got 0")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}")
        buckets = tuple(self.length_buckets)
        if any(not isinstance(b, int) or b < 1 for b in buckets) or list(buckets) != sorted(
            set(buckets)
        ):
            raise ValueError(
                f"length_buckets must be increasing positive ints, got {self.length_buckets!r}"
            )
        object.__setattr__(self, "length_buckets", buckets)
        if buckets and self.num_examples < self.batch_size:
            raise ValueError(
                f"length_buckets need at least batch_size ({self.batch_size}) examples, got "
                f"{self.num_examples}"
            )

    @property
    def num_examples(self) -> int:
        return int(self.inputs.shape[0])

    def _permutation(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_examples)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)

    def _width(self, lengths: np.ndarray, full: int) -> np.ndarray:
        """The bucket width holding each length (the full length beyond the last bucket)."""
        bounds = np.array([b for b in self.length_buckets if b < full] + [full])
        return bounds[np.searchsorted(bounds, lengths)]

    def _epoch_plan(self, epoch: int) -> np.ndarray:
        """Bucketed mode: the example ids of each batch of `epoch`, int [N // B, B]."""
        if self._cache.get("epoch") != epoch:
            if "widths" not in self._cache:
                self._cache["widths"] = (
                    self._width((self.inputs != 0).sum(1), self.inputs.shape[1]),
                    self._width((self.targets != 0).sum(1), self.targets.shape[1]),
                )
            in_width, out_width = self._cache["widths"]
            order = self._permutation(epoch)
            window = 64 * self.batch_size
            for start in range(0, len(order), window):
                chunk = order[start : start + window]
                # Stable sort by (input width, target width); ties keep the shuffled order.
                order[start : start + window] = chunk[
                    np.lexsort((out_width[chunk], in_width[chunk]))
                ]
            num_batches = self.num_examples // self.batch_size
            plan = order[: num_batches * self.batch_size].reshape(num_batches, self.batch_size)
            if self.shuffle:
                plan = plan[np.random.default_rng([self.seed, epoch, 1]).permutation(num_batches)]
            self._cache.update(epoch=epoch, plan=plan)
        return self._cache["plan"]

    def _rows(self, step: int) -> np.ndarray:
        if self.length_buckets:
            per_epoch = self.num_examples // self.batch_size
            return self._epoch_plan(step // per_epoch)[step % per_epoch]
        n = self.num_examples
        flat = step * self.batch_size + np.arange(self.batch_size)
        epochs, positions = flat // n, flat % n
        rows = np.empty_like(flat)
        for epoch in np.unique(epochs):
            mask = epochs == epoch
            rows[mask] = self._permutation(int(epoch))[positions[mask]]
        return rows

    def batch_at(self, step: int) -> Batch:
        """The batch trained on at `step` (0-based)."""
        if not isinstance(step, int | np.integer) or step < 0:
            raise ValueError(f"step must be an int >= 0, got {step!r}")
        rows = self._rows(int(step))
        inputs, targets = self.inputs[rows], self.targets[rows]
        if self.length_buckets:
            in_width = self._width(np.array([(inputs != 0).sum(1).max()]), inputs.shape[1])[0]
            out_width = self._width(np.array([(targets != 0).sum(1).max()]), targets.shape[1])[0]
            inputs, targets = inputs[:, :in_width], targets[:, :out_width]
        return {"inputs": inputs, "targets": targets}

    def iterate_from(self, step: int) -> Iterator[Batch]:
        while True:
            yield self.batch_at(step)
            step += 1

    def __iter__(self) -> Iterator[Batch]:
        return self.iterate_from(0)

    def data_state(self) -> dict[str, Any]:
        return {
            "kind": "array",
            "num_examples": self.num_examples,
            "batch_size": self.batch_size,
            "seed": int(self.seed),
            "shuffle": bool(self.shuffle),
            "input_length": int(self.inputs.shape[1]),
            "target_length": int(self.targets.shape[1]),
            "length_buckets": list(self.length_buckets),
        }


def array_batches(
    inputs: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    *,
    batch_size: int,
    input_length: int,
    target_length: int,
    seed: int = 0,
    shuffle: bool = True,
    length_buckets: Sequence[int] = (),
) -> ArrayBatches:
    """Builds an `ArrayBatches` from token-id lists (without EOS; it is appended here)."""
    if len(inputs) != len(targets):
        raise ValueError(
            f"inputs and targets disagree on the number of examples: {len(inputs)} vs "
            f"{len(targets)}"
        )
    packed_inputs = np.stack([pack_sequence(x, input_length) for x in inputs]) if inputs else None
    packed_targets = (
        np.stack([pack_sequence(y, target_length) for y in targets]) if targets else None
    )
    if packed_inputs is None or packed_targets is None:
        raise ValueError("array_batches needs at least one example, got 0")
    return ArrayBatches(
        packed_inputs, packed_targets, batch_size, seed, shuffle, tuple(length_buckets)
    )


def read_jsonl(
    path: str | os.PathLike[str],
    fields: Sequence[str] = ("input", "target"),
    max_examples: int | None = None,
) -> list[tuple[str, ...]]:
    """Reads the named string fields of every non-empty line of a JSONL file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"JSONL data file not found: {path!r}")
    rows: list[tuple[str, ...]] = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({e})") from e
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{line_no}: expected a JSON object, got {record!r:.80}")
            values = []
            for field in fields:
                if field not in record:
                    raise ValueError(
                        f"{path}:{line_no}: missing field {field!r} (has {sorted(record)})"
                    )
                if not isinstance(record[field], str):
                    raise ValueError(
                        f"{path}:{line_no}: field {field!r} must be a string, got "
                        f"{type(record[field]).__name__}"
                    )
                values.append(record[field])
            rows.append(tuple(values))
            if max_examples is not None and len(rows) >= max_examples:
                break
    if not rows:
        raise ValueError(f"JSONL data file {path!r} holds no examples")
    return rows


def load_sentencepiece(path: str | os.PathLike[str]) -> Any:
    """Loads a SentencePiece model from a local file, with a clear error if it is missing."""
    import sentencepiece as spm  # only needed for text data

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SentencePiece model file not found: {path!r}")
    processor = spm.SentencePieceProcessor(model_file=path)
    if processor.pad_id() != PAD_ID or processor.eos_id() != EOS_ID:
        raise ValueError(
            f"SentencePiece model {path!r} must have pad id {PAD_ID} and eos id {EOS_ID}, got "
            f"pad {processor.pad_id()} and eos {processor.eos_id()}"
        )
    return processor


def jsonl_batches(
    path: str | os.PathLike[str],
    spm_model: str | os.PathLike[str],
    *,
    batch_size: int,
    input_length: int,
    target_length: int,
    seed: int = 0,
    shuffle: bool = True,
    input_prefix: str = "",
    input_field: str = "input",
    target_field: str = "target",
    max_examples: int | None = None,
    drop_too_long: bool = False,
    length_buckets: Sequence[int] = (),
) -> ArrayBatches:
    """Tokenises a JSONL file of `{input_field: str, target_field: str}` lines into batches.

    Args:
        path: the JSONL file.
        spm_model: SentencePiece model file (pad 0, eos 1).
        batch_size: rows per batch.
        input_length: S, encoder length including EOS.
        target_length: L, decoder length including EOS.
        seed: shuffling seed; the batch at each step depends only on it and the step.
        shuffle: permute each epoch (otherwise file order).
        input_prefix: text prepended to every input, e.g. "translate English to German: ".
        input_field: JSON key of the source text.
        target_field: JSON key of the target text.
        max_examples: read at most this many lines.
        drop_too_long: skip pairs whose input or target (with EOS) exceeds its length, instead
            of truncating them (a truncated translation no longer matches its source).
        length_buckets: batch widths below the full lengths, to cut padding (see `ArrayBatches`).
    """
    rows = read_jsonl(path, (input_field, target_field), max_examples)
    processor = load_sentencepiece(spm_model)
    sources = processor.encode([input_prefix + r[0] for r in rows])
    targets = processor.encode([r[1] for r in rows])
    too_long = [
        len(x) >= input_length or len(y) >= target_length
        for x, y in zip(sources, targets, strict=True)
    ]
    if drop_too_long:
        sources = [x for x, drop in zip(sources, too_long, strict=True) if not drop]
        targets = [y for y, drop in zip(targets, too_long, strict=True) if not drop]
        if not sources:
            raise ValueError(
                f"every example of {os.fspath(path)!r} is longer than input_length "
                f"{input_length} / target_length {target_length}"
            )
    batches = array_batches(
        sources,
        targets,
        batch_size=batch_size,
        input_length=input_length,
        target_length=target_length,
        seed=seed,
        shuffle=shuffle,
        length_buckets=length_buckets,
    )
    logging.info(
        "Loaded %d examples from %s; %d pairs longer than S=%d / L=%d were %s.",
        batches.num_examples,
        os.fspath(path),
        sum(too_long),
        input_length,
        target_length,
        "dropped" if drop_too_long else "truncated",
    )
    return batches


@dataclasses.dataclass(frozen=True)
class SeqioBatches:
    """Batches from a registered seqio task or mixture (unpacked, EncDec features).

    Resuming at step `t` rebuilds the seeded pipeline and skips `t` batches, so the stream matches
    an uninterrupted run as long as seqio's shuffling is deterministic for `seed`; skipping costs
    the preprocessing time of the skipped examples.
    """

    task: str
    split: str
    batch_size: int
    input_length: int
    target_length: int
    seed: int = 0
    shuffle: bool = True

    def iterate_from(self, step: int) -> Iterator[Batch]:
        import seqio  # imports TensorFlow: keep it off the JSONL path

        dataset = seqio.get_dataset(
            self.task,
            task_feature_lengths={"inputs": self.input_length, "targets": self.target_length},
            feature_converter=seqio.EncDecFeatureConverter(pack=False),
            dataset_split=self.split,
            shuffle=self.shuffle,
            num_epochs=None,
            seed=self.seed,
            use_cached=False,
        )
        dataset = dataset.batch(self.batch_size, drop_remainder=True)
        if step:
            logging.info("Skipping %d batches of %s to resume.", step, self.task)
            dataset = dataset.skip(step)
        for features in dataset.as_numpy_iterator():
            yield {
                "inputs": features["encoder_input_tokens"].astype(np.int32),
                "targets": features["decoder_target_tokens"].astype(np.int32),
            }

    def __iter__(self) -> Iterator[Batch]:
        return self.iterate_from(0)

    def data_state(self) -> dict[str, Any]:
        return {"kind": "seqio", **dataclasses.asdict(self)}


def seqio_batches(
    task: str,
    *,
    split: str = "train",
    batch_size: int,
    input_length: int,
    target_length: int,
    seed: int = 0,
    shuffle: bool = True,
) -> SeqioBatches:
    """Batches from seqio task `task` (it must already be registered, e.g. by importing
    `spec_cascade_jax.data.tasks`). Raises ValueError naming the task if it is unknown."""
    import seqio

    try:
        seqio.get_mixture_or_task(task)
    except ValueError as e:
        raise ValueError(f"seqio task or mixture {task!r} is not registered ({e})") from e
    for name, value in (
        ("batch_size", batch_size),
        ("input_length", input_length),
        ("target_length", target_length),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    return SeqioBatches(task, split, batch_size, input_length, target_length, seed, shuffle)
