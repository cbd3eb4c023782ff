r"""How decode time, memory and compilation scale (issue "Performance", item 4).

Four sweeps around a base point (batch 1, γ 5, 64 input → 64 output tokens), each varying one
axis: batch size, γ, input length, output length. At every point, for verifier-only and
`spec_decode` (γ only for the latter), it reports:

* time per call (mean ± std over `--trials`, compilation excluded) and tokens/s;
* lowering and compile time of the point's program (every shape is a new program);
* memory, two ways: (1) XLA's static buffer assignment of the compiled program
  (`compiled.memory_analysis()`: arguments incl. both models' parameters, outputs, and the peak
  of temporaries, i.e. caches and activations), and (2) the process's peak resident set size
  during one timed call minus the RSS just before it (Linux VmHWM after resetting it through
  /proc/self/clear_refs). `jax.Device.memory_stats()` is None on CPU, hence these two.

Then: compile time of every method at the base point, and the proof that an α sweep compiles once:
`compiled_variants()` before and after calling `generate` over a whole α grid per method.

Each point is compiled with `jax.jit(...).lower(...).compile()` around the public `generate` (a
jit inside a jit is inlined; α and T become constants) so lowering and compiling can be timed
apart and the compiled object inspected; the α-sweep proof calls `generate` itself.

    JAX_PLATFORMS=cpu python benchmarks/bench_scaling.py --out_dir=/tmp/bench
    JAX_PLATFORMS=cpu python benchmarks/bench_scaling.py --tiny --out_dir=/tmp/bench_tiny

Smoke mode (`--tiny`): tiny pair, spec_decode at the base point (B 1, γ 3, 8 → 8), a 2-value α
sweep of spec_token_v3, 2 trials.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import common
import jax
import numpy as np
from absl import logging

from spec_cascade_jax.decoding import (
    METHODS,
    SPECULATIVE_METHODS,
    compiled_variants,
    generate,
)


def parse_args(argv: list[str] | None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    arg = parser.add_argument
    arg("--pair", default="perturbed", choices=common.PAIR_NAMES, help="Drafter/verifier pair.")
    common.add_pair_args(parser)
    arg("--batches", type=common.int_list, default=[1, 4, 16, 32], help="Batch sweep.")
    arg("--gammas", type=common.int_list, default=[1, 3, 5, 8], help="γ sweep (spec_decode).")
    arg("--input_lens", type=common.int_list, default=[16, 64, 256, 512], help="Input sweep.")
    arg("--output_lens", type=common.int_list, default=[16, 64, 128, 256], help="Output sweep.")
    arg(
        "--base",
        type=common.int_list,
        default=[1, 5, 64, 64],
        help="Base point: batch, γ, input length, output length.",
    )
    arg(
        "--sweep_methods",
        type=common.str_list,
        default=["verifier", "spec_decode"],
        help="Methods of the four sweeps (γ only for spec_decode).",
    )
    arg(
        "--compile_methods",
        type=common.str_list,
        default=list(METHODS),
        help="Methods whose compile time is measured at the base point.",
    )
    arg(
        "--alpha_methods",
        type=common.str_list,
        default=["lossy", "spec_chow", "spec_opt", "spec_token_v3", "token_cascade", "seq_cascade"],
        help="Methods whose α sweep must not recompile.",
    )
    arg("--alphas", type=common.float_list, default=[0.0, 0.1, 0.3, 0.5, 0.7, 0.9], help="α grid.")
    arg("--temperature", type=float, default=1.0, help="Sampling temperature.")
    common.add_common_args(parser, "/tmp/bench_scaling")
    cfg = vars(parser.parse_args(argv))
    if len(cfg["base"]) != 4:
        raise ValueError(f"--base needs 4 values (batch, γ, input, output), got {cfg['base']}")
    for m in cfg["sweep_methods"] + cfg["compile_methods"] + cfg["alpha_methods"]:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; expected one of {', '.join(METHODS)}")
    if cfg.pop("tiny"):
        cfg.update(
            pair="tiny",
            batches=[1],
            gammas=[],
            input_lens=[],
            output_lens=[],
            base=[1, 3, 8, 8],
            sweep_methods=["spec_decode"],
            compile_methods=["spec_decode"],
            alpha_methods=["spec_token_v3"],
            alphas=[0.1, 0.5],
            trials=2,
        )
    return cfg


MiB = 1024.0 * 1024.0


def _compile(pair: common.Pair, method: str, shape: tuple[int, int, int, int], temperature: float):
    """`common.compile_generate` at a (batch, γ, input, output) point; α = 0.3 for α-methods."""
    batch, gamma, in_len, out_len = shape
    alpha = 0.3 if method not in ("drafter", "verifier", "spec_decode") else 0.0
    return common.compile_generate(
        pair,
        method,
        batch=batch,
        gamma=gamma,
        input_len=in_len,
        max_decode_len=out_len,
        temperature=temperature,
        alpha=alpha,
    )


def _memory_analysis(compiled) -> dict[str, float | None]:
    try:
        mem = compiled.memory_analysis()
    except Exception as err:  # backends without the analysis: report none
        logging.warning("memory_analysis unavailable: %s", err)
        return {"arguments_mib": None, "outputs_mib": None, "temp_mib": None}
    return {
        "arguments_mib": mem.argument_size_in_bytes / MiB,
        "outputs_mib": mem.output_size_in_bytes / MiB,
        "temp_mib": mem.temp_size_in_bytes / MiB,
    }


# float32 [B, K, V] arrays a speculative round holds at once: logits, q_raw, q_w, p_raw, p_w, π.
PROB_BUFFERS = 6


def model_memory_mib(pair: common.Pair, method: str, batch, gamma, in_len, out_len) -> float:
    """The issue's yardstick for one decode, in MiB: the used models' parameters + their caches
    (self-attention K/V `[B, H, L + γ + 1, D]` and cross-attention K/V `[B, H, S, D]` per decoder
    layer, float32) + `PROB_BUFFERS` float32 probability arrays `[B, K, V]` (K = γ + 1 for
    speculative methods, else 1). XLA drops the parameters of a model the method never calls."""
    drafter = (pair.drafter, pair.drafter_params)
    verifier = (pair.verifier, pair.verifier_params)
    used = {"drafter": [drafter], "verifier": [verifier]}.get(method, [drafter, verifier])
    speculative = method in SPECULATIVE_METHODS
    max_len = out_len + (gamma + 1 if speculative else 1)
    total = 0
    for model, params in used:
        total += sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(params))
        c = model.config
        total += 4 * 2 * c.num_decoder_layers * batch * c.num_heads * c.d_kv * (max_len + in_len)
    total += 4 * PROB_BUFFERS * batch * (gamma + 1 if speculative else 1) * used[-1][0].vocab_size
    return total / MiB


def _point(pair: common.Pair, method: str, sweep: str, batch, gamma, in_len, out_len, cfg):
    logging.info("%s %s B=%d γ=%d in=%d out=%d", sweep, method, batch, gamma, in_len, out_len)
    shape = (batch, gamma, in_len, out_len)
    compiled, args, compile_times = _compile(pair, method, shape, cfg["temperature"])
    timing, out = common.time_call(lambda: compiled(*args), trials=cfg["trials"])
    n_tok = int(np.sum(out.lengths))
    # Peak RSS over one more (untimed) call.
    reset_ok = common.reset_peak_rss()  # VmHWM := current RSS
    rss_before = common.current_rss_bytes()
    jax.device_get(compiled(*args))
    rss_peak = common.peak_rss_bytes() if reset_ok else None
    tps = common.rate(timing, n_tok)
    return {
        "sweep": sweep,
        "method": method,
        "batch": batch,
        "gamma": gamma,
        "input_len": in_len,
        "output_len": out_len,
        "latency": timing.to_dict(),
        "tokens": n_tok,
        "tokens_per_s": tps,
        **compile_times,
        "xla_memory": _memory_analysis(compiled),
        "model_mib": model_memory_mib(pair, method, batch, gamma, in_len, out_len),
        "rss_peak_delta_mib": None if rss_peak is None else (rss_peak - rss_before) / MiB,
    }


def _alpha_sweep(pair: common.Pair, cfg: dict) -> list[dict]:
    """compiled_variants() before/after an α grid, per method (one new program per method)."""
    batch, gamma, in_len, out_len = cfg["base"]
    inputs = common.random_inputs(batch, in_len, pair.verifier.real_vocab_size, 0)
    rows = []
    for method in cfg["alpha_methods"]:
        before = compiled_variants()
        for alpha in cfg["alphas"]:
            out = generate(
                pair.drafter,
                pair.drafter_params,
                pair.verifier,
                pair.verifier_params,
                inputs,
                method=method,
                alpha=alpha,
                gamma=gamma,
                temperature=cfg["temperature"],
                max_decode_len=out_len,
                rng=jax.random.PRNGKey(0),
            )
            jax.block_until_ready(out)
        after = compiled_variants()
        rows.append(
            {
                "method": method,
                "alphas": cfg["alphas"],
                "variants_before": before,
                "variants_after": after,
                "new_programs": after - before,
            }
        )
        if after - before > 1:
            raise AssertionError(f"α sweep of {method} compiled {after - before} programs, not 1")
    return rows


def _memory_ratio(row: dict) -> float | None:
    """XLA's planned memory (arguments + temp) over `model_memory_mib` (goal: <= 1.2)."""
    mem = row["xla_memory"]
    if mem["arguments_mib"] is None or not row.get("model_mib"):
        return None
    return (mem["arguments_mib"] + mem["temp_mib"]) / row["model_mib"]


def _sweep_markdown(rows: list[dict]) -> str:
    table = []
    for r in rows:
        mem = r["xla_memory"]
        table.append(
            [
                r["sweep"],
                r["method"],
                r["batch"],
                r["gamma"] if r["method"] != "verifier" else "—",
                r["input_len"],
                r["output_len"],
                common.mean_std(1e3 * r["latency"]["mean_s"], 1e3 * r["latency"]["std_s"]),
                common.fmt(r["tokens_per_s"][0], 0),
                common.fmt(r["compile_s"], 1),
                common.fmt(mem["arguments_mib"], 0),
                common.fmt(mem["temp_mib"], 1),
                common.fmt(r["rss_peak_delta_mib"], 1),
                common.fmt(r["model_mib"], 0),
                common.fmt(_memory_ratio(r), 3),
            ]
        )
    return common.markdown_table(
        [
            "sweep",
            "method",
            "B",
            "γ",
            "in",
            "out",
            "ms / call",
            "tok/s",
            "compile s",
            "XLA args MiB",
            "XLA temp MiB",
            "peak RSS Δ MiB",
            "model MiB",
            "XLA (args + temp) / model",
        ],
        table,
    )


def run(cfg: dict) -> tuple[dict, str]:
    pair = common.pair_from_config(cfg["pair"], cfg)
    b0, g0, i0, o0 = cfg["base"]
    points: list[tuple[str, str, int, int, int, int]] = []
    for method in cfg["sweep_methods"]:
        for b in cfg["batches"]:
            points.append(("batch", method, b, g0, i0, o0))
        for i in cfg["input_lens"]:
            points.append(("input_len", method, b0, g0, i, o0))
        for o in cfg["output_lens"]:
            points.append(("output_len", method, b0, g0, i0, o))
    for g in cfg["gammas"] if "spec_decode" in cfg["sweep_methods"] else ():
        points.append(("gamma", "spec_decode", b0, g, i0, o0))
    measured: dict[tuple, dict] = {}  # each distinct program once; sweeps share the base point
    sweep_rows = []
    for sweep, m, b, g, i, o in points:
        key = (m, b, g if m == "spec_decode" else None, i, o)
        if key not in measured:
            measured[key] = _point(pair, m, sweep, b, g, i, o, cfg)
        sweep_rows.append({**measured[key], "sweep": sweep})

    compile_rows = []
    base = (b0, g0, i0, o0)
    for method in cfg["compile_methods"]:
        # Reuse the sweep's compile of the base point (γ is not part of verifier/drafter shapes).
        done = [
            r
            for r in sweep_rows
            if r["method"] == method
            and (r["batch"], r["input_len"], r["output_len"]) == (b0, i0, o0)
            and (r["gamma"] == g0 or method in ("verifier", "drafter"))
        ]
        if done:
            times = {"lower_s": done[0]["lower_s"], "compile_s": done[0]["compile_s"]}
        else:
            logging.info("compile time of %s", method)
            times = _compile(pair, method, base, cfg["temperature"])[2]
        compile_rows.append({"method": method, **times})

    alpha_rows = _alpha_sweep(pair, cfg)

    md = [
        f"Pair `{cfg['pair']}`: {pair.description}. T={cfg['temperature']:g}; base point "
        f"B={b0}, γ={g0}, {i0} → {o0} tokens (EOS banned); {cfg['trials']} trials. Memory: "
        "XLA buffer assignment of the compiled program (arguments = both models' parameters + "
        "inputs; temp = peak scratch: caches, activations) and peak RSS growth of the process "
        "during one call.",
        "",
        _sweep_markdown(sweep_rows),
        "",
        f"Compile time per method (B={b0}, γ={g0}, {i0} → {o0}):",
        "",
        common.markdown_table(
            ["method", "lower s", "compile s"],
            [
                [r["method"], common.fmt(r["lower_s"], 2), common.fmt(r["compile_s"], 2)]
                for r in compile_rows
            ],
        ),
        "",
        f"α sweep without recompilation (`compiled_variants()` around {len(cfg['alphas'])} "
        f"α values {', '.join(f'{a:g}' for a in cfg['alphas'])}):",
        "",
        common.markdown_table(
            ["method", "variants before", "after", "new programs"],
            [
                [r["method"], r["variants_before"], r["variants_after"], r["new_programs"]]
                for r in alpha_rows
            ],
        ),
    ]
    results = {
        "config": cfg,
        "pair": pair.description,
        "sweeps": sweep_rows,
        "compile": compile_rows,
        "alpha_sweep": alpha_rows,
    }
    return results, "\n".join(md)


def main(argv: list[str] | None = None) -> tuple[str, str]:
    """Parses `argv`, runs, writes the report; returns (json path, markdown path)."""
    common.setup_logging()
    cfg = parse_args(argv)
    out_dir, machine = cfg.pop("out_dir"), cfg.pop("machine")
    load_at_start = os.getloadavg()
    results, markdown = run(cfg)
    env = common.environment("float32", machine, load_at_start)
    return common.write_report(out_dir, "bench_scaling", env, results, markdown)


if __name__ == "__main__":
    main()
