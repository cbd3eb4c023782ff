"""Device meshes with the axes `("data", "model")`, on real accelerators or fake CPU devices.

    mesh = make_mesh(data=4, model=2)          # 8 devices: batch split 4 ways, weights 2 ways
    mesh = build_mesh()                        # from gin: build_mesh.model_parallelism = 2

`data` splits the batch (each data index decodes its own rows); `model` splits weights, attention
heads and caches (`sharding.DEFAULT_RULES`). Axis types are `Auto`: `jax.make_mesh` would default to
`Explicit`, which makes `shard_map`/`jit` reject inputs that carry no sharding.

Device order. The model axis is the inner (fastest) axis. With several processes the devices are
ordered by process, so one process owns whole rows of the mesh (all model shards of its data
indices): each host then feeds and reads only its own examples, and the model-parallel collectives
stay inside one host. A single-process TPU mesh uses `mesh_utils.create_device_mesh` to follow the
physical topology.
"""

from __future__ import annotations

from collections.abc import Sequence

import gin
import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh

DATA_AXIS = "data"
MODEL_AXIS = "model"
MESH_AXES = (DATA_AXIS, MODEL_AXIS)


def _check_size(name: str, value: int, allow_auto: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < 1 and not (allow_auto and value == -1):
        extra = " or -1 (all remaining devices)" if allow_auto else ""
        raise ValueError(f"{name} must be >= 1{extra}, got {value!r}")


def make_mesh(
    data: int = -1, model: int = 1, *, devices: Sequence[jax.Device] | None = None
) -> Mesh:
    """A `Mesh` of shape `(data, model)` with axes `("data", "model")` and Auto axis types.

    Args:
      data: data-parallel size; -1 takes `len(devices) // model`.
      model: model-parallel size (weights, heads and caches are split this many ways).
      devices: the devices to use (default: all of `jax.devices()`, every process's).

    Raises:
      ValueError: a size is not a positive int, or `data * model` is not the number of devices,
        or, with several processes, `model` does not divide the devices of each process.
    """
    _check_size("data", data, allow_auto=True)
    _check_size("model", model, allow_auto=False)
    default_devices = devices is None
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("make_mesh: no devices given")
    n = len(devices)
    if data == -1:
        if n % model:
            raise ValueError(f"model={model} does not divide the {n} devices")
        data = n // model
    if data * model != n:
        raise ValueError(f"mesh (data={data}, model={model}) needs {data * model} devices, got {n}")
    processes = {d.process_index for d in devices}
    if len(processes) > 1:
        per_process = {p: sum(d.process_index == p for d in devices) for p in processes}
        bad = {p: k for p, k in per_process.items() if k % model}
        if bad:
            raise ValueError(
                f"model={model} must divide each process's device count so that a process owns "
                f"whole mesh rows; devices per process: {per_process}"
            )
        ordered = sorted(devices, key=lambda d: (d.process_index, d.id))
        grid = np.array(ordered, dtype=object).reshape(data, model)
    elif default_devices and devices[0].platform == "tpu":
        grid = mesh_utils.create_device_mesh((data, model), devices)
    else:
        grid = np.array(devices, dtype=object).reshape(data, model)
    return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto, AxisType.Auto))


@gin.configurable
def build_mesh(data_parallelism: int = -1, model_parallelism: int = 1) -> Mesh:
    """The run's mesh over all devices of all processes (gin-configurable edge of `make_mesh`).

    Args:
      data_parallelism: rows of the mesh (batch split); -1 = all devices / model_parallelism.
      model_parallelism: columns of the mesh (weights and heads split); 1 = pure data parallel.
    """
    return make_mesh(data_parallelism, model_parallelism)


def process_data_indices(mesh: Mesh) -> list[int]:
    """The data-axis indices whose devices all belong to this process, in mesh order.

    Raises ValueError if a data index has devices in more than one process (its rows could not be
    fed by one host).
    """
    grid = np.asarray(mesh.devices)
    if grid.ndim != 2 or tuple(mesh.axis_names) != MESH_AXES:
        raise ValueError(f"expected a mesh with axes {MESH_AXES}, got {mesh.axis_names}")
    me = jax.process_index()
    mine = []
    for i, row in enumerate(grid):
        owners = {d.process_index for d in row}
        if len(owners) > 1:
            raise ValueError(
                f"data index {i} of the mesh spans processes {sorted(owners)}; build the mesh "
                "with make_mesh so that each process owns whole rows"
            )
        if owners == {me}:
            mine.append(i)
    return mine
