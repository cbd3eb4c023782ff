"""Rule functions against the worked example of SPEC.md §9 (exact to float32 round-off)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from spec_cascade_jax.decoding import get_rule, rules, validate_method_alpha, warps
from spec_cascade_jax.decoding.speculative import correction_distribution

Q = np.array([0.50, 0.30, 0.15, 0.05], np.float32)
P = np.array([0.20, 0.45, 0.30, 0.05], np.float32)
TOL = 1e-6  # float32 round-off on numbers of order 1


def target(rule, alpha, q_w=Q, p_w=P, temperature=1.0):
    pi, eta = rule.target(
        jnp.asarray(Q),
        jnp.asarray(P),
        jnp.asarray(q_w),
        jnp.asarray(p_w),
        jnp.float32(alpha),
        jnp.float32(temperature),
    )
    return np.asarray(pi), float(eta)


# rule, alpha, eta, pi, P(accept d=0), residual, P(reject)
WORKED = [
    (rules.Chow(), 0.4, 1.0, P, 0.40, (0, 0.5, 0.5, 0), 0.30),
    (rules.Chow(), 0.6, 0.0, Q, 1.0, None, 0.0),
    (rules.Diff(), -0.1, 1.0, P, 0.40, (0, 0.5, 0.5, 0), 0.30),
    (rules.Opt(), -0.1, 0.0, Q, 1.0, None, 0.0),
    (rules.BiLDStar(), 0.2, 1.0, P, 0.40, (0, 0.5, 0.5, 0), 0.30),
    (rules.TokenV1(), 0.1, 0.5, (0.60, 0.225, 0.15, 0.025), 1.0, (1, 0, 0, 0), 0.10),
    (rules.TokenV2(), 0.2, 0.55, (0.11, 0.5475, 0.315, 0.0275), 0.22, (0, 0.6, 0.4, 0), 0.4125),
    (rules.TokenV3(), 0.4, 0.55, (0.11, 0.5475, 0.315, 0.0275), 0.22, (0, 0.6, 0.4, 0), 0.4125),
    (rules.Lossy(), 0.5, None, (0.40, 0.35, 0.20, 0.05), 0.80, (0, 0.5, 0.5, 0), 0.10),
    (
        rules.Lossy(beta="normalized"),
        0.5,
        None,
        (0.40, 0.33, 0.22, 0.05),
        0.80,
        (0, 0.3, 0.7, 0),
        0.10,
    ),
]


@pytest.mark.parametrize("rule,alpha,eta,pi,p_acc,resid,p_rej", WORKED)
def test_worked_example(rule, alpha, eta, pi, p_acc, resid, p_rej):
    got_pi, got_eta = target(rule, alpha)
    np.testing.assert_allclose(got_pi, pi, atol=TOL)
    assert abs(got_pi.sum() - 1) < TOL
    if eta is not None:
        assert abs(got_eta - eta) < TOL
    assert abs(min(1.0, got_pi[0] / Q[0]) - p_acc) < TOL
    # Lemma 3: P(reject) = sum max(0, q - pi).
    assert abs(np.maximum(Q - got_pi, 0).sum() - p_rej) < TOL
    if resid is not None:
        got_resid = np.asarray(correction_distribution(jnp.asarray(got_pi), jnp.asarray(Q)))
        np.testing.assert_allclose(got_resid, resid, atol=TOL)


def test_token_v1_other_draft_acceptance():
    pi, _ = target(rules.TokenV1(), 0.1)
    assert abs(pi[1] / Q[1] - 0.75) < TOL


def test_lossy_beta_one_differs_from_exact_target():
    one, _ = target(rules.Lossy(), 0.5)
    exact, _ = target(rules.Lossy(beta="normalized"), 0.5)
    assert np.abs(one - exact).max() > 0.01


def _warped(temperature):
    q_raw, q_w = warps.warp(jnp.log(jnp.asarray(Q)), real_vocab_size=4, temperature=temperature)
    p_raw, p_w = warps.warp(jnp.log(jnp.asarray(P)), real_vocab_size=4, temperature=temperature)
    return np.asarray(q_w), np.asarray(p_w), np.asarray(q_raw), np.asarray(p_raw)


def test_temperature_vector():
    q_w, p_w, q_raw, p_raw = _warped(0.5)
    np.testing.assert_allclose(q_w, np.array([100, 36, 9, 1]) / 146, atol=TOL)
    np.testing.assert_allclose(p_w, np.array([16, 81, 36, 1]) / 134, atol=TOL)
    np.testing.assert_allclose(q_raw, Q, atol=TOL)
    assert abs(float(rules.total_variation(q_w, p_w)) - 0.565529) < 1e-6
    # OPT (-0.1) defers under the correct raw/warped split.
    pi, eta = target(rules.Opt(), -0.1, q_w, p_w, 0.5)
    assert eta == 1.0
    np.testing.assert_allclose(pi, p_w, atol=TOL)
    assert abs(pi[0] / q_w[0] - 0.174328) < 1e-6
    resid = np.asarray(correction_distribution(jnp.asarray(pi), jnp.asarray(q_w)))
    np.testing.assert_allclose(resid, (0, 0.632863, 0.366052, 0.001085), atol=1e-6)
    # Token-v3 (0.4): keep set from raw p, mixture from warped.
    pi, eta = target(rules.TokenV3(), 0.4, q_w, p_w, 0.5)
    assert abs(eta - 0.691781) < 1e-6
    np.testing.assert_allclose(pi, (0.082601, 0.664741, 0.247495, 0.005163), atol=1e-6)
    assert abs(pi[0] / q_w[0] - 0.120597) < 1e-6
    resid = np.asarray(correction_distribution(jnp.asarray(pi), jnp.asarray(q_w)))
    np.testing.assert_allclose(resid, (0, 9 / 13, 4 / 13, 0), atol=1e-6)
    assert abs(np.maximum(q_w - pi, 0).sum() - 0.604018) < 1e-6


@pytest.mark.parametrize("alpha,emitted", [(0.4, 1), (0.6, 0)])
def test_greedy_token_v3_equals_greedy_lenience(alpha, emitted):
    q_w, p_w, _, _ = _warped(0.0)
    np.testing.assert_array_equal(q_w, [1, 0, 0, 0])
    np.testing.assert_array_equal(p_w, [0, 1, 0, 0])
    for rule in (rules.TokenV3(), rules.Lossy()):
        pi, _ = target(rule, alpha, q_w, p_w, 0.0)
        # Deterministic round: accept d=0 iff pi = onehot(0), else emit argmax pi.
        out = 0 if pi[0] == 1.0 else int(np.argmax(correction_distribution(pi, q_w)))
        assert out == emitted, rule


def test_endpoints():
    # Diff at -1, Token-v1 at -1, Token-v2/v3 below 0 are lossless (pi = p); at +1 drafter (pi = q).
    for rule, lossless, drafter in [
        (rules.Diff(), -1.0, 1.0),
        (rules.TokenV1(), -1.0, 1.0),
        (rules.TokenV2(), -0.01, 1.0),
        (rules.TokenV3(), -0.01, 1.0),
        (rules.BiLDStar(), 0.0, 1.0),
        (rules.Lossy(), 0.0, None),
    ]:
        np.testing.assert_allclose(target(rule, lossless)[0], P, atol=TOL, err_msg=rule.name)
        if drafter is not None:
            np.testing.assert_allclose(target(rule, drafter)[0], Q, atol=TOL, err_msg=rule.name)
    # Token-v2/v3 at alpha = 0 are not lossless: token 1 (verifier argmax) is kept.
    assert np.abs(target(rules.TokenV3(), 0.0)[0] - P).max() > 0.01


@pytest.mark.parametrize(
    "method,alpha",
    [
        ("lossy", 1.0),
        ("lossy", -0.1),
        ("spec_chow", 1.5),
        ("spec_diff", -1.2),
        ("bild_star", -0.01),
        ("spec_token_v3", 2.0),
        ("spec_opt", float("nan")),
    ],
)
def test_alpha_out_of_range_is_named(method, alpha):
    with pytest.raises(ValueError, match="alpha"):
        validate_method_alpha(method, alpha)


def test_unknown_method_is_named():
    with pytest.raises(ValueError, match="spec_bogus"):
        get_rule("spec_bogus")


def test_top_k_top_p_and_padding():
    logits = jnp.log(jnp.array([0.1, 0.4, 0.3, 0.2, 0.5]))  # id 4 is padding
    raw, w = warps.warp(logits, real_vocab_size=4, temperature=1.0, top_k=2)
    np.testing.assert_allclose(raw, [0.1, 0.4, 0.3, 0.2, 0.0], atol=TOL)
    np.testing.assert_allclose(w, [0, 4 / 7, 3 / 7, 0, 0], atol=TOL)
    _, w = warps.warp(logits, real_vocab_size=4, temperature=1.0, top_p=0.65)
    np.testing.assert_allclose(w, [0, 4 / 7, 3 / 7, 0, 0], atol=TOL)  # .4 + .3 reaches .65
    _, w = warps.warp(logits, real_vocab_size=4, temperature=1.0, top_p=0.71)
    np.testing.assert_allclose(w, [0, 4 / 9, 3 / 9, 2 / 9, 0], atol=TOL)  # .7 < .71: one more
    _, w = warps.warp(logits, real_vocab_size=4, temperature=0.0)
    np.testing.assert_array_equal(w, [0, 1, 0, 0, 0])
