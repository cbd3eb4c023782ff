"""Cached decoding (`T5Model.extend`) reproduces teacher-forced logits across rollbacks."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from spec_cascade_jax.models.t5 import T5Model, tiny

# float32 on both sides; the only differences are summation order and masked (exp(-1e10) = 0)
# cache slots, which give errors around 1e-6 on logits of size ~1-10.
ATOL = 1e-5

BATCH, SRC_LEN, DEC_LEN, MAX_LEN = 3, 9, 10, 16

# Each step: (K, n_true, advance). Row b feeds its true decoder inputs for the first n_true[b] of
# the K tokens and garbage after them (and beyond DEC_LEN), then moves its position by
# advance[b] <= n_true[b], rolling back the rest. Rows sit at different positions from step 1 on.
# Only K in {1, 3} so that extend compiles twice.
SCHEDULE = (
    (3, (3, 3, 3), (3, 1, 2)),  # prefill-like block; rows 1 and 2 roll back part of it
    (1, (1, 1, 1), (1, 1, 1)),  # drafter-like steps at positions (3, 1, 2)
    (3, (0, 2, 1), (0, 2, 0)),  # mostly garbage, rolled back
    (1, (1, 1, 1), (1, 1, 1)),
    (3, (3, 3, 3), (3, 1, 3)),  # verifier-like block
    (1, (1, 1, 1), (1, 1, 1)),
    (3, (3, 3, 3), (1, 3, 2)),  # rows 0 and 2 run past DEC_LEN into garbage
)


@functools.partial(jax.jit, static_argnums=0)
def _forward_and_encode(model, params, inputs, decoder_inputs):
    return model.forward(params, inputs, decoder_inputs), model.encode(params, inputs)


@functools.partial(jax.jit, static_argnums=0)
def _encode(model, params, inputs):
    return model.encode(params, inputs)


@functools.partial(jax.jit, static_argnums=0)
def _extend(model, params, encoded, cache, tokens, positions):
    return model.extend(params, encoded, cache, tokens, positions)


def _data(vocab_size: int):
    rng = np.random.default_rng(1)
    inputs = rng.integers(3, vocab_size, size=(BATCH, SRC_LEN)).astype(np.int32)
    for b, length in enumerate((SRC_LEN, 5, 7)):  # right padding, different lengths
        inputs[b, length:] = 0
    targets = rng.integers(3, vocab_size, size=(BATCH, DEC_LEN)).astype(np.int32)
    decoder_inputs = np.concatenate([np.zeros((BATCH, 1), np.int32), targets[:, :-1]], axis=1)
    return jnp.asarray(inputs), decoder_inputs


def test_extend_matches_teacher_forcing_with_rollbacks():
    # T5.1.1 only: the cache path is shared with v1.0, whose K=1 steps are checked against HF
    # in test_t5_parity_hf.py (each extra config costs ~8 s of compilation).
    model = T5Model(tiny("1.1"))
    params = model.init_params(jax.random.PRNGKey(0))
    inputs, decoder_inputs = _data(model.vocab_size)
    expected, encoded = _forward_and_encode(model, params, inputs, jnp.asarray(decoder_inputs))
    expected = np.asarray(expected)
    cache = model.init_cache(BATCH, MAX_LEN)
    rng = np.random.default_rng(2)
    position = np.zeros(BATCH, np.int32)
    checked: set[tuple[int, int]] = set()
    for k, n_true, advance in SCHEDULE:
        tokens = np.zeros((BATCH, k), np.int32)
        for b in range(BATCH):
            for j in range(k):
                t = position[b] + j
                true = decoder_inputs[b, t] if t < DEC_LEN else -1
                if j < n_true[b] and t < DEC_LEN:
                    tokens[b, j] = true
                else:  # garbage, never equal to the true token
                    garbage = rng.integers(3, model.vocab_size)
                    if garbage == true:
                        garbage = 3 + (garbage - 2) % (model.vocab_size - 3)
                    tokens[b, j] = garbage
        logits, cache = _extend(
            model, params, encoded, cache, jnp.asarray(tokens), jnp.asarray(position)
        )
        logits = np.asarray(logits)
        assert logits.shape == (BATCH, k, model.vocab_size) and logits.dtype == np.float32
        for b in range(BATCH):
            for j in range(min(n_true[b], DEC_LEN - position[b])):
                t = position[b] + j
                np.testing.assert_allclose(
                    logits[b, j], expected[b, t], atol=ATOL, rtol=0, err_msg=f"row {b} pos {t}"
                )
                checked.add((b, t))
        position = position + np.asarray(advance, np.int32)
    assert checked == {(b, t) for b in range(BATCH) for t in range(DEC_LEN)}


def test_garbage_changes_logits_so_rollback_test_can_fail():
    """Negative control: reading a stale garbage slot would change the logits beyond ATOL."""
    model = T5Model(tiny("1.1"))
    params = model.init_params(jax.random.PRNGKey(0))
    inputs, decoder_inputs = _data(model.vocab_size)
    encoded = _encode(model, params, inputs)
    start = jnp.zeros(BATCH, jnp.int32)
    empty = model.init_cache(BATCH, MAX_LEN)
    clean, _ = _extend(model, params, encoded, empty, decoder_inputs[:, :3], start)
    dirty_inputs = decoder_inputs[:, :3].copy()
    dirty_inputs[:, 1] = 3 + (dirty_inputs[:, 1] - 2) % (model.vocab_size - 3)  # != true token
    dirty, _ = _extend(model, params, encoded, empty, dirty_inputs, start)
    # Position 0 cannot see slot 1; position 2 reads it, and the change is far beyond ATOL.
    np.testing.assert_allclose(dirty[:, 0], clean[:, 0], atol=ATOL, rtol=0)
    assert np.abs(np.asarray(dirty[:, 2] - clean[:, 2])).max(axis=-1).min() > 100 * ATOL


def test_extend_overwrites_only_its_slots():
    """Slots p..p+K-1 get values independent of their old content; all other slots are kept."""
    model = T5Model(tiny("1.1"))
    cfg = model.config
    params = model.init_params(jax.random.PRNGKey(0))
    inputs, decoder_inputs = _data(model.vocab_size)
    encoded = _encode(model, params, inputs)
    positions = jnp.asarray([0, 3, 5], jnp.int32)
    tokens = jnp.asarray(decoder_inputs[:, :3])
    zero_cache = model.init_cache(BATCH, MAX_LEN)
    shape = (cfg.num_decoder_layers, BATCH, cfg.num_heads, MAX_LEN, cfg.d_kv)  # [B, H, M, D]
    noise = np.random.default_rng(3).normal(size=(2, *shape)).astype(np.float32)
    noisy_cache = type(zero_cache)(
        keys=tuple(jnp.asarray(x) for x in noise[0]),
        values=tuple(jnp.asarray(x) for x in noise[1]),
    )
    _, from_zero = _extend(model, params, encoded, zero_cache, tokens, positions)
    _, from_noise = _extend(model, params, encoded, noisy_cache, tokens, positions)
    new_zero = np.stack([np.asarray(from_zero.keys), np.asarray(from_zero.values)])
    new_noise = np.stack([np.asarray(from_noise.keys), np.asarray(from_noise.values)])
    for b, p in enumerate(np.asarray(positions)):
        written = np.zeros(MAX_LEN, bool)
        written[p : p + 3] = True
        # Row 0 (position 0) reads no stale slot, so its written K/V match exactly; in the first
        # layer K/V depend only on the tokens, so they match in every row.
        if b == 0:
            np.testing.assert_array_equal(
                new_noise[:, :, b, :, written], new_zero[:, :, b, :, written]
            )
        np.testing.assert_array_equal(new_noise[:, 0, b, :, written], new_zero[:, 0, b, :, written])
        assert np.abs(new_noise[:, :, b, :, written] - noise[:, :, b, :, written]).min() > 0
        np.testing.assert_array_equal(new_noise[:, :, b, :, ~written], noise[:, :, b, :, ~written])
        np.testing.assert_array_equal(new_zero[:, :, b, :, ~written], 0.0)
