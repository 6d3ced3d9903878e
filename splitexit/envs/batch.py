"""Rows of the world's state and the calls of the compiled core on them.

The single env holds one row, the vector env ``N``; both start episodes, step and observe
through this class, so the two views cannot drift apart.
"""

from __future__ import annotations

import numpy as np

from splitexit.envs import core
from splitexit.envs.observation import MAX_THROUGHPUT_MBPS, ObservationLayout


class Batch:
    """``n`` devices, each alone in its world (``M = 1``): their state, episode tables and the
    outputs of their last step.

    ``draws[r]`` holds the uniforms of row ``r``'s next episode (the caller draws them from the
    row's generator); :meth:`start` lays the episodes out, :meth:`step` runs one request per row
    and leaves the next observations in :attr:`obs` and the outputs in :attr:`out` (which the
    vector env replaces by a fresh array before each step, as its infos are views of it).

    The compiled functions are bound to the types of these arrays (``core.bind``): every array
    passed to them must keep its dtype, layout and writability.
    """

    def __init__(
        self,
        world: core.World,
        n: int,
        layout: ObservationLayout,
        mean_up_s: float,
        chains: tuple[np.ndarray, ...] | None = None,
    ) -> None:
        self.world = world
        # The request's context (``splitexit.envs.context.context_chains``), None without one:
        # then no context draws, every frame clean, every request of demand class 0.
        self.chains = None if chains is None else tuple(chains)
        p = world.params[0]
        self.horizon = horizon = int(p["horizon"])
        self.layout = layout
        self.permanent = int(p["outage_mode"]) == core.PERMANENT
        self.mean_up_s = mean_up_s
        self.cells = np.zeros(n, core.CELL)
        self.devices = np.zeros(n, core.DEVICE)
        self.devices["world"] = np.arange(n)
        self.samples = np.zeros((horizon, n), np.int64)  # request-major: (request, row)
        self.demand = np.zeros((horizon, n), np.int64)  # each request's demand class
        # The episodes' observations, request-major (the rows at one request side by side):
        # the throughput feature of each frame (a request sees the H frames before it) and the
        # server's queue and reachability at each request's last heartbeat.
        self.throughput_obs = np.zeros((horizon + layout.history, n), np.float32)
        self.queue_obs = np.zeros((horizon + 1, n), np.float32)
        self.reachable_obs = np.zeros((horizon + 1, n), np.float32)
        self._episodes = (
            self.samples, self.demand, self.throughput_obs, self.queue_obs, self.reachable_obs
        )  # fmt: skip
        self.draws = np.zeros((n, horizon + core.EPISODE_DRAWS))
        # the context's uniforms, drawn after the episode's (none without a context)
        width = 0 if chains is None else horizon * core.CONTEXT_DRAWS
        self.context_draws = np.zeros((n, width))
        self.out = np.zeros(n, core.OUTPUT)
        self.obs = np.zeros((n, layout.size), np.float32)
        self.busy_rows = np.zeros(n, np.int64)  # the devices that are busy, first
        self.busy_waits = np.zeros(n)  # and their backlogs in wait units
        self.live_code = np.full(n, -1, np.int16)
        self.live_conf = np.zeros(n)
        self.all_rows = np.arange(n)
        self.actions = np.zeros(n, np.int64)  # the flat actions of step_all
        frame_s, h = float(p["frame_s"]), layout.history
        self.t_obs_s = float(p["t0_s"]) + frame_s * np.arange(-h, horizon + 1)
        self.heard_s = self.t_obs_s[h:] - frame_s  # the server's heartbeats
        self._mbps = np.empty((n, self.t_obs_s.size - 1))
        self._queue = np.empty((n, horizon + 1))
        self._down = np.empty((n, horizon + 1), dtype=bool)
        self._mbps_scale = float(np.log1p(MAX_THROUGHPUT_MBPS))
        self._wait_scale = layout.wait_scale
        self._backlog = layout.index("device_backlog")
        self._bind()

    def _bind(self) -> None:
        """The compiled functions for this batch's argument types (see ``core.bind``)."""
        rows, mbps, down = self.all_rows, np.zeros((1, 1)), np.zeros((1, 1), bool)
        self._start = core.bind(
            core.start_episodes, *self.world, self.cells, self.devices, self.samples, rows,
            self.draws, np.zeros(1), self.t_obs_s, self.heard_s, mbps, mbps, down,
        )  # fmt: skip
        if self.chains is not None:
            self._contexts = core.bind(
                core.start_contexts, self.world.params, *self.chains, rows, self.context_draws,
                self.samples, self.demand,
            )  # fmt: skip
        self._lay_out = core.bind(
            core.lay_out_observations, rows, mbps, mbps, down, 1.0, 1.0, self.throughput_obs,
            self.queue_obs, self.reachable_obs,
        )  # fmt: skip
        self._step_all_args = (
            *self.world, self.cells, self.devices, *self._episodes, self.all_rows, self.actions,
            self.live_code, self.live_conf, self.out, self.obs, self.busy_rows, self.busy_waits,
        )  # fmt: skip
        self._step = core.bind(core.step, *self._step_all_args)
        w = self.world
        self._observe_args = (
            w.params, w.demands, w.frame_stats, self.devices, *self._episodes, self.obs,
            self.busy_rows, self.busy_waits,
        )  # fmt: skip
        self._observe = core.bind(core.observe, *self._observe_args)
        self._observe_backlog = core.bind(
            core.observe_backlog, self.obs, 0, self.busy_rows, self.busy_waits, 0, 1.0
        )

    def __getstate__(self) -> dict:
        bound = ("_start", "_contexts", "_lay_out", "_step", "_observe", "_observe_backlog")
        bound += ("_step_all_args", "_observe_args")
        return {k: v for k, v in self.__dict__.items() if k not in bound}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        for array in self.world:  # read-only, as built: the same compiled specialisations
            array.flags.writeable = False
        self._bind()

    def set_traces(self, bank: np.ndarray, cum_bits: np.ndarray, capacity_bps: np.ndarray) -> None:
        """Replace the uplink's trace bank (the fading channel draws one per episode) with
        arrays of :func:`~splitexit.envs.world.trace_bank` (the same types: no new binding)."""
        self.world = self.world._replace(traces=bank, cum_bits=cum_bits, capacity_bps=capacity_bps)
        self._step_all_args = (*self.world, *self._step_all_args[len(self.world) :])

    def start(self, rows: np.ndarray) -> None:
        """Start the episodes of ``rows`` from their ``draws``."""
        t_fail_s = np.zeros(rows.size)
        if self.permanent:  # an exponential time to failure (numpy's log1p)
            u = self.draws[rows, self.horizon + core.DRAW_FAILURE]
            t_fail_s = -self.mean_up_s * np.log1p(-u)
        k = rows.size  # (scratch for the rows, kept between calls: no page faults)
        mbps, queue, down = self._mbps[:k], self._queue[:k], self._down[:k]
        self._start(
            *self.world, self.cells, self.devices, self.samples, rows, self.draws, t_fail_s,
            self.t_obs_s, self.heard_s, mbps, queue, down,
        )  # fmt: skip
        if self.chains is not None:
            self._contexts(
                self.world.params, *self.chains, rows, self.context_draws, self.samples,
                self.demand,
            )  # fmt: skip
        self._lay_out(
            rows, np.log1p(mbps, out=mbps), np.log1p(queue, out=queue), down, self._mbps_scale,
            self._wait_scale, self.throughput_obs, self.queue_obs, self.reachable_obs,
        )  # fmt: skip

    def step(self, rows: np.ndarray, actions: np.ndarray) -> int:
        """One request of each row of ``rows`` taking the flat ``actions[r]`` (both int64,
        C-contiguous and writable, as the compiled step was bound to) into :attr:`out` (the
        same array or a fresh one), and the next observations into :attr:`obs`, but for the
        device backlog of the busy devices (their number is returned):
        :meth:`observe_backlog` fills it in."""
        for array in (rows, actions):
            if not (array.dtype == np.int64 and array.ndim == 1 and array.flags.c_contiguous):
                raise TypeError("rows and actions must be 1-D C-contiguous int64 arrays")
        if self.out.dtype != core.OUTPUT or not actions.flags.writeable:
            raise TypeError("out must be an OUTPUT array and actions writable")
        return self._step(
            *self.world, self.cells, self.devices, *self._episodes, rows, actions,
            self.live_code, self.live_conf, self.out, self.obs, self.busy_rows, self.busy_waits,
        )  # fmt: skip

    def step_all(self) -> int:
        """:meth:`step` of every row with the actions in :attr:`actions`, into the arrays as
        they were when bound (the single env's, which it never replaces)."""
        return self._step(*self._step_all_args)

    def observe(self) -> None:
        """The current observations into :attr:`obs` (after :meth:`start`)."""
        busy = self._observe(*self._observe_args)
        if busy:
            self.observe_backlog(busy)

    def observe_backlog(self, busy: int) -> None:
        """The device backlog feature of the ``busy`` devices listed by the last step or
        observation (numpy's ``log1p``)."""
        np.log1p(self.busy_waits[:busy], out=self.busy_waits[:busy])
        self._observe_backlog(
            self.obs, self._backlog, self.busy_rows, self.busy_waits, busy, self._wait_scale
        )

    def server_reachable(self, step: np.ndarray | int, rows: np.ndarray | int):
        """Whether the server's last heartbeat before request ``step`` of ``rows`` arrived."""
        return self.reachable_obs[step, rows] > 0.0

    def throughput_feature(self, row: int) -> np.ndarray:
        """The throughput feature of every frame of ``row``'s episode (for rendering)."""
        return self.throughput_obs[:, row]

    def backlog_feature_one(self) -> float:
        """The device backlog feature of a single busy device (numpy's ``log1p`` of a
        number, faster than :meth:`observe_backlog`)."""
        return min(np.log1p(self.busy_waits[0]) / self._wait_scale, 1.0)

    def expected_outcomes(
        self,
        row: int,
        exit_prob: np.ndarray,
        exit_correct_prob: np.ndarray,
        hindsight: bool,
        uplink: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The reward and the device's energy (J) of every flat action for ``row``'s current
        request (see :func:`splitexit.envs.core.expected_rewards`); with ``uplink`` (a trace
        bank of one trace, read from time 0) in place of the true uplink."""
        n_exits = exit_prob.shape[-1]
        n_actions = int(self.world.params[0]["n_actions"])
        values, energies_j = np.empty(n_actions), np.empty(n_actions)
        world, cells = self.world, self.cells
        if uplink is not None:
            world = world._replace(traces=uplink[0], cum_bits=uplink[1], capacity_bps=uplink[2])
            cells = cells.copy()
            w = self.devices[row]["world"]
            cells["trace"][w], cells["shift_s"][w] = 0, 0.0
        core.expected_rewards(
            *world, cells, self.devices, self.samples, self.demand, row, exit_prob,
            exit_correct_prob, hindsight, np.zeros(1, core.CELL), np.zeros(1, core.DEVICE),
            np.zeros(1, core.OUTPUT), np.empty((2, n_exits)), np.empty((2, n_exits), bool),
            np.empty((2, n_exits)), values, energies_j,
        )  # fmt: skip
        return values, energies_j

    def mean_capacity_bps(self, row: int, t0_s: float, t1_s: float) -> float:
        """The uplink's mean capacity over episode times ``[t0_s, t1_s]`` of ``row`` (bit/s)."""
        w, cell = self.world, self.cells[self.devices[row]["world"]]
        return core.mean_capacity_bps(
            w.traces, w.cum_bits, w.capacity_bps, int(cell["trace"]), float(cell["shift_s"]),
            float(t0_s), float(t1_s),
        )  # fmt: skip
