"""Computes sharded-vs-single-device results on 8 fake CPU devices; writes them as JSON.

Run by `test_parallel_multidevice.py` in a subprocess (JAX must see the 8 devices from its first
import, which other test modules prevent in the pytest process):

    XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \
        python tests/parallel/multidevice_checks.py --out=/tmp/r.json \
        --decode=8x1:spec_token_v3,2x4:spec_decode --train=8x1,4x2,2x4 --layout

The assertions live in the test module; this script only computes.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from spec_cascade_jax import parallel  # noqa: E402
from spec_cascade_jax.decoding import generate  # noqa: E402
from spec_cascade_jax.models.t5 import config as t5_config  # noqa: E402
from spec_cascade_jax.models.t5.network import T5Model  # noqa: E402

# Tiny pair with 4 heads, so heads split evenly over model = 2 and 4; one layer each keeps the
# XLA compile (the dominant cost here) short.
VERIFIER = T5Model(
    t5_config.tiny(
        vocab_size=64, real_vocab_size=60, num_heads=4, num_encoder_layers=1, num_decoder_layers=1
    )
)
DRAFTER = T5Model(
    t5_config.tiny(
        vocab_size=64,
        real_vocab_size=60,
        d_model=16,
        d_ff=32,
        num_heads=4,
        d_kv=4,
        num_encoder_layers=1,
        num_decoder_layers=1,
    )
)
METHOD_KWARGS = {
    "spec_token_v3": dict(method="spec_token_v3", alpha=0.3, temperature=1.0),
    "spec_decode": dict(method="spec_decode", alpha=0.0, temperature=0.0),
}
COMMON = dict(gamma=3, max_decode_len=10)
EXAMPLE_IDS = np.arange(100, 106, dtype=np.int32)  # 6 rows: padded to 8 on (8,1) and (4,2)


def decode_inputs() -> np.ndarray:
    rs = np.random.RandomState(0)
    inputs = np.zeros((len(EXAMPLE_IDS), 7), np.int32)
    for b in range(len(inputs)):
        n = rs.randint(1, 7)
        inputs[b, :n] = rs.randint(3, 60, n)
        inputs[b, n] = 1
    return inputs


def parse_mesh(text: str) -> tuple[int, int]:
    data, model = text.split("x")
    return int(data), int(model)


def as_json(out) -> dict:
    return {
        "tokens": np.asarray(out.tokens).tolist(),
        "lengths": np.asarray(out.lengths).tolist(),
        "stats": {k: np.asarray(v).tolist() for k, v in out.stats.as_dict().items()},
    }


def params_pair():
    return (
        DRAFTER.init_params(jax.random.PRNGKey(2)),
        VERIFIER.init_params(jax.random.PRNGKey(1)),
    )


def run_decode(cases: list[str]) -> dict:
    d_params, v_params = params_pair()
    inputs = decode_inputs()
    rng = jax.random.PRNGKey(0)
    result: dict = {"single": {}, "sharded": {}}
    for method in sorted({c.split(":")[1] for c in cases}):
        kw = {**METHOD_KWARGS[method], **COMMON}
        out = generate(
            DRAFTER, d_params, VERIFIER, v_params, inputs, rng=rng, example_ids=EXAMPLE_IDS, **kw
        )
        result["single"][method] = as_json(jax.device_get(out))
    for case in cases:
        mesh_text, method = case.split(":")
        mesh = parallel.make_mesh(*parse_mesh(mesh_text))
        kw = {**METHOD_KWARGS[method], **COMMON}
        out = parallel.sharded_generate(
            mesh,
            DRAFTER,
            d_params,
            VERIFIER,
            v_params,
            inputs,
            rng=rng,
            example_ids=EXAMPLE_IDS,
            shard_drafter=mesh_text == "2x4",
            **kw,
        )
        result["sharded"][case] = as_json(out)
    return result


def run_train(meshes: list[str], num_steps: int = 3) -> dict:
    from spec_cascade_jax.training import trainer

    opt = trainer.OptimizerConfig(name="adafactor", learning_rate=1e-2)
    init = jax.tree.map(np.asarray, VERIFIER.init_params(jax.random.PRNGKey(3)))
    rs = np.random.RandomState(1)
    batches = []
    for _ in range(num_steps):
        inputs = rs.randint(3, 60, (8, 7)).astype(np.int32)
        targets = rs.randint(3, 60, (8, 5)).astype(np.int32)
        inputs[:, -1], targets[:, -1] = 1, 1
        targets[::3, 3:] = 0  # some padding
        targets[::3, 2] = 1
        batches.append({"inputs": inputs, "targets": targets})

    def train(mesh):
        if mesh is None:
            params = jax.tree.map(jnp.asarray, init)
            put = jnp.asarray
        else:
            params = parallel.shard_params(init, mesh)
            rows = NamedSharding(mesh, P(parallel.DATA_AXIS))
            put = lambda x: jax.device_put(x, rows)  # noqa: E731
        opt_state = trainer._init_opt_state(params, opt=opt)
        losses = []
        for step, batch in enumerate(batches):
            params, opt_state, metrics = trainer._train_step(
                params,
                opt_state,
                {k: put(v) for k, v in batch.items()},
                jax.random.fold_in(jax.random.PRNGKey(4), step),
                model=VERIFIER,
                opt=opt,
                label_smoothing=0.0,
                z_loss=1e-4,
            )
            losses.append(float(metrics["loss"]))
        return params, losses

    ref, ref_losses = train(None)
    ref_flat = dict(jax.tree_util.tree_flatten_with_path(ref)[0])
    init_flat = dict(jax.tree_util.tree_flatten_with_path(init)[0])
    out: dict = {"losses": {"single": ref_losses}, "max_abs_diff": {}, "moved": {}, "specs": {}}
    out["moved"]["single"] = max(
        float(np.max(np.abs(np.asarray(v) - init_flat[k]))) for k, v in ref_flat.items()
    )
    for text in meshes:
        mesh = parallel.make_mesh(*parse_mesh(text))
        params, losses = train(mesh)
        flat = dict(jax.tree_util.tree_flatten_with_path(params)[0])
        out["losses"][text] = losses
        out["max_abs_diff"][text] = max(
            float(np.max(np.abs(np.asarray(v) - np.asarray(ref_flat[k])))) for k, v in flat.items()
        )
        out["specs"][text] = {
            jax.tree_util.keystr(k): [a for a in v.sharding.spec] for k, v in flat.items()
        }
    return out


def _zeros_like(shapes):
    return jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)


def run_layout() -> dict:
    """Shardings and per-device bytes of T5.1.1-small (abstract) and of a reduced-vocab copy."""
    small = T5Model(t5_config.t5_1_1_small())
    out: dict = {"abstract": {}, "real": {}, "cache": {}}
    for text in ("8x1", "4x2", "2x4", "1x8"):
        mesh = parallel.make_mesh(*parse_mesh(text))
        abstract = parallel.abstract_sharded_params(small, mesh)
        flat = jax.tree_util.tree_flatten_with_path(abstract)[0]
        out["abstract"][text] = {
            "specs": {jax.tree_util.keystr(k): list(v.sharding.spec) for k, v in flat},
            "bytes": parallel.per_device_bytes(abstract),
            "total": int(sum(np.prod(v.shape) * 4 for _, v in flat)),
        }
    # Real (zero) arrays, created directly in their shards; a reduced vocabulary and depth keep
    # them small (widths, heads and d_ff are T5.1.1-small's).
    reduced = T5Model(
        t5_config.t5_1_1_small(
            vocab_size=1024, real_vocab_size=1000, num_encoder_layers=2, num_decoder_layers=2
        )
    )
    for text in ("8x1", "2x4"):
        mesh = parallel.make_mesh(*parse_mesh(text))
        shapes = reduced.param_shapes()
        shardings = parallel.param_shardings(shapes, mesh)
        zeros = jax.jit(functools.partial(_zeros_like, shapes), out_shardings=shardings)()
        out["real"][text] = {
            "bytes": parallel.per_device_bytes(zeros),
            "abstract_bytes": parallel.per_device_bytes(
                parallel.abstract_sharded_params(reduced, mesh)
            ),
            "total": int(sum(np.prod(x.shape) * 4 for x in jax.tree.leaves(shapes))),
        }
        del zeros
    # Caches and encoder outputs inside jit follow the wrapper's constraints.
    mesh = parallel.make_mesh(2, 4)
    for name, rules in (("model", parallel.DEFAULT_RULES), ("data_only", None)):
        rules = parallel.data_parallel_rules() if rules is None else rules
        wrapped = parallel.ShardedDecodeModel(VERIFIER, mesh, rules)
        cache = jax.jit(lambda w=wrapped: w.init_cache(6, 12))()
        v_params = parallel.shard_params(VERIFIER.init_params(jax.random.PRNGKey(1)), mesh, rules)
        encoded = jax.jit(wrapped.encode)(v_params, jnp.ones((6, 5), jnp.int32))
        out["cache"][name] = {
            "key_spec": list(cache.keys[0].sharding.spec),
            "cross_key_spec": list(encoded.cross_keys[0].sharding.spec),
            "key_shape": list(cache.keys[0].shape),
            "key_shard_shape": list(cache.keys[0].addressable_shards[0].data.shape),
            "cross_key_shape": list(encoded.cross_keys[0].shape),
            "cross_key_shard_shape": list(encoded.cross_keys[0].addressable_shards[0].data.shape),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--decode", default="")
    parser.add_argument("--train", default="")
    parser.add_argument("--layout", action="store_true")
    args = parser.parse_args()
    if jax.device_count() != 8:
        raise SystemExit(f"expected 8 devices (XLA_FLAGS), got {jax.device_count()}")
    result = {}
    if args.decode:
        result["decode"] = run_decode(args.decode.split(","))
    if args.train:
        result["train"] = run_train(args.train.split(","))
    if args.layout:
        result["layout"] = run_layout()
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
