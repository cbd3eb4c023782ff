"""Table-2 arithmetic and the cost model (SPEC §6, §7) on hand-computed examples."""

import math

import pytest

from spec_cascade_jax.evaluation import tables

# Exact-arithmetic examples; 1e-9 only absorbs float rounding of a few operations.
TOL = 1e-9


def test_pareto_front_drops_dominated_and_duplicate_points():
    points = [(1.0, 10.0), (0.5, 8.0), (0.7, 7.0), (0.5, 8.0), (0.5, 6.0), (1.2, 10.0), (2.0, 12.0)]
    # (0.7, 7) is dominated by (0.5, 8); (0.5, 6) too; (1.2, 10) by (1.0, 10).
    assert tables.pareto_front(points) == [(0.5, 8.0), (1.0, 10.0), (2.0, 12.0)]


def test_pareto_front_ignores_non_finite_points():
    assert tables.pareto_front([(0.5, math.nan), (math.inf, 3.0), (1.0, 2.0)]) == [(1.0, 2.0)]


def test_worked_example_from_module_docstring():
    points = [(0.4, 20.0), (0.6, 24.0), (1.2, 28.0), (0.9, 22.0)]  # (0.9, 22) is dominated.
    row = tables.table2_row("spec_chow", points, q_ver=26.0)
    assert row.front == ((0.4, 20.0), (0.6, 24.0), (1.2, 28.0))
    assert row.speedup == pytest.approx(1 / 0.9, abs=TOL)  # L_A = 0.6 + 0.5 * 0.6.
    assert row.speedup_raw == pytest.approx(1 / 1.2, abs=TOL)
    assert row.best_quality == pytest.approx(24 + 4 * 0.4 / 0.6, abs=TOL)
    assert row.best_quality_raw == pytest.approx(24.0, abs=TOL)
    assert row.num_points == 4


def test_not_reached_and_no_point():
    row = tables.table2_row("lossy", [(1.1, 10.0), (1.5, 11.0)], q_ver=12.0)
    assert row.speedup is None and row.speedup_raw is None
    assert row.best_quality is None and row.best_quality_raw is None
    md = tables.render_table2([row], q_ver=12.0)
    assert "| SpecDecode [Lossy] | not reached | not reached | — | — | 2 | 2 |" in md


def test_first_front_point_already_reaches_quality():
    row = tables.table2_row("bild_star", [(0.5, 30.0), (0.8, 31.0)], q_ver=26.0)
    assert row.speedup == pytest.approx(2.0, abs=TOL)  # No extrapolation left of the front.
    assert row.speedup_raw == pytest.approx(2.0, abs=TOL)
    # The whole front lies left of L_rel = 1: (B) is its last point, no extrapolation.
    assert row.best_quality == pytest.approx(31.0, abs=TOL)


def test_front_point_exactly_at_unit_latency():
    row = tables.table2_row("spec_opt", [(0.5, 20.0), (1.0, 25.0), (1.5, 30.0)], q_ver=25.0)
    assert row.best_quality == pytest.approx(25.0, abs=TOL)
    assert row.speedup == pytest.approx(1.0, abs=TOL)


def test_interpolation_helpers_outside_range():
    front = [(0.5, 1.0), (1.0, 2.0)]
    assert tables.interpolate_quality(front, 0.4) is None
    assert tables.interpolate_quality(front, 0.75) == pytest.approx(1.5, abs=TOL)
    assert tables.latency_at_quality(front, 2.5) is None
    assert tables.latency_at_quality(front, 1.25) == pytest.approx(0.625, abs=TOL)


def test_rows_follow_paper_order_with_separators():
    pts = {m: [(0.5, 1.0)] for m in ("spec_token_v3", "lossy", "seq_cascade", "spec_chow")}
    pts["spec_token_v1"] = [(0.5, 1.0)]
    pts["verifier"] = [(1.0, 1.0)]  # Reference lines never become rows.
    rows = tables.table2(pts, q_ver=1.0)
    assert [r.method for r in rows] == [
        "seq_cascade",
        "lossy",
        "spec_chow",
        "spec_token_v3",
        "spec_token_v1",
    ]
    md = tables.render_table2(rows, q_ver=1.0)
    names = [line.split("|")[1].strip() for line in md.splitlines()[2:]]
    assert names == [
        "SeqCascade [Chow]",
        "SpecDecode [Lossy]",
        "*proposed*",
        "SpecCascade [Chow]",
        "SpecCascade [Token]",
        "*ablation*",
        "SpecCascade [Token-v1]",
    ]
    # Every rendered line has the header's number of cells.
    assert {line.count("|") for line in md.splitlines()} == {8}


def test_table2_rejects_nan_reference():
    with pytest.raises(ValueError, match="q_ver"):
        tables.table2_row("spec_chow", [(0.5, 1.0)], q_ver=math.nan)


def test_cost_model_worked_example():
    # SPEC §6: a = 0.8, gamma = 5, c = 0.1 -> tau* = 3.689, S* = 2.460, S*+ = 2.306 (3 decimals).
    assert tables.tau_star(0.8, 5) == pytest.approx(3.689, abs=5e-4)
    assert tables.ideal_speedup(0.8, 5, 0.1) == pytest.approx(2.460, abs=5e-4)
    assert tables.ideal_speedup_sync(0.8, 5, 0.1) == pytest.approx(2.306, abs=5e-4)
    # Exact forms.
    assert tables.tau_star(0.8, 5) == pytest.approx((1 - 0.8**6) / 0.2, abs=TOL)


@pytest.mark.parametrize("gamma", [1, 3, 7])
def test_tau_star_limits(gamma):
    assert tables.tau_star(1.0, gamma) == gamma + 1
    assert tables.tau_star(0.0, gamma) == 1.0
    assert tables.tau_star(0.999999, gamma) == pytest.approx(gamma + 1, abs=1e-4)


def test_best_gamma():
    # a = 0.8, c = 0.1: S*(gamma) = (1 - .8^(g+1)) / (.2 (0.1 g + 1)); g=4: 2.4011,
    # g=5: 2.4595, g=6: 2.4696, g=7: 2.4477.
    assert tables.best_gamma(0.8, 0.1) == 6
    assert tables.best_gamma(0.0, 0.1) == 1


@pytest.mark.parametrize(
    "args, match",
    [((1.5, 5, 0.1), "acceptance"), ((0.5, 0, 0.1), "gamma"), ((0.5, 5, -1.0), "cost ratio")],
)
def test_cost_model_rejects_bad_values(args, match):
    with pytest.raises(ValueError, match=match):
        tables.ideal_speedup(*args)


def test_render_markdown_table():
    md = tables.render_markdown_table(["a", "b"], [[1.23456, None], ["x", 2]])
    assert md.splitlines() == ["| a | b |", "|---|---|", "| 1.235 | — |", "| x | 2 |"]
    with pytest.raises(ValueError, match="cells"):
        tables.render_markdown_table(["a"], [[1, 2]])
