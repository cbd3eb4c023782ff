"""Shared pieces of the decoding benchmarks: model pairs, EOS suppression, timing, reports.

Timing follows SPEC §5 and `spec_cascade_jax.evaluation.latency.time_units`: every compiled shape
is warmed first (compilation excluded), the clock stops after the outputs are on the host, and each
number is the mean ± sample std over >= 3 trials. `time_call` is that protocol for one call that is
timed whole (a batch), and it also hands back the warm-up's outputs so statistics need no extra run.

* `NoEosModel` bans EOS in a `DecodeModel`'s logits, so every method emits exactly
  `max_decode_len` tokens (random-weight models would otherwise stop at random points). It wraps
  the drafter and the verifier alike, so every method pays the same extra elementwise op.
* `make_pair` builds the benchmark drafter/verifier pairs (random, perturbed, embedded).
* `extend_loop_time` times bare `T5Model.extend` calls (a drafter step, a verifier block) for the
  component profiles; `math_time` times one round's target/acceptance math alone.
* `write_report` writes `<name>.json` and `<name>.md` and prints the Markdown.

Cost-model formulas (`tau_star`, `ideal_speedup`, `ideal_speedup_sync`) come from
`spec_cascade_jax.evaluation.tables`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from spec_cascade_jax.decoding import compiler, generate, speculative, warps
from spec_cascade_jax.decoding import rules as rules_lib
from spec_cascade_jax.decoding.state import EOS_ID
from spec_cascade_jax.evaluation.latency import environment_info
from spec_cascade_jax.models.t5 import T5Config, T5Model, get_config
from spec_cascade_jax.models.t5.layers import init_stddev

Params = Any
DEFAULT_MACHINE = "2-core CPU, 24 GiB"


# ----------------------------------------------------------------------------------------------
# EOS suppression.


@dataclasses.dataclass(frozen=True)
class NoEosModel:
    """A `DecodeModel` whose logits never allow EOS (id 1): outputs run to `max_decode_len`.

    The benchmark analogue of HF's `min_new_tokens`: one `-inf` write per extend call. Hashable
    (a static jit argument) through the wrapped model.
    """

    base: Any

    @property
    def config(self) -> T5Config:
        return self.base.config

    @property
    def vocab_size(self) -> int:
        return self.base.vocab_size

    @property
    def real_vocab_size(self) -> int:
        return self.base.real_vocab_size

    def encode(self, params: Params, inputs: jax.Array):
        return self.base.encode(params, inputs)

    def init_cache(self, batch_size: int, max_len: int):
        return self.base.init_cache(batch_size, max_len)

    def extend(self, params, encoded, cache, tokens, positions):
        logits, cache = self.base.extend(params, encoded, cache, tokens, positions)
        return logits.at[..., EOS_ID].set(-jnp.inf), cache


# ----------------------------------------------------------------------------------------------
# Parameters: perturbation and embedding of a small T5 inside a larger one.


def _leaf_name(path: tuple[Any, ...]) -> str:
    keys = [getattr(p, "key", str(p)) for p in path]
    return keys[-1] if keys[-1] in ("embedding", "rel_embedding", "scale") else keys[-2]


def perturb_params(config: T5Config, params: Params, rel_noise: float, seed: int) -> Params:
    """`params` plus Gaussian noise of std `rel_noise` × the leaf's init std (norm scales: × 1).

    Used to make a drafter that agrees with its verifier often but not always: the acceptance
    rate falls as `rel_noise` grows.
    """
    if not rel_noise >= 0:
        raise ValueError(f"rel_noise must be >= 0, got {rel_noise!r}")
    rng = np.random.default_rng(seed)
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    out = []
    for path, leaf in flat:
        name = _leaf_name(path)
        std = 1.0 if name == "scale" else init_stddev(config, name)
        value = np.asarray(leaf, np.float32)
        noise = rng.standard_normal(value.shape, dtype=np.float32) * np.float32(rel_noise * std)
        out.append(jnp.asarray(value + noise))
    return jax.tree_util.tree_unflatten(treedef, out)


def embed_params(small: T5Config, small_params: Params, big: T5Config) -> Params:
    """A `big`-shaped parameter tree that computes exactly the `small` network (up to rounding).

    The small model's embedding width, heads, MLP units and layers occupy the leading slices of
    the big one and everything else is zero: zero extra heads and MLP units add nothing, extra
    layers have zero output kernels (identity residual blocks), and the RMS-norm scales are
    multiplied by `sqrt(E_small / E_big)` to undo the zero-padded width in the RMS. Dense zeros
    cost the same FLOPs, so the big model keeps its real per-step cost. Needs `big` at least as
    large in every dimension, equal `d_kv`, buckets, vocabulary and feed-forward type.
    """
    for field in (
        "d_kv",
        "vocab_size",
        "relative_attention_num_buckets",
        "feed_forward",
        "tie_word_embeddings",
    ):
        if getattr(small, field) != getattr(big, field):
            small_v, big_v = getattr(small, field), getattr(big, field)
            raise ValueError(f"embed_params: {field} differs: {small_v!r} vs {big_v!r}")
    for field in ("d_model", "d_ff", "num_heads", "num_encoder_layers", "num_decoder_layers"):
        if getattr(small, field) > getattr(big, field):
            raise ValueError(f"embed_params: small {field} exceeds big {field}")
    norm_factor = np.float32(math.sqrt(small.d_model / big.d_model))
    big_shapes = T5Model(big).param_shapes()

    def lookup(tree: Params, keys: Sequence[str]):
        for key in keys:
            if not isinstance(tree, Mapping) or key not in tree:
                return None
            tree = tree[key]
        return tree

    def build(path, shape_struct):
        keys = [getattr(p, "key", str(p)) for p in path]
        out = np.zeros(shape_struct.shape, np.float32)
        src = lookup(small_params, keys)
        if src is None:  # a layer the small model lacks: stays zero (identity block), norms one
            if keys[-1] == "scale":
                out[:] = 1.0
            return jnp.asarray(out)
        src = np.asarray(src, np.float32)
        if keys[-1] == "scale":
            src = src * norm_factor
        out[tuple(slice(0, n) for n in src.shape)] = src
        return jnp.asarray(out)

    return jax.tree_util.tree_map_with_path(build, big_shapes)


# ----------------------------------------------------------------------------------------------
# Benchmark pairs.


@dataclasses.dataclass(frozen=True, kw_only=True)
class Pair:
    """A drafter/verifier pair (both EOS-suppressed) and how it was built."""

    name: str
    drafter: NoEosModel
    drafter_params: Params
    verifier: NoEosModel
    verifier_params: Params
    description: str

    def params_m(self) -> tuple[float, float]:
        count = lambda p: sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(p)) / 1e6
        return count(self.drafter_params), count(self.verifier_params)


PAIR_NAMES = ("tiny", "small_large", "perturbed", "small_large_embedded")


def make_pair(
    name: str,
    *,
    vocab_size: int | None = None,
    noise: float = 0.15,
    perturbed_config: str = "t5_1_1_small",
    seed: int = 0,
) -> Pair:
    """Builds a benchmark pair (random weights, EOS suppressed in both models).

    Pairs:
      tiny: drafter tiny(d_model 16, 1+1 layers), verifier `tiny` (d_model 32, 2+2 layers).
      small_large: independent random T5.1.1-small drafter and T5.1.1-large verifier, the real
        cost ratio c. Random T5s predict near-uniform distributions, so at T = 1 they still
        overlap (acceptance ~ 0.5); greedily they almost never agree.
      perturbed: verifier `perturbed_config`, drafter = verifier params + noise (c ~ 1).
      small_large_embedded: random T5.1.1-small drafter; verifier = the drafter embedded in a
        T5.1.1-large shape (`embed_params`) plus noise: realistic acceptance at the real c.
    `vocab_size` overrides the (padded and real) vocabulary; default 64 for tiny, else 32128
    padded / 32100 real. `noise` is the relative parameter noise (perturbed, embedded).
    """
    key = jax.random.PRNGKey(seed)
    k_d, k_v = jax.random.split(key)

    def cfg(preset: str, **kw: Any) -> T5Config:
        if vocab_size is not None:
            kw.update(vocab_size=vocab_size, real_vocab_size=vocab_size)
        return get_config(preset, **kw)

    if name == "tiny":
        v_cfg = cfg("tiny")
        d_cfg = cfg("tiny", d_model=16, d_ff=32, num_encoder_layers=1, num_decoder_layers=1)
        d_params = T5Model(d_cfg).init_params(k_d)
        v_params = T5Model(v_cfg).init_params(k_v)
        desc = "tiny drafter (d16, 1+1 layers) / tiny verifier (d32, 2+2 layers), independent"
    elif name == "small_large":
        d_cfg, v_cfg = cfg("t5_1_1_small"), cfg("t5_1_1_large")
        d_params = T5Model(d_cfg).init_params(k_d)
        v_params = T5Model(v_cfg).init_params(k_v)
        desc = "T5.1.1-small / T5.1.1-large shapes, independent random weights"
    elif name == "perturbed":
        v_cfg = cfg(perturbed_config)
        d_cfg = v_cfg
        v_params = T5Model(v_cfg).init_params(k_v)
        d_params = perturb_params(v_cfg, v_params, noise, seed + 1)
        desc = f"{perturbed_config} verifier; drafter = verifier + {noise:g} x init-std noise"
    elif name == "small_large_embedded":
        return embedded_pair(name, cfg("t5_1_1_small"), cfg("t5_1_1_large"), noise=noise, seed=seed)
    else:
        raise ValueError(f"unknown pair {name!r}; expected one of {', '.join(PAIR_NAMES)}")
    return Pair(
        name=name,
        drafter=NoEosModel(T5Model(d_cfg)),
        drafter_params=d_params,
        verifier=NoEosModel(T5Model(v_cfg)),
        verifier_params=v_params,
        description=desc,
    )


def embedded_pair(
    name: str, drafter_config: T5Config, verifier_config: T5Config, *, noise: float, seed: int
) -> Pair:
    """Random drafter; verifier = the drafter embedded in `verifier_config`'s shape + noise.

    The verifier costs what its shape costs but agrees with the drafter as often as `noise`
    allows, which gives random-weight models a realistic acceptance rate at the real cost ratio.
    """
    d_params = T5Model(drafter_config).init_params(jax.random.PRNGKey(seed))
    embedded = embed_params(drafter_config, d_params, verifier_config)
    v_params = perturb_params(verifier_config, embedded, noise, seed + 1)
    shape = lambda c: f"d{c.d_model}/{c.num_heads}h/{c.num_encoder_layers}+{c.num_decoder_layers}L"
    return Pair(
        name=name,
        drafter=NoEosModel(T5Model(drafter_config)),
        drafter_params=d_params,
        verifier=NoEosModel(T5Model(verifier_config)),
        verifier_params=v_params,
        description=(
            f"drafter {shape(drafter_config)} random; verifier {shape(verifier_config)} = drafter "
            f"embedded + {noise:g} x init-std noise"
        ),
    )


def add_pair_args(parser: argparse.ArgumentParser) -> None:
    """--vocab_size, --noise, --perturbed_config: how `pair_from_config` builds a named pair."""
    arg = parser.add_argument
    arg("--vocab_size", type=int, default=None, help="Vocabulary override (default: real).")
    arg("--noise", type=float, default=0.15, help="Relative parameter noise (perturbed/embedded).")
    arg("--perturbed_config", default="t5_1_1_small", help="Shape of the perturbed pair.")


def pair_from_config(name: str, cfg: Mapping[str, Any]) -> Pair:
    """`make_pair(name)` with the options of `add_pair_args` (tiny keeps its own vocabulary)."""
    return make_pair(
        name,
        vocab_size=cfg["vocab_size"] if name != "tiny" else None,
        noise=cfg["noise"],
        perturbed_config=cfg["perturbed_config"],
        seed=cfg["seed"],
    )


def models_for(pair: Pair, method: str) -> tuple[Any, Params, Any, Params]:
    """`(drafter, drafter_params, verifier, verifier_params)` for `generate`, with the unused
    model of a one-model baseline set to None (its program then does not depend on it)."""
    drafter = (None, None) if method == "verifier" else (pair.drafter, pair.drafter_params)
    verifier = (None, None) if method == "drafter" else (pair.verifier, pair.verifier_params)
    return (*drafter, *verifier)


def compile_generate(
    pair: Pair,
    method: str,
    *,
    batch: int,
    gamma: int,
    input_len: int,
    max_decode_len: int,
    temperature: float,
    alpha: float,
    seed: int = 0,
):
    """Lowers and compiles `generate` for one static shape; returns (compiled, args, times).

    α and T are closed over (`generate` validates them as Python floats), so here they are
    constants of the program rather than traced scalars; the decode itself is unchanged. The
    program gets the decoding compiler options (`compiler.jit`). `times` holds `lower_s` and
    `compile_s`; `compiled(*args)` runs the decode on random inputs (seed 0) with key `seed`.
    """
    drafter, _, verifier, _ = models_for(pair, method)
    inputs = random_inputs(batch, input_len, pair.verifier.real_vocab_size, 0)

    def fn(d_params, v_params, ids, rng):
        return generate(
            drafter,
            d_params,
            verifier,
            v_params,
            ids,
            method=method,
            alpha=alpha,
            gamma=gamma,
            temperature=temperature,
            max_decode_len=max_decode_len,
            rng=rng,
        )

    args = (
        pair.drafter_params if drafter is not None else None,
        pair.verifier_params if verifier is not None else None,
        jax.block_until_ready(jnp.asarray(inputs)),
        jax.random.PRNGKey(seed),
    )
    start = time.perf_counter()
    lowered = compiler.jit(fn).lower(*args)
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start
    return compiled, args, {"lower_s": lower_s, "compile_s": compile_s}


def random_inputs(batch: int, length: int, real_vocab_size: int, seed: int = 0) -> np.ndarray:
    """`[batch, length]` int32 ids in `[3, real_vocab_size)`, ending with EOS, no padding."""
    if batch < 1 or length < 1:
        raise ValueError(f"batch and length must be >= 1, got {batch}, {length}")
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, max(real_vocab_size, 4), size=(batch, length)).astype(np.int32)
    ids[:, -1] = EOS_ID
    return ids


# ----------------------------------------------------------------------------------------------
# Timing.


@dataclasses.dataclass(frozen=True, kw_only=True)
class Timing:
    """Seconds per call: mean and sample std over trials, the per-trial values and the warm-up."""

    mean_s: float
    std_s: float
    trials_s: tuple[float, ...]
    warmup_s: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def time_call(fn: Callable[[], Any], *, trials: int = 3) -> tuple[Timing, Any]:
    """Times `fn()` (which returns arrays) per call; returns the timing and the first output.

    One untimed warm-up call first (compilation excluded; its host copy is returned so callers
    can read statistics without another run), then `trials` timed calls. Each timed call ends
    when its outputs are on the host (`jax.device_get` inside the clock, as in
    `spec_cascade_jax.evaluation.latency.time_units`), so asynchronous dispatch hides nothing.
    """
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials!r}")
    start = time.perf_counter()
    first = jax.device_get(fn())
    warm = time.perf_counter() - start
    times = []
    for _ in range(trials):
        start = time.perf_counter()
        jax.device_get(fn())
        times.append(time.perf_counter() - start)
    return _timing(times, warm), first


def _timing(times: Sequence[float], warm: float) -> Timing:
    arr = np.asarray(times, np.float64)
    return Timing(
        mean_s=float(arr.mean()),
        std_s=float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        trials_s=tuple(float(t) for t in arr),
        warmup_s=float(warm),
    )


def time_host_call(fn: Callable[[], Any], *, trials: int = 3) -> tuple[Timing, Any]:
    """`time_call` for host-side work (e.g. PyTorch, which is synchronous on CPU)."""
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials!r}")
    start = time.perf_counter()
    first = fn()
    warm = time.perf_counter() - start
    times = []
    for _ in range(trials):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return _timing(times, warm), first


def per_unit(timing: Timing, units: float) -> Timing:
    """`timing` divided by `units` (e.g. seconds per call -> seconds per step)."""
    return dataclasses.replace(
        timing,
        mean_s=timing.mean_s / units,
        std_s=timing.std_s / units,
        trials_s=tuple(t / units for t in timing.trials_s),
    )


def rate(timing: Timing, amount: float) -> tuple[float, float]:
    """`amount / seconds` (e.g. tokens/s): mean and sample std over the per-trial rates."""
    rates = np.asarray([amount / t for t in timing.trials_s])
    return float(rates.mean()), float(rates.std(ddof=1)) if rates.size > 1 else 0.0


@compiler.jit(static_argnums=(0, 4, 5, 6))
def extend_loop(model, params, encoded, first_tokens, steps: int, block: int, cache_len: int):
    """`steps` greedy `extend` calls of `block` tokens each over a cache of `cache_len` slots.

    The position advances by `block` per call and wraps before the cache end; the cost of a call
    does not depend on the position (static shapes, attention over the whole cache).
    """
    batch = first_tokens.shape[0]
    cache = model.init_cache(batch, cache_len)
    span = max(cache_len - block, 1)

    def body(i, carry):
        cache, tokens = carry
        positions = jnp.full((batch,), (i * block) % span, jnp.int32)
        logits, cache = model.extend(params, encoded, cache, tokens, positions)
        return cache, jnp.argmax(logits, axis=-1).astype(jnp.int32)

    return jax.lax.fori_loop(0, steps, body, (cache, first_tokens))[1]


@compiler.jit(static_argnums=0)
def _encode(model, params, inputs):
    return model.encode(params, inputs)


def extend_loop_time(
    model,
    params: Params,
    inputs: np.ndarray,
    *,
    block: int,
    cache_len: int,
    steps: int = 16,
    trials: int = 3,
) -> Timing:
    """Seconds per `extend` call of `block` tokens (encoder outside the clock), per batch."""
    encoded = jax.block_until_ready(_encode(model, params, jnp.asarray(inputs)))
    first = jnp.zeros((inputs.shape[0], block), jnp.int32)
    timing, _ = time_call(
        lambda: extend_loop(model, params, encoded, first, steps, block, cache_len),
        trials=trials,
    )
    return per_unit(timing, steps)


def encoder_time(model, params: Params, inputs: np.ndarray, *, trials: int = 3) -> Timing:
    """Seconds per encoder pass (cross-attention K/V included) on `inputs`."""
    ids = jnp.asarray(inputs)
    return time_call(lambda: _encode(model, params, ids), trials=trials)[0]


@compiler.jit(static_argnums=(0, 1))
def _math_loop(rule, steps: int, q_logits, p_logits, drafts, keys, alpha, temperature):
    """`steps` rounds of warp + target + accept/emit on fixed logits (returns a checksum)."""
    vocab = q_logits.shape[-1]

    def body(i, acc):
        q_raw, q_w = warps.warp(q_logits, real_vocab_size=vocab, temperature=temperature)
        p_raw, p_w = warps.warp(p_logits, real_vocab_size=vocab, temperature=temperature)
        pi, eta = rule.target(q_raw, p_raw, q_w, p_w, alpha, temperature)
        k_round = jax.vmap(lambda k: jax.random.split(jax.random.fold_in(k, i), 3))(keys)
        block, k, _, _ = speculative.accept_and_emit(
            k_round, drafts, q_w, p_w, pi, bonus_source="target"
        )
        return acc + jnp.sum(block) + jnp.sum(k) + jnp.sum(eta).astype(jnp.int32)

    return jax.lax.fori_loop(0, steps, body, jnp.int32(0))


def math_time(
    method: str,
    *,
    batch: int,
    gamma: int,
    vocab_size: int,
    alpha: float,
    temperature: float,
    steps: int = 16,
    trials: int = 3,
) -> Timing:
    """Seconds per round of the target/acceptance math alone (both warps over γ+1 positions,
    `rule.target`, acceptance coins, correction and bonus sampling) on random logits."""
    rule = rules_lib.SPECULATIVE_RULES[method]
    rng = np.random.default_rng(0)
    shape = (batch, gamma + 1, vocab_size)
    q_logits = jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
    p_logits = jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
    drafts = jnp.asarray(rng.integers(3, vocab_size, size=(batch, gamma)), jnp.int32)
    keys = jax.random.split(jax.random.PRNGKey(0), batch)
    alpha_t, temp_t = jnp.float32(alpha), jnp.float32(temperature)
    timing, _ = time_call(
        lambda: _math_loop(rule, steps, q_logits, p_logits, drafts, keys, alpha_t, temp_t),
        trials=trials,
    )
    return per_unit(timing, steps)


@compiler.jit(static_argnums=2)
def _matmul_loop(x, w, steps: int):
    def body(i, acc):
        return acc + jnp.sum(jnp.dot(x + i.astype(x.dtype), w)[:, :1])

    return jax.lax.fori_loop(0, steps, body, jnp.float32(0))


def matmul_time(rows: int, d_in: int, d_out: int, *, steps: int = 8, trials: int = 3) -> Timing:
    """Seconds per `[rows, d_in] @ [d_in, d_out]` float32 product (e.g. the logits projection of
    a K-token extend), to show how the CPU kernels scale with the number of rows."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((rows, d_in), dtype=np.float32))
    w = jnp.asarray(rng.standard_normal((d_in, d_out), dtype=np.float32))
    timing, _ = time_call(lambda: _matmul_loop(x, w, steps), trials=trials)
    return per_unit(timing, steps)


# ----------------------------------------------------------------------------------------------
# Memory.


def current_rss_bytes() -> int:
    """Resident set size of this process (Linux /proc), bytes."""
    return _status_kb("VmRSS") * 1024


def reset_peak_rss() -> bool:
    """Resets the kernel's peak-RSS mark (VmHWM) to the current RSS; False if not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak resident set size since the last `reset_peak_rss` (VmHWM), bytes."""
    return _status_kb("VmHWM") * 1024


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


# ----------------------------------------------------------------------------------------------
# Reports.


def environment(
    dtype: str = "float32",
    machine: str = DEFAULT_MACHINE,
    load_at_start: Sequence[float] | None = None,
) -> dict[str, Any]:
    """What the numbers were measured on: device, JAX version, dtype, date, load, machine.

    `load_average` is read now (the end of a run); pass the one read at the start as
    `load_at_start`.
    """
    info = environment_info(dtype)
    info.update(
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        load_average=[round(x, 2) for x in os.getloadavg()],
        load_average_start=None if load_at_start is None else [round(x, 2) for x in load_at_start],
        machine_label=machine,
        platform=platform.platform(),
    )
    return info


def environment_line(env: Mapping[str, Any]) -> str:
    """One Markdown line summarising `environment`."""
    fmt_load = lambda load: " / ".join(f"{x:.2f}" for x in load) if load else "?"
    load_s = fmt_load(env.get("load_average"))
    if env.get("load_average_start"):
        load_s = f"{fmt_load(env['load_average_start'])} at start, {load_s} at end"
    parts = [
        f"date {env.get('date', '?')}",
        f"machine {env.get('machine_label', '?')}",
        f"device {env.get('backend', '?')} ({env.get('device_kind', '?')})",
        f"JAX {env.get('jax_version', '?')}",
        f"dtype {env.get('dtype', '?')}",
        f"load average (1/5/15 min) {load_s}",
    ]
    for key in ("torch_version", "transformers_version", "torch_threads"):
        if key in env:
            parts.append(f"{key.replace('_', ' ')} {env[key]}")
    return "_" + "; ".join(parts) + "._"


def mean_std(mean: float | None, std: float | None, digits: int = 1) -> str:
    """`mean ± std` with `digits` decimals ("—" when missing)."""
    if mean is None or not math.isfinite(mean):
        return "—"
    if std is None or not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt(value: float | None, digits: int = 3) -> str:
    """A float with `digits` decimals, "—" for None/NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain Markdown table of already-formatted cells."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, expected {len(headers)}: {row!r}")
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    return obj


def write_report(
    out_dir: str, name: str, env: Mapping[str, Any], results: Any, markdown: str
) -> tuple[str, str]:
    """Writes `<out_dir>/<name>.json` and `<out_dir>/<name>.md`, prints the Markdown."""
    os.makedirs(out_dir, exist_ok=True)
    json_path = os.path.join(out_dir, f"{name}.json")
    md_path = os.path.join(out_dir, f"{name}.md")
    with open(json_path, "w") as f:
        json.dump(_jsonable({"env": env, "results": results}), f, indent=2, allow_nan=False)
    text = f"{environment_line(env)}\n\n{markdown}\n"
    with open(md_path, "w") as f:
        f.write(text)
    print(text, flush=True)  # benchmark scripts report on stdout
    return json_path, md_path


# ----------------------------------------------------------------------------------------------
# Command lines.


def str_list(text: str) -> list[str]:
    """argparse type: a comma-separated list ("" gives [])."""
    return [t.strip() for t in text.split(",") if t.strip()]


def int_list(text: str) -> list[int]:
    """argparse type: comma-separated integers."""
    return [int(t) for t in str_list(text)]


def float_list(text: str) -> list[float]:
    """argparse type: comma-separated floats."""
    return [float(t) for t in str_list(text)]


def add_common_args(parser: argparse.ArgumentParser, out_dir: str) -> None:
    """--trials, --seed, --machine, --out_dir, --tiny."""
    parser.add_argument("--trials", type=int, default=3, help="Timed calls per configuration.")
    parser.add_argument("--seed", type=int, default=0, help="Weights/inputs/sampling seed.")
    parser.add_argument("--machine", default=DEFAULT_MACHINE, help="Machine label for reports.")
    parser.add_argument("--out_dir", default=out_dir, help="Where to write JSON + Markdown.")
    parser.add_argument(
        "--tiny", action="store_true", help="Smoke-test mode (overrides the sizes; see --help)."
    )


def setup_logging() -> None:
    """absl INFO logging to stderr (the scripts do not go through absl.app)."""
    logging.set_verbosity(logging.INFO)
