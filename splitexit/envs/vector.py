"""SplitExitVectorEnv: many SplitExitEnv worlds stepped at once with numpy.

The same world as :class:`~splitexit.envs.splitexit_env.SplitExitEnv` in replay mode, step for
step: sub-env ``i`` owns its own ``np.random.Generator`` and draws its episodes exactly as a
single env does, and every number of a step is computed with the same floating-point operations
in the same order, element-wise. So ``N`` sub-envs seeded ``s .. s + N - 1`` give the
observations, rewards, flags and infos of ``N`` single envs with those seeds, bit for bit
(``tests/envs/test_vector.py``). An episode's world is a pair of offsets into long shared
realisations (the capacity traces, the server's background load and outages), so a reset is one
generator call per sub-env and copies nothing; the searches that a request needs (the slot where
its upload ends, the background jobs before it reaches the server) start from a nearby hint.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from splitexit.envs.channel import TraceChannel
from splitexit.envs.energy import MW_PER_W
from splitexit.envs.splitexit_env import (
    EPISODE_DRAWS,
    MAX_OBS_THROUGHPUT_MBPS,
    WAIT_UNIT_S,
    SplitExitEnv,
)

INFO_KEYS = (
    "split",
    "threshold",
    "compression",
    "exit_block",
    "correct",
    "latency_s",
    "energy_j",
    "deadline_missed",
    "timed_out",
    "payload_bytes",
    "uplink_bps",
    "tx_time_s",
    "device_wait_s",
    "server_wait_s",
    "sample_index",
)


NEAR = 8  # entries looked at around a hint
BUCKETS_PER_SLOT = 2  # of a trace's bits index (see _TraceBank)
_BYTE_SUM = np.uint64(0x0101010101010101)  # times 8 bytes of 0/1: their sum in the top byte


def window_view(a: np.ndarray) -> np.ndarray:
    """The sliding windows of ``NEAR`` entries of the contiguous float64 array ``a``, each one
    opaque item: ``w[idx]`` copies whole windows (twice as fast as fancy-indexing a 2-d sliding
    window view) and ``.view(np.float64).reshape(-1, NEAR)`` reads them."""
    if a.dtype != np.float64 or not a.flags.c_contiguous:
        raise ValueError("window_view needs a contiguous float64 array")
    return np.ndarray((a.size - NEAR + 1,), np.dtype((np.void, 8 * NEAR)), a, 0, (8,))


def searchsorted_near(
    a: np.ndarray,
    window: np.ndarray,
    v: np.ndarray,
    hint: np.ndarray,
    side: str,
    need: np.ndarray,
    fallback,
    hint_may_pass: bool = True,
) -> np.ndarray:
    """``np.searchsorted(a, v, side)`` where ``need``, for keys whose answers are likely at or
    just after ``hint`` (``1 <= hint``, ``hint + NEAR < len(a)``): a look at ``a[hint]``, then
    at the next ``NEAR`` entries (``window``: ``window_view(a)``) for the
    keys not settled, and ``fallback(rows)`` for those still not settled. With a large ``a``
    this reads a cache line or two per key, not a binary search's worth. Without
    ``hint_may_pass`` the caller guarantees that the answer is at least ``hint``."""
    left = side == "left"
    first = a[hint]
    settled = first >= v if left else first > v
    if hint_may_pass:
        before = a[hint - 1]
        above = before < v if left else before <= v
        settled &= above
    rest = np.flatnonzero(need & ~settled)
    if not rest.size:
        return hint
    h1 = hint[rest] + 1
    vr = v[rest]
    near = window[h1].view(np.float64).reshape(-1, NEAR)
    below = near < vr[:, None] if left else near <= vr[:, None]
    count = ((below.view(np.uint64)[:, 0] * _BYTE_SUM) >> np.uint64(56)).astype(np.int64)
    ok = count < NEAR
    if hint_may_pass:
        ok &= above[rest]
    out = hint.copy()
    out[rest] = h1 + count
    miss = rest[~ok]
    if miss.size:
        out[miss] = fallback(miss)
    return out


class _TraceBank:
    """The channel's traces as flat arrays, with :class:`CapacityTrace`'s arithmetic
    element-wise over sub-envs that each read trace ``k`` shifted by ``shift_s``.

    ``pairs[off_k + i]`` holds trace ``k``'s cumulative bits at slot boundary ``i`` and the
    capacity of slot ``i``: the two numbers a step reads sit in one cache line."""

    def __init__(self, channel: TraceChannel):
        traces = channel.scaled_traces
        self.size = np.array([tr.capacity_bps.size for tr in traces], dtype=np.int64)
        self.slot_s = np.array([tr.slot_s for tr in traces])
        self.duration_s = np.array([tr.duration_s for tr in traces])
        self.total_bits = np.array([tr.cum_bits_array[-1] for tr in traces])
        self.any_silent = bool((self.total_bits <= 0).any())  # (capacity_scale 0, say)
        # Each trace's segment ends with NEAR + 1 entries of +inf: a window never reaches into
        # the next trace.
        pad = np.full((NEAR + 1, 2), np.inf)
        self.offset = np.concatenate(([0], np.cumsum(self.size + 1 + pad.shape[0])[:-1]))
        pairs = []
        for tr in traces:
            pairs += [np.stack((tr.cum_bits_array, np.append(tr.capacity_bps, 0.0)), 1), pad]
        self.pairs = np.concatenate(pairs)
        # gathers read (cum, cap) pairs as one complex number: far faster than 2-d fancy indexing
        self.pairs_z = self.pairs.view(np.complex128).reshape(-1)
        self.cum_bits = np.ascontiguousarray(self.pairs[:, 0])
        self.window = window_view(self.cum_bits)
        # Where the search for the slot in which bits ``rest`` are reached starts: bucket
        # ``rest // bucket_bits`` of trace k (BUCKETS_PER_SLOT per slot on average) holds
        # ``bisect_left(cum_bits, bucket start)``, which is at most the answer and mostly is it
        # or a few slots before it.
        n_buckets = self.size * BUCKETS_PER_SLOT
        self.bucket_bits = np.where(self.total_bits > 0, self.total_bits / n_buckets, 1.0)
        self.bucket_offset = np.concatenate(([0], np.cumsum(n_buckets)[:-1]))
        self.bucket_first = np.concatenate(
            [
                off + np.maximum(np.searchsorted(tr.cum_bits_array, np.arange(n) * w), 1)
                for tr, off, n, w in zip(
                    traces, self.offset, n_buckets, self.bucket_bits, strict=True
                )
            ]
        )
        self.last_bucket = n_buckets - 1

    def params(self, k: np.ndarray) -> tuple:
        """Per-sub-env parameters of traces ``k``."""
        return (
            self.duration_s[k],
            self.slot_s[k],
            self.size[k],
            self.total_bits[k],
            self.offset[k],
            self.bucket_bits[k],
            self.bucket_offset[k],
            self.last_bucket[k],
        )

    def slot(self, x: np.ndarray, p: tuple) -> np.ndarray:
        return np.minimum((x / p[1]).astype(np.int64), p[2] - 1)

    def cumulative_bits(self, t_s: np.ndarray, p: tuple) -> np.ndarray:
        """``CapacityTrace.cumulative_bits`` at base times ``t_s``."""
        duration_s, total = p[0], p[3]
        wrap = t_s >= duration_s
        if not wrap.any():  # divmod gives (0.0, t_s): loops * total is 0.0
            return self._in_loop(t_s, p, 0.0)
        if (t_s < 2.0 * duration_s).all():  # divmod gives (1.0, t_s - duration_s), exactly
            return self._in_loop(t_s - duration_s * wrap, p, total * wrap)  # (Sterbenz)
        loops, x = np.divmod(t_s, duration_s)
        return self._in_loop(x, p, loops * total)

    def _in_loop(self, x: np.ndarray, p: tuple, loops_bits) -> np.ndarray:
        """``loops_bits + cum[i] + cap[i] * (x - i * slot)`` for ``x`` within one loop, in
        CapacityTrace's order of operations."""
        i = self.slot(x, p)
        cum, cap = self.pair(p[4] + i)
        return loops_bits + cum + cap * (x - i * p[1])

    def pair(self, at: np.ndarray) -> tuple:
        """Cumulative bits and capacity at flat positions ``at``."""
        z = self.pairs_z[at]
        return z.real, z.imag

    def capacity_at_bps(self, t_s: np.ndarray, p: tuple) -> np.ndarray:
        """``CapacityTrace.capacity_at_bps`` at base times ``t_s``."""
        return self.pair(p[4] + self.slot(np.remainder(t_s, p[0]), p))[1]

    def time_at_bits_s(self, bits: np.ndarray, p: tuple, need: np.ndarray) -> np.ndarray:
        """``CapacityTrace.time_at_bits_s`` for ``bits > 0``, element-wise, exact where
        ``need``. ``inf`` on a trace that never delivers anything."""
        duration_s, slot_s, size, total, offset = p[:5]
        silent = total <= 0 if self.any_silent else None
        if silent is not None:
            need = need & ~silent
            total = np.where(silent, 1.0, total)
        loops = np.ceil(bits / total) - 1.0
        rest = bits - loops * total  # in (0, total] up to rounding
        low, high = rest <= 0, rest > total
        if low.any() or high.any():
            loops = np.where(low, loops - 1.0, np.where(high, loops + 1.0, loops))
            rest = np.where(low, rest + total, np.where(high, rest - total, rest))
        # i = bisect_left(cum_bits, rest) - 1, from the bucket of rest
        bucket = np.minimum(rest / p[5], p[7]).astype(np.int64)
        at = searchsorted_near(
            self.cum_bits,
            self.window,
            rest,
            self.bucket_first[p[6] + bucket],
            "left",
            need,
            lambda rows: [
                o + np.searchsorted(self.cum_bits[o : o + n + 1], r)
                for o, n, r in zip(offset[rows], size[rows], rest[rows], strict=True)
            ],
        )
        cum, cap = self.pair(at - 1)
        t = loops * duration_s + (at - 1 - offset) * slot_s + (rest - cum) / cap
        if silent is not None:
            t[silent] = np.inf
        return t


class SplitExitVectorEnv(VectorEnv):
    """``num_envs`` SplitExitEnv worlds in replay mode, stepped together with numpy.

    ``gym.make_vec("splitexit:SplitExit-v0", num_envs=N,
    vectorization_mode="vector_entry_point", config={...})``. Arguments as
    :class:`SplitExitEnv` (a config dict, the registered preset, keyword overrides). Autoreset
    mode ``NEXT_STEP``: the step after an episode ends resets that sub-env and returns its first
    observation with reward 0; with ``autoreset_mode="same_step"`` the sub-env resets in the
    step that ends its episode, and ``info["final_obs"]`` holds the last observation. Infos are
    Gymnasium's vector infos: ``info[key]`` is an array over sub-envs and ``info["_" + key]``
    marks the sub-envs that stepped.

    Not vectorised (raise ``ValueError``; use ``vectorization_mode="sync"`` or ``"async"``):
    ``mode="live"`` (runs the torch model per request) and ``channel="fading"`` (draws a new
    capacity trace per episode).
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        config: dict | None = None,
        preset: dict | None = None,
        render_mode: str | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        **kwargs: Any,
    ) -> None:
        modes = {m.name.lower(): m for m in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)}
        mode = modes.get(str(getattr(autoreset_mode, "name", autoreset_mode)).lower())
        if mode is None:
            raise ValueError(
                f"autoreset_mode must be one of {list(modes)} (or AutoresetMode), "
                f"got {autoreset_mode!r}"
            )
        self._same_step = mode == AutoresetMode.SAME_STEP
        self.metadata = {**self.metadata, "autoreset_mode": mode}
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if render_mode is not None:
            raise ValueError(f"SplitExitVectorEnv does not render, got render_mode={render_mode!r}")
        self.env = env = SplitExitEnv(config, preset=preset, **kwargs)  # validates the config
        cfg = self.config = env.config
        if cfg["mode"] != "replay":
            raise ValueError(
                f"config key 'mode' must be 'replay' for the vector env, got {cfg['mode']!r}: "
                "use gym.make_vec(..., vectorization_mode='sync') for live mode"
            )
        if not isinstance(env.channel, TraceChannel):
            raise ValueError(
                f"config key 'channel' must be 'trace' or 'markov' for the vector env, got "
                f"{cfg['channel']!r}: use gym.make_vec(..., vectorization_mode='sync')"
            )
        self.num_envs = num_envs
        self.render_mode = None
        self.single_observation_space = env.observation_space
        self.single_action_space = env.action_space
        self.observation_space = batch_space(env.observation_space, num_envs)
        self.action_space = batch_space(env.action_space, num_envs)
        self._multidiscrete = cfg["action_type"] == "multidiscrete"

        # Lookup tables. Per (sample, flat action), packed in one int8 read by one gather from a
        # table that stays in cache: 2 * ti + correct, where ti indexes the (split, answering
        # exit, heads on) tables of compute times and exit blocks.
        tables, n_actions = env.tables, env.n_actions
        a = np.arange(n_actions)
        split = a // (env.n_t * env.n_c)
        thr = (a // env.n_c) % env.n_t
        comp = a % env.n_c
        heads = (thr < env.n_t - 1).astype(np.int64)
        exit_k = tables.exit_index[:, split, comp, thr].astype(np.int64)  # (N, A)
        correct = np.take_along_axis(tables.correct[:, split, comp, :], exit_k[..., None], 2)
        n_exits = len(tables.exit_blocks)
        ti = (split * n_exits + exit_k) * 2 + heads  # index into (S+1, E, heads)
        self._answer = (2 * ti + correct[..., 0]).astype(np.int8).reshape(-1)
        self._device_time_s = np.asarray(tables.device_time_s).reshape(-1)
        self._server_time_s = np.asarray(tables.server_time_s).reshape(-1)
        blocks = np.asarray(tables.exit_blocks, dtype=np.int64)
        self._exit_block = np.repeat(np.tile(blocks, env.num_splits), 2)  # by ti
        self._split = split
        payload = np.asarray(tables.payload_bytes, dtype=np.int64)[split, comp]
        self._payload_bytes = payload
        self._payload_mbit = 8.0 * payload / 1e6  # as RadioModel.tx_energy_j
        self._threshold = np.asarray(env.thresholds)[thr]
        self._compression = np.asarray(env.compressions)[comp]
        self._n_actions = n_actions
        self._horizon, self._history = env.horizon, env.history
        self._bank = _TraceBank(env.channel)
        self._n_traces = len(env.channel.traces)

        world = env.server.world
        self._spare_s = world.duration_s - env._duration_s
        self._bg_arrival_s = world.arrival_s
        self._bg_arrival_pad = np.concatenate((world.arrival_s, np.full(2 * NEAR + 2, np.inf)))
        self._bg_window = window_view(self._bg_arrival_pad)
        self._bg_work_before_s = world.work_before_s
        self._bg_g_max = world.g_max
        self._permanent = bool(env.server.outages is not None and env.server.outages.permanent)
        sched = world.schedule
        self._intermittent = bool(sched.down_start_s)
        self._down_start_s = np.asarray(sched.down_start_s, dtype=np.float64)
        self._down_end_s = np.asarray(sched.down_end_s, dtype=np.float64)
        self._cum_down_s = np.asarray(sched._cum_down_s, dtype=np.float64)
        self._up_at_start_s = np.asarray(sched._up_at_start_s, dtype=np.float64)

        n, h = self._horizon, self._history
        self._t_obs_s = env.t0_s + env.frame_s * np.arange(-h, n + 1)  # as SplitExitEnv.reset
        self._heard_s = self._t_obs_s[h:] - env.frame_s
        self._rngs: list[np.random.Generator] = []
        self._draws = np.zeros((num_envs, n + EPISODE_DRAWS))
        self._samples = np.zeros((n, num_envs), dtype=np.int64)  # request-major
        # Observations of the episodes, request-major: (request, sub-env, feature).
        self._obs = np.zeros((n + 1, num_envs, self.single_observation_space.shape[0]), np.float32)
        self._trace_k = np.zeros(num_envs, dtype=np.int64)
        self._shift_s = np.zeros(num_envs)
        self._offset_s = np.zeros(num_envs)
        self._fail_s = np.full(num_envs, np.inf)
        self._fail_k = np.full(num_envs, len(self._bg_g_max), dtype=np.int64)
        self._fail_g = np.zeros(num_envs)
        self._j_heard = np.zeros((n + 1, num_envs), dtype=np.int64)  # hints for the queue
        self._step_idx = np.zeros(num_envs, dtype=np.int64)
        self._in_step = True  # every sub-env is at the same request (reset keeps it current)
        self._device_free_s = np.zeros(num_envs)
        self._last_tx_end_s = np.full(num_envs, -np.inf)
        self._energy_j = np.zeros(num_envs)
        self._m = np.zeros(num_envs)
        self._prev_done = np.zeros(num_envs, dtype=bool)
        self._rows = np.arange(num_envs)
        self._params = self._bank.params(self._trace_k)

    # -- episodes ----------------------------------------------------------------------------

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        """Reset every sub-env; ``seed`` ``s`` seeds sub-env ``i`` with ``s + i`` (a list gives
        each its own). Without a seed, sub-envs continue their generators (fresh ones at first)."""
        super().reset(seed=seed if isinstance(seed, int) else None)
        if seed is not None or not self._rngs:
            if seed is None or isinstance(seed, int):
                seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
            else:
                seeds = list(seed)
                if len(seeds) != self.num_envs:
                    raise ValueError(f"seed must list {self.num_envs} seeds, got {len(seeds)}")
            self._rngs = [seeding.np_random(s)[0] for s in seeds]
        with np.errstate(all="ignore"):
            self._reset_rows(self._rows)
        self._prev_done[:] = False
        return self._observation(), {}

    def _reset_rows(self, rows: np.ndarray) -> None:
        """Draw new episodes for ``rows``, as ``SplitExitEnv.reset`` does for each."""
        env, n = self.env, self._horizon
        draws = self._draws
        for r in rows.tolist():  # as SplitExitEnv.reset: one call per episode
            self._rngs[r].random(out=draws[r])
        u = draws[rows]
        n_samples = env.profile.num_samples
        self._samples[:, rows] = np.minimum(
            (u[:, :n] * n_samples).astype(np.int64), n_samples - 1
        ).T
        bank = self._bank
        n_traces = self._n_traces
        k = np.minimum((u[:, n] * n_traces).astype(np.int64), n_traces - 1)  # sample_shifted
        size = bank.size[k]
        start = np.minimum((u[:, n + 1] * size).astype(np.int64), size - 1)
        self._trace_k[rows] = k
        self._shift_s[rows] = start * bank.slot_s[k]
        self._offset_s[rows] = offset = u[:, n + 2] * self._spare_s  # EdgeServer.reset
        self._params = bank.params(self._trace_k)
        if self._permanent:
            t_fail_s = -self.config["outage_mean_up_s"] * np.log1p(-u[:, n + 3])
            fail_s = np.where(t_fail_s < env._duration_s, offset + t_fail_s, np.inf)
            self._fail_s[rows] = fail_s
            k = np.searchsorted(self._bg_arrival_s, fail_s, side="left")
            self._fail_k[rows] = np.where(np.isfinite(fail_s), k, len(self._bg_g_max))
            self._fail_g[rows] = np.maximum(self._bg_g_max[k], fail_s - self._bg_work_before_s[k])
        ptr = np.searchsorted(self._bg_arrival_s, offset, side="right")
        self._m[rows] = self._g_max(ptr, rows)

        # Observations of the whole episode, as SplitExitEnv.reset lays them out.
        h = self._history
        p = tuple(x[:, None] for x in self._bank.params(self._trace_k[rows]))
        base_t = self._t_obs_s[None, :] + self._shift_s[rows, None]
        mbps = np.diff(self._bank.cumulative_bits(base_t, p), axis=1) / env.frame_s / 1e6
        tp = (np.log1p(mbps) / np.log1p(MAX_OBS_THROUGHPUT_MBPS)).clip(0.0, 1.0)
        every = len(rows) == self.num_envs
        obs = self._obs if every else np.empty((n + 1, len(rows), self._obs.shape[2]), np.float32)
        obs[:, :, :h] = np.lib.stride_tricks.sliding_window_view(tp.T, h, axis=0)
        obs[:, :, h] = min(self.config["rtt_s"] / env.timeout_s, 1.0)
        heard = self._heard_s[None, :] + offset[:, None]
        j = np.searchsorted(self._bg_arrival_s, heard, side="right")  # background jobs by then
        self._j_heard[:, rows] = j.T
        queue_s = np.maximum(
            0.0,
            self._bg_work_before_s[j] - self._uptime(heard, rows[:, None]) + self._g_max(j, rows),
        )
        obs[:, :, h + 1] = np.minimum(np.log1p(queue_s / WAIT_UNIT_S) / env._wait_scale, 1.0).T
        obs[:, :, h + 2] = np.where(self._is_down(heard, rows[:, None]), 0.0, 1.0).T
        obs[:, :, h + 3] = 0.0
        obs[:, :, h + 4] = 1.0
        obs[:, :, h + 5] = min(env.deadline_s / env.timeout_s, 1.0)
        if not every:
            self._obs[:, rows] = obs
        self._step_idx[rows] = 0
        self._in_step = bool((self._step_idx == self._step_idx[0]).all())
        self._device_free_s[rows] = 0.0
        self._last_tx_end_s[rows] = -np.inf
        self._energy_j[rows] = 0.0

    # -- the server's outages and queue, element-wise (EdgeServer / OutageSchedule) ------------

    def _g_max(self, j: np.ndarray, rows) -> np.ndarray:
        g = self._bg_g_max[j]
        if self._permanent:
            fail_k, fail_g = self._fail_k[rows], self._fail_g[rows]
            if np.ndim(j) == 2:
                fail_k, fail_g = fail_k[:, None], fail_g[:, None]
            g = np.where(j > fail_k, fail_g, g)
        return g

    def _is_down(self, t_s: np.ndarray, rows) -> np.ndarray:
        if self._permanent:
            return t_s >= self._fail_s[rows]
        if self._intermittent:
            k = np.searchsorted(self._down_start_s, t_s, side="right") - 1
            return (k >= 0) & (t_s < self._down_end_s[np.maximum(k, 0)])
        return np.zeros(np.shape(t_s), dtype=bool)

    def _uptime(self, t_s: np.ndarray, rows) -> np.ndarray:
        if self._permanent:
            fail_s = self._fail_s[rows]
            return np.where(t_s >= fail_s, fail_s, t_s)
        if self._intermittent:
            k = np.searchsorted(self._down_start_s, t_s, side="right") - 1
            kk = np.maximum(k, 0)
            up = np.where(
                t_s < self._down_end_s[kk], self._up_at_start_s[kk], t_s - self._cum_down_s[kk + 1]
            )
            return np.where(k < 0, t_s, up)
        return t_s

    def _time_at_uptime(self, up_s: np.ndarray, after_down: bool, rows) -> np.ndarray:
        if self._permanent:
            fail_s = self._fail_s[rows]
            past = up_s >= fail_s if after_down else up_s > fail_s
            return np.where(past, np.inf, up_s + 0.0)
        side = "right" if after_down else "left"
        k = np.searchsorted(self._up_at_start_s, up_s, side=side)
        return up_s + self._cum_down_s[k]

    # -- steps -------------------------------------------------------------------------------

    def _flat_actions(self, actions) -> np.ndarray:
        """Flat action indices; ``ValueError`` naming the sub-env and the space if invalid."""
        a = np.asarray(actions)
        n = self.num_envs
        shape = (n, 3) if self._multidiscrete else (n,)
        if a.shape != shape or a.dtype.kind not in "iu":
            raise ValueError(
                f"actions must be integers of shape {shape} in {self.action_space}, "
                f"got {a.dtype} of shape {a.shape}"
            )
        a = a.astype(np.int64, copy=False)
        big = self.single_action_space.nvec if self._multidiscrete else self._n_actions
        if (a.view(np.uint64) >= big).any():  # negatives wrap to huge values
            bad = a.view(np.uint64) >= big
            i = int(np.flatnonzero(bad.any(axis=1) if self._multidiscrete else bad)[0])
            raise ValueError(
                f"action {a[i].tolist()!r} of sub-env {i} is not in the action space "
                f"{self.single_action_space}"
            )
        if self._multidiscrete:
            n_t, n_c = self.env.n_t, self.env.n_c
            return (a[:, 0] * n_t + a[:, 1]) * n_c + a[:, 2]
        return a

    def step(self, actions):
        a = self._flat_actions(actions)
        n = self.num_envs
        info: dict[str, Any] = {}
        with np.errstate(all="ignore"):
            if self._prev_done.any():  # NEXT_STEP: these sub-envs reset and do not step
                self._reset_rows(np.flatnonzero(self._prev_done))
                live = ~self._prev_done
                rows = np.flatnonzero(live)
            else:
                live, rows = np.ones(n, dtype=bool), self._rows
            if rows.size == n:
                reward, terminated, truncated = (out := self._step_rows(rows, a)).pop("flags")
                info = self._vector_info(rows, live, out)
            else:
                reward, terminated, truncated = np.zeros(n), np.zeros(n, bool), np.zeros(n, bool)
                if rows.size:
                    out = self._step_rows(rows, a[rows])
                    reward[rows], terminated[rows], truncated[rows] = out.pop("flags")
                    info = self._vector_info(rows, live, out)
            obs = self._observation()
            done = terminated | truncated
            if self._same_step and done.any():  # SAME_STEP: reset now, keep the final obs
                ended = np.flatnonzero(done)
                final_obs = np.empty(n, dtype=object)
                final_obs[ended] = list(obs[ended])
                info["final_obs"], info["_final_obs"] = final_obs, done
                self._reset_rows(ended)
                obs = self._observation()
            else:
                self._prev_done = done
        return obs, reward, terminated, truncated, info

    def _vector_info(self, rows: np.ndarray, live: np.ndarray, out: dict) -> dict:
        """Gymnasium vector infos: arrays over all sub-envs, masked by ``_key``."""
        n = self.num_envs
        full = rows.size == n

        def spread(values: np.ndarray) -> np.ndarray:
            if full:
                return values
            arr = np.zeros(n, dtype=values.dtype)
            arr[rows] = values
            return arr

        info: dict[str, Any] = {}
        for key in INFO_KEYS:
            info[key], info["_" + key] = spread(out[key]), live
        parts = out["rewards"]
        info["rewards"] = {}
        for key, values in parts.items():
            info["rewards"][key], info["rewards"]["_" + key] = spread(values), live
        info["_rewards"] = live
        return info

    def _observation(self) -> np.ndarray:
        """The current observations, with each sub-env's device backlog and battery."""
        env, h = self.env, self._history
        if self._in_step:
            i = int(self._step_idx[0])
            obs = self._obs[i].copy()
        else:
            i = self._step_idx
            obs = self._obs[i, self._rows]
        backlog_s = self._device_free_s - (env.t0_s + i * env.frame_s)
        busy = backlog_s > 0.0
        if busy.any():
            feature = np.minimum(np.log1p(backlog_s / WAIT_UNIT_S) / env._wait_scale, 1.0)
            obs[busy, h + 3] = feature[busy]
        if env._battery_j is not None:
            obs[:, h + 4] = np.maximum(1.0 - self._energy_j / env._battery_j, 0.0)
        return obs

    def _step_rows(self, rows: np.ndarray, a: np.ndarray) -> dict:
        """One request for each of ``rows`` taking flat actions ``a``: ``SplitExitEnv.step``
        and ``_outcome``, element-wise (call under ``np.errstate(all="ignore")``)."""
        env = self.env
        full = rows.size == self.num_envs
        sel = slice(None) if full else rows
        if self._in_step:  # every sub-env at request i: scalar times, contiguous rows
            i = int(self._step_idx[0])
            sample = self._samples[i].copy() if full else self._samples[i, rows]
        else:
            i = self._step_idx[sel].copy()
            sample = self._samples[i, rows]
        code = self._answer[sample * self._n_actions + a]
        time_index = code >> 1
        split = self._split[a]
        exit_block = self._exit_block[time_index]

        arrival = env.t0_s + i * env.frame_s
        timeout_at = arrival + env.timeout_s
        start = np.maximum(arrival, self._device_free_s[sel])
        device_wait = start - arrival
        dropped = start >= timeout_at
        device_time = self._device_time_s[time_index]
        energy = env._compute_above_idle_w * device_time
        sent = start + device_time
        local = exit_block <= split
        done_local = np.minimum(sent, timeout_at)
        off = ~local & ~dropped

        # The uplink (ShiftedTrace / CapacityTrace.transfer_time_s).
        bank = self._bank
        p = self._params if full else tuple(x[rows] for x in self._params)
        payload = self._payload_bytes[a]
        shift_s = self._shift_s[sel]
        base_sent = sent + shift_s
        bits_sent = bank.cumulative_bits(base_sent, p)
        end = bank.time_at_bits_s(bits_sent + 8.0 * payload, p, off)
        transfer = np.maximum(end - base_sent, 0.0)  # payload > 0 wherever it is sent
        uploaded = sent + transfer
        in_time = uploaded <= timeout_at
        tx_time = np.where(in_time, uploaded - sent, np.maximum(timeout_at - sent, 0.0))
        bits = 8.0 * payload
        late = np.flatnonzero(off & ~in_time)
        if late.size:  # abandoned at the timeout: the bits that got through
            p_late = tuple(x[late] for x in p)
            got = bank.cumulative_bits(sent[late] + tx_time[late] + shift_s[late], p_late)
            bits = bits.astype(np.float64)
            bits[late] = np.maximum(got - bits_sent[late], 0.0)
        radio = env.radio
        mbit = self._payload_mbit[a]
        if late.size:
            mbit[late] = 8.0 * np.minimum(bits[late] / 8, payload[late]) / 1e6
        energy_off = energy + (
            (radio.alpha_up_mw_per_mbps * mbit + radio.beta_mw * tx_time) / MW_PER_W
        )
        last_tx_end = self._last_tx_end_s[sel].copy()
        if radio.tail_enabled:
            gap = sent - last_tx_end
            tail = (tx_time > 0) & (last_tx_end > -np.inf) & (gap > 0)
            tail_j = np.minimum(gap, radio.tail_s) * radio.tail_power_mw / MW_PER_W
            energy_off = np.where(tail, energy_off + tail_j, energy_off)
        uplink_bps = bits / tx_time
        idle = np.flatnonzero(off & (tx_time <= 0))
        if idle.size:
            p_idle = tuple(x[idle] for x in p)
            uplink_bps[idle] = bank.capacity_at_bps(base_sent[idle], p_idle)

        # The server (EdgeServer.submit), in server time = episode time + offset.
        at_server = uploaded + env.half_rtt_s
        offset = self._offset_s[sel]
        t_srv = at_server + offset
        reach = off & (at_server < timeout_at)
        if self._permanent or self._intermittent:
            reach &= ~self._is_down(t_srv, sel)
        service = self._server_time_s[time_index]
        # the background jobs by now: a few more than by the request's arrival
        hint = self._j_heard[i + 1] if self._in_step else self._j_heard[i + 1, rows]
        if not full and self._in_step:
            hint = hint[rows]
        arrival_s = self._bg_arrival_s
        j = searchsorted_near(
            self._bg_arrival_pad,
            self._bg_window,
            t_srv,
            np.maximum(hint, 1),
            "right",
            reach,
            lambda miss: np.searchsorted(arrival_s, t_srv[miss], side="right"),
        )
        j = np.minimum(j, arrival_s.size)  # (only the sub-envs that reach it are searched)
        work = self._bg_work_before_s[j]
        m = np.maximum(self._m[sel], self._g_max(j, sel))
        up = self._uptime(t_srv, sel)
        backlog = np.maximum(0.0, work - up + m)
        m_after = np.maximum(m, up - work) + service
        server_wait = backlog
        finish = t_srv + backlog + service - offset
        if self._permanent or self._intermittent:
            start_srv = np.maximum(t_srv, self._time_at_uptime(up + backlog, True, sel))
            finish_srv = np.maximum(
                start_srv, self._time_at_uptime(up + backlog + service, False, sel)
            )
            outage = self._fail_s[sel] < np.inf if self._permanent else True
            server_wait = np.where(outage, start_srv - t_srv, backlog)
            finish = np.where(outage, finish_srv - offset, finish)
        answer = np.where(reach, finish + env.half_rtt_s, np.inf)
        self._m[sel] = np.where(reach, m_after, self._m[sel])

        # The outcome (the three branches of SplitExitEnv._outcome): answered on the device at
        # `sent` or by the server at `answer`, cut at the timeout; dropped requests fixed last.
        done = np.where(local, sent, answer)
        timed_out = done > timeout_at
        latency = np.minimum(done, timeout_at) - arrival
        energy = np.where(local, energy, energy_off)
        uplink_end = sent + tx_time
        device_free = np.where(local, done_local, uplink_end)
        if dropped.any():
            latency[dropped] = env.timeout_s
            energy[dropped] = 0.0
            timed_out |= dropped
            device_free[dropped] = self._device_free_s[sel][dropped]
        self._device_free_s[sel] = device_free
        self._last_tx_end_s[sel] = np.where(off & (tx_time > 0), uplink_end, last_tx_end)

        correct = (code & 1).astype(bool) & ~timed_out
        missed = timed_out | (latency > env.deadline_s)
        w = env.weights
        parts = {
            "accuracy": w["accuracy"] * correct,
            "latency": -w["latency"] * latency,
            "energy": -w["energy"] * energy,
            "deadline_miss": -w["deadline_miss"] * missed,
        }
        reward = parts["accuracy"] + parts["latency"] + parts["energy"] + parts["deadline_miss"]
        self._energy_j[sel] += energy
        self._step_idx[sel] += 1
        if env._battery_j is not None:
            terminated = self._energy_j[sel] >= env._battery_j
            truncated = (i + 1 >= self._horizon) & ~terminated
        else:
            terminated = np.zeros(rows.size, dtype=bool)
            truncated = np.broadcast_to(i + 1 >= self._horizon, rows.shape).copy()
        return {
            "flags": (reward, terminated, truncated),
            "split": split,
            "threshold": self._threshold[a],
            "compression": self._compression[a],
            "exit_block": exit_block,
            "correct": correct,
            "latency_s": latency,
            "energy_j": energy,
            "deadline_missed": missed,
            "timed_out": timed_out,
            "payload_bytes": np.where(off, payload, 0),
            "uplink_bps": np.where(off, uplink_bps, 0.0),
            "tx_time_s": np.where(off, tx_time, 0.0),
            "device_wait_s": device_wait,
            "server_wait_s": np.where(reach, server_wait, 0.0),
            "sample_index": sample,
            "rewards": parts,
        }

    # -- what policies and baselines use -----------------------------------------------------

    def action_masks(self) -> np.ndarray:
        """``SplitExitEnv.action_masks`` of every sub-env, shape ``(num_envs, n_actions)``."""
        env, h = self.env, self._history
        masks = np.ones((self.num_envs, env.num_splits, env.n_t, env.n_c), dtype=bool)
        masks[:, 0, :, 1:] = masks[:, -1, :, 1:] = False
        i = np.minimum(self._step_idx, self._horizon)
        unreachable = self._obs[i, self._rows, h + 2] == 0
        masks[unreachable, :-1] = False
        return masks.reshape(self.num_envs, -1)
