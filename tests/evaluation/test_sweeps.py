"""Resumable sweeps: records, resume after an exception or a SIGKILL, torn lines, fingerprints."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from spec_cascade_jax.evaluation import sweeps

SAMPLING = sweeps.SamplingConfig(temperature=1.0, gamma=5, seed=0)
CHOICES = {"warping": "float32", "bonus_source": "target"}
FINGERPRINT = {"task": "toy", "max_decode_len": 8}


def _points():
    return sweeps.expand_points(
        [sweeps.make_method_sweep("spec_chow", [0.1, 0.2]), "verifier"], SAMPLING
    )


class _FakeDecode:
    """Counts calls; optionally raises on the n-th call (1-based)."""

    def __init__(self, fail_on: int | None = None):
        self.calls: list[str] = []
        self.fail_on = fail_on

    def __call__(self, point):
        self.calls.append(point.key())
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            raise RuntimeError("simulated crash")
        return {"quality": 10.0 * (point.alpha or 1.0), "latency": {"mean_s": 0.5}}


def test_expand_points_and_keys():
    points = _points()
    assert [(p.method, p.alpha) for p in points] == [
        ("spec_chow", 0.1),
        ("spec_chow", 0.2),
        ("verifier", None),
    ]
    key = json.loads(points[0].key())
    assert key == {"alpha": 0.1, "method": "spec_chow", "sampling": SAMPLING.to_dict(), "tag": ""}
    other = sweeps.SweepPoint(
        method="spec_chow", alpha=0.1, sampling=sweeps.SamplingConfig(temperature=0.5)
    )
    assert other.key() != points[0].key()


def test_records_hold_point_results_choices_and_fingerprint(tmp_path):
    path = tmp_path / "results.jsonl"
    fake = _FakeDecode()
    records = sweeps.run_sweep(
        _points(), fake, path, fingerprint=FINGERPRINT, choices=CHOICES, progress=False
    )
    assert len(fake.calls) == 3
    stored = [json.loads(line) for line in path.read_text().splitlines()]
    assert stored == records
    assert [r["alpha"] for r in stored] == [0.1, 0.2, None]
    assert stored[1]["quality"] == pytest.approx(2.0)
    assert all(r["choices"] == CHOICES and r["fingerprint"] == FINGERPRINT for r in stored)
    assert stored[0]["sampling"]["gamma"] == 5


def test_rerun_after_exception_skips_finished_points(tmp_path):
    path = tmp_path / "results.jsonl"
    crashing = _FakeDecode(fail_on=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        sweeps.run_sweep(_points(), crashing, path, fingerprint=FINGERPRINT, progress=False)
    assert len(path.read_text().splitlines()) == 1
    fresh = _FakeDecode()
    records = sweeps.run_sweep(_points(), fresh, path, fingerprint=FINGERPRINT, progress=False)
    points = _points()
    # The first point was not recomputed; the other two were.
    assert fresh.calls == [points[1].key(), points[2].key()]
    assert [r["key"] for r in records] == [p.key() for p in points]
    # A third run computes nothing.
    idle = _FakeDecode()
    sweeps.run_sweep(_points(), idle, path, fingerprint=FINGERPRINT, progress=False)
    assert idle.calls == []


def test_rerun_after_sigkill_skips_finished_points(tmp_path):
    """A subprocess SIGKILLs itself inside the 2nd point; the rerun computes only points 2 and 3."""
    path = tmp_path / "results.jsonl"
    script = textwrap.dedent(
        f"""
        import os, signal
        from spec_cascade_jax.evaluation import sweeps
        calls = []
        def evaluate(point):
            calls.append(point)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            return {{"quality": 1.0}}
        points = sweeps.expand_points(
            [sweeps.make_method_sweep("spec_chow", [0.1, 0.2]), "verifier"],
            sweeps.SamplingConfig(temperature=1.0, gamma=5, seed=0))
        sweeps.run_sweep(points, evaluate, {str(path)!r}, progress=False)
        """
    )
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert len(path.read_text().splitlines()) == 1
    fresh = _FakeDecode()
    sweeps.run_sweep(_points(), fresh, path, progress=False)
    assert fresh.calls == [p.key() for p in _points()[1:]]


def test_torn_last_line_is_dropped(tmp_path):
    path = tmp_path / "results.jsonl"
    sweeps.run_sweep(_points()[:1], _FakeDecode(), path, progress=False)
    with open(path, "a") as f:
        f.write('{"key": "half a rec')  # The process died mid-write.
    fresh = _FakeDecode()
    records = sweeps.run_sweep(_points(), fresh, path, progress=False)
    assert len(fresh.calls) == 2
    assert len(records) == 3
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)


def test_resume_refuses_other_fingerprint(tmp_path):
    path = tmp_path / "results.jsonl"
    sweeps.run_sweep(_points()[:1], _FakeDecode(), path, fingerprint=FINGERPRINT, progress=False)
    with pytest.raises(ValueError, match="max_decode_len: 8 -> 16"):
        sweeps.run_sweep(
            _points(), _FakeDecode(), path, fingerprint={**FINGERPRINT, "max_decode_len": 16}
        )


def test_corrupt_middle_line_names_the_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"key": "a"}\nnot json\n')
    with pytest.raises(ValueError, match="results.jsonl:2"):
        sweeps.load_records(path)


def test_nan_is_stored_as_null(tmp_path):
    path = tmp_path / "results.jsonl"
    records = sweeps.run_sweep(
        _points()[:1], lambda p: {"quality": float("nan")}, path, progress=False
    )
    assert records[0]["quality"] is None
    assert json.loads(path.read_text())["quality"] is None


def test_default_grids_match_spec():
    grids = sweeps.DEFAULT_ALPHA_GRIDS
    assert grids["lossy"][-2:] == (0.95, 0.99) and len(grids["lossy"]) == 12
    assert grids["bild_star"] == (0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1)
    assert grids["spec_chow"] == grids["seq_cascade"] == grids["token_cascade"]
    assert len(grids["spec_chow"]) == 12
    assert grids["spec_diff"] == grids["spec_token_v1"] and len(grids["spec_diff"]) == 13
    assert (
        grids["spec_opt"][0] == -8 and grids["spec_opt"][-1] == 16 and len(grids["spec_opt"]) == 14
    )
    assert grids["spec_token_v2"][:3] == (-0.01, 0, 0.02) and len(grids["spec_token_v2"]) == 11
    assert grids["spec_token_v3"][:3] == (-0.01, 0, 0.1) and len(grids["spec_token_v3"]) == 13
    for method in sweeps.NO_ALPHA_METHODS:
        assert grids[method] == (None,)


@pytest.mark.parametrize(
    "method, alphas, match",
    [
        ("spec_foo", None, "unknown method 'spec_foo'"),
        ("verifier", [0.1], "takes no alpha"),
        ("spec_chow", [], "empty alpha grid"),
        ("spec_chow", [float("nan")], "finite"),
    ],
)
def test_method_sweep_rejects_bad_values(method, alphas, match):
    with pytest.raises(ValueError, match=match):
        sweeps.make_method_sweep(method, alphas)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperature": -1.0}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"gamma": 0}, "gamma"),
        ({"bonus_source": "drafter"}, "bonus_source"),
        ({"lossy_beta": "two"}, "lossy_beta"),
    ],
)
def test_sampling_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sweeps.SamplingConfig(**kwargs)
