"""The report's cost-ratio reference line (evaluation/report.py)."""

from spec_cascade_jax.evaluation import report


def _records(t_drafter: float | None, t_verifier: float | None) -> list[dict]:
    per_token = {"verifier": t_verifier, "drafter": t_drafter}

    def rec(method, quality, l_rel):
        out = {
            "method": method,
            "tag": "",
            "quality": quality,
            "l_rel": l_rel,
            "metric": "bleu",
            "latency": {
                "mean_s": 0.01 * l_rel,
                "std_s": 0.0,
                "num_examples": 2,
                "trial_means_s": [0.01 * l_rel],
            },
            "stats": {},
            "alpha": None,
        }
        if per_token.get(method) is not None:
            out["per_token_s"] = per_token[method]
        return out

    return [rec("verifier", 2.0, 1.0), rec("drafter", 1.0, 0.3), rec("spec_chow", 1.5, 0.6)]


def test_cost_ratio_line_shows_c_when_both_per_token_times_are_positive():
    text = report.render_summary(_records(0.002, 0.008), title="t", paths={})
    assert "Measured cost ratio c = t_drafter / t_verifier = 0.2500" in text
    assert "not measurable" not in text


def test_cost_ratio_line_says_not_measurable_when_a_per_token_time_is_zero():
    text = report.render_summary(_records(0.0, 0.008), title="t", paths={})
    assert "Measured cost ratio c: not measurable" in text
    assert "t_drafter / t_verifier =" not in text


def test_cost_ratio_line_absent_without_per_token_times():
    # e.g. a run without latency: no c line at all, and no claim that it was unmeasurable.
    text = report.render_summary(_records(None, None), title="t", paths={})
    assert "Measured cost ratio" not in text


def test_cost_ratio_line_with_references_only():
    # The references alone (no sweep point) are enough to report c.
    records = [r for r in _records(0.001, 0.004) if r["method"] != "spec_chow"]
    text = report.render_summary(records, title="t", paths={})
    assert "Measured cost ratio c = t_drafter / t_verifier = 0.2500" in text
