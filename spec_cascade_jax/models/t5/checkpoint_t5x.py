"""The classic t5x checkpoint format: `load_t5x_checkpoint` and `write_t5x_checkpoint`.

See the `checkpoint` module docstring for the layout (msgpack + TensorStore zarr arrays).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import tensorstore as ts
from absl import logging

from spec_cascade_jax.models.t5.checkpoint_utils import (
    FlatTree,
    Params,
    PathLike,
    _check_exists,
    _flatten,
    _path_str,
    _resolve_dtype,
    _to_jax,
    _validate_flat,
)
from spec_cascade_jax.models.t5.config import T5Config

T5X_CHECKPOINT_FILE = "checkpoint"
T5X_VERSION = 3
_T5X_STEP_DIR = re.compile(r"^checkpoint_(\d+)$")
_TS_DRIVERS = ("zarr", "zarr3")
_TS_KVSTORE_DRIVERS = ("file", "gfile", "gcs")  # gcs/gfile paths are read from local disk
_TS_CHUNK_BYTES = 64 * 1024 * 1024

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
