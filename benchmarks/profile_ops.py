r"""Where a decode's time goes, by part of the loop and by XLA op, from a profiler trace.

Issue "Performance", item 3 asks for the gap to the cost model "from a profile". For each method
this compiles `generate` for one shape (`common.compile_generate`, shared with `bench_scaling`),
runs it once, then traces `--calls` calls with `jax.profiler.trace`, reads the trace back
(`jax.profiler.ProfileData`) and gives every executed op's time to the program instruction of that
name and, through the instruction's `op_name` metadata, to a part of the decode: the named scopes of
the loops, `encode`, `draft`, `verify`, `target`, `accept` (speculative) and `step`, `sample`
(autoregressive); anything else is `other` (loop bookkeeping, statistics, the output buffer).
Control-flow instructions (`while`, `conditional`, `call`) are skipped: their events span their
bodies' ops, which are counted themselves.

Reported per method: wall time per call (untraced, `--trials` calls), rounds (loop iterations),
op time per part (ms per call and per round) and the top ops; for every speculative method, the
per-round difference of each part to `spec_decode` (what a rule costs on top of lossless SD, the
open question of the H200 run). Op times are summed over threads (CPU) or over the device's op
line (GPU: "XLA Ops"): on a multi-core CPU they add up to more than the wall time when ops run
side by side. `--dump_hlo` also writes each compiled program's HLO text.

    JAX_PLATFORMS=cpu python benchmarks/profile_ops.py --out_dir=/tmp/po
    python benchmarks/profile_ops.py --pair=small_large_embedded --out_dir=/tmp/po_gpu --dump_hlo
    JAX_PLATFORMS=cpu python benchmarks/profile_ops.py --tiny --out_dir=/tmp/po_tiny

Default: the perturbed T5.1.1-small pair, batch 1, γ 5, 64 → 64 tokens, T = 1, α = 0.3.
Smoke mode (`--tiny`): tiny pair, verifier + spec_decode + spec_chow, 8 → 8 tokens, 1 trial.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import common
import jax
import numpy as np
from absl import logging

from spec_cascade_jax.decoding import METHODS, SPECULATIVE_METHODS

PARTS = ("encode", "draft", "verify", "target", "accept", "step", "sample")
_CONTROL_FLOW = {"while", "conditional", "call"}
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*\S.*?\s([a-z][\w\-]*)\(")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_REFERENCE = re.compile(r"%([\w.\-]+)")


def parse_args(argv: list[str] | None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    arg = parser.add_argument
    arg("--pair", default="perturbed", choices=common.PAIR_NAMES, help="Drafter/verifier pair.")
    common.add_pair_args(parser)
    arg(
        "--methods",
        type=common.str_list,
        default=["verifier", "spec_decode", "spec_chow", "spec_token_v3", "spec_opt", "lossy"],
        help="Methods to profile (spec_decode is the reference of the difference table).",
    )
    arg("--batch", type=int, default=1, help="Batch size.")
    arg("--gamma", type=int, default=5, help="Drafts per round.")
    arg("--input_len", type=int, default=64, help="Encoder input length.")
    arg("--max_decode_len", type=int, default=64, help="Output tokens (EOS banned).")
    arg("--temperature", type=float, default=1.0, help="Sampling temperature.")
    arg("--alpha", type=float, default=0.3, help="α of the α-methods.")
    arg("--calls", type=int, default=2, help="Traced calls per method.")
    arg("--top", type=int, default=12, help="Ops listed per method.")
    arg("--dump_hlo", action="store_true", help="Write each compiled program's HLO to out_dir.")
    common.add_common_args(parser, "/tmp/profile_ops")
    cfg = vars(parser.parse_args(argv))
    for m in cfg["methods"]:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; expected one of {', '.join(METHODS)}")
    for key in ("batch", "gamma", "input_len", "max_decode_len", "calls", "top", "trials"):
        if cfg[key] < 1:
            raise ValueError(f"--{key} must be >= 1, got {cfg[key]}")
    if cfg.pop("tiny"):
        cfg.update(
            pair="tiny",
            methods=["verifier", "spec_decode", "spec_chow"],
            gamma=3,
            input_len=8,
            max_decode_len=8,
            calls=1,
            trials=1,
            top=5,
        )
    return cfg


def instructions(hlo_text: str) -> dict[str, dict[str, str]]:
    """Instruction name -> {"opcode", "op_name", "part"} for every instruction of `hlo_text`.

    Instructions XLA created without metadata (on CPU, e.g. most `dot`s after layout passes)
    take the `op_name` of their first operand that has one, else of their first user that has
    one (repeated, so chains resolve): a dot then counts where its input activations were made
    (the logits projection with the model step, not with the sampler that reads it).
    """
    table: dict[str, dict[str, str]] = {}
    operands: dict[str, list[str]] = {}
    users: dict[str, list[str]] = collections.defaultdict(list)
    for line in hlo_text.splitlines():
        m = _INSTRUCTION.match(line)
        if not m:
            continue
        name = m.group(1)
        op = _OP_NAME.search(line)
        table[name] = {"opcode": m.group(2), "op_name": op.group(1) if op else ""}
        refs = _REFERENCE.findall(line.split("=", 1)[1])
        operands[name] = refs
        for ref in refs:
            users[ref].append(name)
    for _ in range(8):
        missing = [n for n, info in table.items() if not info["op_name"]]
        for name in missing:
            for other in [*operands.get(name, ()), *users.get(name, ())]:
                if other in table and table[other]["op_name"]:
                    table[name]["op_name"] = table[other]["op_name"]
                    break
        if len(missing) == sum(1 for info in table.values() if not info["op_name"]):
            break
    for info in table.values():
        info["part"] = part_of(info["op_name"])
    return table


def part_of(op_name: str) -> str:
    """The first named scope of `PARTS` on the `op_name` path, else "other"."""
    for component in op_name.split("/"):
        if component in PARTS:
            return component
    return "other"


def op_times(xplane_path: str, table: dict[str, dict[str, str]]) -> dict[str, list[float]]:
    """Instruction name -> [total ns, count] over the trace's events that name an instruction.

    On a plane with an "XLA Ops" line (GPU/TPU) only that line counts (its ops are the device's
    kernels once each); elsewhere (CPU) every thread's line counts.
    """
    data = jax.profiler.ProfileData.from_file(xplane_path)
    totals: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    for plane in data.planes:
        lines = list(plane.lines)
        ops_lines = [ln for ln in lines if ln.name == "XLA Ops"]
        for line in ops_lines or lines:
            for event in line.events:
                name = event.name.lstrip("%").split(" ")[0].split("=")[0]
                info = table.get(name)
                if info is None or info["opcode"] in _CONTROL_FLOW:
                    continue
                entry = totals[name]
                entry[0] += event.duration_ns
                entry[1] += 1
    return dict(totals)


def profile_method(pair: common.Pair, cfg: dict, method: str, out_dir: str) -> dict:
    alpha = cfg["alpha"] if method not in ("drafter", "verifier", "spec_decode") else 0.0
    compiled, args, times = common.compile_generate(
        pair,
        method,
        batch=cfg["batch"],
        gamma=cfg["gamma"],
        input_len=cfg["input_len"],
        max_decode_len=cfg["max_decode_len"],
        temperature=cfg["temperature"],
        alpha=alpha,
        seed=cfg["seed"],
    )
    hlo = compiled.as_text()
    if cfg["dump_hlo"]:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        Path(out_dir, f"hlo_{method}.txt").write_text(hlo)
    table = instructions(hlo)
    timing, out = common.time_call(lambda: compiled(*args), trials=cfg["trials"])
    rounds = int(np.max(out.stats.n_ver)) if method != "drafter" else int(np.max(out.stats.n_dr))
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            for _ in range(cfg["calls"]):
                jax.block_until_ready(compiled(*args))
        paths = list(Path(trace_dir).rglob("*.xplane.pb"))
        if not paths:
            raise RuntimeError(f"the profiler wrote no .xplane.pb under {trace_dir}")
        totals = op_times(str(paths[0]), table)
    per_call = lambda ns: ns / 1e6 / cfg["calls"]
    parts = {p: 0.0 for p in (*PARTS, "other")}
    for name, (ns, _) in totals.items():
        parts[table[name]["part"]] += per_call(ns)
    parts = {p: ms for p, ms in parts.items() if ms > 0}
    top = sorted(totals.items(), key=lambda kv: -kv[1][0])[: cfg["top"]]
    return {
        "method": method,
        "compile_s": times["compile_s"],
        "wall_ms": timing.mean_s * 1e3,
        "wall_std_ms": timing.std_s * 1e3,
        "rounds": rounds,
        "tokens": int(np.sum(out.lengths)),
        "op_ms": sum(parts.values()),
        "parts_ms": parts,
        "ops_seen": len(totals),
        "top_ops": [
            {
                "name": name,
                "part": table[name]["part"],
                "op_name": table[name]["op_name"],
                "ms": per_call(ns),
                "count": count / cfg["calls"],
            }
            for name, (ns, count) in top
        ],
    }


def _short(op_name: str, width: int = 60) -> str:
    tail = op_name.split("while/body/")[-1]
    return tail if len(tail) <= width else "…" + tail[-(width - 1) :]


def markdown(cfg: dict, pair: common.Pair, results: list[dict]) -> str:
    d_m, v_m = pair.params_m()
    lines = [
        f"### Op profile: pair `{pair.name}` ({pair.description}; {d_m:.1f}M / {v_m:.1f}M "
        "parameters)",
        "",
        f"Batch {cfg['batch']}, γ {cfg['gamma']}, {cfg['input_len']} → {cfg['max_decode_len']} "
        f"tokens, T = {cfg['temperature']:g}, α = {cfg['alpha']:g}; {cfg['calls']} traced "
        f"call(s) per method, wall time over {cfg['trials']} untraced call(s). Op time is summed "
        "over threads/streams (CPU: can exceed wall time).",
        "",
        "| method | wall ms/call | rounds | op ms/call | "
        + " | ".join(f"{p} ms" for p in (*PARTS, "other"))
        + " |",
        "|---|---|---|---|" + "---|" * (len(PARTS) + 1),
    ]
    for r in results:
        cells = [common.fmt(r["parts_ms"].get(p), 1) for p in (*PARTS, "other")]
        lines.append(
            f"| {r['method']} | {common.mean_std(r['wall_ms'], r['wall_std_ms'])} | {r['rounds']} "
            f"| {r['op_ms']:.1f} | " + " | ".join(cells) + " |"
        )
    ref = next((r for r in results if r["method"] == "spec_decode"), None)
    others = [r for r in results if r["method"] in SPECULATIVE_METHODS and r is not ref]
    if ref is not None and others:
        lines += [
            "",
            "Per round, each speculative method minus `spec_decode` "
            "(ms; + = the method pays more):",
            "",
            "| method | wall | "
            + " | ".join(("draft", "verify", "target", "accept", "other"))
            + " |",
            "|---|---|---|---|---|---|---|",
        ]
        per_round = lambda r, ms: ms / max(r["rounds"], 1)
        for r in others:
            wall = per_round(r, r["wall_ms"]) - per_round(ref, ref["wall_ms"])
            diffs = [
                per_round(r, r["parts_ms"].get(p, 0.0))
                - per_round(ref, ref["parts_ms"].get(p, 0.0))
                for p in ("draft", "verify", "target", "accept", "other")
            ]
            lines.append(
                f"| {r['method']} | {wall:+.3f} | " + " | ".join(f"{d:+.3f}" for d in diffs) + " |"
            )
    for r in results:
        lines += [
            "",
            f"Top ops of `{r['method']}` (ms per call):",
            "",
            "| op | part | ms | calls | source (op_name) |",
            "|---|---|---|---|---|",
        ]
        for op in r["top_ops"]:
            lines.append(
                f"| {op['name']} | {op['part']} | {op['ms']:.2f} | {op['count']:g} | "
                f"{_short(op['op_name'])} |"
            )
    return "\n".join(lines)


def run(cfg: dict, out_dir: str) -> tuple[list[dict], str]:
    pair = common.pair_from_config(cfg["pair"], cfg)
    results = []
    for method in cfg["methods"]:
        logging.info("profiling %s", method)
        results.append(profile_method(pair, cfg, method, out_dir))
    return results, markdown(cfg, pair, results)


def main(argv: list[str] | None = None) -> tuple[str, str]:
    """Parses `argv`, runs, writes the report; returns (json path, markdown path)."""
    common.setup_logging()
    cfg = parse_args(argv)
    out_dir, machine = cfg.pop("out_dir"), cfg.pop("machine")
    load_at_start = os.getloadavg()
    results, text = run(cfg, out_dir)
    env = common.environment("float32", machine, load_at_start)
    return common.write_report(
        out_dir, "profile_ops", env, {"config": cfg, "methods": results}, text
    )


if __name__ == "__main__":
    main()
