"""The `generate` entry point on tiny T5 pairs and toy models: greedy exactness, batching,
compilation count, statistics bookkeeping and input validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spec_cascade_jax import testing
from spec_cascade_jax.decoding import (
    METHODS,
    SPECULATIVE_METHODS,
    compiled_variants,
    generate,
    speculative,
    summarize_stats,
)
from spec_cascade_jax.models.t5 import config as t5_config
from spec_cascade_jax.models.t5.network import T5Model

VERIFIER = T5Model(t5_config.tiny(vocab_size=64, real_vocab_size=60))
DRAFTER = T5Model(
    t5_config.tiny(
        vocab_size=64,
        real_vocab_size=60,
        d_model=16,
        d_ff=32,
        num_decoder_layers=1,
        num_encoder_layers=1,
    )
)
V_PARAMS = VERIFIER.init_params(jax.random.PRNGKey(1))
D_PARAMS = DRAFTER.init_params(jax.random.PRNGKey(2))
# Rows of different lengths (0 = padding), each ending in EOS.
INPUTS = np.array(
    [[5, 9, 13, 22, 7, 1], [8, 3, 1, 0, 0, 0], [40, 41, 42, 43, 1, 0], [17, 1, 0, 0, 0, 0]],
    np.int32,
)
KEY = jax.random.PRNGKey(0)


def run(method, drafter=DRAFTER, d_params=D_PARAMS, **kw):
    kw.setdefault("max_decode_len", 12)
    return generate(drafter, d_params, VERIFIER, V_PARAMS, INPUTS, method=method, rng=KEY, **kw)


@pytest.mark.parametrize("gamma", [1, 3, 5])
def test_greedy_spec_decode_equals_verifier_greedy(gamma):
    ref = run("verifier", temperature=0.0)
    out = run("spec_decode", gamma=gamma, temperature=0.0)
    np.testing.assert_array_equal(out.tokens, ref.tokens)
    np.testing.assert_array_equal(out.lengths, ref.lengths)
    # The drafter really differs from the verifier, so some drafts were rejected.
    assert int(out.stats.rejected.sum()) > 0


def test_greedy_verifier_matches_argmax_of_teacher_forcing():
    ref = run("verifier", temperature=0.0)
    dec_in = jnp.concatenate([jnp.zeros((4, 1), jnp.int32), ref.tokens[:, :-1]], axis=1)
    logits = VERIFIER.forward(V_PARAMS, jnp.asarray(INPUTS), dec_in)
    logits = jnp.where(jnp.arange(64) < 60, logits, -jnp.inf)
    argmax = np.asarray(jnp.argmax(logits, axis=-1))
    for b, n in enumerate(np.asarray(ref.lengths)):
        np.testing.assert_array_equal(np.asarray(ref.tokens)[b, :n], argmax[b, :n])


@pytest.mark.parametrize("gamma", [2, 4])
def test_drafter_equal_to_verifier_accepts_everything(gamma):
    out = run(
        "spec_decode",
        drafter=VERIFIER,
        d_params=V_PARAMS,
        gamma=gamma,
        max_decode_len=3 * (gamma + 1),
        temperature=1.0,
    )
    s = summarize_stats(out.stats.as_dict())
    assert s["acceptance_rate"] == 1.0
    tokens = np.asarray(out.tokens)
    for b in range(len(INPUTS)):
        if 1 not in tokens[b]:  # no EOS: three full rounds of gamma + 1 tokens
            assert int(out.stats.n_ver[b]) == 3 and int(out.stats.n_tok[b]) == 3 * (gamma + 1)
    no_eos = [b for b in range(len(INPUTS)) if 1 not in tokens[b]]
    assert no_eos, "fixture should have rows without EOS"


TOY = testing.TableLM(vocab_size=8, real_vocab_size=6, num_positions=6)
TOY_D, TOY_V = TOY.init_params(jax.random.PRNGKey(3)), TOY.init_params(jax.random.PRNGKey(4))
TOY_INPUTS = np.array([[0, 1], [1, 1], [2, 1], [3, 1], [1, 1], [2, 1]], np.int32)


def run_toy(method, inputs=TOY_INPUTS, **kw):
    kw.setdefault("max_decode_len", 12)
    return generate(TOY, TOY_D, TOY, TOY_V, inputs, method=method, rng=KEY, **kw)


def test_t5_row_output_does_not_depend_on_batch():
    full = run("spec_token_v3", alpha=0.3, temperature=1.0, gamma=3)
    one = generate(
        DRAFTER,
        D_PARAMS,
        VERIFIER,
        V_PARAMS,
        INPUTS[2:3],
        method="spec_token_v3",
        alpha=0.3,
        temperature=1.0,
        gamma=3,
        max_decode_len=12,
        rng=KEY,
        example_ids=[2],
    )
    np.testing.assert_array_equal(one.tokens[0], full.tokens[2])


@pytest.mark.parametrize("method", ["spec_opt", "token_cascade", "seq_cascade", "drafter"])
def test_row_output_does_not_depend_on_batch(method):
    full = run_toy(method, alpha=0.3, temperature=1.0, gamma=3)
    sub = run_toy(
        method, inputs=TOY_INPUTS[[4, 1]], example_ids=[4, 1], alpha=0.3, temperature=1.0, gamma=3
    )
    np.testing.assert_array_equal(sub.tokens, full.tokens[np.array([4, 1])])
    for field in ("n_tok", "n_ver", "n_dr", "accepted", "rejected"):
        np.testing.assert_array_equal(
            getattr(sub.stats, field), getattr(full.stats, field)[np.array([4, 1])]
        )


def test_alpha_sweep_compiles_once():
    run_toy("spec_opt", alpha=0.0, gamma=2, temperature=0.7)
    before = compiled_variants()
    for alpha in (-1.0, 0.5, 1.0, 2.0, 4.0):
        run_toy("spec_opt", alpha=alpha, gamma=2, temperature=0.7)
    run_toy("spec_opt", alpha=0.1, gamma=2, temperature=0.3, top_p=0.9)  # T, top-p traced too
    assert compiled_variants() == before
    run_toy("spec_opt", alpha=0.1, gamma=2, max_decode_len=11)  # a new shape: a new program
    assert compiled_variants() == before + 1


def test_shared_program_matches_per_method_programs_and_compiles_once():
    alpha = {"spec_diff": 0.1, "spec_token_v1": 0.1, "lossy": 0.5}
    kw = dict(gamma=3, temperature=0.8)  # shapes shared with test_statistics_are_consistent
    run_toy("spec_chow", alpha=0.3, shared_program=True, **kw)  # compile the shared program
    before = compiled_variants()
    for method in SPECULATIVE_METHODS:
        a = alpha.get(method, 0.3)
        shared = run_toy(method, alpha=a, shared_program=True, **kw)
        assert compiled_variants() == before, method  # every method reuses the one program
        own = run_toy(method, alpha=a, **kw)
        np.testing.assert_array_equal(shared.tokens, own.tokens, err_msg=method)
        for field, value in own.stats.as_dict().items():
            np.testing.assert_allclose(
                getattr(shared.stats, field), value, rtol=1e-6, err_msg=f"{method} {field}"
            )
        before = compiled_variants()  # the per-method program was new; the shared one is not


@pytest.mark.parametrize("method", METHODS)
def test_statistics_are_consistent(method):
    alpha = {"spec_diff": 0.1, "spec_token_v1": 0.1}.get(method, 0.4)
    out = run_toy(method, alpha=alpha, gamma=3, temperature=1.0)
    s = out.stats
    np.testing.assert_array_equal(s.n_tok, out.lengths)
    tokens = np.asarray(out.tokens)
    for b, n in enumerate(np.asarray(out.lengths)):
        assert n == 12 or tokens[b, n - 1] == 1  # ends at the cap or with EOS
        assert (tokens[b, n:] == 0).all()
    if method.startswith("spec") or method in ("lossy", "bild_star"):
        np.testing.assert_array_equal(s.hist.sum(axis=1), s.n_ver)
        np.testing.assert_array_equal(s.accepted + s.rejected, s.tested_at.sum(axis=1))
        np.testing.assert_array_equal(s.accepted, s.accepted_at.sum(axis=1))
        np.testing.assert_array_equal(s.n_dr, 4 * s.n_ver)
        assert (np.asarray(s.n_tok) <= 4 * np.asarray(s.n_ver)).all()
    summary = summarize_stats(s.as_dict(), method)
    assert summary["n_tok"] == int(np.sum(out.lengths))
    if method == "verifier":
        assert summary["n_ver"] == summary["n_tok"] and summary["deferral_rate"] == 1.0
    if method == "drafter":
        assert summary["n_ver"] == 0 and summary["n_dr"] == summary["n_tok"]


def test_counting_example_of_spec():
    """gamma = 5, drafts 1-2 accepted, draft 3 rejected -> 3 tokens, A = 2, J = 1, bin 2."""
    V, g = 4, 5
    drafts = jnp.array([[2, 3, 2, 3, 2]])
    q = jnp.full((1, g + 1, V), 0.25)
    pi = q.at[0, 2].set(jnp.array([0.5, 0.5, 0.0, 0.0]))  # pi(d_3 = 2) = 0: sure rejection
    keys = jax.random.split(KEY, 3)[None]
    block, k, eos_end, rejected = speculative.accept_and_emit(
        keys, drafts, q, q, pi, bonus_source="target"
    )
    assert int(k[0]) == 2 and bool(rejected[0]) and not bool(eos_end[0])
    assert int(block[0, 2]) in (0, 1)  # the correction is drawn from norm(max(0, pi - q))
    np.testing.assert_array_equal(block[0, :2], [2, 3])


def test_accepted_eos_ends_round_without_extra_token():
    V, g = 4, 3
    drafts = jnp.array([[2, 1, 3]])  # EOS (1) drafted at position 2
    q = jnp.full((1, g + 1, V), 0.25)
    block, k, eos_end, rejected = speculative.accept_and_emit(
        jax.random.split(KEY, 3)[None], drafts, q, q, q, bonus_source="target"
    )
    assert int(k[0]) == 2 and bool(eos_end[0]) and not bool(rejected[0])


def test_toy_rollback_through_the_loop():
    """A toy model whose logits read the previous cache slot: greedy SD == greedy verifier."""
    ref = run_toy("verifier", temperature=0.0)
    out = run_toy("spec_decode", gamma=3, temperature=0.0)
    np.testing.assert_array_equal(out.tokens, ref.tokens)
    assert int(out.stats.rejected.sum()) > 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(method="spec_bogus"), "spec_bogus"),
        (dict(method="spec_chow", gamma=0), "gamma"),
        (dict(method="spec_chow", top_k=-1), "top_k"),
        (dict(method="spec_chow", temperature=-0.5), "temperature"),
        (dict(method="spec_chow", top_p=0.0), "top_p"),
        (dict(method="spec_chow", alpha=1.5), "alpha"),
        (dict(method="lossy", alpha=1.0), "alpha"),
        (dict(method="spec_chow", max_input_len=4), "max_input_len"),
        (dict(method="spec_chow", bonus_source="drafter"), "bonus_source"),
    ],
)
def test_bad_input_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(DRAFTER, D_PARAMS, VERIFIER, V_PARAMS, INPUTS, max_decode_len=8, rng=KEY, **kwargs)


def test_vocab_mismatch_is_named():
    other = T5Model(t5_config.tiny(vocab_size=32))
    with pytest.raises(ValueError, match="vocab_size 32"):
        generate(
            other, None, VERIFIER, V_PARAMS, INPUTS, method="spec_decode", max_decode_len=8, rng=KEY
        )


def test_truncate_inputs_keeps_eos_last():
    out = generate(
        DRAFTER,
        D_PARAMS,
        VERIFIER,
        V_PARAMS,
        INPUTS,
        method="verifier",
        max_decode_len=4,
        rng=KEY,
        max_input_len=4,
        truncate_inputs=True,
        temperature=0.0,
    )
    ref = generate(
        DRAFTER,
        D_PARAMS,
        VERIFIER,
        V_PARAMS,
        np.array([[5, 9, 13, 1], [8, 3, 1, 0], [40, 41, 42, 1], [17, 1, 0, 0]], np.int32),
        method="verifier",
        max_decode_len=4,
        rng=KEY,
        temperature=0.0,
    )
    np.testing.assert_array_equal(out.tokens, ref.tokens)
