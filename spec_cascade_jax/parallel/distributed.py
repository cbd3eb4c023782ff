"""Multi-process (multi-host) runs: start-up, per-host data shards, gathering results to process 0.

The CLI calls `maybe_initialize()` first thing, before anything touches a JAX device:

    python -m spec_cascade_jax.main --coordinator_address=10.0.0.2:8476 --num_processes=4 \
        --process_id=$I ...                      # any cluster: one process per host
    python -m spec_cascade_jax.main --multihost ...   # Cloud TPU slice: JAX detects the rest

Each process then reads its own examples (`shard_info()` for `tasks.get_eval_dataset`), decodes
them with `sharding.sharded_generate` on the global mesh, and `gather_to_host0` /
`gather_objects_to_host0` bring the results to process 0, the only one that writes
(`is_writer()`). With one process every helper here is a cheap no-op.

Settings come from the arguments, else the absl flags below (when parsed), else the environment:
`JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`, `SPEC_CASCADE_MULTIHOST=1`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from absl import flags, logging
from jax.experimental import multihost_utils

_COORDINATOR = flags.DEFINE_string(
    "coordinator_address",
    None,
    "host:port of process 0's coordination service for multi-process runs "
    "(env JAX_COORDINATOR_ADDRESS).",
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Number of processes of a multi-process run (env JAX_NUM_PROCESSES)."
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "This process's index in [0, num_processes) (env JAX_PROCESS_ID)."
)
_MULTIHOST = flags.DEFINE_bool(
    "multihost",
    False,
    "Call jax.distributed.initialize() and let JAX detect the cluster (Cloud TPU pod slices, "
    "SLURM, ...); env SPEC_CASCADE_MULTIHOST=1.",
)

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
ENV_MULTIHOST = "SPEC_CASCADE_MULTIHOST"


def _flag(holder: flags.FlagHolder) -> Any:
    return holder.value if flags.FLAGS.is_parsed() else None


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


def resolve_settings(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    multihost: bool | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The distributed settings after arguments > parsed flags > environment; validated.

    Returns a dict with keys `coordinator_address`, `num_processes`, `process_id`, `multihost`.

    Raises:
      ValueError: only some of coordinator/num_processes/process_id are set (without multihost),
        or a value is malformed; the message names it.
    """
    env = os.environ if env is None else env
    coordinator_address = coordinator_address or _flag(_COORDINATOR) or env.get(ENV_COORDINATOR)
    if num_processes is None:
        num_processes = _flag(_NUM_PROCESSES)
    if num_processes is None:
        num_processes = _env_int(env, ENV_NUM_PROCESSES)
    if process_id is None:
        process_id = _flag(_PROCESS_ID)
    if process_id is None:
        process_id = _env_int(env, ENV_PROCESS_ID)
    if multihost is None:
        multihost = bool(_flag(_MULTIHOST)) or env.get(ENV_MULTIHOST, "") in ("1", "true", "True")
    given = {
        "coordinator_address": coordinator_address,
        "num_processes": num_processes,
        "process_id": process_id,
    }
    missing = [k for k, v in given.items() if v is None]
    if not multihost and 0 < len(missing) < 3:
        raise ValueError(
            f"multi-process run needs coordinator_address, num_processes and process_id; "
            f"missing {', '.join(missing)} (or pass --multihost to let JAX detect them)"
        )
    if coordinator_address is not None:
        host, sep, port = str(coordinator_address).rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"coordinator_address must be host:port, got {coordinator_address!r}")
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes!r}")
    if process_id is not None and not (
        process_id >= 0 and (num_processes is None or process_id < num_processes)
    ):
        raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id!r}")
    return {**given, "multihost": bool(multihost)}


def maybe_initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    multihost: bool | None = None,
    env: Mapping[str, str] | None = None,
) -> bool:
    """Calls `jax.distributed.initialize` when a multi-process run is configured.

    Must run before anything touches a JAX device. Returns True when JAX is (now) in
    multi-process mode, False for a plain single-process run (nothing configured).
    """
    if jax.distributed.is_initialized():
        return True
    settings = resolve_settings(coordinator_address, num_processes, process_id, multihost, env)
    configured = settings["coordinator_address"] is not None or settings["multihost"]
    if not configured:
        return False
    kwargs = {k: settings[k] for k in ("coordinator_address", "num_processes", "process_id")}
    try:
        jax.distributed.initialize(**kwargs)
    except RuntimeError as e:
        raise RuntimeError(
            f"jax.distributed.initialize({kwargs}) failed: {e} (it must run before any JAX "
            "computation or device query)"
        ) from e
    logging.info(
        "jax.distributed: process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return True


def is_writer() -> bool:
    """True on the one process that writes reports and checkpoints' metadata (process 0)."""
    return jax.process_index() == 0


def shard_info() -> Any:
    """This process's `seqio.ShardInfo` for `tasks.get_eval_dataset(..., shard_info=...)`."""
    import seqio

    return seqio.ShardInfo(index=jax.process_index(), num_shards=jax.process_count())


def sync(name: str) -> None:
    """A barrier across processes (no-op with one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def allgather_ints(values) -> np.ndarray:
    """Every process's int `values` [K], stacked in process order: int32 [processes, K]."""
    local = np.asarray(values, np.int32).reshape(-1)
    if jax.process_count() == 1:
        return local[None]
    return np.asarray(multihost_utils.process_allgather(local)).reshape(jax.process_count(), -1)


def gather_to_host0(tree: Any) -> Any:
    """Concatenates every process's rows of `tree` in process order; None except on process 0.

    Args:
      tree: a pytree of host-addressable arrays that share their leading (row) dimension; the
        number of rows may differ between processes, the other dimensions may not.
    """
    leaves, treedef = jax.tree.flatten(tree)
    leaves = [np.asarray(x) for x in leaves]
    rows = {x.shape[0] for x in leaves if x.ndim}
    if len(rows) > 1 or any(x.ndim == 0 for x in leaves):
        raise ValueError(
            f"gather_to_host0 needs leaves with one common leading dimension, got shapes "
            f"{[x.shape for x in leaves]}"
        )
    if jax.process_count() == 1:
        return jax.tree.unflatten(treedef, leaves)
    n = rows.pop() if rows else 0
    sizes = allgather_ints([n])[:, 0]
    top = max(int(sizes.max()), 1)
    padded = [np.pad(x, [(0, top - n)] + [(0, 0)] * (x.ndim - 1)) for x in leaves]
    stacked = multihost_utils.process_allgather(padded)  # each [processes, top, ...]
    if not is_writer():
        return None
    out = [
        np.concatenate([np.asarray(s)[p, : sizes[p]] for p in range(len(sizes))], axis=0)
        for s in stacked
    ]
    return jax.tree.unflatten(treedef, out)


def gather_objects_to_host0(items: list[Any]) -> list[Any] | None:
    """Concatenates every process's list of JSON-serialisable `items` in process order.

    Returns the full list on process 0 and None on the others (one process: `items` itself).
    """
    if jax.process_count() == 1:
        return list(items)
    payload = np.frombuffer(json.dumps(list(items)).encode("utf-8"), np.uint8)
    sizes = allgather_ints([payload.size])[:, 0]  # every process takes part in both gathers
    gathered = gather_to_host0({"bytes": payload})
    if gathered is None:
        return None
    # Each process's payload is one JSON list; split at the gathered sizes and concatenate.
    raw, out, start = gathered["bytes"].tobytes(), [], 0
    for size in sizes:
        out += json.loads(raw[start : start + int(size)].decode("utf-8"))
        start += int(size)
    return out
