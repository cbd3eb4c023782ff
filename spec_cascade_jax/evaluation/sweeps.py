"""Resumable sweeps over (method, α, sampling config), one JSONL record per finished point.

A sweep is a list of `SweepPoint`s. `run_sweep` evaluates them in order with a caller-supplied
function and appends one JSON line per point to a results file as soon as the point finishes
(flushed and fsync'ed), so a crash or a kill loses at most the point in flight. Rerunning the same
sweep on the same file skips every point whose key (method, α, sampling config, tag) is already
there. A torn last line (the process died mid-write) is cut off on load.

Every record carries the run's *fingerprint* (task, split, models, lengths, ...: whatever decides
whether two results are comparable) and the SPEC's [choice] fields. Resuming into a file written
with a different fingerprint is refused, naming the differing fields, so results from different
setups never mix in one table.

The α grids of SPEC §7 live here (`DEFAULT_ALPHA_GRIDS`); `gin_configs/methods/*.gin` repeat them
and a test keeps the two equal.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import gin
import numpy as np
from absl import logging
from tqdm import tqdm

# Methods that have no α: one point each.
NO_ALPHA_METHODS: tuple[str, ...] = ("drafter", "verifier", "spec_decode")

_CHOW = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
_DIFF = (-1.0, -0.5, -0.3, -0.2, -0.1, -0.05, 0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)

# SPEC §7 "α grids [choice]".
DEFAULT_ALPHA_GRIDS: Mapping[str, tuple[float, ...] | tuple[None]] = {
    "drafter": (None,),
    "verifier": (None,),
    "spec_decode": (None,),
    "lossy": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99),
    "bild_star": (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0),
    "token_cascade": _CHOW,
    "seq_cascade": _CHOW,
    "spec_chow": _CHOW,
    "spec_diff": _DIFF,
    "spec_opt": (-8.0, -4.0, -2.0, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
    "spec_token_v1": _DIFF,
    "spec_token_v2": (-0.01, 0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0),
    "spec_token_v3": (-0.01, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
}

BONUS_SOURCES = ("target", "verifier")
LOSSY_BETAS = ("one", "normalized")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SamplingConfig:
    """The sampler shared by every method of one comparison (SPEC §7 "Decoding configurations").

    Attributes:
      temperature: `T`; 0 is greedy (one-hot argmax, ties to the lowest id).
      top_k: keep the k most probable tokens; 0 disables.
      top_p: nucleus mass; 1.0 disables.
      gamma: drafted tokens per verifier call (speculative methods).
      bonus_source: "target" (exact, default) or "verifier" (labelled ablation, SPEC §2).
      lossy_beta: residual scale of lossy speculative decoding, "one" (β = 1) or "normalized" (β*).
      seed: base seed; example `i` uses `fold_in(PRNGKey(seed), i)`.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    gamma: int = 5
    bonus_source: str = "target"
    lossy_beta: str = "one"
    seed: int = 0

    def __post_init__(self):
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be finite and >= 0, got {self.temperature!r}")
        if int(self.top_k) != self.top_k or self.top_k < 0:
            raise ValueError(f"top_k must be an integer >= 0, got {self.top_k!r}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if int(self.gamma) != self.gamma or self.gamma < 1:
            raise ValueError(f"gamma must be an integer >= 1, got {self.gamma!r}")
        if self.bonus_source not in BONUS_SOURCES:
            raise ValueError(
                f"bonus_source must be one of {BONUS_SOURCES}, got {self.bonus_source!r}"
            )
        if self.lossy_beta not in LOSSY_BETAS:
            raise ValueError(f"lossy_beta must be one of {LOSSY_BETAS}, got {self.lossy_beta!r}")
        if int(self.seed) != self.seed:
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "temperature": float(self.temperature),
            "top_k": int(self.top_k),
            "top_p": float(self.top_p),
            "gamma": int(self.gamma),
            "bonus_source": self.bonus_source,
            "lossy_beta": self.lossy_beta,
            "seed": int(self.seed),
        }


@gin.configurable
def sampling_config(
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    gamma: int = 5,
    bonus_source: str = "target",
    lossy_beta: str = "one",
    seed: int = 0,
) -> SamplingConfig:
    """Gin factory for `SamplingConfig` (see its attributes)."""
    return SamplingConfig(
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        gamma=gamma,
        bonus_source=bonus_source,
        lossy_beta=lossy_beta,
        seed=seed,
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class MethodSweep:
    """One method and the α values to run it at (`(None,)` for methods without α)."""

    method: str
    alphas: tuple[float | None, ...]


@gin.configurable
def method_sweep(method: str = gin.REQUIRED, alphas: Sequence[float] | None = None) -> MethodSweep:
    """Gin factory for `MethodSweep`.

    Args:
      method: a method id (`spec_cascade_jax.decoding.METHODS`).
      alphas: the α grid; None takes the SPEC §7 default grid of `method`. Ignored (must be None or
        empty) for drafter / verifier / spec_decode, which have no α.
    """
    return make_method_sweep(method, alphas)


def make_method_sweep(method: str, alphas: Sequence[float] | None = None) -> MethodSweep:
    """`MethodSweep` with the SPEC §7 default grid when `alphas` is None; validates names."""
    if method not in DEFAULT_ALPHA_GRIDS:
        raise ValueError(f"unknown method {method!r}; known: {sorted(DEFAULT_ALPHA_GRIDS)}")
    if method in NO_ALPHA_METHODS:
        if alphas:
            raise ValueError(f"method {method!r} takes no alpha, got alphas={list(alphas)!r}")
        return MethodSweep(method=method, alphas=(None,))
    grid = DEFAULT_ALPHA_GRIDS[method] if alphas is None else tuple(alphas)
    if not grid:
        raise ValueError(f"empty alpha grid for method {method!r}")
    for alpha in grid:
        if (
            not isinstance(alpha, int | float)
            or isinstance(alpha, bool)
            or not math.isfinite(alpha)
        ):
            raise ValueError(f"alpha values must be finite numbers, got {alpha!r} for {method!r}")
    return MethodSweep(method=method, alphas=tuple(float(a) + 0.0 for a in grid))


def as_method_sweep(spec: MethodSweep | str) -> MethodSweep:
    """Accepts a `MethodSweep` or a bare method id (default grid)."""
    if isinstance(spec, MethodSweep):
        return spec
    if isinstance(spec, str):
        return make_method_sweep(spec)
    raise ValueError(f"a method must be a method id or a MethodSweep, got {spec!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SweepPoint:
    """One point of a sweep. `tag` tells apart repeated runs of one setting (e.g. extra seeds)."""

    method: str
    alpha: float | None
    sampling: SamplingConfig
    tag: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "alpha": None if self.alpha is None else float(self.alpha) + 0.0,
            "sampling": self.sampling.to_dict(),
            "tag": self.tag,
        }

    def key(self) -> str:
        """Canonical JSON of (method, α, sampling, tag): the resume key."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))


def expand_points(
    methods: Iterable[MethodSweep | str], sampling: SamplingConfig, tag: str = ""
) -> list[SweepPoint]:
    """All (method, α) points of `methods` under one sampling config, in order, no duplicates."""
    points: list[SweepPoint] = []
    seen: set[str] = set()
    for spec in methods:
        sweep = as_method_sweep(spec)
        for alpha in sweep.alphas:
            point = SweepPoint(method=sweep.method, alpha=alpha, sampling=sampling, tag=tag)
            if point.key() not in seen:
                seen.add(point.key())
                points.append(point)
    return points


# ----------------------------------------------------------------------------------------------
# JSONL storage.


def to_jsonable(value: Any) -> Any:
    """Converts numpy values and containers to plain JSON types; NaN/inf become None."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    return value


def load_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Reads a results file. A torn last line (no trailing newline) is cut from the file."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        data = f.read()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        logging.warning("%s: dropping a torn last line of %d bytes", path, len(data) - cut)
        with open(path, "r+b") as f:
            f.truncate(cut)
        data = data[:cut]
    records = []
    for lineno, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: not a JSON record ({e})") from e
    return records


def append_record(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Appends one JSON line and makes it durable (flush + fsync) before returning."""
    line = json.dumps(to_jsonable(record), sort_keys=True, allow_nan=False)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def _fingerprint_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def check_fingerprint(
    records: Sequence[Mapping[str, Any]], fingerprint: Mapping[str, Any], path: str | os.PathLike
) -> None:
    """Raises ValueError if a stored record was written under a different fingerprint."""
    current = to_jsonable(dict(fingerprint))
    for record in records:
        stored = record.get("fingerprint")
        if stored is not None and stored != current:
            diff = "; ".join(_fingerprint_diff(stored, current))
            raise ValueError(
                f"{path} holds results of a different setup ({diff}); use another output "
                "directory or set resume=False to start over"
            )


def run_sweep(
    points: Sequence[SweepPoint],
    evaluate: Callable[[SweepPoint], Mapping[str, Any]],
    results_path: str | os.PathLike,
    *,
    fingerprint: Mapping[str, Any] | None = None,
    choices: Mapping[str, Any] | None = None,
    progress: bool = True,
    description: str = "sweep",
) -> list[dict[str, Any]]:
    """Evaluates the points not yet in `results_path`; returns the records of all `points`.

    Args:
      points: the sweep, in evaluation order.
      evaluate: `point -> results` (a JSON-able mapping); called once per missing point.
      results_path: JSONL file, created if missing, appended to.
      fingerprint: what makes results comparable; stored in every record and checked on resume.
      choices: the SPEC [choice] fields, stored in every record.
      progress: show a tqdm bar.
      description: label of the bar and the log lines.

    Returns:
      One record per point, in the order of `points` (stored records for skipped points).
    """
    keys = [p.key() for p in points]
    if len(set(keys)) != len(keys):
        raise ValueError(
            "duplicate sweep points: " + ", ".join(k for k in keys if keys.count(k) > 1)
        )
    os.makedirs(os.path.dirname(os.path.abspath(results_path)), exist_ok=True)
    stored = load_records(results_path)
    if fingerprint is not None:
        check_fingerprint(stored, fingerprint, results_path)
    done = {r["key"]: r for r in stored if "key" in r}
    todo = [p for p in points if p.key() not in done]
    if len(todo) < len(points):
        logging.info(
            "%s: %d of %d points already in %s; skipping them",
            description,
            len(points) - len(todo),
            len(points),
            results_path,
        )
    for point in tqdm(todo, desc=description, disable=not progress, leave=False):
        logging.info(
            "%s: evaluating %s alpha=%s %s", description, point.method, point.alpha, point.tag
        )
        start = time.perf_counter()
        results = dict(evaluate(point))
        clash = {"key", "point", "method", "alpha", "tag", "sampling"} & set(results)
        if clash:
            raise ValueError(f"evaluate() returned reserved fields {sorted(clash)}")
        record = {
            "key": point.key(),
            **point.to_dict(),
            **results,
            "choices": dict(choices or {}),
            "fingerprint": dict(fingerprint or {}),
            "elapsed_s": time.perf_counter() - start,
            "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        record = to_jsonable(record)
        append_record(results_path, record)
        done[point.key()] = record
    return [done[k] for k in keys]
