"""One process of a two-process sharded decode on this machine (4 fake CPU devices each).

Run by `test_parallel_multidevice.py`, twice, with a free port:

    XLA_FLAGS=--xla_force_host_platform_device_count=4 JAX_PLATFORMS=cpu \
        python tests/parallel/two_process_checks.py --process_id=0 --port=P --out=/tmp/r.json &
    ... --process_id=1 ...

Each process reads its round-robin shard of the 6 example rows (`distributed.shard_info()`),
decodes it with `sharded_generate` on the global (4, 2) mesh of 8 devices, and the results are
gathered to process 0, which alone writes them, together with a plain single-device `generate`
of all rows for comparison. Progress lines go to stdout so a hang can be located.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--process_id", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    from spec_cascade_jax.parallel import distributed

    # Before anything touches a device.
    assert distributed.maybe_initialize(f"127.0.0.1:{args.port}", 2, args.process_id)
    print(f"process {args.process_id}: initialized", flush=True)

    import jax
    import multidevice_checks as checks
    import numpy as np

    from spec_cascade_jax import parallel
    from spec_cascade_jax.decoding import generate

    assert jax.process_count() == 2 and jax.device_count() == 8, (jax.device_count(),)
    info = distributed.shard_info()
    mesh = parallel.make_mesh(4, 2)
    d_params, v_params = checks.params_pair()
    inputs, ids = checks.decode_inputs(), checks.EXAMPLE_IDS
    mine = np.arange(len(ids)) % info.num_shards == info.index
    kw = {**checks.METHOD_KWARGS["spec_token_v3"], **checks.COMMON, "rng": jax.random.PRNGKey(0)}
    out = parallel.sharded_generate(
        mesh,
        checks.DRAFTER,
        d_params,
        checks.VERIFIER,
        v_params,
        inputs[mine],
        example_ids=ids[mine],
        **kw,
    )
    print(f"process {args.process_id}: decoded {int(mine.sum())} rows", flush=True)
    rows = {"ids": ids[mine], "tokens": out.tokens, "lengths": out.lengths, **out.stats.as_dict()}
    gathered = distributed.gather_to_host0(rows)
    notes = distributed.gather_objects_to_host0(
        [{"process": args.process_id, "id": int(i)} for i in ids[mine]]
    )
    print(f"process {args.process_id}: gathered", flush=True)
    if not distributed.is_writer():
        assert gathered is None and notes is None
        return
    ref = jax.device_get(
        generate(checks.DRAFTER, d_params, checks.VERIFIER, v_params, inputs, example_ids=ids, **kw)
    )
    result = {
        "shard_info": [info.index, info.num_shards],
        "local_rows": int(mine.sum()),
        "gathered": {k: np.asarray(v).tolist() for k, v in gathered.items()},
        "notes": notes,
        "single": checks.as_json(ref),
        "ids": ids.tolist(),
    }
    with open(args.out, "w") as f:
        json.dump(result, f)
    print("process 0: wrote results", flush=True)


if __name__ == "__main__":
    main()
