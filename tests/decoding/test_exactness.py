"""Monte Carlo exactness: every speculative method samples its sequential target chain (SPEC §2).

Two toy table models (vocabulary 6 real ids padded to 8, horizon 3 tokens) stand in for drafter and
verifier. For each method the exact law of output sequences of the sequential chain y_t ~ pi_t is
computed by enumeration, and N = 20,000 rows (same input, per-row keys) are decoded with the jitted
loop. The test asserts TV(empirical, exact) <= `tv_bound(law, N, delta=1e-6)`, a bound that a
correct sampler exceeds with probability at most 1e-6 (see `testing.tv_bound`). Negative controls
break the sampler on purpose and must exceed the same bound.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spec_cascade_jax import testing
from spec_cascade_jax.decoding import generate, get_rule, speculative, warps

N = 20_000
MAX_LEN = 3
MODEL = testing.TableLM(vocab_size=8, real_vocab_size=6, num_positions=4)
DRAFTER_PARAMS = MODEL.init_params(jax.random.PRNGKey(11), scale=1.2)
VERIFIER_PARAMS = MODEL.init_params(jax.random.PRNGKey(22), scale=1.8)
SOURCE = 1
INPUTS = np.full((N, 2), SOURCE, np.int32)

ALPHAS = {
    "spec_decode": 0.0,
    "lossy": 0.5,
    "bild_star": 0.3,
    "spec_chow": 0.5,
    "spec_diff": 0.05,
    "spec_opt": 1.0,
    "spec_token_v1": 0.1,
    "spec_token_v2": 0.1,
    "spec_token_v3": 0.3,
}


PREFIXES = [()] + [(a,) for a in range(8)] + [(a, b) for a in range(8) for b in range(8)]


@functools.cache
def _all_dists(temperature, top_k):
    """(q_raw, q_w, p_raw, p_w) for every prefix shorter than MAX_LEN, computed in one batch."""
    out = []
    for params in (DRAFTER_PARAMS, VERIFIER_PARAMS):
        logits = np.stack([MODEL.next_logits_np(params, SOURCE, pr) for pr in PREFIXES])
        raw, warped = warps.warp(
            jnp.asarray(logits),
            real_vocab_size=MODEL.real_vocab_size,
            temperature=temperature,
            top_k=top_k,
        )
        out += [raw, warped]
    return tuple(out)


def _dists(prefix, temperature, top_k):
    i = PREFIXES.index(tuple(prefix))
    return [np.asarray(x[i]) for x in _all_dists(temperature, top_k)]


def exact_law(method, alpha, temperature, top_k):
    q_raw, q_w, p_raw, p_w = _all_dists(temperature, top_k)
    pi, _ = get_rule(method).target(
        q_raw, p_raw, q_w, p_w, jnp.float32(alpha), jnp.float32(temperature)
    )
    pi = np.asarray(pi, np.float64)
    return testing.enumerate_sequences(
        lambda prefix: pi[PREFIXES.index(tuple(prefix))], MODEL.vocab_size, MAX_LEN
    )


def sampled_law(method, alpha, gamma, temperature, top_k, seed=0, **kw):
    out = generate(
        MODEL,
        DRAFTER_PARAMS,
        MODEL,
        VERIFIER_PARAMS,
        INPUTS,
        method=method,
        alpha=alpha,
        gamma=gamma,
        temperature=temperature,
        top_k=top_k,
        max_decode_len=MAX_LEN,
        rng=jax.random.PRNGKey(seed),
        **kw,
    )
    return testing.empirical_law(out.tokens, out.lengths)


ALL_CONFIGS = [(g, t, k) for g in (1, 3) for t in (1.0, 0.5) for k in (0, 3)]
# The fast suite decodes every method once, cycling through the (gamma, T, top-k) grid so every
# combination is covered by at least two methods; the slow suite runs the full cross product.
FAST = [(m, *ALL_CONFIGS[i % len(ALL_CONFIGS)]) for i, m in enumerate(sorted(ALPHAS))]
SLOW = [(m, *c) for m in sorted(ALPHAS) for c in ALL_CONFIGS if (m, *c) not in FAST]


def _check(method, gamma, temperature, top_k):
    alpha = ALPHAS[method]
    law = exact_law(method, alpha, temperature, top_k)
    emp = sampled_law(method, alpha, gamma, temperature, top_k)
    tv, bound = testing.total_variation(emp, law), testing.tv_bound(law, N)
    assert tv <= bound, (method, gamma, temperature, top_k, tv, bound)


@pytest.mark.parametrize("method,gamma,temperature,top_k", FAST)
def test_speculative_method_matches_its_target_chain(method, gamma, temperature, top_k):
    _check(method, gamma, temperature, top_k)


@pytest.mark.slow
@pytest.mark.parametrize("method,gamma,temperature,top_k", SLOW)
def test_speculative_method_matches_its_target_chain_full_grid(method, gamma, temperature, top_k):
    _check(method, gamma, temperature, top_k)


def test_lossless_spec_decode_matches_verifier_only():
    law = testing.enumerate_sequences(
        lambda prefix: np.asarray(_dists(prefix, 1.0, 0)[3], np.float64), MODEL.vocab_size, MAX_LEN
    )
    for method, gamma in (("spec_decode", 3), ("verifier", 1)):
        emp = sampled_law(method, 0.0, gamma, 1.0, 0, seed=5)
        assert testing.total_variation(emp, law) <= testing.tv_bound(law, N), method


@pytest.mark.parametrize("method,alpha", [("token_cascade", 0.5), ("spec_chow", 0.5)])
def test_token_cascade_equals_spec_chow_law(method, alpha):
    """TokenCascade [Chow] and SpecCascade [Chow] at the same α share the exact law (SPEC §3.3)."""
    law = exact_law("spec_chow", alpha, 1.0, 0)
    emp = sampled_law(method, alpha, 2, 1.0, 0, seed=3)
    assert testing.total_variation(emp, law) <= testing.tv_bound(law, N)


def test_seq_cascade_law():
    alpha, temperature = 0.5, 1.0  # defers 60% of the drafter's output mass
    dr_law, scores = {}, {}

    def drafter_dist(prefix):
        q_raw, q_w, _, _ = _dists(prefix, temperature, 0)
        return np.asarray(q_w, np.float64)

    dr_law = testing.enumerate_sequences(drafter_dist, MODEL.vocab_size, MAX_LEN)
    for seq in dr_law:
        peaks = [float(np.max(_dists(seq[:t], temperature, 0)[0])) for t in range(len(seq))]
        scores[seq] = np.mean(peaks)
    ver_law = testing.enumerate_sequences(
        lambda prefix: np.asarray(_dists(prefix, temperature, 0)[3], np.float64),
        MODEL.vocab_size,
        MAX_LEN,
    )
    defer_mass = sum(m for s, m in dr_law.items() if scores[s] < 1 - alpha)
    assert 0.1 < defer_mass < 0.9  # the threshold splits the drafter's outputs
    law = {s: m for s, m in dr_law.items() if scores[s] >= 1 - alpha}
    for s, m in ver_law.items():
        law[s] = law.get(s, 0.0) + defer_mass * m
    emp = sampled_law("seq_cascade", alpha, 1, temperature, 0, seed=4)
    assert testing.total_variation(emp, law) <= testing.tv_bound(law, N)


# --- negative controls: broken samplers must fail the same check -------------------------------


def test_negative_control_verifier_bonus_is_not_exact():
    # OPT at alpha = 2 keeps the drafter often, so pi differs from p at many bonus positions.
    law = exact_law("spec_opt", 2.0, 1.0, 0)
    emp = sampled_law("spec_opt", 2.0, 1, 1.0, 0, bonus_source="verifier")
    assert testing.total_variation(emp, law) > testing.tv_bound(law, N)


def test_negative_control_dropped_residual_fails(monkeypatch):
    """Sampling the correction from pi instead of norm(max(0, pi - q)) must be detected."""
    monkeypatch.setattr(speculative, "correction_distribution", lambda pi, q_w: pi)
    jax.clear_caches()
    try:
        law = exact_law("spec_decode", 0.0, 1.0, 0)
        emp = sampled_law("spec_decode", 0.0, 1, 1.0, 0)
        assert testing.total_variation(emp, law) > testing.tv_bound(law, N)
    finally:
        monkeypatch.undo()
        jax.clear_caches()
