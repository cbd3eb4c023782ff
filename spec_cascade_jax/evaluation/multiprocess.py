"""Multi-process helpers of the gin jobs: gather rows to process 0, broadcast from it.

Every function here is collective: with several processes each one must call it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def gather_example_texts(examples: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
    """Every process's examples' index and texts on process 0, sorted by index; else None."""
    from spec_cascade_jax.parallel import distributed

    rows = distributed.gather_objects_to_host0(
        [
            [int(ex["index"]), ex["inputs_pretokenized"], ex["targets_pretokenized"]]
            for ex in examples
        ]
    )
    if rows is None:
        return None
    return [
        {"index": i, "inputs_pretokenized": x, "targets_pretokenized": y}
        for i, x, y in sorted(rows, key=lambda row: row[0])
    ]


def gather_rows(
    examples: Sequence[Mapping[str, Any]],
    outputs: Sequence[np.ndarray],
    row_stats: Mapping[str, np.ndarray],
) -> tuple[list[np.ndarray] | None, dict[str, np.ndarray] | None]:
    """Every process's output ids and per-row stats on process 0, sorted by example index.

    Returns (None, None) on the other processes. Every process must call it (collective).
    """
    from spec_cascade_jax.parallel import distributed

    rows = distributed.gather_objects_to_host0(
        [
            [int(ex["index"]), [int(t) for t in ids]]
            for ex, ids in zip(examples, outputs, strict=True)
        ]
    )
    stats = distributed.gather_to_host0({k: np.asarray(v) for k, v in row_stats.items()})
    if rows is None:
        return None, None
    order = np.argsort([row[0] for row in rows], kind="stable")
    return (
        [np.asarray(rows[i][1], np.int32) for i in order],
        {k: np.asarray(v)[order] for k, v in stats.items()},
    )


def broadcast_from_writer(value: Any) -> Any:
    """Process 0's JSON-able `value` on every process (the others pass anything)."""
    from jax.experimental import multihost_utils

    from spec_cascade_jax.parallel import distributed

    payload = np.zeros(0, np.uint8)
    if distributed.is_writer():
        payload = np.frombuffer(json.dumps(value).encode("utf-8"), np.uint8)
    size = int(multihost_utils.broadcast_one_to_all(np.int32(payload.size)))
    buffer = np.zeros(size, np.uint8)
    buffer[: payload.size] = payload
    data = np.asarray(multihost_utils.broadcast_one_to_all(buffer), np.uint8)
    return json.loads(data.tobytes().decode("utf-8"))
