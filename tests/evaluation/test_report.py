"""The report's cost-ratio reference line (evaluation/report.py)."""

from spec_cascade_jax.evaluation import report


def _records(t_drafter: float, t_verifier: float) -> list[dict]:
    cost = {
        "c": t_drafter / t_verifier if t_drafter > 0 and t_verifier > 0 else None,
        "t_drafter_s": t_drafter,
        "t_verifier_s": t_verifier,
        "gamma": 5,
        "speedup": 1.0,
    }

    def rec(method, quality, l_rel):
        return {
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
            "cost_model": dict(cost),
            "alpha": None,
        }

    return [rec("verifier", 2.0, 1.0), rec("drafter", 1.0, 0.3), rec("spec_chow", 1.5, 0.6)]


def test_cost_ratio_line_shows_c_when_both_per_token_times_are_positive():
    text = report.render_summary(_records(0.002, 0.008), title="t", paths={})
    assert "Measured cost ratio c = t_drafter / t_verifier = 0.2500" in text
    assert "not measurable" not in text


def test_cost_ratio_line_says_not_measurable_when_a_per_token_time_is_zero():
    text = report.render_summary(_records(0.0, 0.008), title="t", paths={})
    assert "Measured cost ratio c: not measurable" in text
    assert "t_drafter / t_verifier =" not in text
