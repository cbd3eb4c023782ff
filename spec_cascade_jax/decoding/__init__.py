"""Decoding: target rules, warps, the speculative loop, baselines and the `generate` entry point."""

from spec_cascade_jax.decoding.generate import (
    METHODS,
    SPECULATIVE_METHODS,
    compiled_variants,
    generate,
    get_rule,
    validate_method_alpha,
)
from spec_cascade_jax.decoding.interface import DecodeModel
from spec_cascade_jax.decoding.state import DecodeOutput, RowStats
from spec_cascade_jax.decoding.stats import concat_stats, summarize_stats

__all__ = [
    "METHODS",
    "SPECULATIVE_METHODS",
    "DecodeModel",
    "DecodeOutput",
    "RowStats",
    "compiled_variants",
    "concat_stats",
    "generate",
    "get_rule",
    "summarize_stats",
    "validate_method_alpha",
]
