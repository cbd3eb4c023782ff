"""T5 building blocks in Flax linen: RMS norm, dense, MLP, relative position bias, attention.

Parameters are float32 and cast to the compute dtype at use. Kernels are flat 2-D `[in, out]`
arrays as in t5x checkpoints (the attention projections are `[E, H*D]` and `[H*D, E]`). Attention
follows the T5 convention: no `1/sqrt(D)` scaling of the scores (it is folded into the query
initialisation).

Dimension names: B batch, Q query positions, T key positions, E embed, H heads, D head dim.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from spec_cascade_jax.models.t5.config import T5Config

Array = jax.Array
Initializer = Any

# Added to the scores of masked attention links. Finite, so a fully masked row (an all-padding
# source) softmaxes to a uniform distribution instead of NaN.
MASK_VALUE = -1e10


def init_stddev(config: T5Config, name: str) -> float:
    """Standard deviation of the normal initialiser of the parameter named `name`.

    `name` is the module owning the parameter (`query`, `wi_0`, `logits_dense`, ...) or
    `embedding` / `rel_embedding`. Norm scales start at one and have no entry. Mesh-TF / t5x
    style: fan-in scaling, with the 1/sqrt(D) that T5 leaves out of the attention scores moved
    into `query`.
    """
    e, hd = config.d_model, config.joined_kv
    table = {
        "embedding": 1.0,
        "rel_embedding": (2.0 / (config.num_heads + config.relative_attention_num_buckets)) ** 0.5,
        "query": (e * config.d_kv) ** -0.5,
        "key": e**-0.5,
        "value": e**-0.5,
        "out": hd**-0.5,
        "wi": e**-0.5,
        "wi_0": e**-0.5,
        "wi_1": e**-0.5,
        "wo": config.d_ff**-0.5,
        "logits_dense": e**-0.5,
    }
    if name not in table:
        raise ValueError(f"init_stddev: no initialiser for T5 parameter {name!r}")
    return table[name]


def normal_init(config: T5Config, name: str) -> Initializer:
    return nn.initializers.normal(stddev=init_stddev(config, name))


class RMSNorm(nn.Module):
    """T5 layer norm: scale only, no mean subtraction and no bias; statistics in float32."""

    epsilon: float
    dtype: Any

    @nn.compact
    def __call__(self, x: Array) -> Array:
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        x32 = x.astype(jnp.float32)
        variance = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        return (x32 * jax.lax.rsqrt(variance + self.epsilon) * scale).astype(self.dtype)


class Dense(nn.Module):
    """Bias-free projection of the last axis with a float32 `kernel [in, out]`."""

    features: int
    dtype: Any
    kernel_init: Initializer

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), jnp.float32)
        # Accumulate in float32 and round once: for bfloat16 this is both the accurate and (on
        # CPU) the fast contraction; for float32 it changes nothing.
        y = jnp.dot(
            x.astype(self.dtype), kernel.astype(self.dtype), preferred_element_type=jnp.float32
        )
        return y.astype(self.dtype)


class Embed(nn.Module):
    """Token embedding `embedding [V, E]`; `attend` projects back onto it (tied logits)."""

    num_embeddings: int
    features: int
    dtype: Any

    def setup(self) -> None:
        self.embedding = self.param(
            "embedding",
            nn.initializers.normal(stddev=1.0),
            (self.num_embeddings, self.features),
            jnp.float32,
        )

    def __call__(self, tokens: Array) -> Array:
        return jnp.take(self.embedding.astype(self.dtype), tokens, axis=0)

    def attend(self, x: Array) -> Array:
        """`x [..., E] @ embedding.T -> [..., V]`."""
        y = jnp.dot(
            x.astype(self.dtype),
            self.embedding.astype(self.dtype).T,
            preferred_element_type=jnp.float32,
        )
        return y.astype(self.dtype)  # float32 accumulation, as in `Dense`


class MlpBlock(nn.Module):
    """T5 feed-forward: ReLU (`wi`, `wo`) or gated GELU (`wi_0`, `wi_1`, `wo`)."""

    config: T5Config

    @nn.compact
    def __call__(self, x: Array, deterministic: bool = True) -> Array:
        cfg = self.config
        dtype = cfg.compute_dtype
        if cfg.feed_forward == "relu":
            h = nn.relu(Dense(cfg.d_ff, dtype, normal_init(cfg, "wi"), name="wi")(x))
        else:
            wi_0 = Dense(cfg.d_ff, dtype, normal_init(cfg, "wi_0"), name="wi_0")
            wi_1 = Dense(cfg.d_ff, dtype, normal_init(cfg, "wi_1"), name="wi_1")
            h = jax.nn.gelu(wi_0(x), approximate=True) * wi_1(x)
        h = nn.Dropout(rate=cfg.dropout_rate)(h, deterministic=deterministic)
        return Dense(cfg.d_model, dtype, normal_init(cfg, "wo"), name="wo")(h)


@functools.cache
def _bucket_table(num_buckets: int, max_distance: int) -> np.ndarray:
    """Bucket of each non-negative distance 0..max_distance (inclusive), one direction.

    The first half of the buckets hold distances exactly; the rest grow logarithmically up to
    `max_distance`, and every distance >= `max_distance` shares the last bucket. Computed in float32
    like the reference implementations, so bucket boundaries agree with the checkpoints.
    """
    max_exact = num_buckets // 2
    n = np.arange(max_distance + 1, dtype=np.int64)
    ratio = np.log(np.maximum(n, 1).astype(np.float32) / np.float32(max_exact)) / np.float32(
        math.log(max_distance / max_exact)
    )
    large = max_exact + (ratio * np.float32(num_buckets - max_exact)).astype(np.int64)
    large = np.minimum(large, num_buckets - 1)
    return np.where(n < max_exact, n, large).astype(np.int32)


def relative_position_bucket(
    relative_position: Array, *, bidirectional: bool, num_buckets: int, max_distance: int
) -> Array:
    """Maps `key_pos - query_pos` (int array, any shape) to bucket ids in `[0, num_buckets)`.

    Bidirectional (encoder): half of the buckets for keys at or before the query, half for keys
    after it. Unidirectional (decoder): keys after the query all share bucket 0 (they are masked).
    """
    if bidirectional:
        half = num_buckets // 2
        table = jnp.asarray(_bucket_table(half, max_distance))
        offset = jnp.where(relative_position > 0, half, 0)
        distance = jnp.abs(relative_position)
    else:
        table = jnp.asarray(_bucket_table(num_buckets, max_distance))
        offset = 0
        distance = jnp.maximum(-relative_position, 0)
    return offset + jnp.take(table, jnp.minimum(distance, max_distance), axis=0)


class RelativePositionBiases(nn.Module):
    """Learned per-head bias `rel_embedding [H, buckets]` indexed by relative-position bucket."""

    num_buckets: int
    max_distance: int
    num_heads: int
    bidirectional: bool
    stddev: float

    @nn.compact
    def __call__(self, query_positions: Array, key_positions: Array) -> Array:
        """`query_positions [B, Q]`, `key_positions [B, T]` (int) -> float32 bias `[B, H, Q, T]`."""
        rel_embedding = self.param(
            "rel_embedding",
            nn.initializers.normal(stddev=self.stddev),
            (self.num_heads, self.num_buckets),
            jnp.float32,
        )
        relative = key_positions[:, None, :] - query_positions[:, :, None]  # [B, Q, T]
        buckets = relative_position_bucket(
            relative,
            bidirectional=self.bidirectional,
            num_buckets=self.num_buckets,
            max_distance=self.max_distance,
        )
        bias = jnp.take(rel_embedding.T, buckets, axis=0)  # [B, Q, T, H]
        return jnp.transpose(bias, (0, 3, 1, 2))


class Attention(nn.Module):
    """Multi-head attention with separate projection and attend steps (for caching).

    `project_q` gives `[B, Q, H, D]` and `project_kv` `[B, H, T, D]` (heads-major, so a long
    key/value cache is read in place); `attend(q, k, v, bias)` takes a float32 additive bias
    broadcastable to `[B, H, Q, T]` (relative positions plus masks) and returns `[B, Q, E]`.
    """

    config: T5Config

    def setup(self) -> None:
        cfg = self.config
        dtype = cfg.compute_dtype
        hd = cfg.joined_kv
        self.query = Dense(hd, dtype, normal_init(cfg, "query"))
        self.key = Dense(hd, dtype, normal_init(cfg, "key"))
        self.value = Dense(hd, dtype, normal_init(cfg, "value"))
        self.out = Dense(cfg.d_model, dtype, normal_init(cfg, "out"))
        self.dropout = nn.Dropout(rate=cfg.dropout_rate)

    def _split(self, x: Array) -> Array:
        return x.reshape(*x.shape[:-1], self.config.num_heads, self.config.d_kv)

    def project_q(self, x: Array) -> Array:
        return self._split(self.query(x))

    def project_kv(self, x: Array) -> tuple[Array, Array]:
        """Keys and values `[B, H, T, D]` (heads-major, the layout `attend` reads)."""
        k = jnp.swapaxes(self._split(self.key(x)), 1, 2)
        v = jnp.swapaxes(self._split(self.value(x)), 1, 2)
        return k, v

    def attend(
        self, q: Array, k: Array, v: Array, bias: Array, deterministic: bool = True
    ) -> Array:
        """`q [B, Q, H, D]` against `k, v [B, H, T, D]` -> `[B, Q, E]`."""
        scores = jnp.einsum("bqhd,bhtd->bhqt", q, k, preferred_element_type=jnp.float32)
        weights = jax.nn.softmax(scores + bias, axis=-1).astype(v.dtype)
        weights = self.dropout(weights, deterministic=deterministic)
        out = jnp.einsum("bhqt,bhtd->bqhd", weights, v)
        return self.out(out.reshape(*out.shape[:2], self.config.joined_kv))

    def __call__(self, x: Array, kv_source: Array, bias: Array, deterministic: bool = True):
        k, v = self.project_kv(kv_source)
        return self.attend(self.project_q(x), k, v, bias, deterministic)
