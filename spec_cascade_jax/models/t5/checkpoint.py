"""Load T5 parameters from t5x, Orbax and Hugging Face checkpoints; save and restore our own.

Every loader returns the plain nested dict of `T5Model.init_params` (t5x T5.1.1 names, flat 2-D
kernels; see `spec_cascade_jax.models.t5.network`) as jax arrays, cast to the requested dtype, and
checks it against the tree the config implies (`validate_params`) before any large array is read.

Formats:

* **t5x (classic).** A directory `checkpoint_<step>/` holding a msgpack file `checkpoint` (flax
  serialization) with `{"version": 3, "optimizer": {"target": params, "state": optimizer state}}`.
  A leaf of `target` is either an inline array or a TensorStore spec (a dict: `driver` "zarr",
  `kvstore` {"driver": "file"|"gcs", "path": <path relative to the checkpoint directory, e.g.
  "target.encoder.layers_0.attention.query.kernel">}, `metadata`), the array itself being a zarr
  store beside the msgpack file. Only `target` is read: the optimizer state (Adafactor's factored
  `v_row`/`v_col`, the step) is ignored. Version 0 (a bare flax state dict with `target` or `params`
  at the top) is accepted; versions 1-2 (bfloat16 stored as uint16) are not.
* **Orbax.** A PyTree checkpoint written by orbax-checkpoint (`_METADATA`, `manifest.ocdbt`, ...).
  The parameter tree is found under the root, `params`, `target` or deeper (e.g.
  `optimizer/target`, `params/params`); only that subtree is restored. `save_params` writes this
  format and `restore_params` reads it back.
* **Hugging Face.** `model.safetensors` (read with `safetensors`, numpy), a PyTorch
  `pytorch_model.bin` (read with `torch.load(weights_only=True)`, which refuses arbitrary pickled
  objects), or a sharded `*.index.json`. Names are mapped by `params_from_hf_state_dict`.

Errors: a path that does not exist raises FileNotFoundError naming it; a file that cannot be decoded
(truncated, garbage) raises ValueError naming the file; a tree that does not fit the config raises
ValueError naming each offending parameter path with both shapes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts
from absl import logging

from spec_cascade_jax.models.t5.config import T5Config
from spec_cascade_jax.models.t5.hf_convert import params_from_hf_state_dict
from spec_cascade_jax.models.t5.network import T5Model

Params = Any
PathLike = str | os.PathLike
FlatTree = dict[tuple[str, ...], Any]

CHECKPOINT_KINDS = ("t5x", "orbax", "hf", "random", "auto")

T5X_CHECKPOINT_FILE = "checkpoint"
T5X_VERSION = 3
_T5X_STEP_DIR = re.compile(r"^checkpoint_(\d+)$")
_ORBAX_MARKERS = ("_METADATA", "_CHECKPOINT_METADATA", "manifest.ocdbt")
_HF_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_TS_DRIVERS = ("zarr", "zarr3")
_TS_KVSTORE_DRIVERS = ("file", "gfile", "gcs")  # gcs/gfile paths are read from local disk
# Subtrees that mirror the parameter tree but hold optimizer statistics, never parameters.
_OPTIMIZER_STATE_KEYS = ("param_states", "opt_state", "state")
_MAX_PROBLEMS_LISTED = 20
_TS_CHUNK_BYTES = 64 * 1024 * 1024


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


# ----------------------------------------------------------------------------------------------
# t5x.


def _resolve_t5x_file(path: Path) -> Path:
    """The msgpack `checkpoint` file of a t5x checkpoint dir, file, or run dir (latest step)."""
    _check_exists(path, "t5x checkpoint")
    if path.is_file():
        return path
    candidate = path / T5X_CHECKPOINT_FILE
    if candidate.is_file():
        return candidate
    steps = sorted(
        (int(m.group(1)), child)
        for child in path.iterdir()
        if (m := _T5X_STEP_DIR.match(child.name)) and (child / T5X_CHECKPOINT_FILE).is_file()
    )
    if steps:
        step, step_dir = steps[-1]
        logging.info(
            "t5x: %s holds steps %s; using the latest, %d", path, [s for s, _ in steps], step
        )
        return step_dir / T5X_CHECKPOINT_FILE
    raise FileNotFoundError(
        f"no t5x checkpoint in {str(path)!r}: expected a file {T5X_CHECKPOINT_FILE!r} or "
        "checkpoint_<step>/ subdirectories"
    )


def _read_msgpack(file: Path) -> Any:
    raw = file.read_bytes()
    if raw.startswith(b"model_checkpoint_path"):
        raise ValueError(
            f"{str(file)!r} is a TensorFlow checkpoint index, not a t5x msgpack checkpoint"
        )
    try:
        return flax.serialization.msgpack_restore(raw)
    except Exception as err:  # msgpack raises many types on truncated or garbage input
        raise ValueError(
            f"cannot decode t5x checkpoint file {str(file)!r} ({len(raw)} bytes; truncated or "
            f"not msgpack?): {type(err).__name__}: {err}"
        ) from err


def _t5x_target(contents: Any, file: Path) -> tuple[Mapping[str, Any], int]:
    """The parameter subtree (`optimizer/target`) and the format version of a t5x checkpoint."""
    if not isinstance(contents, Mapping):
        raise ValueError(
            f"t5x checkpoint file {str(file)!r} decodes to {type(contents).__name__}, not a dict"
        )
    version = contents.get("version", 0)
    if not isinstance(version, int | np.integer):
        raise ValueError(f"t5x checkpoint {str(file)!r} has a non-integer version {version!r}")
    if version in (1, 2):
        raise ValueError(
            f"t5x checkpoint {str(file)!r} has format version {version}; only versions 0 and 3 "
            "(native bfloat16 in TensorStore) are supported"
        )
    state = contents if version == 0 else contents.get("optimizer")
    if not isinstance(state, Mapping):
        raise ValueError(
            f"t5x checkpoint {str(file)!r} (version {version}) has no 'optimizer' state dict; "
            f"top-level keys: {sorted(contents)}"
        )
    for key in ("target", "params"):
        if isinstance(state.get(key), Mapping):
            return state[key], int(version)
    raise ValueError(
        f"t5x checkpoint {str(file)!r} has no parameter tree ('target' or 'params'); keys: "
        f"{sorted(state)}"
    )


def _is_ts_spec(node: Any) -> bool:
    return isinstance(node, Mapping) and "driver" in node and ("kvstore" in node or "path" in node)


def _ts_array_dir(spec: Mapping[str, Any], ckpt_dir: Path, name: str, file: Path) -> Path:
    """The local zarr directory a t5x TensorStore spec points at, confined to the checkpoint."""
    if spec.get("driver") not in _TS_DRIVERS:
        raise ValueError(
            f"{str(file)!r}: parameter {name!r} uses TensorStore driver {spec.get('driver')!r}; "
            f"supported: {_TS_DRIVERS}"
        )
    kvstore = spec.get("kvstore")
    if isinstance(kvstore, Mapping):
        if kvstore.get("driver", "file") not in _TS_KVSTORE_DRIVERS:
            raise ValueError(
                f"{str(file)!r}: parameter {name!r} uses kvstore driver {kvstore.get('driver')!r}"
            )
        rel = kvstore.get("path")
    elif isinstance(kvstore, str):
        rel = kvstore.removeprefix("file://")
    else:  # tensorstore < 0.1.14 kept the path at the top level
        rel = spec.get("path")
    if not isinstance(rel, str) or not rel:
        raise ValueError(f"{str(file)!r}: parameter {name!r} has no TensorStore path: {spec}")
    root = ckpt_dir.resolve()
    array_dir = (root / rel).resolve()
    if root not in array_dir.parents:
        raise ValueError(
            f"{str(file)!r}: parameter {name!r} points outside the checkpoint directory: {rel!r}"
        )
    if not array_dir.is_dir():
        raise FileNotFoundError(
            f"t5x checkpoint {str(file)!r} stores parameter {name!r} in {str(array_dir)!r}, "
            "which does not exist"
        )
    return array_dir


def _open_ts(spec: Mapping[str, Any], array_dir: Path, name: str) -> Any:
    try:
        return ts.open(
            {"driver": spec["driver"], "kvstore": {"driver": "file", "path": str(array_dir)}},
            open=True,
            read=True,
        ).result()
    except Exception as err:
        raise ValueError(
            f"cannot open the TensorStore array {str(array_dir)!r} of parameter {name!r}: {err}"
        ) from err


def load_t5x_checkpoint(path: PathLike, config: T5Config, *, dtype: Any = "float32") -> Params:
    """Reads the parameters of a classic t5x checkpoint (msgpack + TensorStore), see module doc.

    Args:
        path: a `checkpoint_<step>` directory, its `checkpoint` file, or a run directory holding
            `checkpoint_<step>` subdirectories (the highest step is used).
        config: the model the checkpoint must match (checked before the arrays are read).
        dtype: dtype for the returned parameters ("float32", "bfloat16", ...); None keeps the
            stored dtypes.

    Returns:
        The parameter tree of `T5Model(config)` as jax arrays.
    """
    dtype = _resolve_dtype(dtype)
    file = _resolve_t5x_file(Path(path))
    ckpt_dir = file.parent
    target, version = _t5x_target(_read_msgpack(file), file)
    leaves = _flatten(target, is_leaf=_is_ts_spec)

    stores, inline, shapes = {}, {}, {}
    for path_tuple, leaf in leaves.items():
        name = _path_str(path_tuple)
        if _is_ts_spec(leaf):
            array_dir = _ts_array_dir(leaf, ckpt_dir, name, file)
            stores[path_tuple] = _open_ts(leaf, array_dir, name)
            shapes[name] = tuple(stores[path_tuple].shape)
        elif isinstance(leaf, np.ndarray | np.generic):
            inline[path_tuple] = np.asarray(leaf)
            shapes[name] = inline[path_tuple].shape
        else:
            shapes[name] = None  # reported by the validation below
    _validate_flat(config, shapes, f"t5x checkpoint {str(file)!r}")

    for path_tuple, store in stores.items():
        if store.dtype == ts.uint16:
            raise ValueError(
                f"parameter {_path_str(path_tuple)!r} is stored as uint16 (old t5x bfloat16 "
                "encoding), which is not supported"
            )
    futures = {path_tuple: store.read() for path_tuple, store in stores.items()}
    arrays: FlatTree = dict(inline)
    for path_tuple, future in futures.items():
        try:
            arrays[path_tuple] = future.result()
        except Exception as err:
            raise ValueError(
                f"cannot read parameter {_path_str(path_tuple)!r} of t5x checkpoint "
                f"{str(file)!r} (corrupted chunk?): {err}"
            ) from err
    logging.info(
        "Loaded t5x checkpoint %s (version %d): %d arrays from TensorStore, %d inline",
        file,
        version,
        len(stores),
        len(inline),
    )
    return _to_jax(arrays, dtype)


def _chunk_shape(shape: tuple[int, ...], itemsize: int) -> list[int]:
    """Whole trailing dims, as many leading rows as fit in about 64 MiB."""
    if not shape:
        return []
    row = int(np.prod(shape[1:], dtype=np.int64)) * itemsize
    return [max(1, min(shape[0], _TS_CHUNK_BYTES // max(row, 1)))] + list(shape[1:])


def _write_t5x_tree(
    tree: Any, prefix: str, ckpt_dir: Path, inline_max_elements: int, dtype: np.dtype | None
) -> Any:
    """Writes large arrays of `tree` as zarr stores; returns the tree to put in the msgpack."""
    if isinstance(tree, Mapping):
        return {
            str(k): _write_t5x_tree(v, f"{prefix}.{k}", ckpt_dir, inline_max_elements, dtype)
            for k, v in tree.items()
        }
    if not isinstance(tree, np.ndarray | np.generic | jax.Array):
        return tree  # ints, strings, None: msgpack-native
    arr = np.asarray(tree)
    if dtype is not None and jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(dtype)
    if arr.size <= inline_max_elements:
        return arr
    spec = {
        "driver": "zarr",
        "dtype": arr.dtype.name,
        "kvstore": {"driver": "file", "path": prefix},
        "metadata": {
            "compressor": {"id": "gzip"},
            "shape": list(arr.shape),
            "chunks": _chunk_shape(arr.shape, arr.dtype.itemsize),
        },
    }
    local = {**spec, "kvstore": {"driver": "file", "path": str(ckpt_dir / prefix)}}
    ts.open(local, create=True, open=True).result().write(arr).result()
    return spec


def write_t5x_checkpoint(
    path: PathLike,
    params: Params,
    *,
    optimizer_state: Any = None,
    step: int = 0,
    inline_max_elements: int = 256,
    dtype: Any = None,
    overwrite: bool = False,
) -> Path:
    """Writes `params` as a classic t5x checkpoint directory (for tests and conversion tools).

    Arrays with more than `inline_max_elements` elements become gzip zarr stores named like
    `target.encoder.layers_0.attention.query.kernel`; smaller ones are stored inline in the
    msgpack `checkpoint` file, as t5x does for unpartitioned leaves. `optimizer_state` (any nested
    dict of arrays, e.g. Adafactor's factored `param_states`) is written under `optimizer/state`;
    by default only the step. `dtype` casts floating arrays (None keeps them). Returns `path`.
    """
    ckpt_dir = Path(path)
    file = ckpt_dir / T5X_CHECKPOINT_FILE
    if file.exists() and not overwrite:
        raise FileExistsError(f"t5x checkpoint already exists: {str(file)!r}")
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    dtype = _resolve_dtype(dtype)
    state = {"step": np.int32(step)} if optimizer_state is None else optimizer_state
    written = {
        "target": _write_t5x_tree(params, "target", ckpt_dir, inline_max_elements, dtype),
        "state": _write_t5x_tree(state, "state", ckpt_dir, inline_max_elements, None),
    }
    payload = flax.serialization.msgpack_serialize({"version": T5X_VERSION, "optimizer": written})
    file.write_bytes(payload)
    return ckpt_dir


# ----------------------------------------------------------------------------------------------
# Orbax.


def _is_orbax_dir(path: Path) -> bool:
    return path.is_dir() and any((path / marker).exists() for marker in _ORBAX_MARKERS)


def _resolve_orbax_dir(path: Path) -> Path:
    """The PyTree checkpoint directory of `path`, a step directory or a CheckpointManager root."""
    _check_exists(path, "Orbax checkpoint")
    if not path.is_dir():
        raise ValueError(f"an Orbax checkpoint is a directory, got the file {str(path)!r}")
    if _is_orbax_dir(path):
        return path
    steps = sorted((int(c.name), c) for c in path.iterdir() if c.is_dir() and c.name.isdigit())
    if steps:
        logging.info("orbax: %s holds steps %s; using the latest", path, [s for s, _ in steps])
        return _resolve_orbax_dir(steps[-1][1])
    items = sorted(c for c in path.iterdir() if _is_orbax_dir(c))
    preferred = [c for name in ("params", "state", "default") for c in items if c.name == name]
    if preferred or len(items) == 1:
        return (preferred or items)[0]
    raise ValueError(
        f"{str(path)!r} is not an Orbax checkpoint: none of {_ORBAX_MARKERS} found, and no single "
        f"step or item subdirectory (item subdirectories: {[c.name for c in items]})"
    )


def _find_params_subtree(tree: Any) -> tuple[str, ...] | None:
    """Breadth-first path to the first dict holding `token_embedder`, skipping optimizer state."""
    queue: list[tuple[tuple[str, ...], Any]] = [((), tree)]
    while queue:
        path, node = queue.pop(0)
        if not isinstance(node, Mapping):
            continue
        if "token_embedder" in node:
            return path
        children = sorted(node.items(), key=lambda kv: kv[0] not in ("params", "target"))
        queue.extend((path + (str(k),), v) for k, v in children if k not in _OPTIMIZER_STATE_KEYS)
    return None


def _subtree(tree: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        tree = tree[name]
    return tree


def _restore_orbax(path: PathLike, config: T5Config | None, dtype: np.dtype | None) -> Params:
    directory = _resolve_orbax_dir(Path(path)).resolve()
    checkpointer = ocp.PyTreeCheckpointer()
    try:
        metadata = checkpointer.metadata(directory)
        item = getattr(metadata, "item_metadata", metadata)  # older Orbax: the tree itself
        tree = item if isinstance(item, Mapping) else getattr(item, "tree", None)
    except Exception as err:
        raise ValueError(f"cannot read the Orbax metadata of {str(directory)!r}: {err}") from err
    if not isinstance(tree, Mapping):
        raise ValueError(
            f"cannot read the Orbax metadata of {str(directory)!r} (missing or corrupted "
            f"_METADATA?); got {type(tree).__name__}"
        )
    sub_path = _find_params_subtree(tree)
    if sub_path is None:
        raise ValueError(
            f"Orbax checkpoint {str(directory)!r} holds no T5 parameter tree (no 'token_embedder' "
            f"under the root, 'params' or 'target'); top level: {sorted(tree)}"
        )
    meta = _subtree(tree, sub_path)
    if config is not None:
        validate_params(config, meta, source=f"Orbax checkpoint {str(directory)!r}")

    def nest(value: Any) -> Any:
        for name in reversed(sub_path):
            value = {name: value}
        return value

    item = nest(jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype), meta))
    restore_args = nest(
        jax.tree.map(lambda m: ocp.RestoreArgs(restore_type=np.ndarray, dtype=dtype), meta)
    )
    try:
        restored = checkpointer.restore(
            directory,
            args=ocp.args.PyTreeRestore(
                item=item, restore_args=restore_args, partial_restore=bool(sub_path)
            ),
        )
    except Exception as err:
        raise ValueError(f"cannot restore Orbax checkpoint {str(directory)!r}: {err}") from err
    params = _subtree(restored, sub_path)
    logging.info("Restored Orbax checkpoint %s (params at %s)", directory, _path_str(sub_path))
    return _to_jax(_flatten(params), dtype)


def load_orbax_checkpoint(path: PathLike, config: T5Config, *, dtype: Any = "float32") -> Params:
    """Reads the T5 parameters of an Orbax PyTree checkpoint (see module doc) and validates them.

    `path` is the checkpoint directory, or a CheckpointManager directory (latest step, its item).
    """
    return _restore_orbax(path, config, _resolve_dtype(dtype))


def save_params(path: PathLike, params: Params, *, overwrite: bool = False) -> Path:
    """Saves a parameter tree as an Orbax PyTree checkpoint at `path` (a new directory).

    This is the project's own format (trainer checkpoints, demo weights); read it back with
    `restore_params` or `load_params("orbax", ...)`. Dtypes are kept. Raises FileExistsError if
    `path` exists and `overwrite` is False.
    """
    directory = Path(path).absolute()
    if directory.exists() and not overwrite:
        raise FileExistsError(f"checkpoint directory already exists: {str(directory)!r}")
    if not isinstance(params, Mapping):
        raise ValueError(f"save_params: expected a nested dict of arrays, got {type(params)}")
    for leaf_path, leaf in _flatten(params).items():
        if _leaf_shape(leaf) is None:
            raise ValueError(f"save_params: {_path_str(leaf_path)!r} is not an array: {leaf!r}")
    ocp.PyTreeCheckpointer().save(directory, params, force=overwrite)
    logging.info("Saved params to %s", directory)
    return directory


def restore_params(path: PathLike, config: T5Config | None = None, *, dtype: Any = None) -> Params:
    """Reads a tree written by `save_params` (or any Orbax checkpoint holding T5 params).

    With a `config` the tree is validated against it; `dtype` None keeps the saved dtypes.
    """
    return _restore_orbax(path, config, _resolve_dtype(dtype))


# ----------------------------------------------------------------------------------------------
# Hugging Face.


def _torch_to_numpy(tensor: Any) -> np.ndarray:
    import torch

    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def _read_safetensors(file: Path) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="np") as f:
            return {key: f.get_tensor(key) for key in f.keys()}
    except Exception as err:
        raise ValueError(
            f"cannot read safetensors file {str(file)!r} (truncated or corrupted?): {err}"
        ) from err


def _read_torch_bin(file: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as err:
        raise ImportError(f"reading {str(file)!r} needs PyTorch (the 'test' extra)") from err
    try:
        state = torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"cannot read PyTorch weights file {str(file)!r} with weights_only=True (truncated, "
            f"corrupted, or holding non-tensor objects?): {err}"
        ) from err
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ValueError(f"{str(file)!r} is not a flat state dict of tensors")
    return {str(k): _torch_to_numpy(v) for k, v in state.items()}


def _read_hf_index(file: Path) -> dict[str, np.ndarray]:
    try:
        weight_map = json.loads(file.read_text())["weight_map"]
    except Exception as err:
        raise ValueError(f"cannot read the shard index {str(file)!r}: {err}") from err
    state: dict[str, np.ndarray] = {}
    for shard in sorted(set(weight_map.values())):
        shard_file = (file.parent / shard).resolve()
        if file.parent.resolve() not in shard_file.parents:
            raise ValueError(f"{str(file)!r} names a shard outside its directory: {shard!r}")
        state.update(_read_hf_file(shard_file))
    return state


def _read_hf_file(file: Path) -> dict[str, np.ndarray]:
    _check_exists(file, "HF weights file")
    if file.name.endswith(".index.json"):
        return _read_hf_index(file)
    if file.suffix == ".safetensors":
        return _read_safetensors(file)
    return _read_torch_bin(file)


def _resolve_hf_file(path: Path) -> Path:
    _check_exists(path, "HF checkpoint")
    if path.is_file():
        return path
    for name in _HF_FILES:
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(f"no HF weights in {str(path)!r}: looked for {list(_HF_FILES)}")


def read_hf_state_dict(path: PathLike) -> dict[str, np.ndarray]:
    """The raw HF state dict (numpy) of a weights file or a model directory (see module doc)."""
    return _read_hf_file(_resolve_hf_file(Path(path)))


def load_hf_checkpoint(path: PathLike, config: T5Config, *, dtype: Any = "float32") -> Params:
    """Reads HF `T5ForConditionalGeneration` weights into our tree (names via `hf_convert`).

    Args:
        path: a model directory (`model.safetensors`, `pytorch_model.bin`, or a sharded index)
            or one of those files.
        config: the model the weights must match.
        dtype: dtype for the returned parameters; None keeps float32.
    """
    dtype = _resolve_dtype(dtype)
    file = _resolve_hf_file(Path(path))
    state_dict = _read_hf_file(file)
    try:
        params = params_from_hf_state_dict(config, state_dict)
    except ValueError as err:
        raise ValueError(f"HF checkpoint {str(file)!r}: {err}") from err
    validate_params(config, params, source=f"HF checkpoint {str(file)!r}")
    logging.info("Loaded HF checkpoint %s (%d tensors)", file, len(state_dict))
    return _to_jax(_flatten(params), dtype)


# ----------------------------------------------------------------------------------------------
# Dispatch.


def detect_checkpoint_kind(path: PathLike) -> str:
    """Detects "t5x", "orbax" or "hf" from the files at `path`; ValueError if none of them."""
    path = Path(path)
    _check_exists(path, "checkpoint")
    if path.is_file():
        if path.name == T5X_CHECKPOINT_FILE:
            return "t5x"
        if path.suffix in (".safetensors", ".bin", ".pt", ".pth") or path.name.endswith(
            ".index.json"
        ):
            return "hf"
        raise ValueError(f"cannot tell the checkpoint format of the file {str(path)!r}")
    if _is_orbax_dir(path):
        return "orbax"
    if (path / T5X_CHECKPOINT_FILE).is_file():
        return "t5x"
    if any((path / name).is_file() for name in _HF_FILES):
        return "hf"
    children = [c for c in path.iterdir() if c.is_dir()]
    if any(_T5X_STEP_DIR.match(c.name) for c in children):
        return "t5x"
    if any(c.name.isdigit() or _is_orbax_dir(c) for c in children):
        return "orbax"
    raise ValueError(
        f"cannot tell the checkpoint format of {str(path)!r}: no t5x 'checkpoint' file, no Orbax "
        f"metadata {_ORBAX_MARKERS}, no HF weights {_HF_FILES}"
    )


def load_params(
    kind: str,
    path: PathLike | None,
    config: T5Config,
    seed: int = 0,
    dtype: Any = "float32",
) -> Params:
    """Parameters for `T5Model(config)` from a checkpoint of the given kind (gin-friendly).

    Args:
        kind: "t5x", "orbax" (also our `save_params` format), "hf", "random" (fresh
            `init_params` from `seed`; `path` is ignored), or "auto" (detected from the files).
        path: checkpoint directory or file; required unless `kind` is "random".
        config: the model; every loaded tree is validated against it.
        seed: PRNG seed for "random".
        dtype: parameter dtype ("float32" or "bfloat16"); None keeps stored dtypes.
    """
    if kind not in CHECKPOINT_KINDS:
        raise ValueError(f"checkpoint kind must be one of {CHECKPOINT_KINDS}, got {kind!r}")
    if kind == "random":
        if path:
            logging.warning("load_params: kind='random' ignores path %s", path)
        params = T5Model(config).init_params(jax.random.PRNGKey(seed))
        return _to_jax(_flatten(params), _resolve_dtype(dtype))
    if path is None or path == "":
        raise ValueError(f"load_params: kind={kind!r} needs a checkpoint path, got {path!r}")
    if kind == "auto":
        kind = detect_checkpoint_kind(path)
        logging.info("load_params: %s detected as a %s checkpoint", path, kind)
    loaders = {
        "t5x": load_t5x_checkpoint,
        "orbax": load_orbax_checkpoint,
        "hf": load_hf_checkpoint,
    }
    return loaders[kind](path, config, dtype=dtype)
