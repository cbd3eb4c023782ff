r"""Per-device parameter bytes of T5.1.1 models under `parallel.DEFAULT_RULES`, per mesh shape.

Nothing is allocated or compiled: the shardings are applied to the abstract parameter shapes on an
`AbstractMesh`, so any model size and mesh can be tabulated on a laptop. The `data` axis only
replicates parameters, so the table lists the `model` size.

    JAX_PLATFORMS=cpu python benchmarks/bench_sharding_memory.py \
        --configs=t5_1_1_small,t5_1_1_large,t5_1_1_xl --model_sizes=1,2,4,8 \
        --output_json=/tmp/bench_sharding_memory.json
"""

from __future__ import annotations

import datetime
import json

import jax
import numpy as np
from absl import app, flags
from jax.sharding import AbstractMesh, AxisType

from spec_cascade_jax import parallel
from spec_cascade_jax.models.t5 import T5Model, get_config

_CONFIGS = flags.DEFINE_list(
    "configs", ["t5_1_1_small", "t5_1_1_base", "t5_1_1_large", "t5_1_1_xl"], "T5 presets."
)
_MODEL_SIZES = flags.DEFINE_list("model_sizes", ["1", "2", "4", "8"], "Sizes of the model axis.")
_OUTPUT_JSON = flags.DEFINE_string("output_json", None, "Where to write the JSON results.")


def per_device_param_bytes(model: T5Model, model_size: int) -> tuple[int, int]:
    """(total float32 parameter bytes, bytes one device holds with `model_size`-way splitting)."""
    mesh = AbstractMesh((1, model_size), parallel.MESH_AXES, axis_types=(AxisType.Auto,) * 2)
    shapes = model.param_shapes()
    shardings = parallel.param_shardings(shapes, mesh)
    total = per_device = 0
    for leaf, sharding in zip(jax.tree.leaves(shapes), jax.tree.leaves(shardings), strict=True):
        itemsize = np.dtype(leaf.dtype).itemsize
        total += int(np.prod(leaf.shape)) * itemsize
        per_device += int(np.prod(sharding.shard_shape(leaf.shape))) * itemsize
    return total, per_device


def main(argv: list[str]) -> None:
    del argv
    sizes = [int(s) for s in _MODEL_SIZES.value]
    rows = []
    for name in _CONFIGS.value:
        model = T5Model(get_config(name))
        for size in sizes:
            total, per_device = per_device_param_bytes(model, size)
            rows.append(
                {
                    "config": name,
                    "model_size": size,
                    "total_mib": total / 2**20,
                    "per_device_mib": per_device / 2**20,
                    "fraction": per_device / total,
                }
            )
    lines = [
        "| config | model axis | params (MiB, fp32) | per device (MiB) | fraction |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['model_size']} | {r['total_mib']:.1f} | "
            f"{r['per_device_mib']:.1f} | {r['fraction']:.4f} |"
        )
    table = "\n".join(lines)
    print(table)  # a benchmark script's report, not library code
    if _OUTPUT_JSON.value:
        meta = {"date": datetime.datetime.now().isoformat(), "jax": jax.__version__}
        with open(_OUTPUT_JSON.value, "w") as f:
            json.dump({"meta": meta, "results": rows, "markdown": table}, f, indent=2)


if __name__ == "__main__":
    app.run(main)
