"""Sampling warps: logits -> (raw, warped) float32 probabilities (SPEC.md §1).

The same code serves the drafter and the verifier, so both sides are warped identically:
float32 cast -> padded ids masked -> log_softmax (its exponent is the raw distribution q¹/p¹)
-> divide by T -> top-k -> top-p -> renormalise. At T = 0 the warped distribution is the one-hot
argmax of the raw one (ties to the lowest id).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_TINY = 1e-30


def mask_padded_vocab(logits: jax.Array, real_vocab_size: int) -> jax.Array:
    """Casts to float32 and sets logits of padded ids (>= real_vocab_size) to -inf."""
    logits = logits.astype(jnp.float32)
    vocab = logits.shape[-1]
    if real_vocab_size >= vocab:
        return logits
    keep = jnp.arange(vocab) < real_vocab_size
    return jnp.where(keep, logits, -jnp.inf)


def _top_k_mask(scores: jax.Array, top_k: int) -> jax.Array:
    """Boolean mask of exactly the `top_k` largest entries along the last axis."""
    _, idx = jax.lax.top_k(scores, top_k)
    mask = jnp.zeros(scores.shape, bool)
    return jnp.put_along_axis(mask, idx, True, axis=-1, inplace=False)


def _top_p_mask(probs: jax.Array, top_p: jax.Array) -> jax.Array:
    """Smallest set of most probable tokens whose mass reaches `top_p` (stable order on ties)."""
    order = jnp.argsort(-probs, axis=-1, stable=True)
    sorted_probs = jnp.take_along_axis(probs, order, axis=-1)
    mass_before = jnp.cumsum(sorted_probs, axis=-1) - sorted_probs
    keep_sorted = mass_before < top_p
    return jnp.put_along_axis(
        jnp.zeros(probs.shape, bool), order, keep_sorted, axis=-1, inplace=False
    )


def warp(
    logits: jax.Array,
    *,
    real_vocab_size: int,
    temperature: jax.Array | float,
    top_k: int = 0,
    top_p: jax.Array | float = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """Returns `(raw, warped)` probabilities, both float32 with the shape of `logits` ([..., V]).

    Args:
      logits: unnormalised scores of any float dtype.
      real_vocab_size: ids at or above it are padding and get probability 0.
      temperature: traced scalar; 0 means greedy (one-hot argmax of `raw`).
      top_k: static; 0 disables it.
      top_p: traced scalar in (0, 1]; 1 disables it (and skips the sort at run time).
    """
    logp = jax.nn.log_softmax(mask_padded_vocab(logits, real_vocab_size), axis=-1)
    raw = jnp.exp(logp)
    temperature = jnp.asarray(temperature, jnp.float32)
    top_p = jnp.asarray(top_p, jnp.float32)
    scaled = logp / jnp.maximum(temperature, _TINY)
    if top_k > 0:
        scaled = jnp.where(_top_k_mask(scaled, top_k), scaled, -jnp.inf)
    probs = jax.nn.softmax(scaled, axis=-1)
    probs = jax.lax.cond(
        top_p < 1.0,
        lambda pr: jnp.where(_top_p_mask(pr, top_p), pr, 0.0),
        lambda pr: pr,
        probs,
    )
    probs = probs / jnp.sum(probs, axis=-1, keepdims=True)
    greedy = jax.nn.one_hot(jnp.argmax(logp, axis=-1), logits.shape[-1], dtype=jnp.float32)
    warped = jnp.where(temperature > 0, probs, greedy)
    return raw, warped


def sample(key: jax.Array, probs: jax.Array) -> jax.Array:
    """Draws one id from each row of `probs` [..., V] (zero-probability ids are never drawn)."""
    logits = jnp.where(probs > 0, jnp.log(jnp.where(probs > 0, probs, 1.0)), -jnp.inf)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)
