"""XLA compiler options for the decoding programs.

On CPU, jaxlib 0.10 hands every dot to a YNNPACK fusion (`ynn_fusion` in a profile) unless told
otherwise. For the skinny products of decoding (B·K rows, a few to a few hundred, against whole
weight matrices) those run 1.4-1.7x slower than XLA's own Eigen dot on our 2-core CPU, because
they re-read the weights at well under memory bandwidth: T5.1.1-small, batch 16, one `extend`
step 44 -> 27 ms; a 6-token block at batch 1 37 -> 26 ms; T5.1.1-base, batch 16, 138 -> 90 ms;
batch 1 unchanged (WORKSPACE_NOTES.md, "Decisions"). `decode_options()` switches them off for
the programs that decode; other platforms get no options.

The options are checked once by compiling a trivial program with them: a jaxlib that does not know
an option gets none of them (logged), never an error.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
from absl import logging

# XLA's CPU compiler: an empty fusion-type list keeps dots on the Eigen path.
CPU_DECODE_OPTIONS: dict[str, Any] = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def decode_options() -> dict[str, Any]:
    """Compiler options for decoding programs on the default backend ({} off CPU)."""
    if jax.default_backend() != "cpu":
        return {}
    try:
        probe = jax.jit(lambda x: x + 1, compiler_options=CPU_DECODE_OPTIONS)
        probe.lower(jax.ShapeDtypeStruct((), "float32")).compile()
    except Exception as err:  # noqa: BLE001 - any refusal means "do not use them"
        logging.warning("XLA rejected the CPU decode options %s (%s)", CPU_DECODE_OPTIONS, err)
        return {}
    return dict(CPU_DECODE_OPTIONS)


def jit(fun=None, **jit_kwargs: Any):
    """`jax.jit` with `decode_options()`, resolved at the first call (not at import).

    Usable as `jit(f, static_argnums=...)` or as a decorator `@jit(static_argnames=...)`. Called
    inside another trace (an outer `jax.jit`, `vmap`, ...) it is a plain `jax.jit`: JAX accepts
    compiler options only on the outermost program, which then decides them. The wrapper exposes
    the top-level jitted function's `lower` and `_cache_size`.
    """
    if fun is None:
        return functools.partial(jit, **jit_kwargs)

    @functools.cache
    def program():
        return jax.jit(fun, compiler_options=decode_options() or None, **jit_kwargs)

    nested = jax.jit(fun, **jit_kwargs)

    @functools.wraps(fun)
    def call(*args, **kwargs):
        traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((args, kwargs)))
        return (nested if traced else program())(*args, **kwargs)

    call.lower = lambda *a, **k: program().lower(*a, **k)
    call._cache_size = lambda: program()._cache_size()
    return call
