"""The speculative round (SPEC.md §2) with an arbitrary target rule, in one static-shape loop.

Buffer layout, for one row (γ = 3, max_decode_len L):

    out  [L + γ + 1]   emitted tokens y_1 y_2 ...; slots at or after `n` are scratch
    n                  tokens emitted so far = decoder position of `last`
    last               y_n, emitted but not yet consumed by either decoder (PAD at the start)

A round, with n = 4 and last = y_4:

    drafter   extend(last, pos 4) -> q_1, d_1 ~ q_1^T
              extend(d_1,  pos 5) -> q_2, d_2 ...   extend(d_3, pos 7) -> q_4   (sync step)
    verifier  extend([y_4, d_1, d_2, d_3], pos 4..7) -> p_1 .. p_4   (one call)
    targets   pi_j = rule(q_j, p_j), j = 1..4
    accept    d_j while u_j < pi_j(d_j) / q_j^T(d_j); say d_1 accepted, d_2 rejected (k = 1)
    emit      out[4:6] = (d_1, c), c ~ norm(max(0, pi_2 - q_2^T));   n = 6, last = c

Both caches now hold valid keys/values at positions 0..5 (inputs PAD, y_1..y_4, d_1); slots 6, 7 are
stale and are overwritten when the next round extends at position 6. With all γ drafts accepted the
round emits the bonus b ~ pi_4, which the sync step made possible. Rows advance independently; a row
that is done keeps running with frozen state (static shapes) and its counters stop.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from spec_cascade_jax.decoding import state as st
from spec_cascade_jax.decoding import warps
from spec_cascade_jax.decoding.rules import TargetRule


@struct.dataclass
class _Carry:
    round: jax.Array  # []
    n: jax.Array  # [B]
    last: jax.Array  # [B]
    done: jax.Array  # [B] bool
    out: jax.Array  # [B, L + G + 1]
    d_cache: object
    v_cache: object
    stats: st.RowStats


def correction_distribution(pi: jax.Array, q_w: jax.Array) -> jax.Array:
    """norm(max(0, pi - q_w)), falling back to pi where the residual has no mass (SPEC §2)."""
    resid = jnp.maximum(pi - q_w, 0.0)
    z = jnp.sum(resid, axis=-1, keepdims=True)
    return jnp.where(z > 0, resid / jnp.where(z > 0, z, 1.0), pi)


def accept_and_emit(
    keys: jax.Array,  # [B, 3] per-row keys: accept coins, residual, bonus
    drafts: jax.Array,  # [B, G]
    q_w: jax.Array,  # [B, G + 1, V]
    p_w: jax.Array,  # [B, G + 1, V]
    pi: jax.Array,  # [B, G + 1, V]
    *,
    bonus_source: str,
):
    """Steps 5-7 of the round: returns (block [B, G+1], k [B], eos_end [B], rejected [B])."""
    batch, gamma = drafts.shape
    q_d = jnp.take_along_axis(q_w[:, :gamma], drafts[..., None], axis=-1)[..., 0]
    pi_d = jnp.take_along_axis(pi[:, :gamma], drafts[..., None], axis=-1)[..., 0]
    ratio = jnp.where(q_d > 0, pi_d / jnp.where(q_d > 0, q_d, 1.0), 1.0)
    coins = jax.vmap(lambda k: jax.random.uniform(k, (gamma,)))(keys[:, 0])
    acc = coins < jnp.minimum(ratio, 1.0)
    k_acc = jnp.sum(jnp.cumprod(acc.astype(jnp.int32), axis=1), axis=1)  # leading accepted
    is_eos = drafts == st.EOS_ID
    any_eos = jnp.any(is_eos, axis=1)
    first_eos = jnp.argmax(is_eos, axis=1)
    eos_end = any_eos & (k_acc > first_eos)
    k = jnp.where(eos_end, first_eos + 1, k_acc)
    rejected = ~eos_end & (k < gamma)

    # Correction (at position k < G) or bonus (k == G), from the same gathered row of pi.
    pi_k = jnp.take_along_axis(pi, k[:, None, None], axis=1)[:, 0]
    q_k = jnp.take_along_axis(q_w, k[:, None, None], axis=1)[:, 0]
    bonus_dist = pi_k
    if bonus_source == "verifier":
        bonus_dist = jnp.take_along_axis(p_w, k[:, None, None], axis=1)[:, 0]
    correction = jax.vmap(warps.sample)(keys[:, 1], correction_distribution(pi_k, q_k))
    bonus = jax.vmap(warps.sample)(keys[:, 2], bonus_dist)
    extra = jnp.where(rejected, correction, bonus)

    block = jnp.concatenate([drafts, jnp.zeros((batch, 1), jnp.int32)], axis=1)
    block = jnp.where(jnp.arange(gamma + 1)[None, :] == k[:, None], extra[:, None], block)
    return block, k, eos_end, rejected


def decode(
    drafter,
    drafter_params,
    verifier,
    verifier_params,
    inputs: jax.Array,  # [B, S]
    keys: jax.Array,  # [B] per-row keys
    alpha: jax.Array,
    temperature: jax.Array,
    top_p: jax.Array,
    rule_index: jax.Array | None = None,
    *,
    rule: TargetRule | tuple[TargetRule, ...],
    gamma: int,
    max_decode_len: int,
    top_k: int = 0,
    bonus_source: str = "target",
) -> st.DecodeOutput:
    """Speculative decoding with target `rule` (traceable; `generate` jits it).

    `rule` may be a tuple of rules with a traced `rule_index` [] int32: every round then computes
    the target with `lax.switch(rule_index, ...)`, so one program serves all of them.
    """
    if isinstance(rule, tuple):
        if rule_index is None:
            raise ValueError("a tuple of rules needs rule_index")
        branches = [r.target for r in rule]

        def target(*args):
            return jax.lax.switch(rule_index, branches, *args)

    else:
        target = rule.target
    batch = inputs.shape[0]
    g, L = gamma, max_decode_len
    cache_len = L + g + 1
    with jax.named_scope("encode"):  # scopes name the parts of a profile (benchmarks/profile_ops)
        d_enc = drafter.encode(drafter_params, inputs)
        v_enc = verifier.encode(verifier_params, inputs)

    def warp(logits, model):
        return warps.warp(
            logits,
            real_vocab_size=model.real_vocab_size,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
        )

    def round_body(c: _Carry) -> _Carry:
        rk = st.fold(keys, c.round)
        purpose = jax.vmap(lambda k: jax.random.split(k, 4))(rk)  # draft, accept, resid, bonus
        active = ~c.done

        def draft_step(carry, j):
            cache, tok = carry
            logits, cache = drafter.extend(drafter_params, d_enc, cache, tok[:, None], c.n + j)
            q_raw, q_w = warp(logits[:, 0], drafter)
            d = jax.vmap(warps.sample)(st.fold(purpose[:, 0], j), q_w)
            return (cache, d), (q_raw, q_w, d)

        with jax.named_scope("draft"):
            (d_cache, _), (q_raw, q_w, drafted) = jax.lax.scan(
                draft_step, (c.d_cache, c.last), jnp.arange(g + 1)
            )
            q_raw, q_w = jnp.swapaxes(q_raw, 0, 1), jnp.swapaxes(q_w, 0, 1)  # [B, G+1, V]
            drafts = jnp.swapaxes(drafted, 0, 1)[:, :g]  # [B, G]; the sync step's draw is unused

        with jax.named_scope("verify"):
            v_tokens = jnp.concatenate([c.last[:, None], drafts], axis=1)
            p_logits, v_cache = verifier.extend(verifier_params, v_enc, c.v_cache, v_tokens, c.n)
            p_raw, p_w = warp(p_logits, verifier)
        with jax.named_scope("target"):
            pi, eta = target(q_raw, p_raw, q_w, p_w, alpha, temperature)
        with jax.named_scope("accept"):
            block, k, eos_end, rejected = accept_and_emit(
                purpose[:, 1:], drafts, q_w, p_w, pi, bonus_source=bonus_source
            )
        count = jnp.where(eos_end, k, k + 1)
        room = L - c.n
        count = jnp.minimum(count, room)
        pos = jnp.arange(g + 1)[None, :]
        emitted = pos < count[:, None]
        if bonus_source == "verifier":
            eta = jnp.where((pos == g) & (k[:, None] == g), 1.0, eta)
        new_n = c.n + count
        hit_eos = jnp.any(emitted & (block == st.EOS_ID), axis=1)
        done = c.done | (active & (hit_eos | (new_n >= L)))

        s = c.stats
        ai = active.astype(jnp.int32)
        tested = (pos[:, :g] < (k + rejected)[:, None]) & (pos[:, :g] < room[:, None])
        acc_pos = (pos[:, :g] < k[:, None]) & (pos[:, :g] < room[:, None])
        bin_ = jnp.where(eos_end, g + 1, k)
        stats = s.replace(
            n_tok=s.n_tok + ai * count,
            n_ver=s.n_ver + ai,
            n_dr=s.n_dr + ai * (g + 1),
            accepted=s.accepted + ai * jnp.sum(acc_pos, axis=1),
            rejected=s.rejected + ai * (rejected & (k < room)),
            eta_sum=s.eta_sum + active * jnp.sum(jnp.where(emitted, eta, 0.0), axis=1),
            hist=s.hist + ai[:, None] * jax.nn.one_hot(bin_, g + 2, dtype=jnp.int32),
            tested_at=s.tested_at + ai[:, None] * tested,
            accepted_at=s.accepted_at + ai[:, None] * acc_pos,
        )
        sel = lambda new, old: jnp.where(active, new, old)
        return _Carry(
            round=c.round + 1,
            n=sel(new_n, c.n),
            last=sel(jnp.take_along_axis(block, k[:, None], axis=1)[:, 0], c.last),
            done=done,
            out=jnp.where(active[:, None], st.write_block(c.out, block, c.n), c.out),
            d_cache=d_cache,
            v_cache=v_cache,
            stats=stats,
        )

    stats = st.RowStats.zeros(batch, g)
    ones = jnp.ones((batch,), jnp.int32)
    init = _Carry(
        round=jnp.zeros((), jnp.int32),
        n=jnp.zeros((batch,), jnp.int32),
        last=jnp.full((batch,), st.PAD_ID, jnp.int32),
        done=jnp.zeros((batch,), bool),
        out=jnp.zeros((batch, cache_len), jnp.int32),
        d_cache=drafter.init_cache(batch, cache_len),
        v_cache=verifier.init_cache(batch, cache_len),
        stats=stats.replace(n_enc_drafter=ones, n_enc_verifier=ones),
    )
    final = jax.lax.while_loop(lambda c: jnp.any(~c.done) & (c.round < L), round_body, init)
    tokens = st.finalize_tokens(final.out, final.n, L)
    return st.DecodeOutput(tokens=tokens, lengths=final.n, stats=final.stats)
