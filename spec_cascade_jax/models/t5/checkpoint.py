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

The tree helpers and validation live in `checkpoint_utils`, the t5x format in `checkpoint_t5x`;
this module re-exports their public names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import ml_dtypes
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

# The t5x format and the tree helpers live in their own modules; the public names are re-exported
# so that `checkpoint` stays the one entry point.
from spec_cascade_jax.models.t5.checkpoint_t5x import (  # noqa: F401 (re-exports)
    _T5X_STEP_DIR,
    T5X_CHECKPOINT_FILE,
    T5X_VERSION,
    load_t5x_checkpoint,
    write_t5x_checkpoint,
)
from spec_cascade_jax.models.t5.checkpoint_utils import (  # noqa: F401 (re-exports)
    _OPTIMIZER_STATE_KEYS,
    Params,
    PathLike,
    _check_exists,
    _flatten,
    _leaf_shape,
    _path_str,
    _resolve_dtype,
    _to_jax,
    expected_param_shapes,
    validate_params,
)
from spec_cascade_jax.models.t5.config import T5Config
from spec_cascade_jax.models.t5.hf_convert import params_from_hf_state_dict
from spec_cascade_jax.models.t5.network import T5Model

CHECKPOINT_KINDS = ("t5x", "orbax", "hf", "random", "auto")

_ORBAX_MARKERS = ("_METADATA", "_CHECKPOINT_METADATA", "manifest.ocdbt")
_HF_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)

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
