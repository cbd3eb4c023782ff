"""Model specs and loading for the gin jobs: the `model_spec` gin factory and `load_model`.

`model_spec` is `@gin.configurable`; gin files bind it by name (`t5_1_1_small/model_spec.preset`,
`DRAFTER = @demo_drafter/model_spec()`), so this module must be imported before they are parsed
(`evaluation.runner` imports it, and `main` imports `runner`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

import gin
import jax
import numpy as np
from absl import logging

from spec_cascade_jax.evaluation.job_config import check_required, resolve_path

CHECKPOINT_KINDS = ("t5x", "orbax", "hf", "random", "auto")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """How to build one model (see `model_spec` for the fields)."""

    preset: str
    overrides: tuple[tuple[str, Any], ...] = ()
    vocab_size: int | str | None = None
    dtype: str = "float32"
    checkpoint_kind: str = "auto"
    checkpoint_path: str | None = None
    seed: int = 0
    missing_ok: bool = False
    config_from_checkpoint: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "overrides": dict(self.overrides),
            "vocab_size": self.vocab_size,
            "dtype": self.dtype,
            "checkpoint_kind": self.checkpoint_kind,
            "checkpoint_path": self.checkpoint_path,
            "seed": self.seed if self.checkpoint_kind == "random" or self.missing_ok else None,
            "config_from_checkpoint": self.config_from_checkpoint,
        }


@gin.configurable
def model_spec(
    preset: str = gin.REQUIRED,
    overrides: Mapping[str, Any] | None = None,
    vocab_size: int | str | None = None,
    dtype: str = "float32",
    checkpoint_kind: str = "auto",
    checkpoint_path: str | None = None,
    seed: int = 0,
    missing_ok: bool = False,
    config_from_checkpoint: bool = False,
) -> ModelSpec:
    """Gin factory for a `ModelSpec`.

    Args:
      preset: a `models.t5.config` preset ("tiny", "t5_1_1_small", "t5_1_1_large", ...).
      overrides: `T5Config` fields to replace (e.g. {"num_decoder_layers": 1}).
      vocab_size: None keeps the preset's; an int sets the padded vocabulary size; "vocabulary"
        sets both `vocab_size` and `real_vocab_size` to the SentencePiece vocabulary's size
        (for randomly initialised models).
      dtype: "float32" or "bfloat16": compute dtype and parameter dtype.
      checkpoint_kind: "t5x", "orbax", "hf", "auto" (detected) or "random" (no checkpoint).
      checkpoint_path: checkpoint directory/file (`pkg://` allowed); required unless "random".
        The run's DRAFTER_CHECKPOINT / VERIFIER_CHECKPOINT macros replace it when set.
      seed: initialisation seed for random weights.
      missing_ok: if the checkpoint path does not exist, use random weights with a warning
        instead of failing (for the bundled demo before its trained pair exists).
      config_from_checkpoint: take the model's `T5Config` from `config.json` in the checkpoint
        directory (as `training.export` writes it) instead of preset + overrides + vocab_size,
        which then only describe the random fallback of `missing_ok`; `dtype` still applies.
    """
    check_required(model_spec, preset=preset)
    if checkpoint_kind not in CHECKPOINT_KINDS:
        raise ValueError(
            f"checkpoint_kind must be one of {CHECKPOINT_KINDS}, got {checkpoint_kind!r}"
        )
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {dtype!r}")
    if isinstance(vocab_size, str) and vocab_size != "vocabulary":
        raise ValueError(f"vocab_size must be an int, None or 'vocabulary', got {vocab_size!r}")
    return ModelSpec(
        preset=preset,
        overrides=tuple(sorted(dict(overrides or {}).items())),
        vocab_size=vocab_size,
        dtype=dtype,
        checkpoint_kind=checkpoint_kind,
        checkpoint_path=checkpoint_path,
        seed=seed,
        missing_ok=missing_ok,
        config_from_checkpoint=config_from_checkpoint,
    )


def _model_config(spec: ModelSpec, vocabulary_size: int | None):
    from spec_cascade_jax.models.t5 import config as t5_config

    if spec.preset not in t5_config.preset_names():
        raise ValueError(
            f"unknown model preset {spec.preset!r}; known: {', '.join(t5_config.preset_names())}"
        )
    overrides = dict(spec.overrides)
    if spec.vocab_size == "vocabulary":
        if vocabulary_size is not None:
            overrides.update(vocab_size=vocabulary_size, real_vocab_size=vocabulary_size)
    elif spec.vocab_size is not None:
        overrides["vocab_size"] = int(spec.vocab_size)
    overrides["dtype"] = spec.dtype
    return t5_config.get_config(spec.preset, **overrides)


def load_model(spec: ModelSpec, role: str, vocabulary_size: int | None = None):
    """Builds `T5Model` and its parameters; returns (model, params, description dict)."""
    from spec_cascade_jax.models.t5 import T5Config, T5Model
    from spec_cascade_jax.models.t5 import checkpoint as ckpt

    config = _model_config(spec, vocabulary_size)
    kind, path = spec.checkpoint_kind, resolve_path(spec.checkpoint_path)
    description = {"role": role, **spec.describe()}
    if kind != "random" and not path:
        raise ValueError(
            f"{role} model {spec.preset!r} has no checkpoint path: set "
            f"{role.upper()}_CHECKPOINT (or checkpoint_kind='random' for random weights)"
        )
    if kind != "random" and not os.path.exists(path) and "://" not in path:
        if not spec.missing_ok:
            raise FileNotFoundError(f"{role} checkpoint not found: {path!r}")
        logging.warning(
            "%s checkpoint %s not found: using RANDOM weights (seed %d)", role, path, spec.seed
        )
        kind = "random"
        description["checkpoint_kind"] = "random (checkpoint missing)"
    elif kind != "random" and spec.config_from_checkpoint:
        config_file = os.path.join(path, "config.json")
        if not os.path.isfile(config_file):
            raise FileNotFoundError(
                f"{role}: config_from_checkpoint needs {config_file!r} (a training export)"
            )
        with open(config_file, encoding="utf-8") as f:
            fields = json.load(f)
        config = T5Config(**fields).replace(dtype=spec.dtype)
        description["config"] = {k: v for k, v in sorted(fields.items()) if k != "dtype"}
    params = ckpt.load_params(kind, path, config, seed=spec.seed, dtype=spec.dtype)
    model = T5Model(config)
    description.update(
        vocab_size=config.vocab_size,
        real_vocab_size=config.real_vocab_size,
        num_params=int(sum(np.prod(x.shape) for x in jax.tree.leaves(params))),
    )
    if vocabulary_size is not None and config.real_vocab_size < vocabulary_size:
        raise ValueError(
            f"{role} model has real_vocab_size {config.real_vocab_size} but the vocabulary has "
            f"{vocabulary_size} ids; use vocab_size='vocabulary' or a matching preset"
        )
    return model, params, description
