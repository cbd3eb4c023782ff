"""Non-speculative cascade baselines (SPEC §3.3): TokenCascade [Chow] and SeqCascade [Chow].

TokenCascade runs a drafter step at every position. Where the rule defers, the verifier makes one
call that first catches up, in parallel, on every token emitted since its previous call, and the
token is sampled from the verifier. The catch-up runs in chunks of `chunk` tokens (static shape);
at batch size 1 with frequent deferrals that is a single chunk per call.

SeqCascade decodes the whole output with the drafter, scores it by the mean peak raw probability
s(y) [choice], and hands the input to the verifier, which decodes from scratch, when s(y) < 1 -
alpha.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from spec_cascade_jax.decoding import autoregressive, warps
from spec_cascade_jax.decoding import state as st
from spec_cascade_jax.decoding.rules import PrefixRule


@struct.dataclass
class _Carry:
    n: jax.Array  # [B] emitted tokens; decoder position of `inp[:, n]`
    vpos: jax.Array  # [B] the verifier cache is valid for positions < vpos
    done: jax.Array
    inp: jax.Array  # [B, L + 1 + chunk] decoder inputs: PAD, y_1, y_2, ...
    d_cache: object
    v_cache: object
    stats: st.RowStats


def token_cascade(
    drafter,
    drafter_params,
    verifier,
    verifier_params,
    inputs,
    keys,
    alpha,
    temperature,
    top_p,
    *,
    rule: PrefixRule,
    max_decode_len: int,
    top_k: int = 0,
    chunk: int = 8,
) -> st.DecodeOutput:
    """Sequential token-level cascade with a prefix rule that reads only the drafter (e.g. Chow)."""
    batch = inputs.shape[0]
    L = max_decode_len
    d_enc = drafter.encode(drafter_params, inputs)
    v_enc = verifier.encode(verifier_params, inputs)
    warp = lambda logits, model: warps.warp(
        logits,
        real_vocab_size=model.real_vocab_size,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
    )

    def catch_up(c: _Carry, defer):
        """The verifier consumes positions vpos..n of deferring rows; returns p logits at n."""

        def cond(carry):
            vpos, _, _ = carry
            return jnp.any(defer & (vpos <= c.n))

        def body(carry):
            vpos, v_cache, p_logits = carry
            idx = vpos[:, None] + jnp.arange(chunk)[None, :]
            toks = jnp.take_along_axis(c.inp, jnp.minimum(idx, c.inp.shape[1] - 1), axis=1)
            logits, v_cache = verifier.extend(verifier_params, v_enc, v_cache, toks, vpos)
            working = defer & (vpos <= c.n)
            here = working & (c.n < vpos + chunk)
            at = jnp.clip(c.n - vpos, 0, chunk - 1)
            row = jnp.take_along_axis(logits, at[:, None, None], axis=1)[:, 0]
            p_logits = jnp.where(here[:, None], row, p_logits)
            vpos = jnp.where(working, jnp.minimum(vpos + chunk, c.n + 1), vpos)
            return vpos, v_cache, p_logits

        p0 = jnp.zeros((batch, verifier.vocab_size), jnp.float32)
        return jax.lax.while_loop(cond, body, (c.vpos, c.v_cache, p0))

    def body(c: _Carry) -> _Carry:
        active = ~c.done
        last = jnp.take_along_axis(c.inp, c.n[:, None], axis=1)[:, 0]
        q_logits, d_cache = drafter.extend(drafter_params, d_enc, c.d_cache, last[:, None], c.n)
        q_raw, q_w = warp(q_logits[:, 0], drafter)
        keep = rule.keep(q_raw, None, q_w, None, alpha)
        defer = active & ~keep
        vpos, v_cache, p_logits = jax.lax.cond(
            jnp.any(defer),
            lambda: catch_up(c, defer),
            lambda: (c.vpos, c.v_cache, jnp.zeros((batch, verifier.vocab_size), jnp.float32)),
        )
        _, p_w = warp(p_logits, verifier)
        key = st.fold(keys, c.n)
        tok = jax.vmap(warps.sample)(key, jnp.where(defer[:, None], p_w, q_w))
        n = c.n + 1
        s = c.stats
        stats = s.replace(
            n_tok=s.n_tok + active,
            n_dr=s.n_dr + active,
            n_ver=s.n_ver + defer,
            eta_sum=s.eta_sum + defer,
        )
        return _Carry(
            n=jnp.where(active, n, c.n),
            vpos=vpos,
            done=c.done | (tok == st.EOS_ID) | (n >= L),
            inp=jnp.where(active[:, None], st.write_block(c.inp, tok[:, None], n), c.inp),
            d_cache=d_cache,
            v_cache=v_cache,
            stats=stats,
        )

    ones = jnp.ones((batch,), jnp.int32)
    init = _Carry(
        n=jnp.zeros((batch,), jnp.int32),
        vpos=jnp.zeros((batch,), jnp.int32),
        done=jnp.zeros((batch,), bool),
        inp=jnp.zeros((batch, L + 1 + chunk), jnp.int32),
        d_cache=drafter.init_cache(batch, L + 1),
        v_cache=verifier.init_cache(batch, L + 1 + chunk),
        stats=st.RowStats.zeros(batch, 1).replace(n_enc_drafter=ones, n_enc_verifier=ones),
    )
    final = jax.lax.while_loop(lambda c: jnp.any(~c.done), body, init)
    tokens = st.finalize_tokens(final.inp[:, 1:], final.n, L)
    return st.DecodeOutput(tokens=tokens, lengths=final.n, stats=final.stats)


def seq_cascade(
    drafter,
    drafter_params,
    verifier,
    verifier_params,
    inputs,
    keys,
    alpha,
    temperature,
    top_p,
    *,
    max_decode_len: int,
    top_k: int = 0,
) -> st.DecodeOutput:
    """Sequence-level Chow cascade: keep the drafter's output iff mean peak q¹ >= 1 - alpha."""
    batch = inputs.shape[0]
    common = dict(max_decode_len=max_decode_len, top_k=top_k)
    dr = autoregressive.sample_loop(
        drafter,
        drafter_params,
        drafter.encode(drafter_params, inputs),
        st.fold(keys, 0),
        temperature,
        top_p,
        **common,
    )
    score = dr.peak_sum / jnp.maximum(dr.lengths, 1)
    defer = score < 1.0 - alpha

    def run_verifier():
        return autoregressive.sample_loop(
            verifier,
            verifier_params,
            verifier.encode(verifier_params, inputs),
            st.fold(keys, 1),
            temperature,
            top_p,
            done=~defer,
            **common,
        )

    skipped = autoregressive.SingleResult(
        tokens=jnp.zeros_like(dr.tokens),
        lengths=jnp.zeros_like(dr.lengths),
        steps=jnp.zeros_like(dr.steps),
        peak_sum=jnp.zeros_like(dr.peak_sum),
    )
    ver = jax.lax.cond(jnp.any(defer), run_verifier, lambda: skipped)
    tokens = jnp.where(defer[:, None], ver.tokens, dr.tokens)
    lengths = jnp.where(defer, ver.lengths, dr.lengths)
    di = defer.astype(jnp.int32)
    stats = st.RowStats.zeros(batch, 1).replace(
        n_tok=lengths,
        n_ver=ver.steps,
        n_dr=dr.steps,
        n_enc_drafter=jnp.ones((batch,), jnp.int32),
        n_enc_verifier=di,
        eta_sum=(di * lengths).astype(jnp.float32),
        seq_deferred=di,
    )
    return st.DecodeOutput(tokens=tokens, lengths=lengths, stats=stats)
