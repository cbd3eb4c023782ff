"""Tree helpers and parameter validation shared by the checkpoint formats (`checkpoint.py`).

Trees are handled flat, as `{path tuple: leaf}`; `validate_params` / `_validate_flat` compare a tree
with the one `T5Model(config).init_params` implies and name every offending path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from spec_cascade_jax.models.t5.config import T5Config
from spec_cascade_jax.models.t5.network import T5Model

Params = Any
PathLike = str | os.PathLike
FlatTree = dict[tuple[str, ...], Any]

# Subtrees that mirror the parameter tree but hold optimizer statistics, never parameters.
_OPTIMIZER_STATE_KEYS = ("param_states", "opt_state", "state")
_MAX_PROBLEMS_LISTED = 20

# ----------------------------------------------------------------------------------------------
# Trees, dtypes, validation.


def _flatten(tree: Any, is_leaf=None, prefix: tuple[str, ...] = ()) -> FlatTree:
    """`{path tuple: leaf}` of a nested dict; `is_leaf(node)` stops descent at special dicts."""
    if isinstance(tree, Mapping) and tree and not (is_leaf is not None and is_leaf(tree)):
        flat: FlatTree = {}
        for key, value in tree.items():
            flat.update(_flatten(value, is_leaf, prefix + (str(key),)))
        return flat
    return {prefix: tree}


def _unflatten(flat: FlatTree) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = value
    return tree


def _path_str(path: tuple[str, ...]) -> str:
    return "/".join(path) if path else "<root>"


def _resolve_dtype(dtype: Any) -> np.dtype | None:
    """None (keep stored dtypes) or a floating numpy dtype from a name/dtype ("bfloat16", ...)."""
    if dtype is None:
        return None
    try:
        resolved = np.dtype(jnp.dtype(dtype))
    except TypeError as err:
        raise ValueError(f"unknown dtype {dtype!r}") from err
    if not jnp.issubdtype(resolved, jnp.floating):
        raise ValueError(f"parameter dtype must be floating, got {dtype!r}")
    return resolved


def _to_jax(flat: FlatTree, dtype: np.dtype | None) -> Params:
    """Nested dict of jax arrays, floating leaves cast to `dtype` (None keeps them)."""
    out = {}
    for path, value in flat.items():
        value = np.asarray(value)
        if dtype is not None and jnp.issubdtype(value.dtype, jnp.floating):
            value = value.astype(dtype)
        out[path] = jnp.asarray(value)
    return _unflatten(out)


def expected_param_shapes(config: T5Config) -> dict[str, tuple[int, ...]]:
    """`{"encoder/layers_0/attention/query/kernel": shape, ...}` of `T5Model(config)` (abstract)."""
    abstract = jax.eval_shape(T5Model(config).init_params, jax.random.PRNGKey(0))
    return {_path_str(path): tuple(leaf.shape) for path, leaf in _flatten(abstract).items()}


def _validate_flat(config: T5Config, shapes: Mapping[str, Any], source: str) -> None:
    """Raises ValueError listing every missing, unexpected or mis-shaped parameter."""
    expected = expected_param_shapes(config)
    problems = []
    for name in sorted(set(expected) - set(shapes)):
        problems.append(f"missing parameter {name!r} (the config expects shape {expected[name]})")
    for name in sorted(set(shapes) - set(expected)):
        problems.append(
            f"unexpected parameter {name!r} with shape {shapes[name]} (not part of the model "
            "the config describes)"
        )
    for name in sorted(set(shapes) & set(expected)):
        if shapes[name] is None:
            problems.append(f"parameter {name!r} is not an array")
        elif tuple(shapes[name]) != expected[name]:
            problems.append(
                f"parameter {name!r} has shape {tuple(shapes[name])} in {source}, but the config "
                f"expects {expected[name]}"
            )
    if problems:
        listed = "\n  ".join(problems[:_MAX_PROBLEMS_LISTED])
        more = len(problems) - _MAX_PROBLEMS_LISTED
        tail = f"\n  ... and {more} more" if more > 0 else ""
        raise ValueError(
            f"{source} does not match the T5 config ({len(problems)} problem(s)):\n  {listed}{tail}"
        )


def _leaf_shape(leaf: Any) -> tuple[int, ...] | None:
    shape = getattr(leaf, "shape", None)
    return None if shape is None else tuple(int(d) for d in shape)


def validate_params(config: T5Config, params: Params, *, source: str = "params") -> None:
    """Checks that `params` has exactly the parameters of `T5Model(config)` with the same shapes.

    Leaves may be arrays or anything with a `.shape` (e.g. `jax.ShapeDtypeStruct`). Raises
    ValueError naming each missing or unexpected parameter path, and each shape mismatch with both
    shapes; `source` names where the tree came from in the message.
    """
    if not isinstance(params, Mapping):
        raise ValueError(f"{source}: expected a nested dict of parameters, got {type(params)}")
    shapes = {_path_str(path): _leaf_shape(leaf) for path, leaf in _flatten(params).items()}
    _validate_flat(config, shapes, source)


def _check_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {str(path)!r}")
