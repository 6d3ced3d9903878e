"""SplitExitVectorEnv: many SplitExitEnv worlds stepped at once with numpy.

The same world as :class:`~splitexit.envs.splitexit_env.SplitExitEnv` in replay mode, step for
step: sub-env ``i`` owns its own ``np.random.Generator`` and draws its episodes exactly as a
single env does, and every number of a step is computed with the same floating-point operations
in the same order, element-wise. So ``N`` sub-envs seeded ``s .. s + N - 1`` give the
observations, rewards, flags and infos of ``N`` single envs with those seeds, bit for bit
(``tests/envs/test_vector.py``). What makes a batched step cheap is that an episode's world is a
pair of offsets into long shared realisations (the capacity traces, the server's background
load and outages), so a reset draws five numbers and copies nothing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from splitexit.envs.channel import TraceChannel
from splitexit.envs.energy import MW_PER_W
from splitexit.envs.splitexit_env import (
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


class _TraceBank:
    """The channel's traces as flat arrays, with :class:`CapacityTrace`'s arithmetic
    element-wise over sub-envs that each read trace ``k`` shifted by ``shift_s``."""

    def __init__(self, channel: TraceChannel):
        traces = channel.scaled_traces
        self.size = np.array([tr.capacity_bps.size for tr in traces], dtype=np.int64)
        self.slot_s = np.array([tr.slot_s for tr in traces])
        self.duration_s = np.array([tr.duration_s for tr in traces])
        self.total_bits = np.array([tr.cum_bits_array[-1] for tr in traces])
        self.cap_offset = np.concatenate(([0], np.cumsum(self.size)[:-1]))
        self.cum_offset = self.cap_offset + np.arange(len(traces))
        self.cap_bps = np.concatenate([tr.capacity_bps for tr in traces])
        self.cum_bits = np.concatenate([tr.cum_bits_array for tr in traces])
        # One sorted search key for all traces: trace k's cumulative bits lifted by k * span.
        span = 2.0 ** math.ceil(math.log2(float(self.total_bits.max()) + 2.0))
        self.key_shift = np.arange(len(traces)) * span
        self.keys = self.cum_bits + np.repeat(self.key_shift, self.size + 1)

    def params(self, k: np.ndarray) -> tuple:
        """Per-sub-env parameters of traces ``k``."""
        return (
            self.duration_s[k],
            self.slot_s[k],
            self.size[k],
            self.total_bits[k],
            self.cum_offset[k],
            self.cap_offset[k],
            self.key_shift[k],
        )

    def slot(self, x: np.ndarray, p: tuple) -> np.ndarray:
        return np.minimum((x / p[1]).astype(np.int64), p[2] - 1)

    def cumulative_bits(self, t_s: np.ndarray, p: tuple) -> np.ndarray:
        """``CapacityTrace.cumulative_bits`` at base times ``t_s``."""
        loops, x = np.divmod(t_s, p[0])
        i = self.slot(x, p)
        return loops * p[3] + self.cum_bits[p[4] + i] + self.cap_bps[p[5] + i] * (x - i * p[1])

    def capacity_at_bps(self, t_s: np.ndarray, p: tuple) -> np.ndarray:
        """``CapacityTrace.capacity_at_bps`` at base times ``t_s``."""
        return self.cap_bps[p[5] + self.slot(np.remainder(t_s, p[0]), p)]

    def time_at_bits_s(self, bits: np.ndarray, p: tuple) -> np.ndarray:
        """``CapacityTrace.time_at_bits_s``, element-wise."""
        duration_s, slot_s, size, total, cum_off, cap_off, key_shift = p
        with np.errstate(divide="ignore", invalid="ignore"):
            loops = np.ceil(bits / total) - 1.0
            rest = bits - loops * total
            low = rest <= 0
            high = ~low & (rest > total)
            loops = np.where(low, loops - 1.0, np.where(high, loops + 1.0, loops))
            rest = np.where(low, rest + total, np.where(high, rest - total, rest))
            # bisect_left(cum_bits, rest), found in the lifted keys and checked exactly
            at = np.searchsorted(self.keys, rest + key_shift, side="left") - cum_off
            at = np.clip(at, 1, size)
            ok = (self.cum_bits[cum_off + at - 1] < rest) & (self.cum_bits[cum_off + at] >= rest)
            for r in np.flatnonzero(~ok & (total > 0) & (bits > 0)).tolist():
                row = self.cum_bits[cum_off[r] : cum_off[r] + size[r] + 1]
                at[r] = np.searchsorted(row, rest[r], side="left")
            i = at - 1
            t = (
                loops * duration_s
                + i * slot_s
                + (rest - self.cum_bits[cum_off + i]) / self.cap_bps[cap_off + i]
            )
        return np.where(bits <= 0, 0.0, np.where(total <= 0, np.inf, t))


class SplitExitVectorEnv(VectorEnv):
    """``num_envs`` SplitExitEnv worlds in replay mode, stepped together with numpy.

    ``gym.make_vec("splitexit:SplitExit-v0", num_envs=N,
    vectorization_mode="vector_entry_point", config={...})``. Arguments as
    :class:`SplitExitEnv` (a config dict, the registered preset, keyword overrides). Autoreset
    mode ``NEXT_STEP``: the step after an episode ends resets that sub-env and returns its first
    observation with reward 0. Infos are Gymnasium's vector infos: ``info[key]`` is an array
    over sub-envs and ``info["_" + key]`` marks the sub-envs that stepped.

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
        **kwargs: Any,
    ) -> None:
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

        tables = env.tables
        self._exit_index = tables.exit_index
        self._correct = tables.correct
        self._device_time_s = np.asarray(tables.device_time_s)  # (S+1, E, heads)
        self._server_time_s = np.asarray(tables.server_time_s)
        self._payload_bytes = np.asarray(tables.payload_bytes, dtype=np.int64)  # (S+1, C)
        self._exit_blocks = np.asarray(tables.exit_blocks, dtype=np.int64)
        self._thresholds = np.asarray(env.thresholds)
        self._compressions = np.asarray(env.compressions)
        self._n_t, self._n_c = env.n_t, env.n_c
        self._horizon, self._history = env.horizon, env.history
        self._bank = _TraceBank(env.channel)
        self._n_traces = len(env.channel.traces)

        world = env.server.world
        self._spare_s = world.duration_s - env._duration_s
        self._bg_arrival_s = world.arrival_s
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
        n_envs = num_envs
        self._samples = np.zeros((n_envs, n), dtype=np.int64)
        self._obs = np.zeros((n_envs, n + 1, self.single_observation_space.shape[0]), np.float32)
        self._trace_k = np.zeros(n_envs, dtype=np.int64)
        self._shift_s = np.zeros(n_envs)
        self._offset_s = np.zeros(n_envs)
        self._fail_s = np.full(n_envs, np.inf)
        self._fail_k = np.full(n_envs, len(self._bg_g_max), dtype=np.int64)
        self._fail_g = np.zeros(n_envs)
        self._step_idx = np.zeros(n_envs, dtype=np.int64)
        self._device_free_s = np.zeros(n_envs)
        self._last_tx_end_s = np.full(n_envs, -np.inf)
        self._energy_j = np.zeros(n_envs)
        self._ptr = np.zeros(n_envs, dtype=np.int64)
        self._m = np.zeros(n_envs)
        self._prev_done = np.zeros(n_envs, dtype=bool)
        self._rows = np.arange(n_envs)
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
        self._reset_rows(self._rows)
        self._prev_done[:] = False
        return self._obs[:, 0].copy(), {}

    def _reset_rows(self, rows: np.ndarray) -> None:
        """Draw new episodes for ``rows``, as ``SplitExitEnv.reset`` does for each."""
        env, n = self.env, self._horizon
        n_samples, n_traces, sizes = env.profile.num_samples, self._n_traces, self._bank.size
        mean_up_s = self.config["outage_mean_up_s"]
        duration_s = env._duration_s
        fail = self._permanent
        for r in rows.tolist():
            rng = self._rngs[r]
            self._samples[r] = rng.integers(n_samples, size=n)
            k = int(rng.integers(n_traces))  # TraceChannel.sample_shifted
            self._trace_k[r] = k
            self._shift_s[r] = int(rng.integers(sizes[k])) * self._bank.slot_s[k]
            self._offset_s[r] = float(rng.random()) * self._spare_s  # EdgeServer.reset
            if fail:
                t_fail_s = rng.exponential(mean_up_s)
                self._fail_s[r] = self._offset_s[r] + t_fail_s if t_fail_s < duration_s else np.inf
        self._params = self._bank.params(self._trace_k)
        offset = self._offset_s[rows]
        if fail:
            fail_s = self._fail_s[rows]
            k = np.searchsorted(self._bg_arrival_s, fail_s, side="left")
            self._fail_k[rows] = np.where(np.isfinite(fail_s), k, len(self._bg_g_max))
            with np.errstate(invalid="ignore"):
                gap = fail_s - self._bg_work_before_s[k]
            self._fail_g[rows] = np.maximum(self._bg_g_max[k], gap)
        ptr = np.searchsorted(self._bg_arrival_s, offset, side="right")
        self._ptr[rows] = ptr
        self._m[rows] = self._g_max(ptr, rows)

        # Observations of the whole episode, as SplitExitEnv.reset lays them out.
        h = self._history
        p = self._bank.params(self._trace_k[rows])
        p = tuple(x[:, None] for x in p)
        base_t = self._t_obs_s[None, :] + self._shift_s[rows, None]
        mbps = np.diff(self._bank.cumulative_bits(base_t, p), axis=1) / env.frame_s / 1e6
        tp = (np.log1p(mbps) / np.log1p(MAX_OBS_THROUGHPUT_MBPS)).clip(0.0, 1.0)
        obs = self._obs[rows]
        obs[:, :, :h] = np.lib.stride_tricks.sliding_window_view(tp, h, axis=1)
        obs[:, :, h] = min(self.config["rtt_s"] / env.timeout_s, 1.0)
        heard = self._heard_s[None, :] + offset[:, None]
        j = np.searchsorted(self._bg_arrival_s, heard, side="right")
        queue_s = np.maximum(
            0.0,
            self._bg_work_before_s[j] - self._uptime(heard, rows[:, None]) + self._g_max(j, rows),
        )
        obs[:, :, h + 1] = np.minimum(np.log1p(queue_s / WAIT_UNIT_S) / env._wait_scale, 1.0)
        obs[:, :, h + 2] = np.where(self._is_down(heard, rows[:, None]), 0.0, 1.0)
        obs[:, :, h + 3] = 0.0
        obs[:, :, h + 4] = 1.0
        obs[:, :, h + 5] = min(env.deadline_s / env.timeout_s, 1.0)
        self._obs[rows] = obs
        self._step_idx[rows] = 0
        self._device_free_s[rows] = 0.0
        self._last_tx_end_s[rows] = -np.inf
        self._energy_j[rows] = 0.0

    # -- the server's outages and queue, element-wise (EdgeServer / OutageSchedule) ------------

    def _g_max(self, j: np.ndarray, rows) -> np.ndarray:
        g = self._bg_g_max[j]
        if self._permanent:
            fail_k = self._fail_k[rows] if np.ndim(j) < 2 else self._fail_k[rows][:, None]
            fail_g = self._fail_g[rows] if np.ndim(j) < 2 else self._fail_g[rows][:, None]
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

    def _decode(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a = np.asarray(actions)
        n = self.num_envs
        shape = (n, 3) if self._multidiscrete else (n,)
        if a.shape != shape or a.dtype.kind not in "iu":
            raise ValueError(
                f"actions must be integers of shape {shape} in {self.action_space}, "
                f"got {a.dtype} of shape {a.shape}"
            )
        a = a.astype(np.int64)
        if self._multidiscrete:
            bad = np.flatnonzero(((a < 0) | (a >= self.single_action_space.nvec)).any(axis=1))
            s, t, c = a[:, 0], a[:, 1], a[:, 2]
        else:
            bad = np.flatnonzero((a < 0) | (a >= self.env.n_actions))
            s, t, c = a // (self._n_t * self._n_c), (a // self._n_c) % self._n_t, a % self._n_c
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"action {a[i].tolist()!r} of sub-env {i} is not in the action space "
                f"{self.single_action_space}"
            )
        return s, t, c

    def step(self, actions):
        s, t, c = self._decode(actions)
        n = self.num_envs
        reset_rows = np.flatnonzero(self._prev_done)
        if reset_rows.size:
            self._reset_rows(reset_rows)
        live = ~self._prev_done
        rows = self._rows if not reset_rows.size else np.flatnonzero(live)
        reward = np.zeros(n)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        info: dict[str, Any] = {}
        if rows.size:
            if rows.size < n:
                s, t, c = s[rows], t[rows], c[rows]
            out = self._step_rows(rows, s, t, c)
            reward[rows], terminated[rows], truncated[rows] = out.pop("reward"), *out.pop("flags")
            info = self._vector_info(rows, live, out)
        obs = self._observation()
        self._prev_done = terminated | truncated
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
        i = self._step_idx
        obs = self._obs[self._rows, i]
        backlog_s = self._device_free_s - (env.t0_s + i * env.frame_s)
        busy = backlog_s > 0.0
        if busy.any():
            with np.errstate(invalid="ignore", divide="ignore"):
                feature = np.minimum(np.log1p(backlog_s / WAIT_UNIT_S) / env._wait_scale, 1.0)
            obs[busy, h + 3] = feature[busy]
        if env._battery_j is not None:
            obs[:, h + 4] = np.maximum(1.0 - self._energy_j / env._battery_j, 0.0)
        return obs

    def _step_rows(self, rows: np.ndarray, s, t, c) -> dict:
        """One request for each of ``rows``: ``SplitExitEnv._outcome`` and ``step``,
        element-wise."""
        env = self.env
        full = rows.size == self.num_envs
        sel = slice(None) if full else rows
        i = self._step_idx[sel].copy()
        sample = self._samples[rows, i]
        exit_k = self._exit_index[sample, s, c, t].astype(np.int64)
        correct = self._correct[sample, s, c, exit_k]
        heads = (t < self._n_t - 1).astype(np.int64)

        arrival = env.t0_s + i * env.frame_s
        timeout_at = arrival + env.timeout_s
        device_free = self._device_free_s[sel].copy()
        start = np.maximum(arrival, device_free)
        device_wait = start - arrival
        dropped = start >= timeout_at
        device_time = self._device_time_s[s, exit_k, heads]
        energy = env._compute_above_idle_w * device_time
        sent = start + device_time
        local = self._exit_blocks[exit_k] <= s
        done_local = np.minimum(sent, timeout_at)
        off = ~local & ~dropped

        # The uplink (ShiftedTrace / CapacityTrace.transfer_time_s).
        bank = self._bank
        p = self._params if full else tuple(x[rows] for x in self._params)
        payload = self._payload_bytes[s, c]
        base_sent = sent + self._shift_s[sel]
        bits_sent = bank.cumulative_bits(base_sent, p)
        end = bank.time_at_bits_s(bits_sent + 8.0 * payload, p)
        transfer = np.where(payload <= 0, 0.0, np.maximum(end - base_sent, 0.0))
        uploaded = sent + transfer
        in_time = uploaded <= timeout_at
        tx_time = np.where(in_time, uploaded - sent, np.maximum(timeout_at - sent, 0.0))
        got = bank.cumulative_bits(sent + tx_time + self._shift_s[sel], p) - bits_sent
        bits = np.where(in_time, 8.0 * payload, np.maximum(got, 0.0))
        radio = env.radio
        mbit = 8.0 * np.minimum(bits / 8, payload) / 1e6
        energy_off = energy + (
            (radio.alpha_up_mw_per_mbps * mbit + radio.beta_mw * tx_time) / MW_PER_W
        )
        last_tx_end = self._last_tx_end_s[sel].copy()
        if radio.tail_enabled:
            gap = sent - last_tx_end
            tail = (tx_time > 0) & (last_tx_end > -np.inf) & (gap > 0)
            tail_j = np.minimum(gap, radio.tail_s) * radio.tail_power_mw / MW_PER_W
            energy_off = np.where(tail, energy_off + tail_j, energy_off)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = bits / tx_time
        uplink_bps = np.where(tx_time > 0, rate, bank.capacity_at_bps(base_sent, p))

        # The server (EdgeServer.submit), in server time = episode time + offset.
        at_server = uploaded + env.half_rtt_s
        offset = self._offset_s[sel]
        t_srv = at_server + offset
        reach = off & (at_server < timeout_at) & ~self._is_down(t_srv, sel)
        service = self._server_time_s[s, exit_k, heads]
        j = np.searchsorted(self._bg_arrival_s, t_srv, side="right")
        work = self._bg_work_before_s[j]
        m = np.maximum(self._m[sel], self._g_max(j, sel))
        up = self._uptime(t_srv, sel)
        backlog = np.maximum(0.0, work - up + m)
        m_after = np.maximum(m, up - work) + service
        server_wait = backlog
        finish = t_srv + backlog + service - offset
        if self._permanent or self._intermittent:
            with np.errstate(invalid="ignore"):
                start_srv = np.maximum(t_srv, self._time_at_uptime(up + backlog, True, sel))
                finish_srv = np.maximum(
                    start_srv, self._time_at_uptime(up + backlog + service, False, sel)
                )
            outage = self._fail_s[sel] < np.inf if self._permanent else True
            server_wait = np.where(outage, start_srv - t_srv, backlog)
            finish = np.where(outage, finish_srv - offset, finish)
        answer = np.where(reach, finish + env.half_rtt_s, np.inf)
        server_wait = np.where(reach, server_wait, 0.0)
        self._ptr[sel] = np.where(reach, j, self._ptr[sel])
        self._m[sel] = np.where(reach, m_after, self._m[sel])

        # The outcome (the three branches of SplitExitEnv._outcome).
        latency_off = np.minimum(answer, timeout_at) - arrival
        latency = np.where(dropped, env.timeout_s, np.where(local, done_local - arrival, latency_off))
        energy = np.where(dropped, 0.0, np.where(local, energy, energy_off))
        timed_out = dropped | np.where(local, sent > timeout_at, answer > timeout_at)
        self._device_free_s[sel] = np.where(
            dropped, device_free, np.where(local, done_local, sent + tx_time)
        )
        self._last_tx_end_s[sel] = np.where(off & (tx_time > 0), sent + tx_time, last_tx_end)

        correct = correct & ~timed_out
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
        self._step_idx[sel] = i + 1
        terminated = np.zeros(rows.size, dtype=bool)
        if env._battery_j is not None:
            terminated = self._energy_j[sel] >= env._battery_j
        truncated = (i + 1 >= self._horizon) & ~terminated
        return {
            "reward": reward,
            "flags": (terminated, truncated),
            "split": s,
            "threshold": self._thresholds[t],
            "compression": self._compressions[c],
            "exit_block": self._exit_blocks[exit_k],
            "correct": correct,
            "latency_s": latency,
            "energy_j": energy,
            "deadline_missed": missed,
            "timed_out": timed_out,
            "payload_bytes": np.where(off, payload, 0),
            "uplink_bps": np.where(off, uplink_bps, 0.0),
            "tx_time_s": np.where(off, tx_time, 0.0),
            "device_wait_s": device_wait,
            "server_wait_s": np.where(off, server_wait, 0.0),
            "sample_index": sample,
            "rewards": parts,
        }

    # -- what policies and baselines use -----------------------------------------------------

    def action_masks(self) -> np.ndarray:
        """``SplitExitEnv.action_masks`` of every sub-env, shape ``(num_envs, n_actions)``."""
        env, h = self.env, self._history
        masks = np.ones((self.num_envs, env.num_splits, self._n_t, self._n_c), dtype=bool)
        masks[:, 0, :, 1:] = masks[:, -1, :, 1:] = False
        i = np.minimum(self._step_idx, self._horizon)
        unreachable = self._obs[self._rows, i, h + 2] == 0
        masks[unreachable, :-1] = False
        return masks.reshape(self.num_envs, -1)
