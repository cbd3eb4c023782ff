"""`warps.sample`: the two-level inversion sampler draws exactly from its input distribution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spec_cascade_jax.decoding import warps

N = 200_000  # draws per distribution


def _draw(probs: np.ndarray, seed: int, n: int = N) -> np.ndarray:
    keys = jax.random.split(jax.random.PRNGKey(seed), n)
    rows = jnp.broadcast_to(jnp.asarray(probs, jnp.float32), (n, probs.shape[-1]))
    return np.asarray(jax.jit(jax.vmap(warps.sample))(keys, rows))


def _awkward_distribution() -> np.ndarray:
    # 300 ids = 2 full blocks of 128 + a partial one; zeros scattered, a whole zero block span,
    # zeros at block starts and at the very end.
    rng = np.random.default_rng(0)
    p = rng.random(300) ** 3
    p[rng.random(300) < 0.3] = 0.0
    p[[0, 128, 256, 299]] = 0.0
    p[140:250] = 0.0
    return p / p.sum()


@pytest.mark.parametrize("seed", [0, 1])
def test_sample_matches_distribution_chi_square(seed):
    p = _awkward_distribution()
    counts = np.bincount(_draw(p, seed), minlength=p.size)
    assert counts[p == 0].sum() == 0  # zero-probability ids are never drawn
    support = p > 0
    expected = N * p[support]
    chi2 = float(np.sum((counts[support] - expected) ** 2 / expected))
    dof = int(support.sum()) - 1
    # chi^2 with `dof` degrees of freedom: mean dof, sd sqrt(2 dof); 5 sd is a p-value < 1e-6.
    assert chi2 < dof + 5 * np.sqrt(2 * dof), (chi2, dof)


def test_sample_point_masses_and_last_id():
    for v, hot in [(1, 0), (7, 6), (128, 127), (129, 128), (32128, 32127), (32128, 5000)]:
        p = np.zeros(v)
        p[hot] = 1.0
        assert set(_draw(p, 3, n=64).tolist()) == {hot}


def test_sample_unnormalised_rows_and_batch_shape():
    # Rows need not sum to 1 (the total is scaled in); leading axes are kept.
    p = np.array([[0.0, 2.0, 0.0, 6.0], [5.0, 0.0, 0.0, 0.0]], np.float32)
    keys = jax.random.split(jax.random.PRNGKey(0), 4000).reshape(2000, 2, 2)
    ids = np.asarray(
        jax.jit(jax.vmap(jax.vmap(warps.sample)))(keys, jnp.broadcast_to(p, (2000, 2, 4)))
    )
    assert ids.shape == (2000, 2)
    assert set(ids[:, 1].tolist()) == {0}
    assert set(ids[:, 0].tolist()) <= {1, 3}
    assert abs(np.mean(ids[:, 0] == 3) - 0.75) < 0.04  # sd of the mean ~0.01
