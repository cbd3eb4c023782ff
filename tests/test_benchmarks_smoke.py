"""Smoke tests of the decoding benchmarks: each script's `--tiny` mode end to end, in process.

They check that the JSON and Markdown reports exist and hold finite, positive numbers where
numbers are expected, and the benchmarks' own correctness checks (EOS suppression, greedy
speculative outputs equal to autoregressive ones, no recompilation over α). No timing is asserted:
the machine is shared and the tiny models measure mostly overhead.
"""

import importlib
import json
import math
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


def _module(name: str):
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    return importlib.import_module(name)


def _run(name: str, out_dir: Path) -> tuple[dict, str]:
    json_path, md_path = _module(name).main(["--tiny", f"--out_dir={out_dir}"])
    assert Path(json_path) == out_dir / f"{name}.json"
    assert Path(md_path) == out_dir / f"{name}.md"
    with open(json_path) as f:
        report = json.load(f)
    markdown = Path(md_path).read_text()
    assert "|---|" in markdown
    assert not re.search(r"\bnan\b", markdown, flags=re.IGNORECASE)
    env = report["env"]
    assert env["jax_version"] and env["backend"] and env["date"]
    assert len(env["load_average"]) == 3
    return report["results"], markdown


def _positive(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def _all_numbers_finite(obj) -> bool:
    if isinstance(obj, dict):
        return all(_all_numbers_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_all_numbers_finite(v) for v in obj)
    if isinstance(obj, float):
        return math.isfinite(obj)
    return True


@pytest.mark.slow  # 50-80 s of compiles; the benchmark scripts themselves are not CI
def test_bench_decode_tiny(tmp_path):
    results, markdown = _run("bench_decode", tmp_path)
    assert _all_numbers_finite(results)
    pair = results["pairs"]["tiny"]
    methods = {r["method"] for r in pair["rows"]}
    assert methods == {"verifier", "drafter", "spec_decode"}
    for row in pair["rows"]:
        assert row["tokens"] == row["batch"] * 8  # EOS banned: exactly max_decode_len each
        assert _positive(row["tokens_per_s"]) and _positive(row["latency"]["mean_s"])
        assert len(row["latency"]["trials_s"]) == 2
    cost = pair["cost_model"]
    assert math.isfinite(cost["c"])
    sd = cost["methods"]["spec_decode"]
    assert 0.0 <= sd["a"] <= 1.0
    assert _positive(sd["S"])
    if sd.get("S_star") is not None:  # c can come out negative on a noisy tiny run: no S*
        assert _positive(sd["S_star"]) and _positive(sd["efficiency"])
    prof = pair["profiles"][0]
    for key in ("drafter_step_s", "verifier_block_s", "math_per_round_s", "measured_s"):
        assert _positive(prof[key])
    assert set(prof["parts_s"]) >= {"drafter_steps", "verifier_blocks", "acceptance_math"}
    assert "spec_decode" in markdown and "c =" in markdown


def test_bench_vs_hf_tiny(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    results, markdown = _run("bench_vs_hf", tmp_path)
    assert _all_numbers_finite(results)
    (ar,) = results["autoregressive"]
    assert _positive(ar["ours_tokens_per_s"][0]) and _positive(ar["hf_tokens_per_s"][0])
    assert 0.0 <= ar["greedy_match"]["tokens_equal"] <= 1.0
    sd = results["speculative"]
    (row,) = sd["rows"]
    assert row["outputs_match_ar"]  # both sides' lossless greedy SD reproduce their AR output
    assert _positive(row["ours_speedup"]) and _positive(row["hf_speedup"])
    assert row["hf_counts"]["verifier_calls"] >= 1
    (batch_row,) = sd["batch_rows"]
    assert batch_row["outputs_match_ar"] and _positive(batch_row["speedup"])
    assert "HF assisted" in markdown


@pytest.mark.slow  # 50-80 s of compiles; the benchmark scripts themselves are not CI
def test_bench_scaling_tiny(tmp_path):
    results, markdown = _run("bench_scaling", tmp_path)
    assert _all_numbers_finite(results)
    assert {r["method"] for r in results["sweeps"]} == {"spec_decode"}
    for row in results["sweeps"]:
        assert _positive(row["latency"]["mean_s"]) and _positive(row["compile_s"])
        assert _positive(row["xla_memory"]["arguments_mib"])
        assert row["rss_peak_delta_mib"] is None or row["rss_peak_delta_mib"] >= 0
        # The yardstick counts at least the parameters XLA receives as arguments.
        assert row["model_mib"] >= 0.9 * row["xla_memory"]["arguments_mib"]
    assert "XLA (args + temp) / model" in markdown
    (comp,) = results["compile"]
    assert _positive(comp["compile_s"])
    (alpha,) = results["alpha_sweep"]
    assert alpha["new_programs"] <= 1  # a sweep over α never recompiles
    assert "new programs" in markdown


def test_profile_ops_tiny(tmp_path):
    results, markdown = _run("profile_ops", tmp_path)
    assert _all_numbers_finite(results)
    by_method = {r["method"]: r for r in results["methods"]}
    assert set(by_method) == {"verifier", "spec_decode", "spec_chow"}
    for r in by_method.values():
        assert _positive(r["wall_ms"]) and r["rounds"] >= 1 and r["ops_seen"] > 0
        assert r["top_ops"] and all(_positive(op["ms"]) for op in r["top_ops"])
    # The loops' named scopes are found: time is attributed to the parts of each loop.
    assert {"step", "sample"} <= set(by_method["verifier"]["parts_ms"])
    assert {"draft", "verify", "accept"} <= set(by_method["spec_chow"]["parts_ms"])
    assert "minus `spec_decode`" in markdown


def test_profile_ops_parses_hlo_instructions():
    po = _module("profile_ops")
    hlo = "\n".join(
        [
            "ENTRY %main (p: f32[2]) -> f32[2] {",
            "  %fusion.3 = f32[16,1024]{1,0} fusion(%a, %b), kind=kLoop, calls=%c, "
            'metadata={op_name="jit(f)/while/body/verify/T5Network.extend/mlp/dot_general"}',
            "  %w = (s32[], f32[2]{0}) while(%t), condition=%c1, body=%b1, "
            'metadata={op_name="jit(f)/while"}',
            "  %mul.4 = f32[16,512]{1,0} multiply(%x, %x), "
            'metadata={op_name="jit(f)/while/body/draft/closed_call/layer_norm/mul"}',
            "  %dot.7 = f32[16,1024]{1,0} dot(%mul.4, %y), lhs_contracting_dims={1}",
            "  %dot.8 = f32[16,1024]{1,0} dot(%p, %y), lhs_contracting_dims={1}",
            "  %add.2 = f32[16,1024]{1,0} add(%dot.7, %dot.8), "
            'metadata={op_name="jit(f)/while/body/sample/add"}',
            "  ROOT %copy.1 = f32[2]{0} copy(%p)",
            "}",
        ]
    )
    table = po.instructions(hlo)
    assert table["fusion.3"] == {
        "opcode": "fusion",
        "op_name": "jit(f)/while/body/verify/T5Network.extend/mlp/dot_general",
        "part": "verify",
    }
    assert table["w"]["opcode"] == "while" and table["w"]["part"] == "other"
    assert table["copy.1"]["opcode"] == "copy" and table["copy.1"]["op_name"] == ""
    # A dot without metadata counts where its input was made, else where its consumer is.
    assert table["dot.7"]["part"] == "draft" and table["dot.7"]["opcode"] == "dot"
    assert table["dot.8"]["part"] == "sample"
    assert po.part_of("jit(f)/while/body/draft/while/body/sample") == "draft"  # first scope wins
