"""Table-2 of the paper (SPEC §7) and the speculative-decoding cost model (SPEC §6).

Pure Python, no JAX: it reads result points, never models.

**Table-2 protocol.** Every (method, α) run gives a point `(L_rel, Q)`: latency relative to
verifier-only (lower is better) and quality (higher is better). Per method we keep the Pareto front
(points not dominated in lower `L_rel` and higher `Q`), sorted by `L_rel`, so `Q` rises strictly
along it, and join adjacent front points by straight lines **[choice: linear interpolation]**.
Then, each next to its raw-grid value (the same question asked of the grid points alone):

* (A) speed-up at matched quality, `1 / L_A`, with `L_A` the smallest `L_rel` on the interpolated
  front where `Q >= Q_ver`; "not reached" if the front never reaches `Q_ver`.
* (B) best quality within the verifier's latency: the largest `Q` on the front with `L_rel <= 1`,
  interpolated at `L_rel = 1` when the front crosses it; "—" if no point has `L_rel <= 1`.

Worked example: front `(0.4, 20), (0.6, 24), (1.2, 28)` and `Q_ver = 26`. (A): `Q_ver` lies on the
segment `(0.6, 24)-(1.2, 28)` at `L_A = 0.6 + (26 - 24) / (28 - 24) * 0.6 = 0.9`, speed-up 1.111×;
the raw grid first reaches 26 at `L_rel = 1.2`, speed-up 0.833×. (B): the front crosses `L_rel = 1`
on the same segment at `Q = 24 + (1 - 0.6) / 0.6 * 4 = 26.667`; the raw grid gives 24.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence

NOT_REACHED = "not reached"
NO_POINT = "—"

# Display names, in the paper's vocabulary.
METHOD_NAMES: Mapping[str, str] = {
    "drafter": "Drafter-only",
    "verifier": "Verifier-only",
    "spec_decode": "SpecDecode [Lossless]",
    "lossy": "SpecDecode [Lossy]",
    "bild_star": "BiLD*",
    "token_cascade": "TokenCascade [Chow]",
    "seq_cascade": "SeqCascade [Chow]",
    "spec_chow": "SpecCascade [Chow]",
    "spec_diff": "SpecCascade [Diff]",
    "spec_opt": "SpecCascade [OPT]",
    "spec_token_v1": "SpecCascade [Token-v1]",
    "spec_token_v2": "SpecCascade [Token-v2]",
    "spec_token_v3": "SpecCascade [Token]",
}

# Table-2 rows in the paper's order (SPEC §7); the main "[Token]" row is Token-v3 [choice].
BASELINE_ROWS: tuple[str, ...] = ("seq_cascade", "token_cascade", "lossy", "bild_star")
PROPOSED_ROWS: tuple[str, ...] = ("spec_chow", "spec_diff", "spec_opt", "spec_token_v3")
# Rows shown under the table (ablations) when present.
EXTRA_ROWS: tuple[str, ...] = ("spec_token_v1", "spec_token_v2")
# Reference lines: one point each, not swept.
REFERENCE_METHODS: tuple[str, ...] = ("verifier", "drafter", "spec_decode")


def method_display_name(method: str) -> str:
    """The paper's name of `method` (the method id itself when unknown)."""
    return METHOD_NAMES.get(method, method)


# ----------------------------------------------------------------------------------------------
# Pareto front and interpolation.


def _finite_points(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out = []
    for latency, quality in points:
        latency, quality = float(latency), float(quality)
        if math.isfinite(latency) and math.isfinite(quality):
            out.append((latency, quality))
    return out


def pareto_front(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Non-dominated `(L_rel, Q)` points, sorted by `L_rel` ascending (so `Q` strictly rises).

    A point is dominated when another has `L_rel <=` and `Q >=` with at least one strict; exact
    duplicates collapse to one point. Non-finite points are ignored.
    """
    pts = sorted(set(_finite_points(points)), key=lambda lq: (lq[0], -lq[1]))
    front: list[tuple[float, float]] = []
    for latency, quality in pts:
        if front and quality <= front[-1][1]:
            continue  # Some point at least as fast is at least as good.
        front.append((latency, quality))
    return front


def interpolate_quality(front: Sequence[tuple[float, float]], latency: float) -> float | None:
    """Quality of the piecewise-linear front at `latency` (None outside the front's range)."""
    if not front or latency < front[0][0] or latency > front[-1][0]:
        return None
    for (l0, q0), (l1, q1) in zip(front[:-1], front[1:], strict=True):
        if l0 <= latency <= l1:
            return q0 + (latency - l0) / (l1 - l0) * (q1 - q0)
    return front[-1][1]  # Single-point front at exactly this latency.


def latency_at_quality(front: Sequence[tuple[float, float]], quality: float) -> float | None:
    """Smallest `L_rel` on the interpolated front with `Q >= quality` (None if never reached)."""
    for i, (l1, q1) in enumerate(front):
        if q1 >= quality:
            if i == 0:
                return l1
            l0, q0 = front[i - 1]
            return l0 + (quality - q0) / (q1 - q0) * (l1 - l0)
    return None


def best_quality_within(
    front: Sequence[tuple[float, float]], max_latency: float = 1.0
) -> float | None:
    """Largest `Q` on the interpolated front with `L_rel <= max_latency` (None if no point)."""
    below = [(lat, q) for lat, q in front if lat <= max_latency]
    if not below:
        return None
    best_l, best_q = below[-1]
    following = [(lat, q) for lat, q in front if lat > max_latency]
    if following and best_l < max_latency:
        l1, q1 = following[0]
        return best_q + (max_latency - best_l) / (l1 - best_l) * (q1 - best_q)
    return best_q


def raw_latency_at_quality(points: Iterable[tuple[float, float]], quality: float) -> float | None:
    """Smallest grid `L_rel` with `Q >= quality`, no interpolation (None if none)."""
    ok = [lat for lat, q in _finite_points(points) if q >= quality]
    return min(ok) if ok else None


def raw_best_quality_within(
    points: Iterable[tuple[float, float]], max_latency: float = 1.0
) -> float | None:
    """Largest grid `Q` with `L_rel <= max_latency`, no interpolation (None if none)."""
    ok = [q for lat, q in _finite_points(points) if lat <= max_latency]
    return max(ok) if ok else None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Table2Row:
    """One method's Table-2 entries. `None` speed-up = not reached; `None` quality = no point."""

    method: str
    num_points: int
    front: tuple[tuple[float, float], ...]
    speedup: float | None  # (A) 1 / L_A on the interpolated front.
    speedup_raw: float | None  # (A) on the raw grid.
    best_quality: float | None  # (B) interpolated at L_rel = 1 when the front crosses it.
    best_quality_raw: float | None  # (B) on the raw grid.

    @property
    def name(self) -> str:
        return method_display_name(self.method)


def table2_row(method: str, points: Sequence[tuple[float, float]], q_ver: float) -> Table2Row:
    """Table-2 entries (A) and (B) of one method from its `(L_rel, Q)` points."""
    if not math.isfinite(q_ver):
        raise ValueError(f"q_ver must be finite, got {q_ver!r}")
    front = pareto_front(points)
    l_a = latency_at_quality(front, q_ver)
    l_a_raw = raw_latency_at_quality(points, q_ver)
    return Table2Row(
        method=method,
        num_points=len(_finite_points(points)),
        front=tuple(front),
        speedup=None if l_a is None else _inverse(l_a),
        speedup_raw=None if l_a_raw is None else _inverse(l_a_raw),
        best_quality=best_quality_within(front, 1.0),
        best_quality_raw=raw_best_quality_within(points, 1.0),
    )


def _inverse(latency: float) -> float:
    return math.inf if latency <= 0 else 1.0 / latency


def table2(
    points_by_method: Mapping[str, Sequence[tuple[float, float]]], q_ver: float
) -> list[Table2Row]:
    """Table-2 rows: baselines, then proposed, then ablation rows, for methods that have points.

    Methods outside the known row lists (other than the reference lines) come last, sorted.
    """
    known = BASELINE_ROWS + PROPOSED_ROWS + EXTRA_ROWS
    others = sorted(m for m in points_by_method if m not in known and m not in REFERENCE_METHODS)
    return [
        table2_row(method, points_by_method[method], q_ver)
        for method in known + tuple(others)
        if points_by_method.get(method)
    ]


# ----------------------------------------------------------------------------------------------
# Markdown rendering.


def format_speedup(value: float | None) -> str:
    """`1.234×`, or "not reached"."""
    return NOT_REACHED if value is None else f"{value:.3f}×"


def format_quality(value: float | None) -> str:
    """`12.345`, or "—"."""
    return NO_POINT if value is None else f"{value:.3f}"


def render_table2(rows: Sequence[Table2Row], q_ver: float, *, metric: str = "Q") -> str:
    """Markdown Table-2; a row in italics separates baselines, proposed rows and ablations."""
    header = (
        f"| Method | (A) speed-up at Q ≥ Q_ver = {q_ver:.3f} | (A) raw grid "
        f"| (B) best {metric} at L_rel ≤ 1 | (B) raw grid | points | front |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    lines = []
    previous_group = None
    for row in rows:
        group = (
            "baseline"
            if row.method in BASELINE_ROWS
            else "proposed"
            if row.method in PROPOSED_ROWS
            else "extra"
        )
        if previous_group is not None and group != previous_group:
            label = "proposed" if group == "proposed" else "ablation"
            lines.append(f"| *{label}* |" + " |" * 6)
        previous_group = group
        lines.append(
            f"| {row.name} | {format_speedup(row.speedup)} | {format_speedup(row.speedup_raw)} "
            f"| {format_quality(row.best_quality)} | {format_quality(row.best_quality_raw)} "
            f"| {row.num_points} | {len(row.front)} |"
        )
    return header + "\n".join(lines) + "\n"


def render_markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain Markdown table; floats are shown with 4 significant decimals, None as "—"."""

    def cell(value: object) -> str:
        if value is None:
            return NO_POINT
        if isinstance(value, float):
            return "nan" if math.isnan(value) else f"{value:.4g}"
        return str(value)

    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, expected {len(headers)}: {row!r}")
        out.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------
# Cost model (SPEC §6; Leviathan et al. 2023).


def _check_cost_args(a: float, gamma: int, c: float | None = None) -> None:
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"acceptance rate a must be in [0, 1], got {a!r}")
    if int(gamma) != gamma or gamma < 1:
        raise ValueError(f"gamma must be an integer >= 1, got {gamma!r}")
    if c is not None and not c >= 0.0:
        raise ValueError(f"cost ratio c must be >= 0, got {c!r}")


def tau_star(a: float, gamma: int) -> float:
    """Expected tokens per verifier call under i.i.d. acceptance: `(1 - a^(γ+1)) / (1 - a)`."""
    _check_cost_args(a, gamma)
    if a == 1.0:
        return float(gamma + 1)
    return (1.0 - a ** (gamma + 1)) / (1.0 - a)


def ideal_speedup(a: float, gamma: int, c: float) -> float:
    """Leviathan's ideal speed-up `S* = τ* / (γ c + 1)`, with `c = t_drafter / t_verifier`."""
    _check_cost_args(a, gamma, c)
    return tau_star(a, gamma) / (gamma * c + 1.0)


def ideal_speedup_sync(a: float, gamma: int, c: float) -> float:
    """Ideal speed-up with our sync step (γ+1 drafter steps per round): `τ* / ((γ+1) c + 1)`."""
    _check_cost_args(a, gamma, c)
    return tau_star(a, gamma) / ((gamma + 1) * c + 1.0)


def best_gamma(a: float, c: float, gammas: Iterable[int] = range(1, 33)) -> int:
    """`argmax_γ S*` at the measured `(a, c)` (smallest γ on ties), for the γ ablation."""
    gammas = list(gammas)
    if not gammas:
        raise ValueError("gammas must not be empty")
    return max(gammas, key=lambda g: (ideal_speedup(a, g, c), -g))
