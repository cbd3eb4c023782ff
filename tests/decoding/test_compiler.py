"""Compiler options of the decoding programs (spec_cascade_jax.decoding.compiler)."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spec_cascade_jax.decoding import compiler
from spec_cascade_jax.models.t5 import config as t5_config
from spec_cascade_jax.models.t5.network import T5Model


@pytest.fixture
def fresh_options():
    compiler.decode_options.cache_clear()
    yield
    compiler.decode_options.cache_clear()


def _dot_program(jit_fn):
    x = jax.ShapeDtypeStruct((16, 64), jnp.float32)
    w = jax.ShapeDtypeStruct((64, 128), jnp.float32)
    return jit_fn(lambda a, b: a @ b).lower(x, w).compile().as_text()


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="CPU-only options")
def test_cpu_options_keep_dots_off_ynnpack(fresh_options):
    assert compiler.decode_options() == compiler.CPU_DECODE_OPTIONS
    ours = _dot_program(compiler.jit)
    assert "ynn_fusion" not in ours
    assert " dot(" in ours
    # The option is what makes the difference: jaxlib's default fuses this dot into YNNPACK.
    default = _dot_program(jax.jit)
    if "ynn_fusion" not in default:
        pytest.skip("this jaxlib does not use YNNPACK for dots by default")


def test_unknown_option_falls_back_to_none(fresh_options, monkeypatch):
    monkeypatch.setattr(compiler, "CPU_DECODE_OPTIONS", {"xla_no_such_option_for_test": ""})
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert compiler.decode_options() == {}
    f = compiler.jit(lambda a: a * 2)  # still compiles and runs, without options
    np.testing.assert_array_equal(f(jnp.arange(3)), [0, 2, 4])


def test_jit_decorator_forms_and_static_args(fresh_options):
    @compiler.jit(static_argnames=("k",))
    def scale(x, *, k):
        return x * k

    np.testing.assert_array_equal(scale(jnp.ones(2), k=3), [3.0, 3.0])
    np.testing.assert_array_equal(scale(jnp.ones(2), k=4), [4.0, 4.0])
    assert scale._cache_size() == 2
    assert "multiply" in scale.lower(jnp.ones(2), k=5).as_text()


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="CPU-only options")
def test_generate_program_uses_the_options(fresh_options):
    # The package re-exports the function `generate`, which shadows the module's name.
    generate_mod = importlib.import_module("spec_cascade_jax.decoding.generate")

    model = T5Model(t5_config.tiny(vocab_size=64))
    params = model.init_params(jax.random.PRNGKey(0))
    f32, i32 = jnp.float32, jnp.int32
    text = (
        generate_mod._generate.lower(
            model,
            params,
            model,
            params,
            jnp.ones((2, 5), i32),
            jax.random.PRNGKey(0),
            jnp.arange(2, dtype=i32),
            f32(0.3),
            f32(1.0),
            f32(1.0),
            i32(0),
            method="spec_chow",
            gamma=3,
            max_decode_len=8,
            top_k=0,
            bonus_source="target",
            lossy_beta="one",
        )
        .compile()
        .as_text()
    )
    assert " dot(" in text
    assert "ynn_fusion" not in text


def test_call_inside_an_outer_jit_and_vmap(fresh_options):
    scale = compiler.jit(lambda x, k: x * k, static_argnums=1)
    outer = jax.jit(lambda x: scale(x, 3) + 1)  # JAX refuses options on a nested jit
    np.testing.assert_array_equal(outer(jnp.ones(2)), [4.0, 4.0])
    np.testing.assert_array_equal(jax.vmap(lambda x: scale(x, 2))(jnp.arange(3.0)), [0, 2, 4])
    np.testing.assert_array_equal(scale(jnp.ones(2), 5), [5.0, 5.0])  # top level: with options
