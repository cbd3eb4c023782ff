"""The model-agnostic decoding protocol that the decoding loops call.

Every decoder the loops drive (a T5 drafter, a T5 verifier, the toy table models of
`spec_cascade_jax.testing`) implements `DecodeModel`. The loops never look inside `Encoded` or
`Cache`: both are pytrees of arrays with static shapes.

Positions. The decoder input sequence of a row is `[PAD(=start), y_1, y_2, ...]`; the token at input
index `i` sits at position `i`. `extend(..., tokens[B, k], positions[B])` writes the k tokens of row
`b` into cache slots `positions[b] .. positions[b] + k - 1` and returns, for each, the logits of the
next token. Attention inside the call is causal, and a query at position `t` reads only cache slots
`<= t`. Slots are *overwritten*, never accumulated, so rolling back rejected draft tokens is free:
the caller just restarts the row at an earlier position, and the stale slots beyond it are never
read before they are written again.

Dimension names: B batch, S source length, L decode length, K tokens per extend call, V vocab.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax

Params = Any
Encoded = Any  # pytree: encoder outputs, source mask, per-layer cross-attention keys/values
Cache = Any  # pytree: per-layer self-attention keys/values, static shape [B, max_len, ...]


class DecodeModel(Protocol):
    """What a drafter or verifier must provide. Implementations are hashable (static jit args)."""

    @property
    def vocab_size(self) -> int:
        """Size of the logits' last axis (padded vocabulary, e.g. 32128 for T5)."""

    @property
    def real_vocab_size(self) -> int:
        """Number of real token ids; logits at ids >= this are masked to -inf before softmax."""

    def encode(self, params: Params, inputs: jax.Array) -> Encoded:
        """Encodes `inputs[B, S]` (int32, 0 = padding) once; keeps cross-attention K/V."""

    def init_cache(self, batch_size: int, max_len: int) -> Cache:
        """An empty self-attention cache with room for `max_len` decoder positions per row."""

    def extend(
        self,
        params: Params,
        encoded: Encoded,
        cache: Cache,
        tokens: jax.Array,  # [B, K] int32
        positions: jax.Array,  # [B] int32, position of tokens[:, 0]
    ) -> tuple[jax.Array, Cache]:
        """Appends K tokens per row at per-row positions; returns (logits [B, K, V], new cache)."""
