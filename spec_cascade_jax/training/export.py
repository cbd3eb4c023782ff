"""Exported models: a directory with the parameters (`checkpoint.save_params`) and the config.

Layout of `directory/`:

    params/           Orbax PyTree checkpoint of the parameter tree (`checkpoint.save_params`)
    config.json       the `T5Config` fields, so `T5Config(**json.load(f))` rebuilds the model
    train_info.json   optional: how the parameters were trained (steps, optimiser, data, losses)

`checkpoint.load_params("auto", directory, config)` finds `params/` (it prefers an item of that
name), so an exported directory can be named directly as a model checkpoint in the gin files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

from spec_cascade_jax.models.t5 import checkpoint
from spec_cascade_jax.models.t5.config import T5Config

Params = Any
CONFIG_FILE = "config.json"
INFO_FILE = "train_info.json"
PARAMS_DIR = "params"


def export_model(
    directory: str | os.PathLike[str],
    config: T5Config,
    params: Params,
    *,
    info: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Writes `params/`, `config.json` (and `train_info.json` if `info`) under `directory`.

    Raises FileExistsError naming the directory if it already holds an export and `overwrite` is
    False. Returns the directory as an absolute path.
    """
    directory = Path(directory).absolute()
    params_dir = directory / PARAMS_DIR
    if params_dir.exists() or (directory / CONFIG_FILE).exists():
        if not overwrite:
            raise FileExistsError(
                f"{str(directory)!r} already holds an exported model; pass overwrite=True"
            )
        shutil.rmtree(params_dir, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    checkpoint.validate_params(config, params, source="export_model params")
    checkpoint.save_params(params_dir, params)
    (directory / CONFIG_FILE).write_text(
        json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    if info is not None:
        (directory / INFO_FILE).write_text(
            json.dumps(info, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8"
        )
    return directory


def load_config(directory: str | os.PathLike[str]) -> T5Config:
    """The `T5Config` saved by `export_model` in `directory`."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"exported model config not found: {str(path)!r}")
    return T5Config(**json.loads(path.read_text(encoding="utf-8")))


def load_model(
    directory: str | os.PathLike[str], *, dtype: Any = "float32"
) -> tuple[T5Config, Params]:
    """`(config, params)` of a model written by `export_model`, validated against each other."""
    config = load_config(directory)
    params = checkpoint.restore_params(Path(directory) / PARAMS_DIR, dtype=dtype)
    checkpoint.validate_params(config, params, source=f"exported model {str(directory)!r}")
    return config, params
