"""Name and layout mapping between HF transformers' `T5ForConditionalGeneration` and our tree.

HF stores torch `Linear` weights as `[out, in]` and the relative bias as `[buckets, H]`; we store
t5x's `[in, out]` kernels and `[H, buckets]`, so those are transposed. Embedding and norm scales are
copied. This module does no file I/O: checkpoint loaders call it with an already-loaded mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from spec_cascade_jax.models.t5.config import T5Config

Params = Any

# HF keys that duplicate `shared.weight` (tied copies); accepted when equal to it, never needed.
_EMBED_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")


def _attention(entries: list, ours: tuple[str, ...], hf: str) -> None:
    for name, letter in (("query", "q"), ("key", "k"), ("value", "v"), ("out", "o")):
        entries.append((ours + (name, "kernel"), f"{hf}.{letter}.weight", True))


def _mlp(entries: list, config: T5Config, ours: tuple[str, ...], hf: str) -> None:
    names = ("wi", "wo") if config.feed_forward == "relu" else ("wi_0", "wi_1", "wo")
    for name in names:
        entries.append((ours + ("mlp", name, "kernel"), f"{hf}.DenseReluDense.{name}.weight", True))


def name_map(config: T5Config) -> list[tuple[tuple[str, ...], str, bool]]:
    """`(our path, HF key, transposed)` for every parameter of `config`."""
    entries: list[tuple[tuple[str, ...], str, bool]] = [
        (("token_embedder", "embedding"), "shared.weight", False),
        (
            ("encoder", "relpos_bias", "rel_embedding"),
            "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
            True,
        ),
        (
            ("decoder", "relpos_bias", "rel_embedding"),
            "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
            True,
        ),
        (("encoder", "encoder_norm", "scale"), "encoder.final_layer_norm.weight", False),
        (("decoder", "decoder_norm", "scale"), "decoder.final_layer_norm.weight", False),
    ]
    for i in range(config.num_encoder_layers):
        ours, hf = ("encoder", f"layers_{i}"), f"encoder.block.{i}.layer"
        entries.append(
            (ours + ("pre_attention_layer_norm", "scale"), f"{hf}.0.layer_norm.weight", False)
        )
        _attention(entries, ours + ("attention",), f"{hf}.0.SelfAttention")
        entries.append((ours + ("pre_mlp_layer_norm", "scale"), f"{hf}.1.layer_norm.weight", False))
        _mlp(entries, config, ours, f"{hf}.1")
    for i in range(config.num_decoder_layers):
        ours, hf = ("decoder", f"layers_{i}"), f"decoder.block.{i}.layer"
        entries.append(
            (ours + ("pre_self_attention_layer_norm", "scale"), f"{hf}.0.layer_norm.weight", False)
        )
        _attention(entries, ours + ("self_attention",), f"{hf}.0.SelfAttention")
        entries.append(
            (ours + ("pre_cross_attention_layer_norm", "scale"), f"{hf}.1.layer_norm.weight", False)
        )
        _attention(entries, ours + ("encoder_decoder_attention",), f"{hf}.1.EncDecAttention")
        entries.append((ours + ("pre_mlp_layer_norm", "scale"), f"{hf}.2.layer_norm.weight", False))
        _mlp(entries, config, ours, f"{hf}.2")
    if not config.tie_word_embeddings:
        entries.append((("decoder", "logits_dense", "kernel"), "lm_head.weight", True))
    return entries


def expected_shapes(config: T5Config) -> dict[tuple[str, ...], tuple[int, ...]]:
    """Our shape of every parameter path of `config`."""
    e, f, v, hd = config.d_model, config.d_ff, config.vocab_size, config.joined_kv
    shapes = {}
    for path, _, _ in name_map(config):
        leaf, parent = path[-1], path[-2]
        if parent == "token_embedder":
            shape: tuple[int, ...] = (v, e)
        elif leaf == "rel_embedding":
            shape = (config.num_heads, config.relative_attention_num_buckets)
        elif leaf == "scale":
            shape = (e,)
        elif parent in ("query", "key", "value"):
            shape = (e, hd)
        elif parent == "out":
            shape = (hd, e)
        elif parent in ("wi", "wi_0", "wi_1"):
            shape = (e, f)
        elif parent == "wo":
            shape = (f, e)
        else:  # logits_dense
            shape = (e, v)
        shapes[path] = shape
    return shapes


def params_from_hf_state_dict(config: T5Config, state_dict: Mapping[str, Any]) -> Params:
    """Builds our float32 parameter tree from an HF T5 state dict (numpy or CPU torch arrays).

    Raises ValueError naming any missing key, unexpected key, wrong shape, or tied copy that
    differs from `shared.weight`.
    """
    entries = name_map(config)
    shapes = expected_shapes(config)
    wanted = {hf for _, hf, _ in entries}
    missing = sorted(wanted - set(state_dict))
    if missing:
        raise ValueError(f"HF state dict lacks {len(missing)} T5 keys, e.g. {missing[:5]}")
    optional = set(_EMBED_COPIES) | ({"lm_head.weight"} if config.tie_word_embeddings else set())
    unexpected = sorted(set(state_dict) - wanted - optional)
    if unexpected:
        raise ValueError(
            f"HF state dict has {len(unexpected)} keys this config does not use, e.g. "
            f"{unexpected[:5]} (check feed_forward / tie_word_embeddings / layer counts)"
        )
    shared = np.asarray(state_dict["shared.weight"], dtype=np.float32)
    for key in sorted(optional & set(state_dict)):
        if not np.array_equal(np.asarray(state_dict[key], dtype=np.float32), shared):
            raise ValueError(f"HF key {key!r} should be a tied copy of 'shared.weight' but differs")
    params: dict[str, Any] = {}
    for path, hf, transpose in entries:
        value = np.asarray(state_dict[hf], dtype=np.float32)
        if transpose:
            value = value.T
        if value.shape != shapes[path]:
            raise ValueError(
                f"HF key {hf!r} gives shape {value.shape} for {'/'.join(path)}, expected "
                f"{shapes[path]}"
            )
        node = params
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = np.ascontiguousarray(value)
    return params


def params_to_hf_state_dict(config: T5Config, params: Params) -> dict[str, np.ndarray]:
    """The inverse of `params_from_hf_state_dict`: float32 numpy arrays under HF key names.

    Includes the tied copies `encoder/decoder.embed_tokens.weight` and, for tied configs,
    `lm_head.weight = shared.weight`, so `load_state_dict(strict=True)` accepts it.
    """
    shapes = expected_shapes(config)
    out: dict[str, np.ndarray] = {}
    for path, hf, transpose in name_map(config):
        node = params
        try:
            for name in path:
                node = node[name]
        except (KeyError, TypeError) as err:
            raise ValueError(f"params lack {'/'.join(path)}") from err
        value = np.asarray(node, dtype=np.float32)
        if value.shape != shapes[path]:
            raise ValueError(
                f"params {'/'.join(path)} has shape {value.shape}, expected {shapes[path]}"
            )
        out[hf] = np.ascontiguousarray(value.T if transpose else value)
    for key in _EMBED_COPIES:
        out[key] = out["shared.weight"]
    if config.tie_word_embeddings:
        out["lm_head.weight"] = out["shared.weight"]
    return out
