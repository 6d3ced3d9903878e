"""Finite-state Markov chains: checked transition matrices, stationary distributions, paths.

Shared by the Markov channel (``splitexit.envs.channel``) and the server's Markov-modulated
background load (``splitexit.envs.server``).
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

from splitexit.envs.checks import check


def check_transition(transition: np.ndarray, n: int) -> np.ndarray:
    p = np.array(transition, dtype=np.float64)
    check(p.shape == (n, n), "transition", f"of shape ({n}, {n})", p.shape)
    ok = bool(np.all(np.isfinite(p)) and np.all(p >= 0))
    check(ok, "transition", ">= 0 and finite", p.tolist())
    check(bool(np.allclose(p.sum(axis=1), 1.0, atol=1e-6)), "transition", "row-stochastic", p)
    return p / p.sum(axis=1, keepdims=True)


def stationary_distribution(transition: np.ndarray) -> np.ndarray:
    """Stationary distribution ``pi = pi P`` of a row-stochastic matrix (least squares)."""
    p = np.asarray(transition, dtype=np.float64)
    n = p.shape[0]
    a = np.vstack([p.T - np.eye(n), np.ones((1, n))])
    b = np.concatenate([np.zeros(n), [1.0]])
    pi = np.clip(np.linalg.lstsq(a, b, rcond=None)[0], 0.0, None)
    return pi / pi.sum()


def sample_markov_chain(
    rng: np.random.Generator, transition: np.ndarray, n_steps: int, initial: int | None = None
) -> np.ndarray:
    """A path of ``n_steps`` states of the chain; the initial state from ``initial`` or else the
    stationary distribution. One uniform draw per step, so a path is fixed by the rng state."""
    p = np.asarray(transition, dtype=np.float64)
    cum_rows = np.cumsum(p, axis=1)
    cum_rows[:, -1] = np.inf  # absorb rounding: a draw in [0, 1) always lands on a state
    rows = cum_rows.tolist()
    u = rng.random(n_steps).tolist()
    if initial is None:
        pi_cum = np.cumsum(stationary_distribution(p))
        pi_cum[-1] = np.inf
        state = bisect_right(pi_cum.tolist(), u[0])
    else:
        state = int(initial)
    path = [state] * n_steps
    for k in range(1, n_steps):
        state = bisect_right(rows[state], u[k])
        path[k] = state
    return np.asarray(path, dtype=np.int64)
