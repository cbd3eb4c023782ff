"""The evaluation job end to end through gin: TFDS mock data, tiny random T5 pair, tiny vocab.

Every run here uses the same shapes (batch 1, inputs padded to 64, 16 output tokens) and the same
tiny models, so JAX's compilation cache is shared across tests: the first test pays for compiling
each method once, later ones mostly reuse it. Quality numbers from random models are ~0; the tests
check plumbing, bookkeeping and the report's arithmetic, not model quality.
"""

import json
import math
import os
import re
import subprocess
import sys

import gin
import numpy as np
import pytest

from spec_cascade_jax import main
from spec_cascade_jax.evaluation import latency, runner

tfds = pytest.importorskip("tensorflow_datasets")

MAX_DECODE_LEN = 16  # runs/smoke.gin
SMOKE_POINTS = {
    ("verifier", None),
    ("drafter", None),
    ("spec_chow", 0.2),
    ("spec_chow", 0.6),
    ("spec_token_v3", 0.2),
    ("spec_token_v3", 0.6),
}
CHOICE_FIELDS = (
    "warping",
    "bonus_source",
    "lossy_beta",
    "seq_cascade_score",
    "bild_star_discrepancy",
    "lengths",
    "alpha_grids",
    "interpolation",
)


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory):
    from spec_cascade_jax.data import testing_sp

    return testing_sp.train_tiny_sentencepiece(tmp_path_factory.mktemp("sp"))


@pytest.fixture(autouse=True)
def _clear_gin():
    yield
    gin.clear_config()


def _mock_data():
    return tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE)


def _run(files, sp_model, out_dir, bindings=()):
    main.configure(files, [f"VOCAB_PATH = '{sp_model}'", f"OUTPUT_DIR = '{out_dir}'", *bindings])
    with _mock_data():
        return main.execute()


def _records(out_dir):
    with open(os.path.join(out_dir, "results.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# ----------------------------------------------------------------------------------------------
# Table-2 recomputed independently of `tables.py` (brute force over the polyline).


def _front(points):
    pts = set(points)
    return sorted(p for p in pts if not any(o != p and o[0] <= p[0] and o[1] >= p[1] for o in pts))


def _speedup(points, q_ver):
    front = _front(points)
    candidates = [lat for lat, q in front if q >= q_ver]
    for (l0, q0), (l1, q1) in zip(front[:-1], front[1:], strict=True):
        if q0 < q_ver <= q1:
            candidates.append(l0 + (q_ver - q0) / (q1 - q0) * (l1 - l0))
    return 1 / min(candidates) if candidates else None


def _best_quality(points):
    front = _front(points)
    candidates = [q for lat, q in front if lat <= 1]
    for (l0, q0), (l1, q1) in zip(front[:-1], front[1:], strict=True):
        if l0 < 1 < l1:
            candidates.append(q0 + (1 - l0) / (l1 - l0) * (q1 - q0))
    return max(candidates) if candidates else None


def _parse_report_table2(text):
    section = text.split("## Table 2", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 7 or cells[0] in ("Method", "---") or cells[0].startswith("*"):
            continue

        def num(cell):
            return None if cell in ("not reached", "—") else float(cell.rstrip("×"))

        rows[cells[0]] = [num(c) for c in cells[1:5]]
    return rows


def _check_report_matches_jsonl(out_dir):
    records = _records(out_dir)
    verifier = [r for r in records if r["method"] == "verifier"]
    q_ver = float(np.mean([r["quality"] for r in verifier]))
    v_lat = next(r for r in verifier if not r["tag"])["latency"]["mean_s"]
    names = {"spec_chow": "SpecCascade [Chow]", "spec_token_v3": "SpecCascade [Token]"}
    points = {}
    for r in records:
        # L_rel is the method's mean latency over the verifier's, on the same examples.
        assert r["l_rel"] == pytest.approx(r["latency"]["mean_s"] / v_lat, rel=1e-12)
        if r["method"] in names:
            points.setdefault(names[r["method"]], []).append((r["l_rel"], r["quality"]))
    with open(os.path.join(out_dir, "report.md"), encoding="utf-8") as f:
        text = f.read()
    table = _parse_report_table2(text)
    assert set(table) == set(points)
    # The measured cost ratio c = t_drafter / t_verifier is among the reference lines.
    refs = {r["method"]: r for r in records if not r["tag"]}
    t_dr, t_ver = refs["drafter"]["per_token_s"], refs["verifier"]["per_token_s"]
    if t_dr > 0 and t_ver > 0:
        assert f"Measured cost ratio c = t_drafter / t_verifier = {t_dr / t_ver:.4f}" in text
    else:  # latency minus encoder time clamped to 0 (timing noise on tiny models)
        assert "Measured cost ratio c: not measurable" in text
    for name, pts in points.items():
        speedup, speedup_raw, best, best_raw = table[name]
        raw_reach = [lat for lat, q in pts if q >= q_ver]
        raw_fast = [q for lat, q in pts if lat <= 1]
        expected = [
            _speedup(pts, q_ver),
            1 / min(raw_reach) if raw_reach else None,
            _best_quality(pts),
            max(raw_fast) if raw_fast else None,
        ]
        for got, want in zip([speedup, speedup_raw, best, best_raw], expected, strict=True):
            if want is None:
                assert got is None
            else:
                # The report prints 3 decimals: half a unit in the last place.
                assert got == pytest.approx(want, abs=5e-4 + 1e-9)


# ----------------------------------------------------------------------------------------------
# The job end to end.


@pytest.mark.parametrize(
    "task_file",
    [
        "tasks/wmt14_ende.gin",  # Pays the compilations (~30-70 s on 2 busy cores).
        "tasks/xsum.gin",  # Reuses them (~10 s after the WMT case); covers the ROUGE path.
        "tasks/cnn_dailymail.gin",
    ],
)
def test_eval_job_end_to_end(task_file, sp_model, tmp_path):
    out = tmp_path / "out"
    result = _run([task_file, "runs/smoke.gin"], sp_model, out)
    records = _records(out)
    assert {(r["method"], r["alpha"]) for r in records} == SMOKE_POINTS
    assert len(records) == len(SMOKE_POINTS)
    expected_metric = "bleu" if "wmt" in task_file else "rouge2"
    for r in records:
        assert r["metric"] == expected_metric
        assert 0.0 <= r["quality"] <= 100.0
        assert r["num_examples"] == 4 and r["stats"]["num_examples"] == 4
        assert all(field in r["choices"] for field in CHOICE_FIELDS)
        assert r["choices"]["lengths"] == {"max_input_len": 64, "max_decode_len": MAX_DECODE_LEN}
        assert r["fingerprint"]["task"] == gin.query_parameter("%TASK")
        assert r["environment"]["jax_version"] and r["environment"]["backend"] == "cpu"
        stats = r["stats"]
        assert 4 <= stats["n_tok"] <= 4 * MAX_DECODE_LEN
        assert len(r["latency"]["trial_means_s"]) == 1 and r["latency"]["num_examples"] == 2
        assert r["latency"]["mean_s"] > 0
        if r["method"] == "verifier":
            assert stats["n_ver"] == stats["n_tok"]  # SPEC §5: verifier-only N_ver = N_tok.
            assert stats["deferral_rate"] == pytest.approx(1.0)
        elif r["method"] == "drafter":
            assert stats["n_ver"] == 0 and stats["deferral_rate"] == 0.0
        else:
            assert stats["block_efficiency"] == pytest.approx(stats["n_tok"] / stats["n_ver"])
            assert 0.0 <= stats["acceptance_rate"] <= 1.0
            cost = r["cost_model"]
            a = stats["acceptance_rate"]
            assert cost["tau_star"] == pytest.approx((1 - a**6) / (1 - a) if a < 1 else 6.0)
            assert cost["speedup"] == pytest.approx(1 / r["l_rel"])
    # One verifier seed in runs/smoke.gin: Q_ver is its quality.
    assert result["q_ver"] == pytest.approx(records[0]["quality"])
    for name in ("report.md", "cost_quality.png", "deferral_quality.png", "operative_config.gin"):
        assert (out / name).stat().st_size > 0
    assert (out / "cost_quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "## Table 2" in report and "bild_star_discrepancy" in report
    _check_report_matches_jsonl(out)


def test_eval_job_resumes_after_a_crash(sp_model, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real = runner.decode_examples
    calls = []
    crash_on = [4]  # verifier, drafter, spec_chow 0.2, then crash inside spec_chow 0.6.

    def flaky(setup, examples, method, alpha, sampling, **kwargs):
        calls.append((method, alpha))
        if len(calls) in crash_on:
            raise RuntimeError("simulated crash")
        return real(setup, examples, method, alpha, sampling, **kwargs)

    monkeypatch.setattr(runner, "decode_examples", flaky)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(["tasks/wmt14_ende.gin", "runs/smoke.gin"], sp_model, out)
    first = (out / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["method"] for line in first] == ["verifier", "drafter", "spec_chow"]
    assert not (out / "report.md").exists()

    calls.clear()
    crash_on.clear()
    _run(["tasks/wmt14_ende.gin", "runs/smoke.gin"], sp_model, out)
    # Only the three missing points were decoded again.
    assert calls == [("spec_chow", 0.6), ("spec_token_v3", 0.2), ("spec_token_v3", 0.6)]
    lines = (out / "results.jsonl").read_text().splitlines()
    assert lines[:3] == first
    assert {(json.loads(x)["method"], json.loads(x)["alpha"]) for x in lines} == SMOKE_POINTS
    assert (out / "report.md").exists()

    # Resuming under another setup is refused, naming what changed.
    with pytest.raises(ValueError, match="max_decode_len: 16 -> 12"):
        _run(["tasks/wmt14_ende.gin", "runs/smoke.gin"], sp_model, out, ["MAX_DECODE_LEN = 12"])


def test_decode_job_on_task_split_and_text_file(sp_model, tmp_path):
    files = ["models/tiny.gin", "tasks/wmt14_ende.gin", "runs/decode.gin"]
    common = ["MAX_INPUT_LEN = 64", f"MAX_DECODE_LEN = {MAX_DECODE_LEN}", "BATCH_SIZE = 1"]
    out = tmp_path / "split"
    result = _run(files, sp_model, out, common + ["NUM_EXAMPLES = 3", "EXTRA_IDS = 0"])
    rows = [json.loads(line) for line in (out / "outputs.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2]
    assert all(r["input"].startswith("translate English to German: ") for r in rows)
    assert all("reference" in r and len(r["ids"]) <= MAX_DECODE_LEN for r in rows)
    stats = json.loads((out / "stats.json").read_text())
    assert stats == result
    assert stats["method"] == "spec_token_v3" and stats["alpha"] == 0.3
    assert stats["metric"] == "bleu" and stats["num_examples"] == 3
    # Per-row counters add up to the run's statistics.
    assert sum(r["stats"]["n_tok"] for r in rows) == stats["stats"]["n_tok"]
    assert sum(len(r["ids"]) for r in rows) == stats["stats"]["n_tok"]

    text = tmp_path / "inputs.txt"
    text.write_text("the cat sees a dog.\n\nmy friend reads the old car.\n", encoding="utf-8")
    out = tmp_path / "text"
    result = _run(files, sp_model, out, common + [f"INPUT_FILE = '{text}'", "EXTRA_IDS = 0"])
    rows = [json.loads(line) for line in (out / "outputs.jsonl").read_text().splitlines()]
    assert [r["input"] for r in rows] == [
        "translate English to German: the cat sees a dog.",
        "translate English to German: my friend reads the old car.",
    ]
    assert "quality" not in result and result["source"] == str(text)


# ----------------------------------------------------------------------------------------------
# Bad configurations fail fast, naming the culprit.


@pytest.mark.parametrize(
    "bindings, match",
    [
        (["run_eval.no_such_arg = 1"], "no_such_arg"),
        (["no_such_fn.x = 1"], "no_such_fn"),
        (["run_eval.task = [1,"], "run_eval.task"),
    ],
)
def test_bad_binding_fails_at_parse_time(bindings, match):
    with pytest.raises(main.GinConfigError, match=match):
        main.configure(["tasks/wmt14_ende.gin", "runs/smoke.gin"], bindings)


def test_malformed_and_missing_gin_files(tmp_path):
    bad = tmp_path / "broken.gin"
    bad.write_text("# A broken file.\nrun_eval.task = 'x\n", encoding="utf-8")
    with pytest.raises(main.GinConfigError, match="broken.gin"):
        main.configure([str(bad)])
    with pytest.raises(main.GinConfigError, match="runs/no_such_run.gin"):
        main.configure(["runs/no_such_run.gin"])


@pytest.mark.parametrize(
    "bindings, match",
    [
        (["TASK = 'wmt15_ende_xx'"], "unknown task 'wmt15_ende_xx'"),
        (["METHODS = ['spec_foo']"], "unknown method 'spec_foo'"),
        (["spec_chow/method_sweep.alphas = [0.5, 1.5]"], "1.5"),
        (["MAX_DECODE_LEN = 0"], "max_decode_len must be an integer >= 1, got 0"),
        (["OUTPUT_DIR = %gin.REQUIRED"], "OUTPUT_DIR"),
        (["GAMMA = 0"], "gamma must be an integer >= 1, got 0"),
    ],
)
def test_bad_setting_fails_before_any_work(bindings, match, sp_model, tmp_path):
    out = tmp_path / "out"
    main.configure(
        ["tasks/wmt14_ende.gin", "runs/smoke.gin"],
        [f"VOCAB_PATH = '{sp_model}'", f"OUTPUT_DIR = '{out}'", *bindings],
    )
    with pytest.raises(ValueError, match=re.escape(match)):
        main.execute()
    assert not (out / "results.jsonl").exists()


def test_cli_reports_bad_binding(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([runner.PACKAGE_DIR + "/..", env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "spec_cascade_jax.main",
            "--gin_file=runs/smoke.gin",
            "--gin.run_eval.bogus_setting=1",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "bogus_setting" in proc.stderr


# ----------------------------------------------------------------------------------------------
# Timing helper.


def test_time_units_warms_each_shape_once_and_averages():
    calls = []

    def run(x):
        calls.append(x.shape)
        return x

    units = [np.zeros((1, 4)), np.zeros((1, 8)), np.zeros((1, 4)), np.zeros((2, 8))]
    result = latency.time_units(
        units,
        prepare=lambda u: u,
        run=run,
        trials=3,
        unit_size=lambda u: u.shape[0],
        shape_key=lambda u: u.shape,
    )
    # 3 distinct shapes warmed once each, then 3 trials over 4 units.
    assert result.warmup_calls == 3 and len(calls) == 3 + 3 * 4
    assert calls[:3] == [(1, 4), (1, 8), (2, 8)]
    assert result.num_examples == 5 and result.num_units == 4
    assert len(result.trial_means_s) == 3 and len(result.per_example_s) == 4
    assert result.mean_s == pytest.approx(np.mean(result.trial_means_s))
    assert result.std_s == pytest.approx(np.std(result.trial_means_s, ddof=1))
    assert all(t >= 0 and math.isfinite(t) for t in result.trial_means_s)


def test_time_units_rejects_bad_arguments():
    with pytest.raises(ValueError, match="trials"):
        latency.time_units([1], lambda u: u, lambda a: a, trials=0)
    with pytest.raises(ValueError, match="no units"):
        latency.time_units([], lambda u: u, lambda a: a)


def test_environment_info_records_device_and_versions():
    info = latency.environment_info(dtype="bfloat16")
    assert info["dtype"] == "bfloat16"
    assert info["backend"] == "cpu" and info["num_devices"] >= 1
    assert re.match(r"\d+\.\d+", info["jax_version"])


# ----------------------------------------------------------------------------------------------
# Every method through the job (slow: one compile per method).


@pytest.mark.slow
def test_every_method_runs_through_the_job(sp_model, tmp_path):
    out = tmp_path / "out"
    methods = {
        "seq_cascade": 0.5,
        "token_cascade": 0.5,
        "lossy": 0.5,
        "bild_star": 0.3,
        "spec_chow": 0.5,
        "spec_diff": 0.0,
        "spec_opt": 1.0,
        "spec_token_v1": 0.1,
        "spec_token_v2": 0.2,
        "spec_token_v3": 0.4,
    }
    bindings = [f"{m}/method_sweep.alphas = [{a}]" for m, a in methods.items()]
    bindings += ["METHODS = %ALL_METHODS", "REFERENCES = ['drafter', 'spec_decode']"]
    bindings += [
        "ALL_METHODS = [" + ", ".join(f"@{m}/method_sweep()" for m in methods) + "]",
        "LATENCY_EXAMPLES = 1",
    ]
    _run(["methods/all.gin", "tasks/wmt14_ende.gin", "runs/smoke.gin"], sp_model, out, bindings)
    records = _records(out)
    assert {(r["method"], r["alpha"]) for r in records} == {
        ("verifier", None),
        ("drafter", None),
        ("spec_decode", None),
        *methods.items(),
    }
    by_method = {r["method"]: r for r in records}
    assert by_method["seq_cascade"]["stats"]["seq_deferred_frac"] is not None
    assert by_method["lossy"]["stats"]["deferral_rate"] is None  # SPEC §5: lossy SD has no δ.
    report = (out / "report.md").read_text()
    for name in ("SeqCascade [Chow]", "BiLD*", "SpecCascade [OPT]", "SpecCascade [Token-v2]"):
        assert name in report


# ----------------------------------------------------------------------------------------------
# Model loading.


def test_load_model_reads_a_training_export(tmp_path):
    import jax

    from spec_cascade_jax.models.t5 import T5Model, get_config
    from spec_cascade_jax.training import export

    config = get_config("tiny", vocab_size=40, num_decoder_layers=1)
    params = T5Model(config).init_params(jax.random.PRNGKey(3))
    export.export_model(tmp_path / "drafter", config, params)
    spec = runner.model_spec(
        preset="tiny",  # Ignored: the shape comes from config.json.
        checkpoint_path=str(tmp_path / "drafter"),
        config_from_checkpoint=True,
    )
    model, loaded, desc = runner.load_model(spec, "drafter", vocabulary_size=40)
    assert model.config == config
    assert desc["checkpoint_kind"] == "auto" and desc["config"]["num_decoder_layers"] == 1
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # Exact round trip.


def test_load_model_missing_checkpoint(tmp_path):
    missing = str(tmp_path / "nowhere")
    spec = runner.model_spec(preset="tiny", vocab_size="vocabulary", checkpoint_path=missing)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        runner.load_model(spec, "verifier", vocabulary_size=40)
    fallback = runner.model_spec(
        preset="tiny", vocab_size="vocabulary", checkpoint_path=missing, missing_ok=True
    )
    model, _, desc = runner.load_model(fallback, "verifier", vocabulary_size=40)
    assert desc["checkpoint_kind"] == "random (checkpoint missing)"
    assert model.config.vocab_size == model.config.real_vocab_size == 40
    with pytest.raises(ValueError, match="VERIFIER_CHECKPOINT"):
        runner.load_model(runner.model_spec(preset="t5_1_1_small"), "verifier")
    with pytest.raises(ValueError, match="unknown model preset 't5_huge'"):
        runner.load_model(runner.model_spec(preset="t5_huge", checkpoint_kind="random"), "drafter")
    with pytest.raises(ValueError, match="real_vocab_size 40 but the vocabulary has 50"):
        runner.load_model(
            runner.model_spec(preset="tiny", vocab_size=40, checkpoint_kind="random"), "drafter", 50
        )
