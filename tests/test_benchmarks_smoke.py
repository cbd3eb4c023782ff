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
