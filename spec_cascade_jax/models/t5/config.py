"""T5 network configurations: the T5.1.1 sizes, T5 v1.0 small, and tiny test configs.

Shapes follow the public T5.1.1 checkpoints (gated-GELU MLP, untied logits) and the original T5
(v1.0: ReLU MLP, logits tied to the token embedding and scaled by `d_model ** -0.5`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import jax.numpy as jnp

FeedForward = Literal["relu", "gated-gelu"]

_FEED_FORWARDS = ("relu", "gated-gelu")
_DTYPES = ("float32", "bfloat16")

T5_VOCAB_SIZE = 32128  # padded logits size of the public T5 checkpoints
T5_REAL_VOCAB_SIZE = 32100  # SentencePiece ids 0..32099 (32000 pieces + 100 sentinels)


@dataclasses.dataclass(frozen=True, kw_only=True)
class T5Config:
    """Structure of a T5 encoder-decoder. Hashable, so it can sit inside a static jit argument.

    Attributes:
        vocab_size: size of the token embedding and of the logits' last axis (padded vocabulary).
        real_vocab_size: number of real token ids (`<= vocab_size`); callers mask ids beyond it.
        d_model: embedding / residual width E.
        d_ff: hidden width of the MLP.
        num_heads: attention heads H.
        d_kv: per-head width D; `num_heads * d_kv` need not equal `d_model`.
        num_encoder_layers: encoder blocks.
        num_decoder_layers: decoder blocks.
        relative_attention_num_buckets: relative-position buckets (shared per stack).
        relative_attention_max_distance: distance beyond which all positions share a bucket.
        feed_forward: "relu" (T5 v1.0) or "gated-gelu" (T5.1.1 / Flan; tanh-approximate GELU).
        tie_word_embeddings: True for v1.0 (logits = (x * d_model**-0.5) @ embedding.T); False for
            v1.1, which has its own `decoder/logits_dense/kernel`.
        layer_norm_epsilon: epsilon of the RMS layer norms.
        dropout_rate: dropout used by `T5Model.forward` when it is given a dropout key (training).
        dtype: compute dtype, "float32" or "bfloat16". Parameters are always stored in float32 and
            cast at use; logits are returned in float32.
        max_encoder_len: the encoder length callers pad/truncate inputs to (validation only; the
            network itself accepts any length).
    """

    vocab_size: int
    real_vocab_size: int
    d_model: int
    d_ff: int
    num_heads: int
    d_kv: int
    num_encoder_layers: int
    num_decoder_layers: int
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    feed_forward: FeedForward = "gated-gelu"
    tie_word_embeddings: bool = False
    layer_norm_epsilon: float = 1e-6
    dropout_rate: float = 0.0
    dtype: str = "float32"
    max_encoder_len: int = 512

    def __post_init__(self) -> None:
        positive = (
            "vocab_size",
            "real_vocab_size",
            "d_model",
            "d_ff",
            "num_heads",
            "d_kv",
            "num_encoder_layers",
            "num_decoder_layers",
            "relative_attention_num_buckets",
            "relative_attention_max_distance",
            "max_encoder_len",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"T5Config.{name} must be a positive int, got {value!r}")
        if self.real_vocab_size > self.vocab_size:
            raise ValueError(
                f"T5Config.real_vocab_size ({self.real_vocab_size}) must be <= vocab_size "
                f"({self.vocab_size})"
            )
        if self.feed_forward not in _FEED_FORWARDS:
            raise ValueError(
                f"T5Config.feed_forward must be one of {_FEED_FORWARDS}, got {self.feed_forward!r}"
            )
        if self.dtype not in _DTYPES:
            raise ValueError(f"T5Config.dtype must be one of {_DTYPES}, got {self.dtype!r}")
        if self.relative_attention_num_buckets < 4:
            raise ValueError(
                "T5Config.relative_attention_num_buckets must be >= 4, got "
                f"{self.relative_attention_num_buckets!r}"
            )
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"T5Config.dropout_rate must be in [0, 1), got {self.dropout_rate!r}")
        if not self.layer_norm_epsilon > 0.0:
            raise ValueError(
                f"T5Config.layer_norm_epsilon must be > 0, got {self.layer_norm_epsilon!r}"
            )

    @property
    def compute_dtype(self) -> Any:
        """The jnp dtype used for activations, caches and matmul inputs."""
        return jnp.bfloat16 if self.dtype == "bfloat16" else jnp.float32

    @property
    def joined_kv(self) -> int:
        """`num_heads * d_kv`, the width of the fused query/key/value projections."""
        return self.num_heads * self.d_kv

    def replace(self, **overrides: Any) -> T5Config:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **overrides)


def t5_1_1_small(**overrides: Any) -> T5Config:
    """T5.1.1 small: 77M parameters, 8+8 layers, 6 heads x 64."""
    base = dict(
        vocab_size=T5_VOCAB_SIZE,
        real_vocab_size=T5_REAL_VOCAB_SIZE,
        d_model=512,
        d_ff=1024,
        num_heads=6,
        d_kv=64,
        num_encoder_layers=8,
        num_decoder_layers=8,
        feed_forward="gated-gelu",
        tie_word_embeddings=False,
    )
    return T5Config(**{**base, **overrides})


def t5_1_1_base(**overrides: Any) -> T5Config:
    """T5.1.1 base: 248M parameters, 12+12 layers, 12 heads x 64."""
    return t5_1_1_small(
        **{
            "d_model": 768,
            "d_ff": 2048,
            "num_heads": 12,
            "num_encoder_layers": 12,
            "num_decoder_layers": 12,
            **overrides,
        }
    )


def t5_1_1_large(**overrides: Any) -> T5Config:
    """T5.1.1 large: 783M parameters, 24+24 layers, 16 heads x 64."""
    return t5_1_1_small(
        **{
            "d_model": 1024,
            "d_ff": 2816,
            "num_heads": 16,
            "num_encoder_layers": 24,
            "num_decoder_layers": 24,
            **overrides,
        }
    )


def t5_1_1_xl(**overrides: Any) -> T5Config:
    """T5.1.1 XL: 2.85B parameters, 24+24 layers, 32 heads x 64."""
    return t5_1_1_small(
        **{
            "d_model": 2048,
            "d_ff": 5120,
            "num_heads": 32,
            "num_encoder_layers": 24,
            "num_decoder_layers": 24,
            **overrides,
        }
    )


def t5_v1_0_small(**overrides: Any) -> T5Config:
    """Original T5 small: ReLU MLP, 6+6 layers, 8 heads x 64, logits tied to the embedding."""
    base = dict(
        vocab_size=T5_VOCAB_SIZE,
        real_vocab_size=T5_REAL_VOCAB_SIZE,
        d_model=512,
        d_ff=2048,
        num_heads=8,
        d_kv=64,
        num_encoder_layers=6,
        num_decoder_layers=6,
        feed_forward="relu",
        tie_word_embeddings=True,
    )
    return T5Config(**{**base, **overrides})


def tiny(version: str = "1.1", vocab_size: int = 64, **overrides: Any) -> T5Config:
    """A tiny config for tests: d_model 32, 2 heads x 8, d_ff 64, 2+2 layers, 8 buckets.

    Args:
        version: "1.1" (gated-GELU, untied logits) or "1.0" (ReLU, tied logits).
        vocab_size: padded vocabulary size; `real_vocab_size` defaults to the same value.
        **overrides: any other `T5Config` field.
    """
    if version not in ("1.0", "1.1"):
        raise ValueError(f"tiny: version must be '1.0' or '1.1', got {version!r}")
    v1_0 = version == "1.0"
    base = dict(
        vocab_size=vocab_size,
        real_vocab_size=vocab_size,
        d_model=32,
        d_ff=64,
        num_heads=2,
        d_kv=8,
        num_encoder_layers=2,
        num_decoder_layers=2,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=20,
        feed_forward="relu" if v1_0 else "gated-gelu",
        tie_word_embeddings=v1_0,
        max_encoder_len=64,
    )
    return T5Config(**{**base, **overrides})


_PRESETS: dict[str, Callable[..., T5Config]] = {
    "t5_1_1_small": t5_1_1_small,
    "t5_1_1_base": t5_1_1_base,
    "t5_1_1_large": t5_1_1_large,
    "t5_1_1_xl": t5_1_1_xl,
    "t5_v1_0_small": t5_v1_0_small,
    "tiny": tiny,
    "tiny_v1_0": lambda **kw: tiny(version="1.0", **kw),
}


def preset_names() -> tuple[str, ...]:
    """Names accepted by `get_config`."""
    return tuple(sorted(_PRESETS))


def get_config(name: str, **overrides: Any) -> T5Config:
    """Looks up a preset by name (see `preset_names`) and applies field overrides."""
    if name not in _PRESETS:
        raise ValueError(f"unknown T5 config preset {name!r}; known: {', '.join(preset_names())}")
    return _PRESETS[name](**overrides)
