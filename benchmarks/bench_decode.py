r"""Tokens/s of every decoding method, the measured cost ratio c, and the speed-up vs the ideal.

For each drafter/verifier pair (see `common.make_pair`) and batch size, every method runs through
`generate` on random inputs with EOS banned in both models (`common.NoEosModel`), so every row emits
exactly `--max_decode_len` tokens. Per (pair, batch, method): one untimed warm-up call (compilation
included, reported as "first call"), then `--trials` timed calls, mean ± std.

At batch 1 it also reports the SPEC §6 cost model:

* c = t_q / t_p, with t = (latency − encoder time) / N_tok from the drafter-only and verifier-only
  runs (steady-state per-token decode time; encoder time measured separately);
* S = latency(verifier-only) / latency(method), the ideal S* = (1 − a^(γ+1)) / ((1 − a)(γc + 1))
  and S*₊ = τ* / ((γ+1)c + 1) at the method's measured acceptance rate a, and ε = S / S*;

and a component profile of one speculative round, timed piece by piece (`--profile`): γ+1 drafter
`extend` steps, one verifier `extend` over γ+1 tokens, the target/acceptance math, the two encoder
passes; what the sum misses is loop overhead.

    JAX_PLATFORMS=cpu python benchmarks/bench_decode.py --out_dir=/tmp/bench
    JAX_PLATFORMS=cpu python benchmarks/bench_decode.py --tiny --out_dir=/tmp/bench_tiny

Smoke mode (`--tiny`): tiny pair, verifier/drafter/spec_decode only, batch 1, γ 3, 8 → 8 tokens,
2 trials.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import common
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from spec_cascade_jax.decoding import METHODS, SPECULATIVE_METHODS, generate, summarize_stats
from spec_cascade_jax.evaluation.tables import ideal_speedup, ideal_speedup_sync, tau_star

DEFAULT_METHODS = (
    "verifier",
    "drafter",
    "spec_decode",
    "spec_chow",
    "spec_opt",
    "spec_token_v3",
    "lossy",
    "token_cascade",
    "seq_cascade",
)


def parse_args(argv: list[str] | None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    arg = parser.add_argument
    arg(
        "--pairs",
        type=common.str_list,
        default=["tiny", "small_large", "perturbed"],
        help=f"Pairs, from {', '.join(common.PAIR_NAMES)}.",
    )
    arg("--methods", type=common.str_list, default=list(DEFAULT_METHODS), help="Methods.")
    arg("--batch_sizes", type=common.int_list, default=[1, 8], help="Batch sizes (with 1).")
    arg("--gamma", type=int, default=5, help="Drafted tokens per verifier call.")
    arg("--max_decode_len", type=int, default=64, help="Tokens emitted per row.")
    arg("--input_len", type=int, default=64, help="Encoder input length (no padding).")
    arg("--temperature", type=float, default=1.0, help="Sampling temperature (0 = greedy).")
    arg("--alpha", type=float, default=0.3, help="α of every α-method (valid for all).")
    common.add_pair_args(parser)
    arg("--no_profile", dest="profile", action="store_false", help="Skip the component profile.")
    arg("--profile_steps", type=int, default=16, help="extend calls per profiled loop.")
    common.add_common_args(parser, "/tmp/bench_decode")
    cfg = vars(parser.parse_args(argv))
    if cfg.pop("tiny"):
        # Smoke mode: 3 methods (enough for c, S and the profile), batch 1, 8 tokens.
        cfg.update(
            pairs=["tiny"],
            methods=["verifier", "drafter", "spec_decode"],
            batch_sizes=[1],
            gamma=3,
            max_decode_len=8,
            input_len=8,
            trials=2,
            profile_steps=2,
        )
    return cfg


def _run_method(pair: common.Pair, method: str, inputs: jax.Array, cfg: dict) -> dict[str, Any]:
    rng = jax.random.PRNGKey(cfg["seed"])

    def call():
        return generate(
            *common.models_for(pair, method),
            inputs,
            method=method,
            alpha=cfg["alpha"] if method not in ("drafter", "verifier", "spec_decode") else 0.0,
            gamma=cfg["gamma"],
            temperature=cfg["temperature"],
            max_decode_len=cfg["max_decode_len"],
            rng=rng,
        )

    timing, out = common.time_call(call, trials=cfg["trials"])
    batch = inputs.shape[0]
    n_tok = int(np.sum(out.lengths))
    if n_tok != batch * cfg["max_decode_len"]:
        raise RuntimeError(
            f"{method}: emitted {n_tok} tokens, expected {batch * cfg['max_decode_len']} "
            "(EOS suppression failed)"
        )
    tps, tps_std = common.rate(timing, n_tok)
    stats = summarize_stats(out.stats.as_dict(), method)
    return {
        "method": method,
        "batch": batch,
        "latency": timing.to_dict(),
        "first_call_s": timing.warmup_s,
        "tokens": n_tok,
        "tokens_per_s": tps,
        "tokens_per_s_std": tps_std,
        "loop_rounds": int(np.max(np.asarray(out.stats.n_ver))),
        "stats": stats,
    }


def _cost_model(rows: dict[str, dict], enc: dict[str, common.Timing], cfg: dict) -> dict:
    """c from drafter/verifier-only at batch 1, and S vs S* for each speculative method."""
    n = cfg["max_decode_len"]
    out: dict[str, Any] = {}
    if "drafter" not in rows or "verifier" not in rows:
        return out
    t_q = (rows["drafter"]["latency"]["mean_s"] - enc["drafter"].mean_s) / n
    t_p = (rows["verifier"]["latency"]["mean_s"] - enc["verifier"].mean_s) / n
    c = t_q / t_p
    out.update(t_q_s=t_q, t_p_s=t_p, c=c, enc_drafter_s=enc["drafter"].mean_s)
    out["enc_verifier_s"] = enc["verifier"].mean_s
    lat_v = rows["verifier"]["latency"]["mean_s"]
    per_method = {}
    for method, row in rows.items():
        if method not in SPECULATIVE_METHODS:
            continue
        a = row["stats"]["acceptance_rate"]
        g = cfg["gamma"]
        s = lat_v / row["latency"]["mean_s"]
        entry = {"a": a, "tau": row["stats"]["block_efficiency"], "S": s}
        if a is not None and c >= 0:
            s_star = ideal_speedup(a, g, c)
            s_sync = ideal_speedup_sync(a, g, c)
            entry.update(
                tau_star=tau_star(a, g),
                S_star=s_star,
                S_star_sync=s_sync,
                efficiency=s / s_star,
                efficiency_sync=s / s_sync,
            )
        per_method[method] = entry
    out["methods"] = per_method
    return out


def add_block_model(res: dict, cfg: dict) -> None:
    """Adds the ideal speed-up with the *measured* verifier block cost to `res["cost_model"]`.

    SPEC §6's S* and S*₊ price a γ+1-token verifier call like one step. With the block measured
    at b steps (batch-1 profile), the same model gives S_blk = τ* / ((γ+1) c + b); ε_blk = S/S_blk
    near 1 means the block cost explains the gap to S*.
    """
    cm = res.get("cost_model") or {}
    prof = next((p for p in res.get("profiles", []) if p["batch"] == 1), None)
    if not cm.get("methods") or prof is None:
        return
    b, c, g = prof["block_cost_ratio"], cm["c"], cfg["gamma"]
    cm["block_cost_ratio"] = b
    for entry in cm["methods"].values():
        if entry.get("tau_star") is not None:
            entry["S_star_block"] = entry["tau_star"] / ((g + 1) * c + b)
            entry["efficiency_block"] = entry["S"] / entry["S_star_block"]


def _profile(pair: common.Pair, inputs: np.ndarray, sd_row: dict | None, cfg: dict) -> dict:
    """Times the pieces of one speculative round and compares their sum with the measured run."""
    g, n = cfg["gamma"], cfg["max_decode_len"]
    trials = cfg["trials"]
    steps = cfg["profile_steps"]
    batch = inputs.shape[0]
    cache_spec = n + g + 1
    loop = dict(inputs=inputs, steps=steps, trials=trials)
    d_step = common.extend_loop_time(
        pair.drafter, pair.drafter_params, block=1, cache_len=cache_spec, **loop
    )
    v_block = common.extend_loop_time(
        pair.verifier, pair.verifier_params, block=g + 1, cache_len=cache_spec, **loop
    )
    v_step = common.extend_loop_time(
        pair.verifier, pair.verifier_params, block=1, cache_len=n + 1, **loop
    )
    math = common.math_time(
        "spec_decode",
        batch=batch,
        gamma=g,
        vocab_size=pair.verifier.vocab_size,
        alpha=0.0,
        temperature=cfg["temperature"],
        steps=steps,
        trials=trials,
    )
    v_cfg = pair.verifier.config
    logits_1 = common.matmul_time(batch, v_cfg.d_model, v_cfg.vocab_size, trials=trials)
    logits_k = common.matmul_time(batch * (g + 1), v_cfg.d_model, v_cfg.vocab_size, trials=trials)
    enc_d = common.encoder_time(pair.drafter, pair.drafter_params, inputs, trials=trials)
    enc_v = common.encoder_time(pair.verifier, pair.verifier_params, inputs, trials=trials)
    result: dict[str, Any] = {
        "batch": batch,
        "drafter_step_s": d_step.mean_s,
        "verifier_step_s": v_step.mean_s,
        "verifier_block_s": v_block.mean_s,
        "block_cost_ratio": v_block.mean_s / v_step.mean_s,
        "math_per_round_s": math.mean_s,
        "logits_matmul_1_s": logits_1.mean_s,
        "logits_matmul_block_s": logits_k.mean_s,
        "enc_drafter_s": enc_d.mean_s,
        "enc_verifier_s": enc_v.mean_s,
    }
    if sd_row is not None:
        rounds = sd_row["loop_rounds"]
        parts = {
            "encoders": enc_d.mean_s + enc_v.mean_s,
            "drafter_steps": rounds * (g + 1) * d_step.mean_s,
            "verifier_blocks": rounds * v_block.mean_s,
            "acceptance_math": rounds * math.mean_s,
        }
        measured = sd_row["latency"]["mean_s"]
        parts["loop_overhead_residual"] = measured - sum(parts.values())
        result.update(rounds=rounds, measured_s=measured, parts_s=parts)
    return result


def _pair_markdown(name: str, desc: str, res: dict, cfg: dict) -> str:
    batches = sorted({r["batch"] for r in res["rows"]})
    by = {(r["method"], r["batch"]): r for r in res["rows"]}
    lat_v = {b: by[("verifier", b)]["latency"]["mean_s"] for b in batches if ("verifier", b) in by}
    headers = ["method"]
    for b in batches:
        headers += [f"tok/s B={b}", f"speed-up B={b}"]
    headers += ["a (B=1)", "τ (B=1)", "δ (B=1)", "first call s (B=1)"]
    lines = []
    for method in cfg["methods"]:
        cells = [method]
        for b in batches:
            r = by.get((method, b))
            if r is None:
                cells += ["—", "—"]
                continue
            cells.append(common.mean_std(r["tokens_per_s"], r["tokens_per_s_std"]))
            speed = lat_v[b] / r["latency"]["mean_s"] if b in lat_v else None
            cells.append(common.fmt(speed, 2))
        r1 = by.get((method, batches[0]), {"stats": {}})
        st = r1["stats"]
        cells += [
            common.fmt(st.get("acceptance_rate")),
            common.fmt(st.get("block_efficiency"), 2),
            common.fmt(st.get("deferral_rate")),
            common.fmt(r1.get("first_call_s"), 1),
        ]
        lines.append(cells)
    p_d, p_v = res["params_m"]
    out = [
        f"### Pair `{name}`: {desc}",
        "",
        f"Drafter {p_d:.1f}M / verifier {p_v:.1f}M parameters; γ={cfg['gamma']}, "
        f"T={cfg['temperature']:g}, α={cfg['alpha']:g}, {cfg['input_len']} input → "
        f"{cfg['max_decode_len']} output tokens (EOS banned), {cfg['trials']} trials.",
        "",
        common.markdown_table(headers, lines),
    ]
    cm = res.get("cost_model") or {}
    if cm.get("methods"):
        out += [
            "",
            f"Cost model at B=1: t_q = {1e3 * cm['t_q_s']:.2f} ms, "
            f"t_p = {1e3 * cm['t_p_s']:.2f} ms per token, **c = {cm['c']:.3f}** "
            f"(encoders {1e3 * cm['enc_drafter_s']:.1f} / "
            f"{1e3 * cm['enc_verifier_s']:.1f} ms excluded).",
            "",
        ]
        rows = []
        for method, e in cm["methods"].items():
            rows.append(
                [
                    method,
                    common.fmt(e["a"]),
                    common.fmt(e["tau"], 2),
                    common.fmt(e.get("tau_star"), 2),
                    common.fmt(e["S"], 3),
                    common.fmt(e.get("S_star"), 3),
                    common.fmt(e.get("S_star_sync"), 3),
                    common.fmt(e.get("efficiency"), 3),
                    common.fmt(e.get("efficiency_sync"), 3),
                    common.fmt(e.get("S_star_block"), 3),
                    common.fmt(e.get("efficiency_block"), 3),
                ]
            )
        b = cm.get("block_cost_ratio")
        blk = "S_blk" if b is None else f"S_blk (block = {b:.2f} steps)"
        headers = ["method", "a", "τ", "τ*", "S", "S*", "S*₊", "ε = S/S*", "S/S*₊", blk, "S/S_blk"]
        out.append(common.markdown_table(headers, rows))
    for prof in res.get("profiles", []):
        out += ["", _profile_markdown(prof, cfg)]
    return "\n".join(out)


def _profile_markdown(prof: dict, cfg: dict) -> str:
    g = cfg["gamma"]
    mm_ratio = prof["logits_matmul_block_s"] / prof["logits_matmul_1_s"]
    head = (
        f"Components at B={prof['batch']}: drafter step {1e3 * prof['drafter_step_s']:.2f} ms, "
        f"verifier step {1e3 * prof['verifier_step_s']:.2f} ms, verifier block of {g + 1} "
        f"{1e3 * prof['verifier_block_s']:.2f} ms (= {prof['block_cost_ratio']:.2f} steps), "
        f"acceptance math {1e3 * prof['math_per_round_s']:.2f} ms/round, encoders "
        f"{1e3 * prof['enc_drafter_s']:.1f} / {1e3 * prof['enc_verifier_s']:.1f} ms. "
        f"Verifier logits projection alone: {1e3 * prof['logits_matmul_1_s']:.2f} ms for "
        f"{prof['batch']} row(s), {1e3 * prof['logits_matmul_block_s']:.2f} ms for "
        f"{prof['batch'] * (g + 1)} (= {mm_ratio:.2f}×)."
    )
    if "parts_s" not in prof:
        return head
    total = prof["measured_s"]
    rows = [
        [k.replace("_", " "), f"{1e3 * v:.1f}", f"{100 * v / total:.0f}%"]
        for k, v in prof["parts_s"].items()
    ]
    rows.append(["measured spec_decode latency", f"{1e3 * total:.1f}", "100%"])
    return (
        head
        + f" spec_decode ran {prof['rounds']} rounds:\n\n"
        + common.markdown_table(["part", "ms", "share"], rows)
    )


def run(cfg: dict) -> dict:
    """Runs every pair; returns the JSON-able results and the Markdown."""
    for m in cfg["methods"]:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; expected one of {', '.join(METHODS)}")
    if 1 not in cfg["batch_sizes"]:
        raise ValueError(f"batch_sizes must include 1 (for c and S), got {cfg['batch_sizes']}")
    results, sections = {}, []
    for name in cfg["pairs"]:
        pair = common.pair_from_config(name, cfg)
        real_vocab = pair.verifier.real_vocab_size
        res: dict[str, Any] = {"description": pair.description, "params_m": pair.params_m()}
        res["rows"], res["profiles"] = [], []
        for batch in cfg["batch_sizes"]:
            inputs_np = common.random_inputs(batch, cfg["input_len"], real_vocab, cfg["seed"])
            inputs = jax.block_until_ready(jnp.asarray(inputs_np))
            rows = {}
            for method in cfg["methods"]:
                logging.info("pair %s batch %d method %s", name, batch, method)
                rows[method] = _run_method(pair, method, inputs, cfg)
                res["rows"].append(rows[method])
            if batch == 1:
                enc = {
                    "drafter": common.encoder_time(
                        pair.drafter, pair.drafter_params, inputs_np, trials=cfg["trials"]
                    ),
                    "verifier": common.encoder_time(
                        pair.verifier, pair.verifier_params, inputs_np, trials=cfg["trials"]
                    ),
                }
                res["cost_model"] = _cost_model(rows, enc, cfg)
            if cfg["profile"]:
                res["profiles"].append(_profile(pair, inputs_np, rows.get("spec_decode"), cfg))
        add_block_model(res, cfg)
        results[name] = res
        sections.append(_pair_markdown(name, pair.description, res, cfg))
    return {"config": cfg, "pairs": results}, "\n\n".join(sections)


def main(argv: list[str] | None = None) -> tuple[str, str]:
    """Parses `argv`, runs, writes the report; returns (json path, markdown path)."""
    common.setup_logging()
    cfg = parse_args(argv)
    out_dir, machine = cfg.pop("out_dir"), cfg.pop("machine")
    load_at_start = os.getloadavg()
    results, markdown = run(cfg)
    env = common.environment("float32", machine, load_at_start)
    return common.write_report(out_dir, "bench_decode", env, results, markdown)


if __name__ == "__main__":
    main()
