"""SplitExitVectorEnv: many SplitExitEnv worlds stepped at once.

The same world as :class:`~splitexit.envs.splitexit_env.SplitExitEnv` in replay mode, step for
step: sub-env ``i`` owns its own ``np.random.Generator`` and draws its episodes exactly as a
single env does, and every number of a step is computed with the same floating-point operations
in the same order. So ``N`` sub-envs seeded ``s .. s + N - 1`` give the observations, rewards,
flags and infos of ``N`` single envs with those seeds, bit for bit (``tests/envs/test_vector.py``).

The state of the sub-envs lives in numpy arrays; a step is one call of a compiled loop over them
(:mod:`splitexit.envs.kernels`, numba), since a request's path through the device queue, the
uplink trace and the server queue is branchy scalar work (a numpy formulation needs some 200
array operations per step and ran at 0.13x ``CartPoleVectorEnv`` at 1024 envs). An episode's
world is a pair of offsets into long shared realisations (the capacity traces, the server's
background load and outages), so a reset is one generator call per sub-env and copies nothing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from splitexit.envs import kernels
from splitexit.envs.channel import TraceChannel
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
# the kernel's output rows (kernels.step)
FLOAT_KEYS = (
    "latency_s",
    "energy_j",
    "uplink_bps",
    "tx_time_s",
    "device_wait_s",
    "server_wait_s",
    "threshold",
)
REWARD_KEYS = ("accuracy", "latency", "energy", "deadline_miss")
INT_KEYS = ("split", "exit_block", "payload_bytes", "sample_index")
BOOL_KEYS = ("correct", "deadline_missed", "timed_out")


def trace_bank(channel: TraceChannel) -> tuple:
    """The channel's traces as the flat arrays of :mod:`splitexit.envs.kernels`."""
    traces = channel.scaled_traces
    size = np.array([tr.capacity_bps.size for tr in traces], dtype=np.int64)
    off = np.concatenate(([0], np.cumsum(size + 1)[:-1]))
    cum = np.concatenate([tr.cum_bits_array for tr in traces])
    cap = np.concatenate([np.append(tr.capacity_bps, 0.0) for tr in traces])
    slot_s = np.array([tr.slot_s for tr in traces])
    duration_s = np.array([tr.duration_s for tr in traces])
    total_bits = np.array([tr.cum_bits_array[-1] for tr in traces])
    return cum, cap, off, size, slot_s, duration_s, total_bits


class SplitExitVectorEnv(VectorEnv):
    """``num_envs`` SplitExitEnv worlds in replay mode, stepped together by compiled loops.

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

        # Lookup tables. Per (sample, flat action), packed in one int8: 2 * ti + correct, where
        # ti indexes the (split, answering exit, heads on) tables of compute times and exits.
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
        blocks = np.asarray(tables.exit_blocks, dtype=np.int64)
        self._tables = (
            (2 * ti + correct[..., 0]).astype(np.int8).reshape(-1),
            split,
            np.asarray(env.thresholds, dtype=np.float64)[thr],
            np.asarray(tables.payload_bytes, dtype=np.int64)[split, comp],
            np.repeat(np.tile(blocks, env.num_splits), 2),  # exit block by ti
            np.asarray(tables.device_time_s, dtype=np.float64).reshape(-1),
            np.asarray(tables.server_time_s, dtype=np.float64).reshape(-1),
        )
        self._n_actions = n_actions
        self._compression = np.asarray(env.compressions)[comp]
        # with one compression its info is the same every step: one read-only array
        self._one_compression = None
        if env.n_c == 1:
            self._one_compression = np.full(num_envs, env.compressions[0])
            self._one_compression.flags.writeable = False
        self._horizon, self._history = env.horizon, env.history
        self._trace_bank = trace_bank(env.channel)
        radio, w = env.radio, env.weights
        # kernels.step's constants, as floats (one compiled signature for every config)
        self._constants = (
            *map(float, (env.t0_s, env.frame_s, env.timeout_s, env.half_rtt_s, env.deadline_s)),
            float(env._compute_above_idle_w),
            float(radio.alpha_up_mw_per_mbps),
            float(radio.beta_mw),
            bool(radio.tail_enabled),
            float(radio.tail_s),
            float(radio.tail_power_mw),
            *(float(w[key]) for key in REWARD_KEYS),
            math.inf if env._battery_j is None else float(env._battery_j),
            int(env.horizon),
        )

        world = env.server.world
        self._spare_s = world.duration_s - env._duration_s
        sched = world.schedule
        self._server_world = (
            world.arrival_s,
            world.work_before_s,
            world.g_max,
            np.asarray(sched.down_start_s, dtype=np.float64),
            np.asarray(sched.down_end_s, dtype=np.float64),
            np.asarray(sched._cum_down_s, dtype=np.float64),
            np.asarray(sched._up_at_start_s, dtype=np.float64),
        )
        permanent = bool(env.server.outages is not None and env.server.outages.permanent)
        self._outage_mode = (
            kernels.PERMANENT
            if permanent
            else kernels.INTERMITTENT
            if sched.down_start_s
            else kernels.NO_OUTAGES
        )

        n, h = self._horizon, self._history
        self._t_obs_s = env.t0_s + env.frame_s * np.arange(-h, n + 1)  # as SplitExitEnv.reset
        self._heard_s = self._t_obs_s[h:] - env.frame_s
        self._rngs: list[np.random.Generator] = []
        self._draws = np.zeros((num_envs, n + EPISODE_DRAWS))
        # Observations of the episodes, request-major: (request, sub-env, feature).
        self._obs = np.zeros((n + 1, num_envs, self.single_observation_space.shape[0]), np.float32)
        self._samples = np.zeros((n, num_envs), dtype=np.int64)  # request-major
        self._step_idx = np.zeros(num_envs, dtype=np.int64)
        self._device_free_s = np.zeros(num_envs)
        self._last_tx_end_s = np.full(num_envs, -np.inf)
        self._energy_j = np.zeros(num_envs)
        self._trace_k = np.zeros(num_envs, dtype=np.int64)
        self._shift_s = np.zeros(num_envs)
        self._offset_s = np.zeros(num_envs)
        self._fail_s = np.full(num_envs, np.inf)
        self._fail_k = np.full(num_envs, world.g_max.size, dtype=np.int64)
        self._fail_g = np.zeros(num_envs)
        self._m = np.zeros(num_envs)  # EdgeServer's m and pointer, per sub-env
        self._ptr = np.zeros(num_envs, dtype=np.int64)
        self._state = (
            self._samples,
            self._step_idx,
            self._device_free_s,
            self._last_tx_end_s,
            self._energy_j,
            self._trace_k,
            self._shift_s,
            self._offset_s,
            self._fail_s,
            self._fail_k,
            self._fail_g,
            self._m,
            self._ptr,
        )
        self._sent_s = np.zeros(num_envs)  # scratch of the kernels
        self._offloaded = np.zeros(num_envs, dtype=np.int64)
        self._busy = np.zeros(num_envs, dtype=np.int64)
        self._busy_backlog = np.zeros(num_envs)
        self._prev_done = np.zeros(num_envs, dtype=bool)
        self._rows = np.arange(num_envs)

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
        return self._observation(), {}

    @np.errstate(all="ignore")
    def _reset_rows(self, rows: np.ndarray) -> None:
        """Draw new episodes for ``rows``, as ``SplitExitEnv.reset`` does for each."""
        env, n = self.env, self._horizon
        draws = self._draws
        for r in rows.tolist():  # as SplitExitEnv.reset: one call per episode
            self._rngs[r].random(out=draws[r])
        u = draws[rows, n:]  # the samples' draws are read by kernels.episode_features
        size = self._trace_bank[3]
        n_traces = size.size
        k = np.minimum((u[:, 0] * n_traces).astype(np.int64), n_traces - 1)  # sample_shifted
        start = np.minimum((u[:, 1] * size[k]).astype(np.int64), size[k] - 1)
        self._trace_k[rows] = k
        self._shift_s[rows] = start * self._trace_bank[4][k]
        self._offset_s[rows] = offset = u[:, 2] * self._spare_s  # EdgeServer.reset
        arrival_s, work_before_s, g_max = self._server_world[:3]
        if self._outage_mode == kernels.PERMANENT:
            t_fail_s = -self.config["outage_mean_up_s"] * np.log1p(-u[:, 3])
            fail_s = np.where(t_fail_s < env._duration_s, offset + t_fail_s, np.inf)
            self._fail_s[rows] = fail_s
            k = np.searchsorted(arrival_s, fail_s, side="left")
            self._fail_k[rows] = np.where(np.isfinite(fail_s), k, g_max.size)
            self._fail_g[rows] = np.maximum(g_max[k], fail_s - work_before_s[k])
        ptr = np.searchsorted(arrival_s, offset, side="right")
        self._ptr[rows] = ptr
        self._m[rows] = np.where(ptr > self._fail_k[rows], self._fail_g[rows], g_max[ptr])

        # The samples and the observations of the whole episode, as SplitExitEnv.reset.
        mbps = np.empty((rows.size, self._t_obs_s.size - 1))
        queue = np.empty((rows.size, n + 1))
        down = np.empty((rows.size, n + 1), dtype=bool)
        kernels.episode_features(
            rows,
            draws,
            env.profile.num_samples,
            self._samples,
            self._trace_bank,
            self._trace_k,
            self._shift_s,
            self._t_obs_s,
            env.frame_s,
            self._server_world,
            self._outage_mode,
            self._offset_s,
            self._fail_s,
            self._fail_k,
            self._fail_g,
            self._heard_s,
            WAIT_UNIT_S,
            mbps,
            queue,
            down,
        )
        kernels.lay_out_observations(
            rows,
            np.log1p(mbps, out=mbps),  # numpy's log1p, as SplitExitEnv.reset
            np.log1p(queue, out=queue),
            down,
            float(np.log1p(MAX_OBS_THROUGHPUT_MBPS)),
            float(env._wait_scale),
            min(self.config["rtt_s"] / env.timeout_s, 1.0),
            min(env.deadline_s / env.timeout_s, 1.0),
            self._obs,
        )
        self._step_idx[rows] = 0
        self._device_free_s[rows] = 0.0
        self._last_tx_end_s[rows] = -np.inf
        self._energy_j[rows] = 0.0

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
        if self._prev_done.any():  # NEXT_STEP: these sub-envs reset and do not step
            self._reset_rows(np.flatnonzero(self._prev_done))
            live = ~self._prev_done
            rows = np.flatnonzero(live)
        else:
            live, rows = np.ones(n, dtype=bool), self._rows
        out_f = np.zeros((len(FLOAT_KEYS) + 1 + len(REWARD_KEYS), n))
        out_i = np.zeros((len(INT_KEYS), n), dtype=np.int64)
        out_b = np.zeros((len(BOOL_KEYS) + 2, n), dtype=bool)
        kernels.step(
            rows,
            a,
            self._constants,
            self._tables,
            self._trace_bank,
            self._server_world,
            self._outage_mode,
            self._state,
            out_f,
            out_i,
            out_b,
            self._sent_s,
            self._offloaded,
        )
        info = self._vector_info(a, live, out_f, out_i, out_b) if rows.size else {}
        reward, terminated, truncated = out_f[len(FLOAT_KEYS)], out_b[-2], out_b[-1]
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

    def _vector_info(self, a, live, out_f, out_i, out_b) -> dict:
        """Gymnasium vector infos: arrays over all sub-envs, masked by ``_key``."""
        values = dict(zip(FLOAT_KEYS, out_f, strict=False))
        values.update(zip(INT_KEYS, out_i, strict=True))
        values.update(zip(BOOL_KEYS, out_b, strict=False))
        compression = self._one_compression
        if compression is None:
            compression = self._compression[a]
        values["compression"] = compression if live.all() else np.where(live, compression, "")
        info: dict[str, Any] = {}
        for key in INFO_KEYS:
            info[key], info["_" + key] = values[key], live
        first = len(FLOAT_KEYS) + 1
        info["rewards"] = {}
        for q, key in enumerate(REWARD_KEYS):
            info["rewards"][key], info["rewards"]["_" + key] = out_f[first + q], live
        info["_rewards"] = live
        return info

    def _observation(self) -> np.ndarray:
        """The current observations, with each sub-env's device backlog and battery."""
        env, h = self.env, self._history
        obs = np.empty((self.num_envs, self._obs.shape[2]), np.float32)
        busy = self._busy
        count = kernels.observe(
            self._obs,
            self._step_idx,
            self._device_free_s,
            env.t0_s,
            env.frame_s,
            WAIT_UNIT_S,
            obs,
            busy,
            self._busy_backlog,
        )
        if count:  # as SplitExitEnv._observation, with numpy's log1p
            feature = np.log1p(self._busy_backlog[:count]) / env._wait_scale
            obs[busy[:count], h + 3] = np.minimum(feature, 1.0)
        if env._battery_j is not None:
            obs[:, h + 4] = np.maximum(1.0 - self._energy_j / env._battery_j, 0.0)
        return obs

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
