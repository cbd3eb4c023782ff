"""Target rules: pure maps (q, p) -> (pi, eta) of SPEC.md §3.

In this module `q` is the drafter's and `p` the verifier's next-token distribution. Every function
receives both the *raw* distributions (`q_raw`, `p_raw`: temperature 1, untruncated) and the
*warped* ones (`q_w`, `p_w`: temperature, top-k, top-p). Deferral criteria read raw distributions
(OPT's total-variation term reads warped ones); the target mixes warped ones. All arrays are float32
`[..., V]`; the rule returns `pi` `[..., V]` and the verifier weight `eta` `[...]`.

`alpha` is the paper's α (the reference notebook's "lenience"). It is a traced scalar, passed
separately from the rule object, so a sweep over α compiles once. Each rule states its α range and
which end is lossless speculative decoding and which is drafter-only. Every criterion is a *keep*
test with `>=`: equality keeps the drafter.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp


def total_variation(a: jax.Array, b: jax.Array) -> jax.Array:
    """D_TV(a, b) = sum_v max(0, a(v) - b(v)) over the last axis."""
    return jnp.sum(jnp.maximum(a - b, 0.0), axis=-1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TargetRule(abc.ABC):
    """A map from (q, p) at one prefix to the target distribution pi and verifier weight eta."""

    # (low, high, low inclusive, high inclusive); None bounds are open-ended.
    alpha_range: ClassVar[tuple[float, float, bool, bool]] = (-math.inf, math.inf, False, False)
    name: ClassVar[str] = "rule"

    @abc.abstractmethod
    def target(self, q_raw, p_raw, q_w, p_w, alpha, temperature) -> tuple[jax.Array, jax.Array]:
        """Returns (pi [..., V], eta [...])."""

    def validate_alpha(self, alpha: float) -> None:
        lo, hi, lo_inc, hi_inc = self.alpha_range
        a = float(alpha)
        ok = math.isfinite(a)
        ok = ok and (a > lo or (lo_inc and a == lo)) and (a < hi or (hi_inc and a == hi))
        if not ok:
            left = "[" if lo_inc else "("
            right = "]" if hi_inc else ")"
            raise ValueError(
                f"alpha={alpha!r} is outside the range {left}{lo}, {hi}{right} "
                f"of rule {self.name!r}"
            )


class PrefixRule(TargetRule):
    """Prefix-level deferral: pi = q_w if keep else p_w, eta = 1 - keep."""

    @abc.abstractmethod
    def keep(self, q_raw, p_raw, q_w, p_w, alpha) -> jax.Array:
        """Boolean [...]: True keeps the drafter at this prefix."""

    def target(self, q_raw, p_raw, q_w, p_w, alpha, temperature):
        del temperature
        keep = self.keep(q_raw, p_raw, q_w, p_w, alpha)
        pi = jnp.where(keep[..., None], q_w, p_w)
        return pi, 1.0 - keep.astype(jnp.float32)


class TokenRule(TargetRule):
    """Token-level deferral (paper Eq. 11): pi(v) = q_w(v) keep(v) + eta p_w(v)."""

    @abc.abstractmethod
    def keep_token(self, q_raw, p_raw, alpha) -> jax.Array:
        """Boolean [..., V]: True keeps the drafter's candidate v."""

    def target(self, q_raw, p_raw, q_w, p_w, alpha, temperature):
        del temperature
        keep = self.keep_token(q_raw, p_raw, alpha)
        eta = jnp.sum(jnp.where(keep, 0.0, q_w), axis=-1)
        pi = jnp.where(keep, q_w, 0.0) + eta[..., None] * p_w
        return pi, eta


@dataclasses.dataclass(frozen=True, kw_only=True)
class DrafterTarget(TargetRule):
    """pi = q_w: the drafter alone (method 1)."""

    name: ClassVar[str] = "drafter"

    def target(self, q_raw, p_raw, q_w, p_w, alpha, temperature):
        return q_w, jnp.zeros(q_w.shape[:-1], jnp.float32)


@dataclasses.dataclass(frozen=True, kw_only=True)
class VerifierTarget(TargetRule):
    """pi = p_w: the verifier alone; speculatively this is lossless SpecDecode (methods 2, 3)."""

    name: ClassVar[str] = "spec_decode"

    def target(self, q_raw, p_raw, q_w, p_w, alpha, temperature):
        return p_w, jnp.ones(p_w.shape[:-1], jnp.float32)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Chow(PrefixRule):
    """Keep iff max q_raw >= 1 - alpha (paper Eq. 2). alpha in [0, 1]: 0 lossless*, 1 drafter.

    *At alpha = 0 the drafter is kept only where q_raw is exactly one-hot.
    """

    alpha_range: ClassVar = (0.0, 1.0, True, True)
    name: ClassVar[str] = "chow"

    def keep(self, q_raw, p_raw, q_w, p_w, alpha):
        return jnp.max(q_raw, axis=-1) >= 1.0 - alpha


@dataclasses.dataclass(frozen=True, kw_only=True)
class Diff(PrefixRule):
    """Keep iff max q_raw >= max p_raw - alpha (paper Eq. 5).

    alpha in [-1, 1]: -1 lossless, 1 drafter.
    """

    alpha_range: ClassVar = (-1.0, 1.0, True, True)
    name: ClassVar[str] = "diff"

    def keep(self, q_raw, p_raw, q_w, p_w, alpha):
        return jnp.max(q_raw, axis=-1) >= jnp.max(p_raw, axis=-1) - alpha


@dataclasses.dataclass(frozen=True, kw_only=True)
class Opt(PrefixRule):
    """Keep iff max q_raw >= max p_raw - alpha * D_TV(q_w, p_w) (paper Eq. 10).

    alpha is unbounded: -inf approaches lossless, +inf the drafter. The TV term reads the *warped*
    distributions (the rejection probability that deferral costs), the peaks the raw ones.
    """

    name: ClassVar[str] = "opt"

    def keep(self, q_raw, p_raw, q_w, p_w, alpha):
        margin = alpha * total_variation(q_w, p_w)
        return jnp.max(q_raw, axis=-1) >= jnp.max(p_raw, axis=-1) - margin


@dataclasses.dataclass(frozen=True, kw_only=True)
class BiLDStar(PrefixRule):
    """BiLD*: keep iff D_TV(q_raw, p_raw) <= alpha [choice: raw TV].

    alpha in [0, 1]: 0 lossless, 1 drafter.
    """

    alpha_range: ClassVar = (0.0, 1.0, True, True)
    name: ClassVar[str] = "bild_star"

    def keep(self, q_raw, p_raw, q_w, p_w, alpha):
        return total_variation(q_raw, p_raw) <= alpha


@dataclasses.dataclass(frozen=True, kw_only=True)
class TokenV1(TokenRule):
    """Keep v iff q_raw(v) >= max p_raw - alpha (paper Eq. 13).

    alpha in [-1, 1]: -1 lossless, 1 drafter.
    """

    alpha_range: ClassVar = (-1.0, 1.0, True, True)
    name: ClassVar[str] = "token_v1"

    def keep_token(self, q_raw, p_raw, alpha):
        return q_raw >= jnp.max(p_raw, axis=-1, keepdims=True) - alpha


@dataclasses.dataclass(frozen=True, kw_only=True)
class TokenV2(TokenRule):
    """Keep v iff p_raw(v) >= max p_raw - alpha (paper Eq. 14).

    alpha in [-1, 1]: any alpha < 0 is lossless (0 is not), 1 drafter.
    """

    alpha_range: ClassVar = (-1.0, 1.0, True, True)
    name: ClassVar[str] = "token_v2"

    def keep_token(self, q_raw, p_raw, alpha):
        return p_raw >= jnp.max(p_raw, axis=-1, keepdims=True) - alpha


@dataclasses.dataclass(frozen=True, kw_only=True)
class TokenV3(TokenRule):
    """Keep v iff p_raw(v) >= (1 - alpha) max p_raw (paper Eq. 15).

    alpha in [-1, 1]: any alpha < 0 is lossless (0 is not), 1 drafter.
    """

    alpha_range: ClassVar = (-1.0, 1.0, True, True)
    name: ClassVar[str] = "token_v3"

    def keep_token(self, q_raw, p_raw, alpha):
        return p_raw >= (1.0 - alpha) * jnp.max(p_raw, axis=-1, keepdims=True)


def _lossy_normalized_beta(m: jax.Array, p: jax.Array, iters: int = 60) -> jax.Array:
    """Root beta* >= 1 of sum_v max(m(v), p(v)/beta) = 1 by bisection on [1, 1/R] (SPEC §3.1)."""
    residual_mass = jnp.maximum(1.0 - jnp.sum(m, axis=-1), 0.0)
    hi0 = 1.0 / jnp.maximum(residual_mass, 1e-12)

    def mass(beta):
        return jnp.sum(jnp.maximum(m, p / beta[..., None]), axis=-1)

    def body(_, lo_hi):
        lo, hi = lo_hi
        mid = 0.5 * (lo + hi)
        too_big = mass(mid) > 1.0  # mass decreases in beta: root is above mid
        return jnp.where(too_big, mid, lo), jnp.where(too_big, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iters, body, (jnp.ones_like(hi0), hi0))
    return 0.5 * (lo + hi)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Lossy(TargetRule):
    """Lenient (lossy) speculative decoding in target form (SPEC §3.1). alpha in [0, 1): 0 lossless.

    beta="one" [choice, default]: pi = min(q, p/(1-alpha)) + R norm(max(0, p - q)), which reproduces
    the lossy acceptance min(1, p/((1-alpha) q)) and residual norm(max(0, p - q)) exactly.
    beta="normalized" (Lemma 2): pi = max(min(q, p/(1-alpha)), p/beta*).
    At T = 0 it is greedy lenience [choice], which is exactly Token-v3 at T = 0.
    """

    beta: str = "one"
    alpha_range: ClassVar = (0.0, 1.0, True, False)
    name: ClassVar[str] = "lossy"

    def __post_init__(self):
        if self.beta not in ("one", "normalized"):
            raise ValueError(f"lossy beta must be 'one' or 'normalized', got {self.beta!r}")

    def target(self, q_raw, p_raw, q_w, p_w, alpha, temperature):
        m = jnp.minimum(q_w, p_w / (1.0 - alpha))
        if self.beta == "one":
            resid_mass = jnp.maximum(1.0 - jnp.sum(m, axis=-1, keepdims=True), 0.0)
            resid = jnp.maximum(p_w - q_w, 0.0)
            z = jnp.sum(resid, axis=-1, keepdims=True)
            resid = jnp.where(z > 0, resid / jnp.where(z > 0, z, 1.0), p_w)
            pi = m + resid_mass * resid
        else:
            beta = _lossy_normalized_beta(m, p_w)
            pi = jnp.maximum(m, p_w / beta[..., None])
            pi = pi / jnp.sum(pi, axis=-1, keepdims=True)
        greedy_pi, _ = TokenV3().target(q_raw, p_raw, q_w, p_w, alpha, temperature)
        pi = jnp.where(temperature > 0, pi, greedy_pi)
        return pi, jnp.ones(pi.shape[:-1], jnp.float32)


def speculative_rule_bank(lossy_beta: str = "one") -> tuple[TargetRule, ...]:
    """Every speculative method's rule, in `SPECULATIVE_RULES` order (lossy with `lossy_beta`).

    `speculative.decode` given this tuple and a traced index picks the rule with `lax.switch`, so
    one compiled program serves every speculative method (see `generate(shared_program=True)`).
    """
    return tuple(
        Lossy(beta=lossy_beta) if name == "lossy" else rule
        for name, rule in SPECULATIVE_RULES.items()
    )


# Rule objects by the speculative method that uses them.
SPECULATIVE_RULES: dict[str, TargetRule] = {
    "spec_decode": VerifierTarget(),
    "lossy": Lossy(),
    "bild_star": BiLDStar(),
    "spec_chow": Chow(),
    "spec_diff": Diff(),
    "spec_opt": Opt(),
    "spec_token_v1": TokenV1(),
    "spec_token_v2": TokenV2(),
    "spec_token_v3": TokenV3(),
}
