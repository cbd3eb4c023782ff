"""Cost–quality curves (headless matplotlib): one line per method, reference lines for the models.

x axis: relative latency `L_rel` (verifier-only = 1), or any other cost such as the rejection rate;
y axis: the task metric. Each method is drawn as its raw points plus its Pareto front joined by
straight lines (the Table-2 interpolation); verifier-only is a horizontal line at `Q_ver` and a
vertical line at `L_rel = 1`; drafter-only and lossless SpecDecode are single marked points.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # Headless: set before pyplot is imported.
import matplotlib.pyplot as plt  # noqa: E402

from spec_cascade_jax.evaluation import tables  # noqa: E402

_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "h")


def plot_cost_quality(
    points_by_method: Mapping[str, Sequence[tuple[float, float]]],
    path: str | os.PathLike,
    *,
    q_ver: float | None = None,
    drafter: tuple[float, float] | None = None,
    spec_decode: tuple[float, float] | None = None,
    title: str = "",
    xlabel: str = "relative latency L_rel (verifier-only = 1)",
    ylabel: str = "quality",
) -> str:
    """Writes a PNG of quality against cost for every method; returns the path.

    Args:
      points_by_method: method id -> `(cost, quality)` points (any order).
      path: output PNG path (parent directories are created).
      q_ver: verifier-only quality (horizontal reference line), if known.
      drafter: drafter-only `(cost, quality)`, if known.
      spec_decode: lossless SpecDecode `(cost, quality)`, if known.
      title, xlabel, ylabel: labels.
    """
    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=120)
    order = [m for m in tables.BASELINE_ROWS + tables.PROPOSED_ROWS + tables.EXTRA_ROWS]
    order += sorted(m for m in points_by_method if m not in order)
    for i, method in enumerate(m for m in order if points_by_method.get(m)):
        points = points_by_method[method]
        front = tables.pareto_front(points)
        style = "--" if method in tables.BASELINE_ROWS else "-"
        line = ax.plot(
            [lat for lat, _ in front],
            [q for _, q in front],
            style,
            marker=_MARKERS[i % len(_MARKERS)],
            label=tables.method_display_name(method),
        )[0]
        finite = [(lat, q) for lat, q in points if lat is not None and q is not None]
        ax.scatter(
            [lat for lat, _ in finite],
            [q for _, q in finite],
            s=12,
            color=line.get_color(),
            alpha=0.4,
        )
    if q_ver is not None:
        ax.axhline(q_ver, color="black", linewidth=1.0, label=f"Verifier-only (Q = {q_ver:.3f})")
    ax.axvline(1.0, color="gray", linewidth=0.8, linestyle=":")
    if drafter is not None:
        ax.scatter(
            [drafter[0]], [drafter[1]], marker="x", s=60, color="black", label="Drafter-only"
        )
    if spec_decode is not None:
        ax.scatter(
            [spec_decode[0]],
            [spec_decode[1]],
            marker="+",
            s=80,
            color="black",
            label="SpecDecode [Lossless]",
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return os.fspath(path)
