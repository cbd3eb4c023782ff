"""Layer-level numerics of the T5 building blocks (models/t5/layers.py)."""

import jax
import jax.numpy as jnp
import numpy as np

from spec_cascade_jax.models.t5.layers import Dense


def test_bfloat16_dense_asks_for_a_float32_contraction():
    # XLA:CPU runs a bfloat16 x bfloat16 -> bfloat16 dot ~5x slower than the same dot with a
    # float32 result (measured on the 2-core machine, WORKSPACE_NOTES.md "Against peers"), so
    # Dense requests float32 and rounds once; the result must still be bfloat16 and accurate.
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((4, 4096)), jnp.bfloat16)
    kernel = jnp.asarray(rng.standard_normal((4096, 8)), jnp.bfloat16)
    dense = Dense(8, jnp.bfloat16, jax.nn.initializers.zeros)
    variables = {"params": {"kernel": kernel.astype(jnp.float32)}}
    jaxpr = jax.make_jaxpr(dense.apply)(variables, x)
    dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
    assert len(dots) == 1 and dots[0].params["preferred_element_type"] == jnp.float32
    y = dense.apply(variables, x)
    assert y.dtype == jnp.bfloat16
    ref = np.asarray(x, np.float64) @ np.asarray(kernel, np.float64)
    rel = np.abs(np.asarray(y, np.float64) - ref) / np.abs(ref).max()
    assert rel.max() <= 2.0**-8, rel.max()


def test_float32_dense_is_a_plain_float32_product():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((3, 64)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((64, 5)), jnp.float32)
    y = Dense(5, jnp.float32, jax.nn.initializers.zeros).apply({"params": {"kernel": kernel}}, x)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(
        np.asarray(y), np.asarray(x) @ np.asarray(kernel), rtol=1e-5, atol=1e-5
    )
