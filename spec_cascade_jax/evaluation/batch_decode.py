"""Decoding a list of examples for one (method, α) point: padding, batching, optional mesh.

Shared by the evaluation job (`runner.run_eval`) and the decode job (`decode_job.run_decode`),
with the detokenizing and scoring of the outputs.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from tqdm import tqdm

from spec_cascade_jax.evaluation import sweeps


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
    # Speculative methods share one compiled program (`generate(shared_program=True)`).
    shared_program: bool = True


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
            shared_program=setup.shared_program,
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
