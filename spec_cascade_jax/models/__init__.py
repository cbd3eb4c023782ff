"""Model families that implement the `DecodeModel` protocol (today: T5)."""

from spec_cascade_jax.models import t5

__all__ = ["t5"]
