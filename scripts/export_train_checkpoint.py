r"""Exports the parameters of one step of a training run (e.g. to ship an early-stopped model).

    python scripts/export_train_checkpoint.py --checkpoint_dir=outputs/train_demo/verifier \
        --config_json=verifier_config.json --step=1000 \
        --export_dir=spec_cascade_jax/demo_data/ende/models/verifier --dtype=bfloat16

The model config comes from `--config_json` (a `T5Config` as JSON, as in an export), so the export
loads with `training.export.load_model` and `checkpoint.load_params("auto", ...)` like one written
by `run_train`. `--dtype=bfloat16` halves the size of the saved weights.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from absl import app, flags

from spec_cascade_jax.models.t5.config import T5Config
from spec_cascade_jax.training import export, trainer

_CKPT = flags.DEFINE_string("checkpoint_dir", None, "Train-state checkpoints.", required=True)
_STEP = flags.DEFINE_integer("step", None, "Step to export (default: latest).")
_CONFIG = flags.DEFINE_string("config_json", None, "T5Config as JSON.", required=True)
_EXPORT = flags.DEFINE_string("export_dir", None, "Where to write the export.", required=True)
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Saved weight dtype.")
_INFO = flags.DEFINE_string("info", "{}", "Extra JSON to record in train_info.json.")


def main(argv: Sequence[str]) -> None:
    del argv
    with open(_CONFIG.value, encoding="utf-8") as f:
        config = T5Config(**json.load(f))
    manager = ocp.CheckpointManager(os.path.abspath(_CKPT.value))
    step = _STEP.value if _STEP.value is not None else manager.latest_step()
    if step is None or step not in manager.all_steps():
        steps = manager.all_steps()
        raise ValueError(f"no checkpoint of step {step!r} in {_CKPT.value!r} (has {steps})")
    restored = manager.restore(
        step, args=ocp.args.Composite(**{trainer._TRAIN_STATE: ocp.args.StandardRestore()})
    )
    params = restored[trainer._TRAIN_STATE]["params"]
    params = jax.tree.map(lambda x: jnp.asarray(x, _DTYPE.value), params)
    info = {"num_steps": step, "source_checkpoint": _CKPT.value, "dtype": _DTYPE.value}
    info.update(json.loads(_INFO.value))
    export.export_model(_EXPORT.value, config, params, info=info, overwrite=True)
    print(json.dumps({"exported_step": step, "config": dataclasses.asdict(config)}))


if __name__ == "__main__":
    app.run(main)
