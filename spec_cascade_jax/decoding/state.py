"""Loop state and per-row statistics shared by the decoding loops (SPEC.md §5)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

EOS_ID = 1
PAD_ID = 0


@struct.dataclass
class RowStats:
    """Per-row counters. All fields are [B] unless noted; summed over a run by `summarize_stats`."""

    n_tok: jax.Array  # emitted tokens incl. EOS
    n_ver: jax.Array  # verifier decoder invocations
    n_dr: jax.Array  # drafter decoder invocations (incl. sync steps)
    n_enc_drafter: jax.Array  # 0 or 1
    n_enc_verifier: jax.Array  # 0 or 1
    accepted: jax.Array  # accepted drafts (tested positions only)
    rejected: jax.Array  # rejections
    eta_sum: jax.Array  # float: sum of eta over emitted positions
    hist: jax.Array  # [B, G + 2]: rounds with k accepted drafts; last bin = ended by accepted EOS
    tested_at: jax.Array  # [B, G]
    accepted_at: jax.Array  # [B, G]
    seq_deferred: jax.Array  # SeqCascade: 1 if the row was handed to the verifier

    @classmethod
    def zeros(cls, batch: int, gamma: int) -> RowStats:
        z = jnp.zeros((batch,), jnp.int32)
        return cls(
            n_tok=z,
            n_ver=z,
            n_dr=z,
            n_enc_drafter=z,
            n_enc_verifier=z,
            accepted=z,
            rejected=z,
            eta_sum=jnp.zeros((batch,), jnp.float32),
            hist=jnp.zeros((batch, gamma + 2), jnp.int32),
            tested_at=jnp.zeros((batch, max(gamma, 1)), jnp.int32),
            accepted_at=jnp.zeros((batch, max(gamma, 1)), jnp.int32),
            seq_deferred=z,
        )

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


@struct.dataclass
class DecodeOutput:
    """Result of `generate`: tokens [B, L] (0 after EOS), lengths [B] (incl. EOS), per-row stats."""

    tokens: jax.Array
    lengths: jax.Array
    stats: RowStats


def row_keys(rng: jax.Array, example_ids: jax.Array) -> jax.Array:
    """One key per row, from the example id alone, so a row's output ignores its batch."""
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(rng, example_ids)


def fold(keys: jax.Array, value) -> jax.Array:
    """fold_in for a batch of keys [B] and a scalar or [B] value."""
    value = jnp.broadcast_to(jnp.asarray(value, jnp.uint32), keys.shape[:1])
    return jax.vmap(jax.random.fold_in)(keys, value)


def finalize_tokens(buffer: jax.Array, lengths: jax.Array, max_len: int) -> jax.Array:
    """Keeps the first `lengths[b]` tokens of each row of `buffer`, zeros after."""
    out = buffer[:, :max_len]
    return jnp.where(jnp.arange(max_len)[None, :] < lengths[:, None], out, PAD_ID)


def write_block(buffer: jax.Array, block: jax.Array, start: jax.Array) -> jax.Array:
    """Writes block [B, K] into buffer [B, N] at per-row offsets start [B] (overwrites)."""
    return jax.vmap(lambda b, x, s: jax.lax.dynamic_update_slice(b, x, (s,)))(buffer, block, start)
