"""The README's main job, in a reduced mode, on the bundled demo pair and data (issue: demo).

Runs `python -m spec_cascade_jax.main` (no gin files: runs/demo.gin) as a user would, with a few
examples and a short α grid, and checks that it used the trained bundled models (not the random
fallback) and wrote the JSONL, the report with Table-2, and the plot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from spec_cascade_jax.training import export

DEMO_MODELS = os.path.join(
    os.path.dirname(__file__), "..", "spec_cascade_jax", "demo_data", "ende", "models"
)


@pytest.mark.parametrize("role", ["drafter", "verifier"])
def test_bundled_pair_is_shipped(role):
    config, params = export.load_model(os.path.join(DEMO_MODELS, role))
    assert config.real_vocab_size == 2000
    assert params["decoder"]["decoder_norm"]["scale"].shape == (config.d_model,)


def test_main_job_reduced_mode(tmp_path):
    out = tmp_path / "demo"
    cmd = [
        sys.executable,
        "-m",
        "spec_cascade_jax.main",
        f"--gin.OUTPUT_DIR='{out}'",
        "--gin.NUM_EXAMPLES=6",
        "--gin.BATCH_SIZE=6",
        "--gin.VERIFIER_SEEDS=1",
        "--gin.LATENCY_EXAMPLES=2",
        "--gin.LATENCY_TRIALS=1",
        "--gin.PROGRESS=False",
        "--gin.METHODS=[@spec_token_v3/method_sweep(), @token_cascade/method_sweep()]",
        "--gin.spec_token_v3/method_sweep.alphas=[0.3]",
        "--gin.token_cascade/method_sweep.alphas=[0.5]",
    ]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "results.jsonl", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    points = {(r["method"], r["alpha"]) for r in records}
    assert {("spec_token_v3", 0.3), ("token_cascade", 0.5)} <= points
    assert {"verifier", "drafter", "spec_decode"} <= {m for m, _ in points}
    for role in ("drafter", "verifier"):  # the trained bundled models, not a random fallback
        desc = records[0]["fingerprint"][role]
        assert not str(desc["checkpoint_kind"]).startswith("random"), desc
    for r in records:
        assert r["metric"] == "bleu" and 0.0 <= r["quality"] <= 100.0
        assert r["stats"]["num_examples"] == 6
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Table 2" in report
    # The job prints the Table-2 summary and names the folder it wrote to.
    assert "## Table 2" in proc.stdout and "SpecCascade [Token]" in proc.stdout, proc.stdout
    assert str(out / "report.md") in proc.stdout, proc.stdout
    assert (out / "cost_quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
