"""Markdown report and cost–quality plot from the records of one evaluation run.

Input: the JSONL records written by `runner.run_eval` (one per method × α × seed; see
`runner.py` for the fields). Output: `report.md` with the setup, the reference lines, Table-2
(`tables.py`), one row per point (quality, `L_rel`, block efficiency, acceptance, deferral,
calls, cost-model speed-ups) and the SPEC [choice] fields, plus `cost_quality.png`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from spec_cascade_jax.evaluation import plots, tables

REPORT_FILENAME = "report.md"
PLOT_FILENAME = "cost_quality.png"
DEFERRAL_PLOT_FILENAME = "deferral_quality.png"


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunSummary:
    """The numbers the report is made of."""

    q_ver: float | None  # mean verifier-only quality over its seeds
    q_ver_seeds: tuple[float, ...]
    verifier: Mapping[str, Any] | None  # main-seed verifier-only record
    drafter: Mapping[str, Any] | None
    spec_decode: Mapping[str, Any] | None
    sweep: tuple[Mapping[str, Any], ...]  # every main-seed record, in file order
    points_by_method: Mapping[str, list[tuple[float, float]]]  # (L_rel, Q), sweep methods only
    rows: tuple[tables.Table2Row, ...]


def _main(record: Mapping[str, Any]) -> bool:
    return not record.get("tag")


def summarize(records: Sequence[Mapping[str, Any]]) -> RunSummary:
    """Groups records into references and sweep points and computes Table-2."""
    verifier_runs = [r for r in records if r["method"] == "verifier"]
    seeds = tuple(float(r["quality"]) for r in verifier_runs if r.get("quality") is not None)
    q_ver = statistics.fmean(seeds) if seeds else None

    def first(method: str) -> Mapping[str, Any] | None:
        return next((r for r in records if r["method"] == method and _main(r)), None)

    main = tuple(r for r in records if _main(r))
    points: dict[str, list[tuple[float, float]]] = {}
    for r in main:
        if r["method"] in tables.REFERENCE_METHODS:
            continue
        if r.get("l_rel") is None or r.get("quality") is None:
            continue
        points.setdefault(r["method"], []).append((float(r["l_rel"]), float(r["quality"])))
    rows = tuple(tables.table2(points, q_ver)) if q_ver is not None else ()
    return RunSummary(
        q_ver=q_ver,
        q_ver_seeds=seeds,
        verifier=first("verifier"),
        drafter=first("drafter"),
        spec_decode=first("spec_decode"),
        sweep=main,
        points_by_method=points,
        rows=rows,
    )


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return tables.NO_POINT
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _per_example(record: Mapping[str, Any], field: str) -> float | None:
    stats = record.get("stats") or {}
    n = stats.get("num_examples")
    return stats[field] / n if n and stats.get(field) is not None else None


def _point_rows(summary: RunSummary) -> list[list[Any]]:
    rows = []
    for r in summary.sweep:
        stats = r.get("stats") or {}
        latency = r.get("latency") or {}
        cost = r.get("cost_model") or {}
        rows.append(
            [
                tables.method_display_name(r["method"]),
                _fmt(r.get("alpha")),
                _fmt(r.get("quality")),
                _fmt(r.get("l_rel")),
                _fmt(latency.get("mean_s"), 4),
                _fmt(latency.get("std_s"), 4),
                _fmt(stats.get("block_efficiency")),
                _fmt(cost.get("tau_star")),
                _fmt(stats.get("acceptance_rate")),
                _fmt(stats.get("deferral_rate")),
                _fmt(stats.get("seq_deferred_frac")),
                _fmt(_per_example(r, "n_tok"), 2),
                _fmt(_per_example(r, "n_ver"), 2),
                _fmt(_per_example(r, "n_dr"), 2),
                _fmt(cost.get("speedup")),
                _fmt(cost.get("ideal_speedup")),
                _fmt(cost.get("ideal_speedup_sync")),
                _fmt(cost.get("efficiency")) + (" ⚠" if _too_fast(cost) else ""),
                _fmt(cost.get("best_gamma")),
            ]
        )
    return rows


_POINT_HEADERS = (
    "method",
    "α",
    "Q",
    "L_rel",
    "latency s/ex",
    "± std",
    "τ",
    "τ*",
    "a",
    "δ",
    "seq deferred",
    "N_tok/ex",
    "N_ver/ex",
    "N_dr/ex",
    "S = 1/L_rel",
    "S*",
    "S*₊",
    "ε = S/S*",
    "argmax_γ S*",
)


def _too_fast(cost: Mapping[str, Any]) -> bool:
    """SPEC §6: a measured speed-up above 1.05 S* needs investigating."""
    return cost.get("efficiency") is not None and cost["efficiency"] > 1.05


def _reference_lines(summary: RunSummary) -> list[str]:
    lines = []
    if summary.q_ver is not None:
        spread = statistics.stdev(summary.q_ver_seeds) if len(summary.q_ver_seeds) > 1 else 0.0
        seeds = ", ".join(f"{q:.3f}" for q in summary.q_ver_seeds)
        lines.append(
            f"- **Verifier-only**: Q_ver = {summary.q_ver:.3f} (mean of {len(summary.q_ver_seeds)} "
            f"seed(s): {seeds}; std {spread:.3f}); L_rel = 1 by definition"
        )
    if summary.verifier and summary.verifier.get("latency"):
        lat = summary.verifier["latency"]
        lines.append(
            f"- Verifier-only latency: {lat['mean_s']:.5f} ± {lat['std_s']:.5f} s/example "
            f"({lat['num_examples']} examples × {len(lat['trial_means_s'])} trial(s))"
        )
    for name, record in (
        ("Drafter-only", summary.drafter),
        ("SpecDecode [Lossless]", summary.spec_decode),
    ):
        if record is None:
            continue
        stats = record.get("stats") or {}
        lines.append(
            f"- **{name}**: Q = {_fmt(record.get('quality'))}, L_rel = {_fmt(record.get('l_rel'))}"
            f", τ = {_fmt(stats.get('block_efficiency'))}, a = {_fmt(stats.get('acceptance_rate'))}"
        )
    # c from the two reference runs' per-token decode times (runner: latency minus encoder time,
    # clamped at 0), the same numbers every point's cost_model uses.
    t_dr = (summary.drafter or {}).get("per_token_s")
    t_ver = (summary.verifier or {}).get("per_token_s")
    if t_dr is not None and t_ver is not None:
        if t_dr > 0 and t_ver > 0:
            lines.append(
                f"- Measured cost ratio c = t_drafter / t_verifier = {t_dr / t_ver:.4f} "
                f"(per-token decode times {t_dr:.6f} s and {t_ver:.6f} s)"
            )
        else:  # a clamped 0 (timing noise on very small models): a ratio would be meaningless
            lines.append(
                "- Measured cost ratio c: not measurable (a per-token decode time, latency minus "
                "encoder time, came out ≤ 0)"
            )
    return lines


def _table2_lines(summary: RunSummary, metric: str) -> list[str]:
    if summary.q_ver is None:
        return ["Table-2 needs the verifier-only quality; it has not been computed.", ""]
    if not summary.rows:
        return [
            "No swept method has both a quality and a relative latency (latency disabled?).",
            "",
        ]
    return [
        "(A) speed-up 1/L_A at matched quality (L_A: smallest L_rel on the linearly "
        "interpolated Pareto front with Q ≥ Q_ver); (B) best Q on the front with L_rel ≤ 1, "
        "interpolated at L_rel = 1. Raw grid: the same without interpolation.",
        "",
        tables.render_table2(summary.rows, summary.q_ver, metric=metric),
    ]


def render_summary(
    records: Sequence[Mapping[str, Any]], *, title: str, paths: Mapping[str, str]
) -> str:
    """What a finished run prints: reference lines, Table-2 and the files it wrote."""
    if not records:
        raise ValueError("no records to summarize")
    summary = summarize(records)
    metric = records[0].get("metric", "Q")
    out = [f"# {title}", ""] + _reference_lines(summary) + [""]
    out += ["## Table 2", ""] + _table2_lines(summary, metric)
    out += ["Written:"] + [f"  {name}: {path}" for name, path in paths.items()]
    return "\n".join(out) + "\n"


def render_report(
    records: Sequence[Mapping[str, Any]],
    *,
    title: str,
    plot_filename: str | None = PLOT_FILENAME,
    results_filename: str = "results.jsonl",
    choices: Mapping[str, Any] | None = None,
) -> str:
    """The Markdown report of one run (see the module docstring).

    `choices` (default: those stored with the first record) are the [choice] fields to list; a
    resumed run passes its own, e.g. after densifying an α grid.
    """
    if not records:
        raise ValueError("no records to report")
    summary = summarize(records)
    first = records[0]
    fingerprint = first.get("fingerprint") or {}
    metric = first.get("metric", "Q")
    out = [f"# {title}", ""]
    out += ["## Setup", ""]
    out += [f"- {k}: `{json.dumps(v)}`" for k, v in sorted(fingerprint.items()) if k != "sampling"]
    out += [f"- sampling: `{json.dumps(first.get('sampling'), sort_keys=True)}`"]
    env = first.get("environment") or {}
    if env:
        out += [f"- environment: `{json.dumps(env, sort_keys=True)}`"]
    out += [f"- metric: {metric} (higher is better)", f"- results: `{results_filename}`", ""]
    out += ["## Reference lines", ""] + _reference_lines(summary) + [""]
    out += ["## Table 2", ""] + _table2_lines(summary, metric)
    if plot_filename:
        out += [f"![cost-quality curves]({plot_filename})", ""]
    out += ["## All points", ""]
    out += [
        "τ: measured tokens per verifier call; τ*, S*, S*₊: the i.i.d. cost model (SPEC §6) at "
        "the measured acceptance a and cost ratio c; ε = S / S*. ⚠ marks S > 1.05 S*, which "
        "usually means the verifier-only baseline ran a slower code path.",
        "",
        tables.render_markdown_table(_POINT_HEADERS, _point_rows(summary)),
    ]
    out += ["## Choices (SPEC [choice] fields)", ""]
    choices = choices if choices is not None else (first.get("choices") or {})
    out += [f"- {k}: `{json.dumps(v)}`" for k, v in sorted(choices.items())]
    return "\n".join(out) + "\n"


def write_report(
    records: Sequence[Mapping[str, Any]],
    output_dir: str | os.PathLike,
    *,
    title: str,
    make_plot: bool = True,
    choices: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Writes report.md (and the PNGs); returns their paths by name."""
    summary = summarize(records)
    paths = {}
    metric = records[0].get("metric", "quality") if records else "quality"
    if make_plot:
        refs = {}
        for name, record in (("drafter", summary.drafter), ("spec_decode", summary.spec_decode)):
            if record and record.get("l_rel") is not None and record.get("quality") is not None:
                refs[name] = (float(record["l_rel"]), float(record["quality"]))
        paths["plot"] = plots.plot_cost_quality(
            summary.points_by_method,
            os.path.join(output_dir, PLOT_FILENAME),
            q_ver=summary.q_ver,
            title=title,
            ylabel=metric,
            **refs,
        )
        deferral = {}
        for r in summary.sweep:
            delta = (r.get("stats") or {}).get("deferral_rate")
            if r["method"] not in tables.REFERENCE_METHODS and delta is not None:
                if r.get("quality") is not None:
                    deferral.setdefault(r["method"], []).append((float(delta), float(r["quality"])))
        if deferral:
            paths["deferral_plot"] = plots.plot_cost_quality(
                deferral,
                os.path.join(output_dir, DEFERRAL_PLOT_FILENAME),
                q_ver=summary.q_ver,
                title=title,
                xlabel="deferral rate δ",
                ylabel=metric,
            )
    text = render_report(
        records,
        title=title,
        plot_filename=PLOT_FILENAME if make_plot else None,
        choices=choices,
    )
    paths["report"] = os.path.join(output_dir, REPORT_FILENAME)
    with open(paths["report"], "w", encoding="utf-8") as f:
        f.write(text)
    return paths
