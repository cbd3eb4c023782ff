"""Decode a text file or a task split with one method and α; write outputs and statistics.

    python -m spec_cascade_jax.main \
      --gin_file=models/pair_t5_1_1_small_large.gin --gin_file=tasks/wmt14_ende.gin \
      --gin_file=runs/decode.gin --gin.METHOD="'spec_token_v3'" --gin.ALPHA=0.3 \
      --gin.INPUT_FILE="'inputs.txt'" --gin.OUTPUT_DIR="'/tmp/decode'" ...

With `input_file` every non-empty line is one input: the task's prefix is prepended (unless
`add_prefix=False`), the text is tokenized with the vocabulary, truncated to `max_input_len - 1`
tokens and EOS is appended, as the task pipeline does. Without it the task's split is decoded and
scored with the task's metric.

Writes to `output_dir`:
- `outputs.jsonl`: per example its index, input text, prediction, reference (task split only),
  output ids and its own counters (`n_tok`, `n_ver`, `n_dr`, accepted, rejected, η sum, ...);
- `stats.json`: the run's SPEC §5 statistics (`decoding.summarize_stats`), the quality (task split
  only), the method, α, sampling config, lengths, models and the [choice] fields.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

import gin
import jax
import numpy as np
from absl import logging

from spec_cascade_jax.evaluation import latency as latency_lib
from spec_cascade_jax.evaluation import runner, sweeps

_TEXT_FIELDS = ("inputs_pretokenized", "targets_pretokenized")


def read_text_inputs(
    path: str, vocabulary, prefix: str, max_input_len: int
) -> list[dict[str, Any]]:
    """One example per non-empty line: prefix + text, tokenized, truncated, EOS appended."""
    from spec_cascade_jax.data.vocab import EOS_ID

    if not os.path.isfile(path):
        raise FileNotFoundError(f"input file not found: {path!r}")
    examples = []
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f]
    for line in lines:
        if not line.strip():
            continue
        text = prefix + line
        ids = list(vocabulary.encode(text))[: max_input_len - 1] + [EOS_ID]
        examples.append(
            {
                "inputs": np.asarray(ids, np.int32),
                "inputs_pretokenized": text,
                "index": len(examples),
            }
        )
    if not examples:
        raise ValueError(f"input file {path!r} holds no non-empty lines")
    return examples


@gin.configurable
def run_decode(
    output_dir: str = gin.REQUIRED,
    drafter: runner.ModelSpec = gin.REQUIRED,
    verifier: runner.ModelSpec = gin.REQUIRED,
    vocab_path: str = gin.REQUIRED,
    task: str = gin.REQUIRED,
    method: str = "spec_token_v3",
    alpha: float | None = None,
    sampling: sweeps.SamplingConfig | None = None,
    input_file: str | None = None,
    add_prefix: bool = True,
    split: str = "validation",
    num_examples: int | None = None,
    tfds_data_dir: str | None = None,
    data_file: str | None = None,
    extra_ids: int = 100,
    max_input_len: int | None = None,
    max_decode_len: int | None = None,
    drafter_checkpoint: str | None = None,
    verifier_checkpoint: str | None = None,
    batch_size: int = 16,
    progress: bool = True,
    mesh: Any = None,
) -> dict[str, Any] | None:
    """Decodes with one (method, α); see the module docstring. Returns the stats dict.

    Args:
      output_dir: where outputs.jsonl and stats.json go.
      drafter, verifier: `runner.ModelSpec`s. vocab_path: SentencePiece model (`pkg://` allowed).
      task: a `data.tasks` task name: prefix, lengths, metric (and the data if no input_file).
      method: a method id (`decoding.METHODS`). alpha: its α (None for methods without α).
      sampling: the sampler (`sweeps.sampling_config`); None = T=1, γ=5, target bonus.
      input_file: text file with one input per line (None: decode the task's split).
      add_prefix: prepend the task prefix to input_file lines.
      split, num_examples, tfds_data_dir, data_file, extra_ids: as in `runner.run_eval`.
      max_input_len, max_decode_len: None takes the task's lengths.
      drafter_checkpoint, verifier_checkpoint: replace the specs' checkpoint paths when set.
      batch_size: rows per decode call. progress: tqdm bar.
      mesh: a `parallel` ("data", "model") mesh (gin: `run_decode.mesh = @build_mesh()`): decode
        with `parallel.sharded_generate` (same tokens). With several processes each decodes its
        own shard of the inputs (`index % processes`), process 0 gathers them (sorted by index)
        and alone writes; the others return None.
    """
    runner.check_required(
        run_decode,
        output_dir=output_dir,
        drafter=drafter,
        verifier=verifier,
        vocab_path=vocab_path,
        task=task,
    )
    from spec_cascade_jax import decoding
    from spec_cascade_jax.data import tasks as tasks_lib
    from spec_cascade_jax.data import vocab as vocab_lib

    task_spec = tasks_lib.get_task_spec(task)
    if method not in decoding.METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(decoding.METHODS)}")
    if method in sweeps.NO_ALPHA_METHODS and alpha is not None:
        raise ValueError(f"method {method!r} takes no alpha, got alpha={alpha!r}")
    if method not in sweeps.NO_ALPHA_METHODS:
        if alpha is None:
            raise ValueError(f"method {method!r} needs an alpha (set ALPHA)")
        decoding.validate_method_alpha(method, alpha)
    sampling = sampling or sweeps.SamplingConfig()
    max_input_len = task_spec.max_input_len if max_input_len is None else max_input_len
    max_decode_len = task_spec.max_target_len if max_decode_len is None else max_decode_len
    runner.check_positive_ints(
        batch_size=batch_size, max_input_len=max_input_len, max_decode_len=max_decode_len
    )
    if drafter_checkpoint is not None:
        drafter = dataclasses.replace(drafter, checkpoint_path=drafter_checkpoint)
    if verifier_checkpoint is not None:
        verifier = dataclasses.replace(verifier, checkpoint_path=verifier_checkpoint)
    vocab_path = runner.resolve_path(vocab_path)
    vocab_lib.check_vocab_file(vocab_path)
    vocabulary = vocab_lib.get_vocabulary(vocab_path, extra_ids)
    multiprocess = jax.process_count() > 1
    if multiprocess:
        from spec_cascade_jax.parallel import distributed

    if input_file is not None:
        examples = read_text_inputs(
            runner.resolve_path(input_file),
            vocabulary,
            task_spec.prefix if add_prefix else "",
            max_input_len,
        )
        if multiprocess:  # The same split as the data layer's shard_info: index % processes.
            examples = [
                ex for ex in examples if ex["index"] % jax.process_count() == jax.process_index()
            ]
    else:
        examples = tasks_lib.get_eval_dataset(
            task,
            split,
            vocab_path,
            num_examples=num_examples,
            extra_ids=extra_ids,
            tfds_data_dir=runner.resolve_path(tfds_data_dir),
            data_file=runner.resolve_path(data_file),
            max_input_len=max_input_len,
            max_target_len=max_decode_len,
            **({"shard_info": distributed.shard_info()} if multiprocess else {}),
        )
    drafter_model, drafter_params, drafter_desc = runner.load_model(
        drafter, "drafter", vocabulary.vocab_size
    )
    verifier_model, verifier_params, verifier_desc = runner.load_model(
        verifier, "verifier", vocabulary.vocab_size
    )
    setup = runner.DecodeSetup(
        drafter=drafter_model,
        drafter_params=drafter_params,
        verifier=verifier_model,
        verifier_params=verifier_params,
        max_input_len=max_input_len,
        max_decode_len=max_decode_len,
    )
    if mesh is not None:
        setup = runner.shard_setup(setup, mesh)
    outputs, row_stats = runner.decode_examples(
        setup, examples, method, alpha, sampling, batch_size=batch_size, progress=progress
    )
    if multiprocess:  # Process 0 gathers every process's rows, sorted by index, and writes.
        texts = distributed.gather_objects_to_host0(
            [
                {"index": int(ex["index"]), **{k: ex[k] for k in _TEXT_FIELDS if k in ex}}
                for ex in examples
            ]
        )
        outputs, row_stats = runner.gather_rows(examples, outputs, row_stats)
        if texts is None:
            return None
        examples = sorted(texts, key=lambda ex: ex["index"])
    predictions = [runner.detokenize(vocabulary, ids) for ids in outputs]
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "outputs.jsonl"), "w", encoding="utf-8") as f:
        for i, (ex, text, ids) in enumerate(zip(examples, predictions, outputs, strict=True)):
            row = {
                "index": ex["index"],
                "input": ex["inputs_pretokenized"],
                "prediction": text,
                "ids": [int(t) for t in ids],
                "stats": {k: np.asarray(v[i]).tolist() for k, v in row_stats.items()},
            }
            if "targets_pretokenized" in ex:
                row["reference"] = ex["targets_pretokenized"]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    result: dict[str, Any] = {
        "method": method,
        "alpha": alpha,
        "sampling": sampling.to_dict(),
        "task": task,
        "source": input_file or data_file or f"{task}/{split}",
        "num_examples": len(examples),
        "max_input_len": max_input_len,
        "max_decode_len": max_decode_len,
        "drafter": drafter_desc,
        "verifier": verifier_desc,
        "stats": decoding.summarize_stats(row_stats, method),
        "choices": {
            **runner.FIXED_CHOICES,
            "bonus_source": sampling.bonus_source,
            "lossy_beta": sampling.lossy_beta,
        },
        "environment": latency_lib.environment_info(dtype=verifier.dtype),
    }
    if input_file is None:
        references = [ex["targets_pretokenized"] for ex in examples]
        scores = runner.score(task_spec, references, predictions)
        result.update(
            quality=scores[task_spec.primary_metric],
            metric=task_spec.primary_metric,
            metric_scores=scores,
        )
    result = sweeps.to_jsonable(result)
    with open(os.path.join(output_dir, "stats.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    logging.info(
        "decoded %d examples into %s: %s", len(examples), output_dir, stats_summary(result)
    )
    return result


def stats_summary(result: Mapping[str, Any]) -> str:
    """One line for the log: quality (if any), τ, acceptance, deferral."""
    stats = result["stats"]
    parts = [f"{result['method']} α={result['alpha']}"]
    if "quality" in result:
        parts.append(f"{result['metric']}={result['quality']:.3f}")
    parts += [
        f"τ={stats['block_efficiency']}",
        f"a={stats['acceptance_rate']}",
        f"δ={stats['deferral_rate']}",
    ]
    return ", ".join(parts)
