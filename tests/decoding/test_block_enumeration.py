"""Exact enumeration of the speculative round (SPEC §2, §9 block-level test), no sampling.

With toy Markov tables over V = 3 (EOS = 1), every draft and coin outcome of a round is enumerated
in float64 for gamma in {1, 2}, rounds are chained until 3 tokens (or EOS) are emitted, and the
joint law of the first three tokens is compared with the sequential chain y_t ~ pi_t. With the
target bonus they agree to 1e-12; with the verifier bonus they differ visibly whenever pi != p.
"""

from __future__ import annotations

import functools
import itertools

import jax
import numpy as np
import pytest

from spec_cascade_jax import testing
from spec_cascade_jax.decoding import rules
from spec_cascade_jax.decoding.speculative import correction_distribution

V, H, EOS = 3, 3, 1
RNG = np.random.default_rng(7)
Q_TABLE = RNG.dirichlet(np.ones(V) * 0.8, size=(V + 1, V))  # [position bucket, prev] -> dist
P_TABLE = RNG.dirichlet(np.ones(V) * 0.8, size=(V + 1, V))


def dists(prefix):
    prev = prefix[-1] if prefix else 0
    t = min(len(prefix), V)
    return Q_TABLE[t, prev], P_TABLE[t, prev]


@functools.cache
def target(rule, alpha, prefix):
    q, p = dists(prefix)
    with jax.enable_x64(True):
        pi, _ = rule.target(q, p, q, p, np.float64(alpha), np.float64(1.0))
        return np.asarray(pi, np.float64)


def round_law(rule, alpha, gamma, prefix, bonus):
    """Law of the tokens one round emits from `prefix`: {emitted tuple: probability}."""
    law = {}
    for drafts in itertools.product(range(V), repeat=gamma):
        mass = 1.0
        for j, d in enumerate(drafts):
            mass *= dists(prefix + drafts[:j])[0][d]
        if mass == 0:
            continue
        reach = mass  # probability of reaching test j with all earlier drafts accepted
        for j, d in enumerate(drafts):
            ctx = prefix + drafts[:j]
            q, p = dists(ctx)
            pi = target(rule, alpha, ctx)
            acc = min(1.0, pi[d] / q[d])
            with jax.enable_x64(True):
                resid = np.asarray(correction_distribution(pi, q))
            for c in range(V):
                key = drafts[:j] + (c,)
                law[key] = law.get(key, 0.0) + reach * (1 - acc) * resid[c]
            reach *= acc
            if d == EOS:  # accepted EOS ends the round; later drafts are never tested
                law[drafts[: j + 1]] = law.get(drafts[: j + 1], 0.0) + reach
                reach = 0.0
                break
        if reach > 0:
            ctx = prefix + drafts
            last = target(rule, alpha, ctx) if bonus == "target" else dists(ctx)[1]
            for b in range(V):
                law[drafts + (b,)] = law.get(drafts + (b,), 0.0) + reach * last[b]
    return law


def speculative_law(rule, alpha, gamma, bonus):
    final, frontier = {}, {(): 1.0}
    while frontier:
        nxt = {}
        for prefix, mass in frontier.items():
            for emitted, m in round_law(rule, alpha, gamma, prefix, bonus).items():
                seq = prefix + emitted
                if EOS in seq:
                    seq = seq[: seq.index(EOS) + 1]
                seq = seq[:H]
                bucket = final if (len(seq) >= H or seq[-1] == EOS) else nxt
                bucket[seq] = bucket.get(seq, 0.0) + mass * m
        frontier = nxt
    return final


def chain_law(rule, alpha):
    return testing.enumerate_sequences(lambda pr: target(rule, alpha, tuple(pr)), V, H)


CASES = [(rules.Chow(), 0.5), (rules.Opt(), 1.0), (rules.TokenV3(), 0.3)]


@pytest.mark.parametrize("gamma", [1, 2])
@pytest.mark.parametrize("rule,alpha", CASES)
def test_target_bonus_is_exact(rule, alpha, gamma):
    spec = speculative_law(rule, alpha, gamma, "target")
    chain = chain_law(rule, alpha)
    assert abs(sum(spec.values()) - 1) < 1e-12
    assert testing.total_variation(spec, chain) < 1e-12


@pytest.mark.parametrize("gamma", [1, 2])
@pytest.mark.parametrize("rule,alpha", CASES)
def test_verifier_bonus_is_not_exact(rule, alpha, gamma):
    spec = speculative_law(rule, alpha, gamma, "verifier")
    assert testing.total_variation(spec, chain_law(rule, alpha)) > 1e-3


def test_lossless_target_verifier_bonus_coincide():
    rule = rules.VerifierTarget()
    a = speculative_law(rule, 0.0, 2, "target")
    b = speculative_law(rule, 0.0, 2, "verifier")
    assert testing.total_variation(a, b) < 1e-12
    assert testing.total_variation(a, chain_law(rule, 0.0)) < 1e-12
