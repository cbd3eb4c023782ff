"""Run-level statistics from per-row counters (SPEC.md §5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


def summarize_stats(stats: Mapping[str, Any], method: str | None = None) -> dict[str, Any]:
    """Aggregates per-row counters (arrays concatenated over a run) into the SPEC §5 statistics.

    Returns n_tok, n_ver, n_dr (totals), block_efficiency τ = Σ N_tok / Σ N_ver, acceptance_rate
    a = A / (A + J), rejection_rate, deferral_rate δ = Σ η / Σ N_tok (None for lossy SD, which has
    no δ), acceptance_hist H[k] (last bin: rounds ended by an accepted EOS), per_position_acceptance
    c_j and seq_deferred_frac.
    """
    s = {k: np.asarray(v) for k, v in stats.items()}
    n_tok, n_ver = int(s["n_tok"].sum()), int(s["n_ver"].sum())
    acc, rej = int(s["accepted"].sum()), int(s["rejected"].sum())
    tested_at = s["tested_at"].sum(axis=0)
    accepted_at = s["accepted_at"].sum(axis=0)
    per_pos = [_ratio(a, t) for a, t in zip(accepted_at, tested_at, strict=True)]
    acceptance = _ratio(acc, acc + rej)
    return {
        "n_tok": n_tok,
        "n_ver": n_ver,
        "n_dr": int(s["n_dr"].sum()),
        "n_enc_drafter": int(s["n_enc_drafter"].sum()),
        "n_enc_verifier": int(s["n_enc_verifier"].sum()),
        "num_examples": int(s["n_tok"].shape[0]),
        "block_efficiency": _ratio(n_tok, n_ver),
        "acceptance_rate": acceptance,
        "rejection_rate": None if acceptance is None else 1.0 - acceptance,
        "deferral_rate": None if method == "lossy" else _ratio(float(s["eta_sum"].sum()), n_tok),
        "acceptance_hist": s["hist"].sum(axis=0).astype(int).tolist(),
        "per_position_acceptance": per_pos,
        "seq_deferred_frac": float(s["seq_deferred"].mean()) if s["seq_deferred"].size else None,
    }


def concat_stats(parts: list[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Concatenates per-row stats dicts of several batches along the batch axis."""
    return {k: np.concatenate([np.asarray(p[k]) for p in parts], axis=0) for k in parts[0]}
