"""The one public decoding entry point: every method of SPEC.md §3 behind `generate`.

    out = generate(drafter, drafter_params, verifier, verifier_params, inputs,
                   method="spec_token_v3", alpha=0.3, gamma=5, max_decode_len=64, rng=key)

The whole decode is one jitted program (a `lax.while_loop` with no host round trip). Static
arguments are the models, the method, `gamma`, `max_decode_len`, `top_k` and the bonus/β options;
`alpha`, `temperature` and `top_p` are traced, so an α sweep compiles once. With
`shared_program=True` the speculative method is traced too (its rule is picked by `lax.switch` on
an index), so a sweep over every speculative method × α compiles one program per shape.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from spec_cascade_jax.decoding import autoregressive, cascades, compiler, rules, speculative
from spec_cascade_jax.decoding import state as st

SPECULATIVE_METHODS = tuple(rules.SPECULATIVE_RULES)
METHODS = ("drafter", "verifier", "token_cascade", "seq_cascade") + SPECULATIVE_METHODS
_ALPHA_RULE = {
    **rules.SPECULATIVE_RULES,
    "token_cascade": rules.Chow(),
    "seq_cascade": rules.Chow(),
}


# The static `method` of the program every speculative method shares (`shared_program=True`).
_SHARED = "speculative"


def get_rule(method: str, lossy_beta: str = "one") -> rules.TargetRule | None:
    """The target rule of a speculative or cascade method (None for drafter/verifier-only)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if method == "lossy":
        return rules.Lossy(beta=lossy_beta)
    return _ALPHA_RULE.get(method)


def validate_method_alpha(method: str, alpha: float) -> None:
    """Raises ValueError naming the method or α when α is outside the method's range."""
    rule = get_rule(method)
    if rule is not None and not isinstance(rule, rules.VerifierTarget):
        rule.validate_alpha(alpha)


@compiler.jit(
    static_argnames=(
        "drafter",
        "verifier",
        "method",
        "gamma",
        "max_decode_len",
        "top_k",
        "bonus_source",
        "lossy_beta",
    ),
)
def _generate(
    drafter,
    drafter_params,
    verifier,
    verifier_params,
    inputs,
    rng,
    example_ids,
    alpha,
    temperature,
    top_p,
    rule_index,
    *,
    method: str,
    gamma: int,
    max_decode_len: int,
    top_k: int,
    bonus_source: str,
    lossy_beta: str,
) -> st.DecodeOutput:
    keys = st.row_keys(rng, example_ids)
    sampling = dict(max_decode_len=max_decode_len, top_k=top_k)
    if method == "drafter":
        return autoregressive.decode(
            drafter, drafter_params, inputs, keys, temperature, top_p, role="drafter", **sampling
        )
    if method == "verifier":
        return autoregressive.decode(
            verifier, verifier_params, inputs, keys, temperature, top_p, role="verifier", **sampling
        )
    models = (drafter, drafter_params, verifier, verifier_params, inputs, keys)
    if method == "seq_cascade":
        return cascades.seq_cascade(*models, alpha, temperature, top_p, **sampling)
    if method == "token_cascade":
        return cascades.token_cascade(
            *models, alpha, temperature, top_p, rule=rules.Chow(), **sampling
        )
    shared = method == _SHARED
    return speculative.decode(
        *models,
        alpha,
        temperature,
        top_p,
        rule_index if shared else None,
        rule=rules.speculative_rule_bank(lossy_beta) if shared else get_rule(method, lossy_beta),
        gamma=gamma,
        bonus_source=bonus_source,
        **sampling,
    )


def generate(
    drafter,
    drafter_params,
    verifier,
    verifier_params,
    inputs,
    *,
    method: str,
    alpha: float = 0.0,
    gamma: int = 5,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    max_decode_len: int,
    rng: jax.Array,
    example_ids=None,
    bonus_source: str = "target",
    lossy_beta: str = "one",
    max_input_len: int | None = None,
    truncate_inputs: bool = False,
    shared_program: bool = False,
) -> st.DecodeOutput:
    """Decodes `inputs` [B, S] (int32, 0-padded) with `method`; see the module docstring.

    Args:
      drafter, verifier: `DecodeModel`s (hashable). Unused ones may be None (e.g. the drafter
        for method "verifier").
      method: one of `METHODS`.
      alpha: the paper's α (traced); its range depends on the method (see `rules`).
      gamma: drafted tokens per verifier call (speculative methods), >= 1.
      temperature: >= 0; 0 is greedy. top_k: >= 0 (0 = off). top_p: in (0, 1] (1 = off).
      max_decode_len: output length cap, EOS included.
      rng: a PRNG key; row b samples with fold_in(rng, example_ids[b]) (default b), so a row's
        output does not depend on the rest of the batch.
      bonus_source: "target" (exact) or "verifier" (plain-SD style; not exact unless pi = p).
      lossy_beta: "one" or "normalized" (SpecDecode [Lossy] only).
      max_input_len: inputs longer than this raise, or are truncated (EOS kept last) with a logged
        warning when `truncate_inputs`.
      shared_program: speculative methods only: compile one program for all of them, the rule
        chosen at run time by `lax.switch` on a traced index (same outputs; a sweep over methods
        then compiles once per shape). Off by default: the per-method program is smaller.
    """
    get_rule(method, lossy_beta)
    validate_method_alpha(method, alpha)
    if int(gamma) != gamma or gamma < 1:
        raise ValueError(f"gamma must be an integer >= 1, got {gamma!r}")
    if int(top_k) != top_k or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0, got {top_k!r}")
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature!r}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
    if int(max_decode_len) != max_decode_len or max_decode_len < 1:
        raise ValueError(f"max_decode_len must be an integer >= 1, got {max_decode_len!r}")
    if bonus_source not in ("target", "verifier"):
        raise ValueError(f"bonus_source must be 'target' or 'verifier', got {bonus_source!r}")
    needs_drafter = method != "verifier"
    needs_verifier = method != "drafter"
    if needs_drafter and drafter is None:
        raise ValueError(f"method {method!r} needs a drafter")
    if needs_verifier and verifier is None:
        raise ValueError(f"method {method!r} needs a verifier")
    if needs_drafter and needs_verifier and drafter.vocab_size != verifier.vocab_size:
        raise ValueError(
            f"drafter vocab_size {drafter.vocab_size} != verifier vocab_size {verifier.vocab_size}"
        )
    inputs = np.asarray(inputs) if not isinstance(inputs, jax.Array) else inputs
    if inputs.ndim != 2:
        raise ValueError(f"inputs must be [batch, length], got shape {inputs.shape}")
    if max_input_len is not None and inputs.shape[1] > max_input_len:
        lengths = np.asarray(jnp.sum(inputs != 0, axis=1))
        if lengths.max() > max_input_len and not truncate_inputs:
            raise ValueError(
                f"input length {int(lengths.max())} exceeds max_input_len={max_input_len} "
                "(pass truncate_inputs=True to truncate)"
            )
        if lengths.max() > max_input_len:
            logging.warning("truncating inputs from %d to %d tokens", lengths.max(), max_input_len)
        inputs = np.asarray(inputs)[:, :max_input_len].copy()
        cut = lengths > max_input_len
        inputs[cut, -1] = st.EOS_ID
    batch = inputs.shape[0]
    if example_ids is None:
        example_ids = jnp.arange(batch, dtype=jnp.int32)
    return _generate(
        drafter,
        drafter_params,
        verifier,
        verifier_params,
        jnp.asarray(inputs, jnp.int32),
        rng,
        jnp.asarray(example_ids, jnp.int32),
        jnp.float32(alpha),
        jnp.float32(temperature),
        jnp.float32(top_p),
        jnp.int32(SPECULATIVE_METHODS.index(method) if method in SPECULATIVE_METHODS else 0),
        method=_SHARED if shared_program and method in SPECULATIVE_METHODS else method,
        gamma=int(gamma) if method in SPECULATIVE_METHODS else 1,
        max_decode_len=int(max_decode_len),
        top_k=int(top_k),
        bonus_source=bonus_source,
        lossy_beta=lossy_beta,
    )


def compiled_variants() -> int:
    """Number of compiled programs `generate` holds (for the one-compile-per-sweep test)."""
    return _generate._cache_size()
