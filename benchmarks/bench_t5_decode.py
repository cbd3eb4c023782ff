r"""Per-token decode time of `T5Model.extend` (random weights), as a Markdown table and JSON.

For each config, batch size and block size K, one jitted function runs `--steps` greedy `extend`
calls of K tokens inside a `lax.fori_loop` (K=1 is a drafter step, K=gamma+1 a verifier block). The
first call (compilation + one run) is excluded; each of `--repeats` timed calls ends with
`block_until_ready`, and the median is reported. The encoder pass is outside the timed loop.

    JAX_PLATFORMS=cpu python benchmarks/bench_t5_decode.py \
        --output_json=/tmp/bench_t5_decode.json
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import platform
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from spec_cascade_jax.decoding import compiler
from spec_cascade_jax.models.t5 import T5Model, get_config

_CONFIGS = flags.DEFINE_list("configs", ["tiny", "t5_1_1_small"], "T5 presets (get_config).")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "8"], "Batch sizes.")
_BLOCK_SIZES = flags.DEFINE_list("block_sizes", ["1"], "Tokens per extend call (K).")
_STEPS = flags.DEFINE_integer("steps", 32, "extend calls per timed loop.")
_SOURCE_LEN = flags.DEFINE_integer("source_len", 64, "Encoder input length.")
_MAX_LEN = flags.DEFINE_integer(
    "max_len", 128, "Cache slots (raised to steps * K + 1 if smaller); attention reads them all."
)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repetitions (median reported).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
_OUTPUT_JSON = flags.DEFINE_string("output_json", None, "Where to write the JSON results.")


@compiler.jit(static_argnums=(0, 4, 5, 6))
def _decode_loop(model, params, encoded, first_tokens, steps: int, block: int, max_len: int):
    """`steps` greedy extend calls of `block` tokens; returns the last tokens (to sync on)."""
    batch = first_tokens.shape[0]
    cache = model.init_cache(batch, max_len)

    def body(i, carry):
        cache, tokens = carry
        positions = jnp.full((batch,), i * block, jnp.int32)
        logits, cache = model.extend(params, encoded, cache, tokens, positions)
        tokens = jnp.argmax(logits, axis=-1).astype(jnp.int32)  # [B, K]; feeds the next call
        return cache, tokens

    return jax.lax.fori_loop(0, steps, body, (cache, first_tokens))[1]


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _bench(config_name: str, batch: int, block: int) -> dict:
    config = get_config(config_name, dtype=_DTYPE.value)
    model = T5Model(config)
    params = model.init_params(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    inputs = jnp.asarray(
        rng.integers(3, config.real_vocab_size, size=(batch, _SOURCE_LEN.value)), jnp.int32
    )
    encoded = jax.block_until_ready(compiler.jit(model.encode)(params, inputs))
    first = jnp.zeros((batch, block), jnp.int32)
    max_len = max(_MAX_LEN.value, _STEPS.value * block + 1)
    run = functools.partial(
        _decode_loop, model, params, encoded, first, _STEPS.value, block, max_len
    )
    start = time.perf_counter()
    jax.block_until_ready(run())
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(_REPEATS.value):
        start = time.perf_counter()
        jax.block_until_ready(run())
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    ms_per_call = 1e3 * seconds / _STEPS.value
    num_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))
    return {
        "config": config_name,
        "params_m": round(num_params / 1e6, 2),
        "dtype": _DTYPE.value,
        "batch": batch,
        "block": block,
        "steps": _STEPS.value,
        "source_len": _SOURCE_LEN.value,
        "max_len": max_len,
        "ms_per_call": ms_per_call,
        "ms_per_token_position": ms_per_call / block,
        "tokens_per_s": batch * block * _STEPS.value / seconds,
        "first_call_s": compile_s,
        "times_s": times,
    }


def _markdown(rows: list[dict]) -> str:
    lines = [
        "| config | params (M) | dtype | batch | K | ms / extend call | ms / position | tokens/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['params_m']} | {r['dtype']} | {r['batch']} | {r['block']} | "
            f"{r['ms_per_call']:.3f} | {r['ms_per_token_position']:.3f} | {r['tokens_per_s']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    del argv
    rows = []
    for config_name in _CONFIGS.value:
        for batch in map(int, _BATCH_SIZES.value):
            for block in map(int, _BLOCK_SIZES.value):
                logging.info("benchmarking %s batch=%d K=%d", config_name, batch, block)
                rows.append(_bench(config_name, batch, block))
    table = _markdown(rows)
    print(table)  # a benchmark script's output, not library code
    if _OUTPUT_JSON.value:
        meta = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "jax_version": jax.__version__,
            "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(),
            "platform": platform.platform(),
            "commit": _git_commit(),
        }
        with open(_OUTPUT_JSON.value, "w") as f:
            json.dump({"meta": meta, "results": rows, "markdown": table}, f, indent=2)
        logging.info("wrote %s", _OUTPUT_JSON.value)


if __name__ == "__main__":
    app.run(main)
