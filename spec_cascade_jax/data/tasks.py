"""seqio evaluation tasks: WMT'14/'19 EN→DE, CNN/DailyMail and XSum (SPEC §7).

Each task reads TFDS (or a local JSONL/TSV file), prepends the T5 prefix to the input text,
tokenizes inputs and targets with the T5 SentencePiece vocabulary, truncates each to its maximum
length and then appends EOS (so every sequence ends in EOS and fits the length, EOS included).

| task name            | TFDS source             | input → target       | prefix      | in   | out |
|----------------------|-------------------------|----------------------|-------------|------|-----|
| `wmt14_ende_v003`    | `wmt14_translate/de-en` | en → de              | translate.. | 80   | 80  |
| `wmt19_ende_v003`    | `wmt19_translate/de-en` | en → de              | translate.. | 80   | 80  |
| `cnn_dailymail_v002` | `cnn_dailymail:3.4.0`   | article → highlights | summarize:  | 2048 | 128 |
| `xsum_v110`          | `xsum:1.1.0`            | document → summary   | summarize:  | 1024 | 64  |

The prefixes are "translate English to German: " and "summarize: ". WMT'19 is not in SPEC §7; it
reuses the WMT'14 lengths **[choice]**. The primary metric is BLEU for WMT, ROUGE-2 for the others.

Entry points:
- `get_eval_dataset(task_name, split, vocab_path, ...)`: the examples of one split (optionally the
  first `num_examples`, optionally one host's shard) as a list of dicts of numpy arrays and strings.
  This is what the evaluation job calls.
- `get_task_spec(task_name)`: prefix, lengths, metric functions and primary metric of a task.
- `build_task(...)`: the unregistered `seqio.Task` behind `get_eval_dataset`.
- `register_tasks(...)` / `register_local_task(...)`: add tasks to `seqio.TaskRegistry`. Importing
  this module registers the four TFDS tasks with the default (T5) vocabulary; calling either
  function again with the same names replaces the earlier registration.

TFDS sources are opened read-only: nothing is downloaded or prepared at run time. Prepare the data
with `tfds build` (or `download_and_prepare`) into a directory and pass it as `tfds_data_dir`.

Local files (`data_file=`): JSONL, one object per line with string fields `input` and `target`
(names configurable); or TSV, one `input<TAB>target` line per example, with `\\n`, `\\t` and `\\\\`
escapes unescaped and an optional header line naming the two fields. The raw text gets the same
prefix, tokenization and lengths as the TFDS task named by `task_name`.

Example order and sharding. Examples are read in the source's fixed order (no shuffling). Each
keeps `index`, its position in that order. `num_examples` keeps the first N examples of the split;
`shard_info=seqio.ShardInfo(index=k, num_shards=n)` then keeps those with `index % n == k`. The
union over hosts is the same set as one unsharded read, whatever the source's file layout, so
per-example seeds derived from `index` are stable under sharding and batching.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import seqio
import tensorflow as tf
from absl import logging

from spec_cascade_jax.data.vocab import (
    DEFAULT_EXTRA_IDS,
    DEFAULT_VOCAB_PATH,
    get_vocabulary,
    is_remote_path,
)
from spec_cascade_jax.evaluation import metrics

MetricFn = Callable[[Sequence[str], Sequence[str]], dict[str, float]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """What defines one evaluation task, independent of vocabulary and data location.

    Attributes:
      name: registered seqio task name.
      tfds_name: TFDS `name/config:version` of the source.
      input_key: TFDS feature holding the input text.
      target_key: TFDS feature holding the reference text.
      prefix: T5 task prefix prepended to the input text.
      max_input_len: maximum input length in tokens, EOS included.
      max_target_len: maximum output length in tokens, EOS included (the decode length).
      metric_fns: seqio-style `fn(targets, predictions) -> dict[str, float]` functions.
      primary_metric: the key of the quality number used in the result tables.
      splits: splits the source provides.
      eval_split: the split SPEC §7 evaluates on.
    """

    name: str
    tfds_name: str
    input_key: str
    target_key: str
    prefix: str
    max_input_len: int
    max_target_len: int
    metric_fns: tuple[MetricFn, ...]
    primary_metric: str
    splits: tuple[str, ...]
    eval_split: str = "validation"


_TRANSLATE_PREFIX = "translate English to German: "
_SUMMARIZE_PREFIX = "summarize: "

TASK_SPECS: Mapping[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            name="wmt14_ende_v003",
            tfds_name="wmt14_translate/de-en:1.0.0",
            input_key="en",
            target_key="de",
            prefix=_TRANSLATE_PREFIX,
            max_input_len=80,
            max_target_len=80,
            metric_fns=(metrics.bleu,),
            primary_metric="bleu",
            splits=("train", "validation", "test"),
        ),
        TaskSpec(
            name="wmt19_ende_v003",
            tfds_name="wmt19_translate/de-en:1.0.0",
            input_key="en",
            target_key="de",
            prefix=_TRANSLATE_PREFIX,
            max_input_len=80,
            max_target_len=80,
            metric_fns=(metrics.bleu,),
            primary_metric="bleu",
            splits=("train", "validation"),
        ),
        TaskSpec(
            name="cnn_dailymail_v002",
            tfds_name="cnn_dailymail:3.4.0",
            input_key="article",
            target_key="highlights",
            prefix=_SUMMARIZE_PREFIX,
            max_input_len=2048,
            max_target_len=128,
            metric_fns=(metrics.rouge,),
            primary_metric="rouge2",
            splits=("train", "validation", "test"),
        ),
        TaskSpec(
            name="xsum_v110",
            tfds_name="xsum:1.1.0",
            input_key="document",
            target_key="summary",
            prefix=_SUMMARIZE_PREFIX,
            max_input_len=1024,
            max_target_len=64,
            metric_fns=(metrics.rouge,),
            primary_metric="rouge2",
            splits=("train", "validation", "test"),
        ),
    )
}

TASK_NAMES = tuple(TASK_SPECS)

HOW_TO_PROVIDE_DATA = (
    "Prepare the dataset with `tfds build {dataset} --data_dir=DIR` (or download_and_prepare) and "
    "pass DIR as tfds_data_dir (gin: --gin_bindings=\"TFDS_DATA_DIR='DIR'\", or the "
    "TFDS_DATA_DIR environment variable), or evaluate on a local JSONL/TSV file with data_file=."
)


def get_task_spec(task_name: str) -> TaskSpec:
    """Returns the spec of `task_name` (one of `TASK_NAMES`)."""
    if task_name not in TASK_SPECS:
        raise ValueError(f"unknown task {task_name!r}; known tasks: {', '.join(TASK_NAMES)}")
    return TASK_SPECS[task_name]


# ---------------------------------------------------------------------------------------------
# Sources.


def _tfds_source(spec: TaskSpec, tfds_data_dir: str | None) -> seqio.TfdsDataSource:
    if tfds_data_dir is not None:
        tfds_data_dir = os.fspath(tfds_data_dir)
        if not is_remote_path(tfds_data_dir) and not os.path.isdir(tfds_data_dir):
            raise FileNotFoundError(
                f"TFDS data directory not found: tried {os.path.abspath(tfds_data_dir)!r} for "
                f"{spec.tfds_name}. "
                + HOW_TO_PROVIDE_DATA.format(dataset=spec.tfds_name.split(":")[0])
            )
    return seqio.TfdsDataSource(
        spec.tfds_name, tfds_data_dir=tfds_data_dir, splits=spec.splits, read_only=True
    )


_TSV_UNESCAPE = re.compile(r"\\(.)")
_TSV_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def _unescape_tsv(text: str) -> str:
    return _TSV_UNESCAPE.sub(lambda m: _TSV_ESCAPES.get(m.group(1), m.group(0)), text)


def _file_format(path: str) -> str:
    lower = path.lower()
    if lower.endswith((".jsonl", ".json")):
        return "jsonl"
    if lower.endswith(".tsv"):
        return "tsv"
    raise ValueError(f"cannot tell the format of {path!r}: use a .jsonl, .json or .tsv file")


def read_local_examples(
    path: str, input_field: str = "input", target_field: str = "target"
) -> tuple[list[str], list[str]]:
    """Reads (inputs, targets) text pairs from a JSONL or TSV file (format from the extension)."""
    path = os.fspath(path)
    fmt = _file_format(path)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"local data file not found: tried {path!r}. Pass an existing .jsonl/.tsv file as "
            "data_file (gin: --gin_bindings=\"DATA_FILE='/path/to/file.jsonl'\")."
        )
    with tf.io.gfile.GFile(path, "r") as f:
        lines = f.read().splitlines()
    inputs, targets = [], []
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if fmt == "jsonl":
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no}: invalid JSON ({e})") from e
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{line_no}: expected a JSON object, got {line[:80]!r}")
            fields = []
            for field in (input_field, target_field):
                if not isinstance(record.get(field), str):
                    raise ValueError(
                        f"{path}:{line_no}: field {field!r} missing or not a string "
                        f"(keys: {sorted(record)})"
                    )
                fields.append(record[field])
        else:
            fields = line.split("\t")
            if len(fields) != 2:
                raise ValueError(
                    f"{path}:{line_no}: expected 2 tab-separated fields (input, target), "
                    f"got {len(fields)}"
                )
            if line_no == 1 and fields == [input_field, target_field]:
                continue  # Header line.
            fields = [_unescape_tsv(text) for text in fields]
        inputs.append(fields[0])
        targets.append(fields[1])
    if not inputs:
        raise ValueError(f"local data file {path!r} holds no examples")
    return inputs, targets


def _local_source(
    spec: TaskSpec, data_files: Mapping[str, str], input_field: str, target_field: str
) -> seqio.FunctionDataSource:
    """A source over local files; its examples use the TFDS feature names of `spec`."""
    if not data_files:
        raise ValueError("data_files must map at least one split to a file")
    data_files = {split: os.fspath(path) for split, path in data_files.items()}
    for path in data_files.values():
        _file_format(path)
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(
                f"local data file not found: tried {path!r}. Pass an existing .jsonl/.tsv file "
                "as data_file (gin: --gin_bindings=\"DATA_FILE='/path/to/file.jsonl'\")."
            )

    def dataset_fn(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
        del shuffle_files, seed  # One file per split, read in order.
        inputs, targets = read_local_examples(data_files[split], input_field, target_field)
        return tf.data.Dataset.from_tensor_slices(
            {spec.input_key: tf.constant(inputs), spec.target_key: tf.constant(targets)}
        )

    return seqio.FunctionDataSource(dataset_fn, splits=tuple(data_files))


# ---------------------------------------------------------------------------------------------
# Preprocessors (tf.data, traced once per pipeline).


def _select_examples(
    num_examples: int | None, shard_info: seqio.ShardInfo | None
) -> Callable[[tf.data.Dataset], tf.data.Dataset]:
    """Keeps the first `num_examples`, numbers them (`index`), then keeps this host's shard."""

    def select(dataset: tf.data.Dataset) -> tf.data.Dataset:
        if num_examples is not None:
            dataset = dataset.take(num_examples)
        dataset = dataset.enumerate()
        if shard_info is not None and shard_info.num_shards > 1:
            num_shards, shard = shard_info.num_shards, shard_info.index
            dataset = dataset.filter(lambda i, _: i % num_shards == shard)
        return dataset.map(lambda i, ex: {**ex, "index": i}, num_parallel_calls=tf.data.AUTOTUNE)

    return select


def _to_text_pair(spec: TaskSpec) -> Callable[[tf.data.Dataset], tf.data.Dataset]:
    """Maps a raw example to {"inputs": prefix + input text, "targets": target text, "index"}."""

    def to_text_pair(dataset: tf.data.Dataset) -> tf.data.Dataset:
        def fn(ex: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            return {
                "inputs": tf.strings.join([spec.prefix, ex[spec.input_key]]),
                "targets": ex[spec.target_key],
                "index": ex["index"],
            }

        return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE)

    return to_text_pair


def _postprocess(output: Any, example: Mapping[str, Any] | None = None, is_target: bool = False):
    """seqio postprocess_fn: score against the untruncated reference text, as t5 does."""
    if is_target and example is not None and "targets_pretokenized" in example:
        text = example["targets_pretokenized"]
        return text.decode("utf-8") if isinstance(text, bytes) else text
    return output


# ---------------------------------------------------------------------------------------------
# Tasks.


def build_task(
    task_name: str,
    vocab_path: str = DEFAULT_VOCAB_PATH,
    *,
    extra_ids: int = DEFAULT_EXTRA_IDS,
    tfds_data_dir: str | None = None,
    data_files: Mapping[str, str] | None = None,
    input_field: str = "input",
    target_field: str = "target",
    num_examples: int | None = None,
    shard_info: seqio.ShardInfo | None = None,
    registered_name: str | None = None,
) -> seqio.Task:
    """Builds (does not register) the seqio task for `task_name`.

    Args:
      task_name: one of `TASK_NAMES`; fixes the prefix, lengths, metrics and TFDS source.
      vocab_path: SentencePiece model (local `.model` or `gs://`).
      extra_ids: sentinel ids appended to the vocabulary (T5: 100).
      tfds_data_dir: TFDS data directory (None: TFDS's default, `$TFDS_DATA_DIR` or
        `~/tensorflow_datasets`). Ignored when `data_files` is given.
      data_files: {split: path} of local JSONL/TSV files to read instead of TFDS.
      input_field, target_field: field names in the local files.
      num_examples: keep only the first N examples of a split (None: all).
      shard_info: keep only this host's shard (see the module docstring).
      registered_name: the task's name (default `task_name`).
    """
    spec = get_task_spec(task_name)
    if num_examples is not None and (
        isinstance(num_examples, bool) or not isinstance(num_examples, int) or num_examples < 1
    ):
        raise ValueError(f"num_examples must be a positive int or None, got {num_examples!r}")
    if shard_info is not None and not (
        shard_info.num_shards >= 1 and 0 <= shard_info.index < shard_info.num_shards
    ):
        raise ValueError(f"shard_info needs 0 <= index < num_shards, got {shard_info!r}")
    vocabulary = get_vocabulary(vocab_path, extra_ids)
    if data_files is not None:
        source = _local_source(spec, data_files, input_field, target_field)
    else:
        source = _tfds_source(spec, tfds_data_dir)
    output_features = {
        "inputs": seqio.Feature(vocabulary=vocabulary, add_eos=True, dtype=tf.int32),
        "targets": seqio.Feature(vocabulary=vocabulary, add_eos=True, dtype=tf.int32),
    }
    return seqio.Task(
        registered_name or task_name,
        source=source,
        output_features=output_features,
        preprocessors=[
            _select_examples(num_examples, shard_info),
            _to_text_pair(spec),
            seqio.preprocessors.tokenize,
            seqio.preprocessors.append_eos_after_trim,
        ],
        postprocess_fn=_postprocess,
        metric_fns=list(spec.metric_fns),
    )


def _register(task: seqio.Task) -> None:
    seqio.TaskRegistry.remove(task.name)
    seqio.TaskRegistry.add_provider(task.name, task)


def register_tasks(
    vocab_path: str = DEFAULT_VOCAB_PATH,
    extra_ids: int = DEFAULT_EXTRA_IDS,
    tfds_data_dir: str | None = None,
    suffix: str = "",
    task_names: Sequence[str] = TASK_NAMES,
) -> list[str]:
    """(Re)registers the TFDS tasks as `name + suffix` in `seqio.TaskRegistry`; returns the names.

    Registering a name again replaces the earlier task, so this is safe to call repeatedly.
    """
    names = []
    for task_name in task_names:
        task = build_task(
            task_name,
            vocab_path,
            extra_ids=extra_ids,
            tfds_data_dir=tfds_data_dir,
            registered_name=task_name + suffix,
        )
        _register(task)
        names.append(task.name)
    return names


def register_local_task(
    name: str,
    task_name: str,
    data_files: Mapping[str, str],
    vocab_path: str = DEFAULT_VOCAB_PATH,
    extra_ids: int = DEFAULT_EXTRA_IDS,
    input_field: str = "input",
    target_field: str = "target",
) -> str:
    """(Re)registers `name`: task `task_name` read from local JSONL/TSV `{split: path}` files."""
    task = build_task(
        task_name,
        vocab_path,
        extra_ids=extra_ids,
        data_files=data_files,
        input_field=input_field,
        target_field=target_field,
        registered_name=name,
    )
    _register(task)
    return task.name


def _as_str(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def get_eval_dataset(
    task_name: str,
    split: str = "validation",
    vocab_path: str = DEFAULT_VOCAB_PATH,
    num_examples: int | None = None,
    shard_info: seqio.ShardInfo | None = None,
    *,
    extra_ids: int = DEFAULT_EXTRA_IDS,
    tfds_data_dir: str | None = None,
    data_file: str | None = None,
    input_field: str = "input",
    target_field: str = "target",
    max_input_len: int | None = None,
    max_target_len: int | None = None,
) -> list[dict[str, Any]]:
    """Reads, tokenizes and truncates one split of an evaluation task.

    Args:
      task_name: one of `TASK_NAMES` (prefix, lengths and source come from its `TaskSpec`).
      split: e.g. "validation" (SPEC §7's evaluation split) or "test".
      vocab_path: SentencePiece model; a local `.model` file or a `gs://` URL.
      num_examples: keep only the first N examples of the split (None: all).
      shard_info: `seqio.ShardInfo(index, num_shards)`: keep examples with `index % num_shards ==
        shard_info.index` (after `num_examples`).
      extra_ids: sentinel ids appended to the vocabulary (T5: 100; tests: 0).
      tfds_data_dir: TFDS data directory (None: TFDS's default).
      data_file: a local JSONL/TSV file to read as `split` instead of TFDS.
      input_field, target_field: field names in `data_file` (JSONL keys or TSV header).
      max_input_len, max_target_len: override the task's maximum lengths (EOS included).

    Returns:
      One dict per example, in split order:
        "inputs": np.int32[S], S <= max input length, prefix included, ends with EOS;
        "targets": np.int32[T], T <= max target length, ends with EOS;
        "inputs_pretokenized": str, the prefixed input text;
        "targets_pretokenized": str, the full reference text (score against this);
        "index": int, position in the split (stable under `shard_info`).

    Raises:
      FileNotFoundError: vocabulary, TFDS data or local file missing (the message names the path
        tried and how to provide it).
      ValueError: unknown task or split, or a bad argument.
    """
    spec = get_task_spec(task_name)
    if data_file is None and split not in spec.splits:
        raise ValueError(f"task {task_name!r} has no split {split!r}; splits: {spec.splits}")
    lengths = {
        "inputs": spec.max_input_len if max_input_len is None else max_input_len,
        "targets": spec.max_target_len if max_target_len is None else max_target_len,
    }
    for key, length in lengths.items():
        if isinstance(length, bool) or not isinstance(length, int) or length < 2:
            raise ValueError(
                f"maximum {key} length must be an int >= 2 (EOS included), got {length!r}"
            )
    task = build_task(
        task_name,
        vocab_path,
        extra_ids=extra_ids,
        tfds_data_dir=tfds_data_dir,
        data_files=None if data_file is None else {split: data_file},
        input_field=input_field,
        target_field=target_field,
        num_examples=num_examples,
        shard_info=shard_info,
    )
    try:
        dataset = task.get_dataset(
            sequence_length=lengths,
            split=split,
            shuffle=False,
            num_epochs=1,
            try_in_mem_cache=False,
        )
        raw_examples = list(dataset.as_numpy_iterator())
    except AssertionError as e:  # TFDS: "Dataset x: could not find data in DIR ..."
        if "could not find data" not in str(e):
            raise
        data_dir = tfds_data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
        raise FileNotFoundError(
            f"no prepared TFDS data for {spec.tfds_name} (split {split!r}): tried data dir "
            f"{data_dir!r}. " + HOW_TO_PROVIDE_DATA.format(dataset=spec.tfds_name.split(":")[0])
        ) from e
    examples = [
        {
            "inputs": np.asarray(ex["inputs"], dtype=np.int32),
            "targets": np.asarray(ex["targets"], dtype=np.int32),
            "inputs_pretokenized": _as_str(ex["inputs_pretokenized"]),
            "targets_pretokenized": _as_str(ex["targets_pretokenized"]),
            "index": int(ex["index"]),
        }
        for ex in raw_examples
    ]
    logging.info(
        "%s/%s: %d examples (num_examples=%s, shard=%s)",
        task_name,
        split,
        len(examples),
        num_examples,
        shard_info,
    )
    return examples


register_tasks()
