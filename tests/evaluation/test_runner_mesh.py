"""The evaluation job through gin with `run_eval.mesh = @build_mesh()` on one CPU device.

A (1, 1) mesh must give exactly the tokens, quality and statistics of a run without a mesh (only
the timing fields may differ). Several devices and processes are covered by tests/parallel.
"""

import json
import os

import gin
import jax
import pytest

from spec_cascade_jax import main, parallel

tfds = pytest.importorskip("tensorflow_datasets")

# A reduced smoke run: verifier-only and one SpecCascade point, no timing, short lengths (each run
# compiles 2 programs).
BINDINGS = [
    "REFERENCES = []",
    "LATENCY_EXAMPLES = 0",
    "NUM_EXAMPLES = 3",
    "BATCH_SIZE = 4",  # One decode call per point (a padded batch; rows are independent).
    "MAX_INPUT_LEN = 32",
    "MAX_DECODE_LEN = 8",
    "spec_token_v3/method_sweep.alphas = [0.2]",
    "METHODS = [@spec_token_v3/method_sweep()]",
    "run_eval.write_outputs = True",
    "run_eval.make_plot = False",
]
TIMING_FIELDS = {"latency", "l_rel", "cost_model", "elapsed_s", "finished_at"}


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory):
    from spec_cascade_jax.data import testing_sp

    return testing_sp.train_tiny_sentencepiece(tmp_path_factory.mktemp("sp"))


@pytest.fixture(autouse=True)
def _clear_gin():
    yield
    gin.clear_config()


def _run(sp_model, out_dir, bindings=()):
    main.configure(
        ["tasks/wmt14_ende.gin", "runs/smoke.gin"],
        [f"VOCAB_PATH = '{sp_model}'", f"OUTPUT_DIR = '{out_dir}'", *BINDINGS, *bindings],
    )
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        return main.execute()


def _jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.mark.slow  # ~80 s; tests/parallel covers the sharded decode itself in the fast suite
def test_single_device_mesh_matches_unsharded_run(sp_model, tmp_path, monkeypatch):
    assert jax.device_count() == 1, "this test pins the (1, 1) mesh of one CPU device"
    calls = []
    original = parallel.sharded_generate

    def counting(mesh, *args, **kwargs):
        calls.append(dict(mesh.shape))
        return original(mesh, *args, **kwargs)

    monkeypatch.setattr(parallel, "sharded_generate", counting)
    plain, sharded = tmp_path / "plain", tmp_path / "mesh"
    _run(sp_model, plain)
    assert calls == []  # Without a mesh the job never goes through sharded_generate.
    result = _run(sp_model, sharded, ["run_eval.mesh = @build_mesh()"])
    # One decode call (BATCH_SIZE >= NUM_EXAMPLES) for each of the 2 points, on the (1, 1) mesh.
    assert calls == [{"data": 1, "model": 1}] * 2

    records = _jsonl(plain / "results.jsonl")
    mesh_records = _jsonl(sharded / "results.jsonl")
    assert [r["key"] for r in records] == [r["key"] for r in mesh_records]
    assert {(r["method"], r["alpha"]) for r in records} == {
        ("verifier", None),
        ("spec_token_v3", 0.2),
    }
    for r, m in zip(records, mesh_records, strict=True):
        # Exact equality: same program, same per-example seeds, one device either way.
        assert {k: v for k, v in m.items() if k not in TIMING_FIELDS} == {
            k: v for k, v in r.items() if k not in TIMING_FIELDS
        }
        assert m["num_examples"] == 3 and m["stats"]["num_examples"] == 3
        assert m["latency"] is None and m["l_rel"] is None  # LATENCY_EXAMPLES = 0
    assert result["q_ver"] == pytest.approx(records[0]["quality"], abs=0.0)

    # Per-example output ids, written by both runs.
    names = sorted(os.listdir(plain / "outputs"))
    assert names == sorted(os.listdir(sharded / "outputs")) and len(names) == 2
    for name in names:
        rows = _jsonl(plain / "outputs" / name)
        assert [row["index"] for row in rows] == [0, 1, 2]
        assert _jsonl(sharded / "outputs" / name) == rows
    assert (sharded / "report.md").stat().st_size > 0
