"""One-model autoregressive sampling: drafter-only and verifier-only baselines (SPEC §3, 1-2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from spec_cascade_jax.decoding import state as st
from spec_cascade_jax.decoding import warps


@struct.dataclass
class SingleResult:
    tokens: jax.Array  # [B, L]
    lengths: jax.Array  # [B]
    steps: jax.Array  # [B] decoder invocations while the row was active
    peak_sum: jax.Array  # [B] sum over emitted positions of max raw probability


@struct.dataclass
class _Carry:
    n: jax.Array
    last: jax.Array
    done: jax.Array
    out: jax.Array
    cache: object
    steps: jax.Array
    peak_sum: jax.Array


def sample_loop(
    model,
    params,
    encoded,
    keys: jax.Array,  # [B]
    temperature: jax.Array,
    top_p: jax.Array,
    *,
    max_decode_len: int,
    top_k: int = 0,
    done: jax.Array | None = None,  # [B] rows that should not decode at all
) -> SingleResult:
    """Samples y_t ~ warp(model(y_<t)) one token per call until EOS or `max_decode_len`."""
    batch = keys.shape[0]
    L = max_decode_len

    def body(c: _Carry) -> _Carry:
        active = ~c.done
        with jax.named_scope("step"):  # scopes name the parts of a profile
            logits, cache = model.extend(params, encoded, c.cache, c.last[:, None], c.n)
        with jax.named_scope("sample"):
            raw, warped = warps.warp(
                logits[:, 0],
                real_vocab_size=model.real_vocab_size,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
            )
            tok = jax.vmap(warps.sample)(st.fold(keys, c.n), warped)
        n = c.n + 1
        out = jnp.where(active[:, None], st.write_block(c.out, tok[:, None], c.n), c.out)
        return _Carry(
            n=jnp.where(active, n, c.n),
            last=jnp.where(active, tok, c.last),
            done=c.done | (tok == st.EOS_ID) | (n >= L),
            out=out,
            cache=cache,
            steps=c.steps + active,
            peak_sum=c.peak_sum + jnp.where(active, jnp.max(raw, axis=-1), 0.0),
        )

    init = _Carry(
        n=jnp.zeros((batch,), jnp.int32),
        last=jnp.full((batch,), st.PAD_ID, jnp.int32),
        done=jnp.zeros((batch,), bool) if done is None else done,
        out=jnp.zeros((batch, L + 1), jnp.int32),
        cache=model.init_cache(batch, L + 1),
        steps=jnp.zeros((batch,), jnp.int32),
        peak_sum=jnp.zeros((batch,), jnp.float32),
    )
    final = jax.lax.while_loop(lambda c: jnp.any(~c.done), body, init)
    return SingleResult(
        tokens=st.finalize_tokens(final.out, final.n, L),
        lengths=final.n,
        steps=final.steps,
        peak_sum=final.peak_sum,
    )


def decode(
    model, params, inputs, keys, temperature, top_p, *, role: str, max_decode_len: int, top_k: int
) -> st.DecodeOutput:
    """Drafter-only (`role="drafter"`) or verifier-only (`role="verifier"`) decoding."""
    with jax.named_scope("encode"):
        encoded = model.encode(params, inputs)
    res = sample_loop(
        model,
        params,
        encoded,
        keys,
        temperature,
        top_p,
        max_decode_len=max_decode_len,
        top_k=top_k,
    )
    batch = inputs.shape[0]
    ones = jnp.ones((batch,), jnp.int32)
    stats = st.RowStats.zeros(batch, 1).replace(n_tok=res.lengths)
    if role == "drafter":
        stats = stats.replace(n_dr=res.steps, n_enc_drafter=ones)
    else:
        stats = stats.replace(
            n_ver=res.steps, n_enc_verifier=ones, eta_sum=res.lengths.astype(jnp.float32)
        )
    return st.DecodeOutput(tokens=res.tokens, lengths=res.lengths, stats=stats)
