"""Scale-out: device meshes, logical-axis sharding, sharded decoding and multi-process helpers."""

from spec_cascade_jax.parallel.distributed import (
    gather_objects_to_host0,
    gather_to_host0,
    is_writer,
    maybe_initialize,
    shard_info,
    sync,
)
from spec_cascade_jax.parallel.mesh import (
    DATA_AXIS,
    MESH_AXES,
    MODEL_AXIS,
    build_mesh,
    make_mesh,
    process_data_indices,
)
from spec_cascade_jax.parallel.sharding import (
    DEFAULT_RULES,
    LogicalAxisRules,
    ShardedDecodeModel,
    abstract_sharded_params,
    data_parallel_rules,
    logical_to_mesh_axes,
    named_sharding,
    param_shardings,
    per_device_bytes,
    replicate,
    shard_params,
    sharded_generate,
)

__all__ = [
    "DATA_AXIS",
    "DEFAULT_RULES",
    "MESH_AXES",
    "MODEL_AXIS",
    "LogicalAxisRules",
    "ShardedDecodeModel",
    "abstract_sharded_params",
    "build_mesh",
    "data_parallel_rules",
    "gather_objects_to_host0",
    "gather_to_host0",
    "is_writer",
    "logical_to_mesh_axes",
    "make_mesh",
    "maybe_initialize",
    "named_sharding",
    "param_shardings",
    "per_device_bytes",
    "process_data_indices",
    "replicate",
    "shard_info",
    "shard_params",
    "sharded_generate",
    "sync",
]
