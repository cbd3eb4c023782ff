"""Test and benchmark fixtures: toy table language models behind the `DecodeModel` protocol.

`TableLM` is a second-order Markov model with an encoder-dependent bias:

    logits(y_t | x, y_<t) = table[min(t, P - 1), y_{t-2}, y_{t-1}] + src[x_0]

(`y_0 = y_{-1} = PAD`). Its cache stores the decoder input token of every position, so a wrong
rollback (reading a stale slot) changes the logits. `next_logits_np` computes the same thing in
numpy for exact enumeration. Production code never imports this module.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

EOS_ID = 1


@dataclasses.dataclass(frozen=True)
class TableLM:
    """A toy decoder: vocab `vocab_size` logits, ids >= `real_vocab_size` masked by the warps."""

    vocab_size: int = 6
    real_vocab_size: int = 6
    num_positions: int = 4
    num_sources: int = 4

    def init_params(self, rng: jax.Array, scale: float = 1.5) -> dict[str, jax.Array]:
        k1, k2 = jax.random.split(rng)
        V, P = self.vocab_size, self.num_positions
        return {
            "table": scale * jax.random.normal(k1, (P, V, V, V), jnp.float32),
            "src": 0.5 * jax.random.normal(k2, (self.num_sources, V), jnp.float32),
        }

    def encode(self, params, inputs):
        return {"bias": params["src"][inputs[:, 0] % self.num_sources]}

    def init_cache(self, batch_size: int, max_len: int):
        return {"tokens": jnp.zeros((batch_size, max_len), jnp.int32)}

    def extend(self, params, encoded, cache, tokens, positions):
        batch, k = tokens.shape
        max_len = cache["tokens"].shape[1]
        pos = positions[:, None] + jnp.arange(k)[None, :]  # [B, K]
        buf = jax.vmap(lambda b, t, p: jax.lax.dynamic_update_slice(b, t, (p,)))(
            cache["tokens"], tokens, positions
        )
        prev = jnp.take_along_axis(buf, jnp.clip(pos - 1, 0, max_len - 1), axis=1)
        prev = jnp.where(pos >= 1, prev, 0)
        bucket = jnp.minimum(pos, self.num_positions - 1)
        logits = params["table"][bucket, prev, tokens] + encoded["bias"][:, None, :]
        return logits, {"tokens": buf}

    def next_logits_np(self, params, source: int, prefix: tuple[int, ...]) -> np.ndarray:
        """Logits for the token after the emitted `prefix` (numpy, for enumeration)."""
        inputs = (0,) + tuple(prefix)  # decoder inputs: PAD, y_1, ...
        t = len(inputs) - 1
        prev = inputs[t - 1] if t >= 1 else 0
        table = np.asarray(params["table"])
        bias = np.asarray(params["src"])[source % self.num_sources]
        return table[min(t, self.num_positions - 1), prev, inputs[t]] + bias


def enumerate_sequences(next_dist, vocab_size: int, max_len: int) -> dict[tuple[int, ...], float]:
    """Exact law of outputs of the chain y_t ~ next_dist(prefix) with EOS and a length cap.

    `next_dist(prefix) -> np.ndarray[V]` gives the distribution of the next token.
    """
    law: dict[tuple[int, ...], float] = {}
    frontier = {(): 1.0}
    for _ in range(max_len):
        nxt: dict[tuple[int, ...], float] = {}
        for prefix, mass in frontier.items():
            dist = next_dist(prefix)
            for v in range(vocab_size):
                if dist[v] <= 0:
                    continue
                seq = prefix + (v,)
                if v == EOS_ID:
                    law[seq] = law.get(seq, 0.0) + mass * dist[v]
                else:
                    nxt[seq] = nxt.get(seq, 0.0) + mass * dist[v]
        frontier = nxt
    for seq, mass in frontier.items():
        law[seq] = law.get(seq, 0.0) + mass
    return law


def empirical_law(tokens: np.ndarray, lengths: np.ndarray) -> dict[tuple[int, ...], float]:
    counts: dict[tuple[int, ...], float] = {}
    for row, n in zip(np.asarray(tokens), np.asarray(lengths), strict=True):
        seq = tuple(int(x) for x in row[:n])
        counts[seq] = counts.get(seq, 0.0) + 1.0
    total = float(len(lengths))
    return {k: v / total for k, v in counts.items()}


def total_variation(a: dict, b: dict) -> float:
    return 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


def tv_bound(law: dict, num_samples: int, delta: float = 1e-6) -> float:
    """A bound B with P(TV(empirical, law) > B) <= delta for `num_samples` i.i.d. draws.

    E[TV] <= 1/2 sum_i sqrt(p_i (1 - p_i) / N) (Jensen per outcome), and TV of the empirical law
    changes by at most 1/N per sample, so McDiarmid adds sqrt(log(1/delta) / (2 N)).
    """
    mean = 0.5 * sum(np.sqrt(p * (1 - p) / num_samples) for p in law.values())
    return float(mean + np.sqrt(np.log(1 / delta) / (2 * num_samples)))


__all__ = [
    "TableLM",
    "empirical_law",
    "enumerate_sequences",
    "total_variation",
    "tv_bound",
]
