"""The T5 encoder-decoder (v1.0 and T5.1.1) in Flax linen, plus the `DecodeModel` wrapper `T5Model`.

Parameter tree. `T5Model.init_params` returns a plain nested dict whose paths are the t5x T5.1.1
checkpoint names, with t5x's flat 2-D kernels (E embed, H heads, D head dim, F = d_ff, V vocab):

    token_embedder/embedding                                   [V, E]
    encoder/relpos_bias/rel_embedding                          [H, buckets]
    encoder/layers_{i}/pre_attention_layer_norm/scale          [E]
    encoder/layers_{i}/attention/{query,key,value}/kernel      [E, H*D]
    encoder/layers_{i}/attention/out/kernel                    [H*D, E]
    encoder/layers_{i}/pre_mlp_layer_norm/scale                [E]
    encoder/layers_{i}/mlp/{wi_0,wi_1}/kernel  (gated-gelu)    [E, F]   or  mlp/wi/kernel (relu)
    encoder/layers_{i}/mlp/wo/kernel                           [F, E]
    encoder/encoder_norm/scale                                 [E]
    decoder/relpos_bias/rel_embedding                          [H, buckets]
    decoder/layers_{i}/pre_self_attention_layer_norm/scale, self_attention/...,
        pre_cross_attention_layer_norm/scale, encoder_decoder_attention/...,
        pre_mlp_layer_norm/scale, mlp/...                      (as in the encoder)
    decoder/decoder_norm/scale                                 [E]
    decoder/logits_dense/kernel  (untied / v1.1 only)          [E, V]

Cached decoding. `T5Model.init_cache(B, M)` holds, per decoder layer, self-attention keys and
values laid out `[B, H, M, D]` (slot = decoder position). Heads-major lets attention read the
cache without a transpose: with `[B, M, H, D]`, XLA copied the whole cache every step, and a
T5.1.1-small step at B=8 took 220 ms with M=512 against 76 ms with M=32 (loaded 2-core CPU); with
`[B, H, M, D]` the two were within noise (117 vs 109 ms). `T5Model.extend` embeds `tokens [B, K]` at
positions `positions[b] .. positions[b] + K - 1`, scatters their keys/values into those slots
(overwriting; slots past `M` are dropped), and lets the query at position `t` attend to slots `0..t`
with the relative position bias of `slot - t`. Stale slots beyond `t` are masked, so rollback is
just a smaller position on the next call. Cross-attention keys/values are computed once in
`T5Model.encode` and only read by `extend`. Logits come back in float32 whatever the compute dtype.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from spec_cascade_jax.models.t5.config import T5Config
from spec_cascade_jax.models.t5.layers import (
    MASK_VALUE,
    Attention,
    Dense,
    Embed,
    MlpBlock,
    RelativePositionBiases,
    RMSNorm,
    init_stddev,
    normal_init,
)

Array = jax.Array
Params = Any


def _mask_to_bias(mask: Array) -> Array:
    return jnp.where(mask, 0.0, MASK_VALUE).astype(jnp.float32)


def _write_slots(cache: Array, new: Array, slots: Array) -> Array:
    """`cache[b, :, slots[b, j]] = new[b, :, j]` for `cache [B, H, M, D]`, `new [B, H, Q, D]`.

    An overwrite (scatter-set), so stale values never leak in; slots `>= M` are dropped.
    """
    rows = jnp.arange(cache.shape[0])[:, None]
    # The advanced indices (rows, slots) broadcast to [B, Q] and go first: the view is [B, Q, H, D].
    return cache.at[rows, :, slots].set(jnp.swapaxes(new, 1, 2).astype(cache.dtype), mode="drop")


class EncoderLayer(nn.Module):
    """Pre-norm self-attention block then pre-norm MLP block, both residual."""

    config: T5Config

    @nn.compact
    def __call__(self, x: Array, bias: Array, deterministic: bool = True) -> Array:
        cfg = self.config
        dtype = cfg.compute_dtype
        dropout = nn.Dropout(rate=cfg.dropout_rate)
        h = RMSNorm(cfg.layer_norm_epsilon, dtype, name="pre_attention_layer_norm")(x)
        h = Attention(cfg, name="attention")(h, h, bias, deterministic)
        x = x + dropout(h, deterministic=deterministic)
        h = RMSNorm(cfg.layer_norm_epsilon, dtype, name="pre_mlp_layer_norm")(x)
        h = MlpBlock(cfg, name="mlp")(h, deterministic)
        return x + dropout(h, deterministic=deterministic)


class Encoder(nn.Module):
    """Embedding, a shared bidirectional relative-position bias, the layers, a final norm."""

    config: T5Config
    shared_embedding: nn.Module

    @nn.compact
    def __call__(self, inputs: Array, deterministic: bool = True) -> Array:
        cfg = self.config
        dropout = nn.Dropout(rate=cfg.dropout_rate)
        x = dropout(self.shared_embedding(inputs), deterministic=deterministic)
        positions = jnp.arange(inputs.shape[1], dtype=jnp.int32)[None]
        bias = RelativePositionBiases(  # computed once, shared by all layers
            cfg.relative_attention_num_buckets,
            cfg.relative_attention_max_distance,
            cfg.num_heads,
            bidirectional=True,
            stddev=init_stddev(cfg, "rel_embedding"),
            name="relpos_bias",
        )(positions, positions)
        bias = bias + _mask_to_bias(inputs > 0)[:, None, None, :]  # [B, H, S, S]
        for i in range(cfg.num_encoder_layers):
            x = EncoderLayer(cfg, name=f"layers_{i}")(x, bias, deterministic)
        x = RMSNorm(cfg.layer_norm_epsilon, cfg.compute_dtype, name="encoder_norm")(x)
        return dropout(x, deterministic=deterministic)


class DecoderLayer(nn.Module):
    """Self-attention (optionally over a cache), cross-attention, MLP; all pre-norm residual."""

    config: T5Config

    def setup(self) -> None:
        cfg = self.config
        eps, dtype = cfg.layer_norm_epsilon, cfg.compute_dtype
        self.pre_self_attention_layer_norm = RMSNorm(eps, dtype)
        self.self_attention = Attention(cfg)
        self.pre_cross_attention_layer_norm = RMSNorm(eps, dtype)
        self.encoder_decoder_attention = Attention(cfg)
        self.pre_mlp_layer_norm = RMSNorm(eps, dtype)
        self.mlp = MlpBlock(cfg)
        self.dropout = nn.Dropout(rate=cfg.dropout_rate)

    def cross_kv(self, encoder_outputs: Array) -> tuple[Array, Array]:
        """Cross-attention keys and values `[B, H, S, D]` of this layer."""
        return self.encoder_decoder_attention.project_kv(encoder_outputs)

    def __call__(
        self,
        x: Array,  # [B, Q, E]
        self_bias: Array,  # [B, H, Q, T] float32
        cross_k: Array,  # [B, H, S, D]
        cross_v: Array,  # [B, H, S, D]
        cross_bias: Array,  # [B, 1, 1, S] float32
        cache: tuple[Array, Array] | None = None,  # ([B, H, M, D], [B, H, M, D])
        slots: Array | None = None,  # [B, Q] int32, cache slot of each query token
        deterministic: bool = True,
    ) -> tuple[Array, tuple[Array, Array]]:
        h = self.pre_self_attention_layer_norm(x)
        q = self.self_attention.project_q(h)
        k, v = self.self_attention.project_kv(h)
        if cache is not None:
            k, v = _write_slots(cache[0], k, slots), _write_slots(cache[1], v, slots)
        h = self.self_attention.attend(q, k, v, self_bias, deterministic)
        x = x + self.dropout(h, deterministic=deterministic)
        h = self.pre_cross_attention_layer_norm(x)
        q = self.encoder_decoder_attention.project_q(h)
        h = self.encoder_decoder_attention.attend(q, cross_k, cross_v, cross_bias, deterministic)
        x = x + self.dropout(h, deterministic=deterministic)
        h = self.mlp(self.pre_mlp_layer_norm(x), deterministic)
        x = x + self.dropout(h, deterministic=deterministic)
        return x, (k, v)


class Decoder(nn.Module):
    """Decoder stack with a shared causal relative-position bias and the logits projection."""

    config: T5Config
    shared_embedding: nn.Module

    def setup(self) -> None:
        cfg = self.config
        self.relpos_bias = RelativePositionBiases(
            cfg.relative_attention_num_buckets,
            cfg.relative_attention_max_distance,
            cfg.num_heads,
            bidirectional=False,
            stddev=init_stddev(cfg, "rel_embedding"),
        )
        self.layers = [DecoderLayer(cfg) for _ in range(cfg.num_decoder_layers)]  # layers_{i}
        self.decoder_norm = RMSNorm(cfg.layer_norm_epsilon, cfg.compute_dtype)
        if not cfg.tie_word_embeddings:
            self.logits_dense = Dense(
                cfg.vocab_size, cfg.compute_dtype, normal_init(cfg, "logits_dense")
            )
        self.dropout = nn.Dropout(rate=cfg.dropout_rate)

    def cross_kv(self, encoder_outputs: Array) -> tuple[tuple[Array, Array], ...]:
        return tuple(layer.cross_kv(encoder_outputs) for layer in self.layers)

    def decode(
        self,
        tokens: Array,  # [B, Q]
        query_positions: Array,  # [B, Q]
        key_positions: Array,  # [B or 1, T]
        cross_kv: tuple[tuple[Array, Array], ...],
        source_mask: Array,  # [B, S] bool
        caches: tuple[tuple[Array, Array], ...] | None = None,
        deterministic: bool = True,
    ) -> tuple[Array, tuple[tuple[Array, Array], ...]]:
        """Float32 logits `[B, Q, V]` and the per-layer self-attention keys/values."""
        cfg = self.config
        x = self.dropout(self.shared_embedding(tokens), deterministic=deterministic)
        # Relative bias and masks computed once for all layers: a query at position t sees
        # keys (cache slots) at positions <= t.
        visible = key_positions[:, None, :] <= query_positions[:, :, None]  # [B, Q, T]
        self_bias = self.relpos_bias(query_positions, key_positions)
        self_bias = self_bias + _mask_to_bias(visible)[:, None]
        cross_bias = _mask_to_bias(source_mask)[:, None, None, :]
        new_caches = []
        for i, layer in enumerate(self.layers):
            x, kv = layer(
                x,
                self_bias,
                *cross_kv[i],
                cross_bias,
                cache=None if caches is None else caches[i],
                slots=query_positions,
                deterministic=deterministic,
            )
            new_caches.append(kv)
        x = self.dropout(self.decoder_norm(x), deterministic=deterministic)
        if cfg.tie_word_embeddings:
            logits = self.shared_embedding.attend(x * cfg.d_model**-0.5)
        else:
            logits = self.logits_dense(x)
        return logits.astype(jnp.float32), tuple(new_caches)


class T5Network(nn.Module):
    """Top-level linen module; `T5Model` is the functional interface to it."""

    config: T5Config

    def setup(self) -> None:
        cfg = self.config
        self.token_embedder = Embed(cfg.vocab_size, cfg.d_model, cfg.compute_dtype)
        self.encoder = Encoder(cfg, shared_embedding=self.token_embedder)
        self.decoder = Decoder(cfg, shared_embedding=self.token_embedder)

    def encode(self, inputs: Array, deterministic: bool = True) -> Array:
        return self.encoder(inputs, deterministic)

    def encode_for_decoding(self, inputs: Array) -> tuple[Array, tuple[tuple[Array, Array], ...]]:
        encoder_outputs = self.encoder(inputs, True)
        return encoder_outputs, self.decoder.cross_kv(encoder_outputs)

    def extend(
        self,
        cross_kv: tuple[tuple[Array, Array], ...],
        source_mask: Array,
        caches: tuple[tuple[Array, Array], ...],
        tokens: Array,
        positions: Array,
    ) -> tuple[Array, tuple[tuple[Array, Array], ...]]:
        max_len = caches[0][0].shape[2]
        query_positions = positions[:, None] + jnp.arange(tokens.shape[1], dtype=jnp.int32)
        key_positions = jnp.arange(max_len, dtype=jnp.int32)[None]
        return self.decoder.decode(
            tokens, query_positions, key_positions, cross_kv, source_mask, caches
        )

    def __call__(
        self, inputs: Array, decoder_input_tokens: Array, deterministic: bool = True
    ) -> Array:
        encoder_outputs = self.encoder(inputs, deterministic)
        length = decoder_input_tokens.shape[1]
        positions = jnp.arange(length, dtype=jnp.int32)[None]
        logits, _ = self.decoder.decode(
            decoder_input_tokens,
            jnp.broadcast_to(positions, decoder_input_tokens.shape),
            positions,
            self.decoder.cross_kv(encoder_outputs),
            inputs > 0,
            None,
            deterministic,
        )
        return logits


@flax.struct.dataclass
class T5Encoded:
    """What `T5Model.encode` keeps for decoding (all in the compute dtype, except the mask)."""

    encoder_outputs: Array  # [B, S, E]
    source_mask: Array  # [B, S] bool, inputs > 0
    cross_keys: tuple[Array, ...]  # per decoder layer [B, H, S, D]
    cross_values: tuple[Array, ...]  # per decoder layer [B, H, S, D]


@flax.struct.dataclass
class T5Cache:
    """Self-attention keys/values per decoder layer, `[B, H, max_len, D]`; slot = position."""

    keys: tuple[Array, ...]
    values: tuple[Array, ...]

    @property
    def max_len(self) -> int:
        return self.keys[0].shape[2]


def _check_tokens(name: str, x: Array, ndim: int = 2) -> None:
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dims, got shape {tuple(x.shape)}")
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise ValueError(f"{name} must be an integer array, got dtype {x.dtype}")


@dataclasses.dataclass(frozen=True)
class T5Model:
    """T5 as a `DecodeModel` (see `spec_cascade_jax.decoding.interface`). Hashable; jit-static.

    None of the methods is jitted: callers wrap the top-level function they run, passing the model
    as a static argument. `params` may be float32 or bfloat16 (e.g. bf16 weights for inference);
    every kernel is cast to `config.dtype` at use, norms and softmax run in float32, and logits are
    returned in float32. `encode` -> `T5Encoded`, `init_cache` -> `T5Cache` (layout in the module
    docstring); both are pytrees with static shapes.
    """

    config: T5Config

    @property
    def network(self) -> T5Network:
        return T5Network(self.config)

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def real_vocab_size(self) -> int:
        return self.config.real_vocab_size

    def param_shapes(self) -> Params:
        """The parameter tree as `jax.ShapeDtypeStruct`s (no computation)."""
        dummy = jax.ShapeDtypeStruct((1, 2), jnp.int32)
        key = jax.ShapeDtypeStruct((2,), jnp.uint32)
        variables = jax.eval_shape(self.network.init, key, dummy, dummy)
        return flax.core.unfreeze(variables["params"])

    def init_params(self, rng: Array) -> Params:
        """Random float32 parameters as a plain nested dict with t5x names (see module doc).

        Same distributions as `network.init` (`layers.init_stddev`; norm scales are one), but drawn
        from one compiled standard-normal sampler and scaled per leaf: `network.init` compiles a
        random-number kernel per parameter, which takes 10+ s on a loaded 2-core CPU. Traceable
        (`jax.jit`, `jax.eval_shape`), giving the same values as an eager call.
        """
        cfg = self.config
        shapes = self.param_shapes()
        paths_and_leaves = jax.tree_util.tree_flatten_with_path(shapes)[0]
        total = sum(int(np.prod(leaf.shape)) for _, leaf in paths_and_leaves)
        # Eagerly, slice and scale in numpy (no per-leaf compiles); under a trace, in jnp.
        xp = jnp if isinstance(rng, jax.core.Tracer) else np
        normals = _standard_normals(rng, total, xp)
        values, offset = [], 0
        for path, leaf in paths_and_leaves:
            size = int(np.prod(leaf.shape))
            name = path[-1].key if path[-1].key in ("embedding", "rel_embedding") else path[-2].key
            if path[-1].key == "scale":
                value = xp.ones(leaf.shape, xp.float32)
            else:
                value = normals[offset : offset + size].reshape(leaf.shape)
                value = value * xp.float32(init_stddev(cfg, name))
                offset += size
            values.append(jnp.asarray(value, jnp.float32))
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(shapes), values)

    def encode(self, params: Params, inputs: Array) -> T5Encoded:
        """Runs the encoder on `inputs [B, S]` (0 = padding) and the cross-attention K/V once."""
        _check_tokens("inputs", inputs)
        encoder_outputs, cross_kv = self.network.apply(
            {"params": params}, inputs, method=T5Network.encode_for_decoding
        )
        return T5Encoded(
            encoder_outputs=encoder_outputs,
            source_mask=inputs > 0,
            cross_keys=tuple(k for k, _ in cross_kv),
            cross_values=tuple(v for _, v in cross_kv),
        )

    def init_cache(self, batch_size: int, max_len: int) -> T5Cache:
        """Zeroed self-attention cache, `[batch_size, H, max_len, D]` per layer and per K/V."""
        if batch_size < 1 or max_len < 1:
            raise ValueError(
                f"init_cache needs batch_size >= 1 and max_len >= 1, got {batch_size}, {max_len}"
            )
        cfg = self.config
        shape = (batch_size, cfg.num_heads, max_len, cfg.d_kv)
        zeros = tuple(jnp.zeros(shape, cfg.compute_dtype) for _ in range(cfg.num_decoder_layers))
        return T5Cache(keys=zeros, values=tuple(jnp.zeros_like(z) for z in zeros))

    def extend(
        self,
        params: Params,
        encoded: T5Encoded,
        cache: T5Cache,
        tokens: Array,  # [B, K] int32
        positions: Array,  # [B] int32
    ) -> tuple[Array, T5Cache]:
        """Writes K tokens per row at slots `positions[b]..positions[b]+K-1`; returns logits.

        Returns `(logits [B, K, V] float32, new cache)`; `logits[b, j]` scores the token after
        position `positions[b] + j`. Slots at or past `cache.max_len` are not written (the caller
        keeps `positions + K <= max_len`).
        """
        _check_tokens("tokens", tokens)
        _check_tokens("positions", positions, ndim=1)
        batch = cache.keys[0].shape[0]
        if tokens.shape[0] != batch or positions.shape[0] != batch:
            raise ValueError(
                f"extend: tokens {tuple(tokens.shape)} / positions {tuple(positions.shape)} do not "
                f"match the cache batch size {batch}"
            )
        if tokens.shape[1] > cache.max_len:
            raise ValueError(
                f"extend: {tokens.shape[1]} tokens do not fit a cache of max_len {cache.max_len}"
            )
        cross_kv = tuple(zip(encoded.cross_keys, encoded.cross_values, strict=True))
        caches = tuple(zip(cache.keys, cache.values, strict=True))
        logits, new = self.network.apply(
            {"params": params},
            cross_kv,
            encoded.source_mask,
            caches,
            tokens,
            positions.astype(jnp.int32),
            method=T5Network.extend,
        )
        return logits, T5Cache(keys=tuple(k for k, _ in new), values=tuple(v for _, v in new))

    def forward(
        self,
        params: Params,
        inputs: Array,  # [B, S]
        decoder_input_tokens: Array,  # [B, L], starts with PAD = 0
        *,
        dropout_rng: Array | None = None,
    ) -> Array:
        """Teacher-forced logits `[B, L, V]` (float32). Dropout is on iff `dropout_rng` is given."""
        _check_tokens("inputs", inputs)
        _check_tokens("decoder_input_tokens", decoder_input_tokens)
        if inputs.shape[0] != decoder_input_tokens.shape[0]:
            raise ValueError(
                f"forward: batch sizes differ: inputs {tuple(inputs.shape)}, "
                f"decoder_input_tokens {tuple(decoder_input_tokens.shape)}"
            )
        deterministic = dropout_rng is None
        rngs = None if deterministic else {"dropout": dropout_rng}
        return self.network.apply(
            {"params": params}, inputs, decoder_input_tokens, deterministic, rngs=rngs
        )

    def score(self, params: Params, inputs: Array, targets: Array) -> Array:
        """Per-token log-probabilities `[B, L]` (float32) of `targets` under teacher forcing.

        Ids `>= real_vocab_size` are excluded from the normaliser; positions where `targets == 0`
        (padding) score 0.
        """
        logits = self.forward(params, inputs, shift_right(targets))
        if self.real_vocab_size < self.vocab_size:
            real = jnp.arange(self.vocab_size) < self.real_vocab_size
            logits = jnp.where(real, logits, -jnp.inf)
        log_probs = jax.nn.log_softmax(logits, axis=-1)
        token_lp = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
        return jnp.where(targets > 0, token_lp, 0.0)


_NORMAL_CHUNK = 1 << 20


@functools.partial(jax.jit, static_argnums=1)
def _normal_chunk(key: Array, size: int) -> Array:
    return jax.random.normal(key, (size,), jnp.float32)


def _standard_normals(rng: Array, n: int, xp: Any = np) -> Any:
    """`n` float32 standard normals drawn in chunks of one compiled size (a power of two).

    `xp` is `np` (concrete key: returns a numpy array) or `jnp` (traced key); values agree.
    """
    size = min(_NORMAL_CHUNK, 1 << max(n - 1, 1).bit_length())
    chunks = [
        xp.asarray(_normal_chunk(jax.random.fold_in(rng, i), size)) for i in range(-(-n // size))
    ]
    return xp.concatenate(chunks)[:n]


def shift_right(targets: Array) -> Array:
    """Decoder inputs for teacher forcing: `[PAD, y_1, ..., y_{L-1}]` from `targets [B, L]`."""
    return jnp.pad(targets, ((0, 0), (1, 0)))[:, :-1]


_AXES_BY_LEAF: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("token_embedder", "embedding"): ("vocab", "embed"),
    ("relpos_bias", "rel_embedding"): ("heads", "relpos_buckets"),
    ("query", "kernel"): ("embed", "joined_kv"),
    ("key", "kernel"): ("embed", "joined_kv"),
    ("value", "kernel"): ("embed", "joined_kv"),
    ("out", "kernel"): ("joined_kv", "embed"),
    ("wi", "kernel"): ("embed", "mlp"),
    ("wi_0", "kernel"): ("embed", "mlp"),
    ("wi_1", "kernel"): ("embed", "mlp"),
    ("wo", "kernel"): ("mlp", "embed"),
    ("logits_dense", "kernel"): ("embed", "vocab"),
}


def logical_axes(params: Params) -> Params:
    """t5x-style logical axis names for every parameter, as a tree shaped like `params`.

    Names: `vocab`, `embed`, `joined_kv` (the fused H*D axis), `mlp`, `heads`, `relpos_buckets`;
    layer-norm scales are `("embed",)` as in t5x. Raises ValueError on an unknown parameter.
    """

    def axes(path: tuple[Any, ...], leaf: Any) -> tuple[str, ...]:
        keys = tuple(getattr(p, "key", str(p)) for p in path)
        if keys[-1] == "scale":
            names: tuple[str, ...] = ("embed",)
        elif keys[-2:] in _AXES_BY_LEAF:
            names = _AXES_BY_LEAF[keys[-2:]]
        else:
            raise ValueError(f"logical_axes: unknown T5 parameter {'/'.join(keys)!r}")
        if len(names) != np.ndim(leaf):
            raise ValueError(
                f"logical_axes: {'/'.join(keys)!r} has shape {np.shape(leaf)}, expected "
                f"{len(names)} dims {names}"
            )
        return names

    return jax.tree_util.tree_map_with_path(axes, params)
