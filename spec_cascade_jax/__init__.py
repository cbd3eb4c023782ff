"""spec_cascade_jax: speculative cascades (Narasimhan et al., ICLR 2025) for T5 pairs in JAX."""

__version__ = "0.1.0"
