"""SplitExitEnv: pick a split point and an early-exit threshold for every inference request."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from splitexit.dnn_profiles.hardware import get_device_preset
from splitexit.envs.channel import TraceChannel
from splitexit.envs.config import make_config
from splitexit.envs.energy import radio_model
from splitexit.envs.world import (
    NEVER_EXIT,
    episode_duration_s,
    load_profile,
    make_channel,
    make_server,
    world_tables,
)

MAX_OBS_THROUGHPUT_MBPS = 100.0  # throughput features saturate here (log scale)
# Waiting times (server queue, device backlog) are observed on a log scale from 1 ms to this
# many frame periods, where the differences that matter (a few ms to a deadline) stay visible.
MAX_OBS_BACKLOG_FRAMES = 10.0
WAIT_UNIT_S = 1e-3
# Uniforms drawn per episode besides one per request (see reset).
EPISODE_DRAWS = 4
# Observation layout after the throughput history (each in [0, 1]).
OBS_FEATURES = ("rtt", "server_queue", "server_reachable", "device_backlog", "battery", "deadline")


class SplitExitEnv(gym.Env):
    """
    ## Description

    A mobile device classifies a stream of Fashion-MNIST images with a multi-exit CNN that can be
    split between the device and an edge server (Matsubara, Levorato and Restuccia, "Split
    Computing and Early Exiting for Deep Learning Applications", ACM CSUR 2022). One step is one
    request (a frame): the agent picks where to split the network and the confidence threshold
    of its early exits; the env then runs the request to completion through the device, a real
    uplink trace, the edge server's queue and back, and scores accuracy, latency and energy.

    ## Action Space

    Split ``s`` in ``0..S`` (0 = send the raw image, S = all on the device), threshold index
    ``t`` into ``config["thresholds"] + [never]`` and compression index ``c`` into
    ``config["compressions"]``. ``Discrete(n)`` with ``a = (s * T + t) * C + c`` by default;
    ``MultiDiscrete([S + 1, T, C])`` with ``action_type="multidiscrete"``.

    ## Observation Space

    ``Box(0, 1, (H + 6,), float32)``, only what the device can know when the request arrives:
    the uplink throughput measured over each of the last ``H`` frame periods (log scale,
    ``log1p(Mbit/s) / log1p(100)``), the RTT (/ timeout), the queueing delay the server
    reported in its last heartbeat (one frame period ago), whether that heartbeat arrived, the
    device's own backlog (both waits as ``log1p(wait / 1 ms) / log1p(10 frame periods / 1 ms)``),
    the battery fraction and the deadline (/ timeout). ``decode_observation`` turns an
    observation back into physical units.

    ## Rewards

    ``accuracy * correct - latency * latency_s - energy * energy_j - deadline_miss * missed``
    with the weights of ``config["reward"]``; the four parts are in ``info["rewards"]``.

    ## Starting State

    At ``reset`` one call ``np_random.random(horizon + 4)`` draws the episode: the samples of the
    test split that will arrive, a trace and the slot to read it from (the Markov channel is one
    long realised path), the offset into the server's world (background load and intermittent
    outages realised once per process from ``config["world_seed"]``, so the queue starts in its
    stationary regime), and the time of a permanent failure. The fading channel draws its
    realisation after that. Given the seed and the actions, the trajectory is fixed.

    ## Episode End

    Truncated after ``config["horizon"]`` requests (enforced here, no ``TimeLimit`` needed);
    terminated when ``config["battery_j"]`` is spent.

    ## Arguments

    ``gym.make("splitexit:SplitExit-v0", config={...}, render_mode=None | "ansi" | "rgb_array")``
    or keyword overrides of ``splitexit.envs.default_config()``; a single dict (RLlib's
    ``EnvContext``) works too. Unknown keys and bad values raise ``ValueError`` naming the key.

    ## Version History

    * v0: initial version.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 10}

    def __init__(
        self,
        config: dict | None = None,
        render_mode: str | None = None,
        preset: dict | None = None,
        **kwargs: Any,
    ) -> None:
        # Precedence: defaults < the registered id's preset < config < keyword arguments.
        self.config = cfg = make_config({**(preset or {}), **dict(config or {})}, **kwargs)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']} or None, "
                f"got {render_mode!r}"
            )
        self.render_mode = render_mode
        self.profile = load_profile(cfg["profile"])
        self.tables = world_tables(
            cfg["profile"],
            tuple(cfg["thresholds"]),
            tuple(cfg["compressions"]),
            cfg["device"],
            cfg["server"],
        )
        self.thresholds = (*cfg["thresholds"], NEVER_EXIT)
        self.compressions = tuple(cfg["compressions"])
        self.num_splits = self.profile.num_blocks + 1
        self.n_t, self.n_c = len(self.thresholds), len(self.compressions)
        self.n_actions = self.num_splits * self.n_t * self.n_c
        if cfg["action_type"] == "discrete":
            self.action_space = spaces.Discrete(self.n_actions)
        else:
            self.action_space = spaces.MultiDiscrete([self.num_splits, self.n_t, self.n_c])
        self.history = cfg["throughput_history"]
        n_obs = self.history + len(OBS_FEATURES)
        self.observation_space = spaces.Box(0.0, 1.0, (n_obs,), np.float32)

        self.device = get_device_preset(cfg["device"])
        # A request's energy is what it adds to the device's idle draw: compute above idle,
        # plus the radio (Huang et al. 2012 model, which is likewise power above idle).
        self._compute_above_idle_w = max(
            self.device.compute_power_w - self.device.idle_power_w, 0.0
        )
        self.radio = radio_model(cfg["radio"], tail=cfg["lte_tail"])
        self.channel = make_channel(cfg)
        self.server = make_server(cfg)
        self.frame_s, self.deadline_s = cfg["frame_period_s"], cfg["deadline_s"]
        self.timeout_s, self.half_rtt_s = cfg["timeout_s"], cfg["rtt_s"] / 2
        self.horizon = cfg["horizon"]
        self._max_backlog_s = MAX_OBS_BACKLOG_FRAMES * self.frame_s
        self._wait_scale = math.log1p(self._max_backlog_s / WAIT_UNIT_S)
        self.t0_s = self.history * self.frame_s  # the first request, after H measured periods
        self._duration_s = episode_duration_s(cfg)
        self.weights = cfg["reward"]
        self._live_mode = cfg["mode"] == "live"
        self._battery_j = cfg["battery_j"]
        self._model = None  # live mode: the torch model, loaded on first use
        self._images = None
        self._step_idx = -1

    # -- episode -----------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        n = self.horizon
        # One call draws the episode (the vector env draws and uses it alike): the samples that
        # arrive, a trace and a slot in it, an offset into the server's world, a failure time.
        u = rng.random(n + EPISODE_DRAWS)
        n_samples = self.profile.num_samples
        self._samples = np.minimum((u[:n] * n_samples).astype(np.int64), n_samples - 1)
        # Long enough for the last request to time out: nothing is drawn after reset.
        duration_s = self._duration_s
        if isinstance(self.channel, TraceChannel):
            self.trace = self.channel.sample_shifted(u[n], u[n + 1])
        else:
            trace = self.channel.sample(rng, duration_s)
            scale = self.config["capacity_scale"]
            self.trace = trace.scaled(scale) if scale != 1.0 else trace
        self.server.reset(rng, duration_s, u[n + 2 :])
        # Everything the device observes except its own backlog and battery is exogenous, so
        # the whole episode's observations are laid out here; step() fills in the two others.
        t = self.t0_s + self.frame_s * np.arange(-self.history, n + 1)
        mbps = np.diff(self.trace.cumulative_bits_many(t)) / self.frame_s / 1e6
        tp = (np.log1p(mbps) / np.log1p(MAX_OBS_THROUGHPUT_MBPS)).clip(0.0, 1.0)
        heard = t[self.history :] - self.frame_s  # the server's last heartbeat
        obs = np.empty((n + 1, self.observation_space.shape[0]), np.float32)
        obs[:, : self.history] = np.lib.stride_tricks.sliding_window_view(tp, self.history)
        h, cfg = self.history, self.config
        obs[:, h + 0] = min(cfg["rtt_s"] / self.timeout_s, 1.0)
        # The heartbeat reports the server's queueing delay (work waiting, s); our own jobs,
        # a fraction of a millisecond each, are not in it yet.
        queue_s = self.server.background_backlog_s(heard)
        obs[:, h + 1] = np.minimum(np.log1p(queue_s / WAIT_UNIT_S) / self._wait_scale, 1.0)
        if self.server.schedule.down_start_s:
            obs[:, h + 2] = [0.0 if self.server.is_down(x) else 1.0 for x in heard.tolist()]
        else:
            obs[:, h + 2] = 1.0
        obs[:, h + 3] = 0.0  # device backlog (set in step when the device is busy)
        obs[:, h + 4] = 1.0  # battery fraction (updated in step when there is a battery)
        obs[:, h + 5] = min(self.deadline_s / self.timeout_s, 1.0)
        self._obs = obs
        self._throughput_obs = tp
        self._step_idx = 0
        self._device_free_s = 0.0
        self._last_tx_end_s = -math.inf
        self._energy_j = 0.0
        self._last = None
        return self._observation(), {}

    def _arrival_s(self, i: int) -> float:
        return self.t0_s + i * self.frame_s

    @property
    def arrival_s(self) -> float:
        """Arrival time of the current request (s, episode time)."""
        return self._arrival_s(self._step_idx)

    def _observation(self) -> np.ndarray:
        i = self._step_idx
        obs = self._obs[i].copy()
        backlog_s = self._device_free_s - self._arrival_s(i)
        if backlog_s > 0.0:
            # np.log1p, not math.log1p: the vector env computes the same feature with numpy.
            obs[self.history + 3] = min(np.log1p(backlog_s / WAIT_UNIT_S) / self._wait_scale, 1.0)
        if self._battery_j is not None:
            obs[self.history + 4] = max(1.0 - self._energy_j / self._battery_j, 0.0)
        return obs

    def decode_observation(self, observation: np.ndarray) -> dict[str, Any]:
        """An observation in physical units (what a heuristic policy may use)."""
        obs = np.asarray(observation, dtype=np.float64)
        h = self.history
        return {
            "uplink_bps": np.expm1(obs[:h] * np.log1p(MAX_OBS_THROUGHPUT_MBPS)) * 1e6,
            "rtt_s": obs[h] * self.timeout_s,
            "server_queue_s": math.expm1(obs[h + 1] * self._wait_scale) * WAIT_UNIT_S,
            "server_reachable": bool(obs[h + 2] > 0.5),
            "device_backlog_s": math.expm1(obs[h + 3] * self._wait_scale) * WAIT_UNIT_S,
            "battery_fraction": obs[h + 4],
            "deadline_s": obs[h + 5] * self.timeout_s,
        }

    # -- actions -----------------------------------------------------------------------------

    def decode_action(self, action) -> tuple[int, int, int]:
        """(split, threshold index, compression index) of an action; ``ValueError`` if invalid."""
        if self.config["action_type"] == "discrete":
            if type(action) is not int:
                arr = np.asarray(action)
                if arr.shape != () or arr.dtype.kind not in "iu":
                    raise ValueError(
                        f"action {action!r} is not in the action space {self.action_space}"
                    )
                action = int(arr)
            if not 0 <= action < self.n_actions:
                raise ValueError(
                    f"action {action!r} is not in the action space {self.action_space}"
                )
            a = action
            return a // (self.n_t * self.n_c), (a // self.n_c) % self.n_t, a % self.n_c
        arr = np.asarray(action)
        if arr.dtype.kind not in "iu" or not self.action_space.contains(arr.astype(np.int64)):
            raise ValueError(f"action {action!r} is not in the action space {self.action_space}")
        s, t, c = (int(x) for x in arr)
        return s, t, c

    def encode_action(self, split: int, threshold_idx: int, compression_idx: int = 0):
        """Inverse of :meth:`decode_action`."""
        if self.config["action_type"] == "discrete":
            return (split * self.n_t + threshold_idx) * self.n_c + compression_idx
        return np.array([split, threshold_idx, compression_idx], dtype=np.int64)

    def action_masks(self) -> np.ndarray:
        """Valid flat actions (sb3-contrib MaskablePPO): split 0 (raw image) and split S (nothing
        sent) ignore the compression, so only their first compression is valid; while the last
        heartbeat from the server is missing, only all-on-device actions are valid."""
        mask = np.ones((self.num_splits, self.n_t, self.n_c), dtype=bool)
        mask[0, :, 1:] = mask[-1, :, 1:] = False
        if 0 <= self._step_idx <= self.horizon and self._obs[self._step_idx, self.history + 2] == 0:
            mask[:-1] = False
        return mask.reshape(-1)

    # -- the world ---------------------------------------------------------------------------

    def _outcome(self, split: int, comp: int, exit_k: int, heads: bool, commit: bool) -> tuple:
        """Simulate the current request answered by exit ``exit_k``.

        Returns (latency_s, energy_j, timed_out, device_wait_s, tx_time_s, server_wait_s,
        payload_bytes, uplink_bps). With ``commit`` the device, radio and server state advance.
        """
        arrival = self._arrival_s(self._step_idx)
        timeout_at = arrival + self.timeout_s
        start = max(arrival, self._device_free_s)
        device_wait = start - arrival
        if start >= timeout_at:  # dropped: waited for the device until its timeout
            return self.timeout_s, 0.0, True, device_wait, 0.0, 0.0, 0, 0.0
        dev_time = self.tables.device_time_s[split][exit_k][heads]
        energy = self._compute_above_idle_w * dev_time
        sent = start + dev_time
        if self.tables.exit_blocks[exit_k] <= split:  # answered on the device
            done = min(sent, timeout_at)
            if commit:
                self._device_free_s = done
            return done - arrival, energy, sent > timeout_at, device_wait, 0.0, 0.0, 0, 0.0
        payload = self.tables.payload_bytes[split][comp]
        uploaded = sent + self.trace.transfer_time_s(sent, payload)  # inf at zero capacity
        if uploaded <= timeout_at:
            tx_time, bits = uploaded - sent, 8.0 * payload
        else:  # the upload is abandoned at the timeout
            tx_time = max(timeout_at - sent, 0.0)
            cum = self.trace.cumulative_bits
            bits = max(cum(sent + tx_time) - cum(sent), 0.0)
        energy += self.radio.tx_energy_j(min(bits / 8, payload), tx_time)
        if self.radio.tail_enabled and tx_time > 0 and self._last_tx_end_s > -math.inf:
            # the LTE tail of the previous transmission, cut short by this one
            energy += self.radio.tail_energy_j(sent - self._last_tx_end_s)
        uplink_bps = bits / tx_time if tx_time > 0 else self.trace.capacity_at_bps(sent)
        at_server = uploaded + self.half_rtt_s
        server_wait, answer = 0.0, math.inf
        if at_server < timeout_at and not self.server.is_down(at_server):
            service = self.tables.server_time_s[split][exit_k][heads]
            submit = self.server.submit if commit else self.server.peek
            server_wait, finish = submit(at_server, service)
            answer = finish + self.half_rtt_s
        if commit:
            self._device_free_s = sent + tx_time
            if tx_time > 0:
                self._last_tx_end_s = sent + tx_time
        timed_out = answer > timeout_at
        latency = min(answer, timeout_at) - arrival
        return latency, energy, timed_out, device_wait, tx_time, server_wait, payload, uplink_bps

    def _reward_parts(self, correct: bool, latency_s: float, energy_j: float, missed: bool):
        w = self.weights
        return {
            "accuracy": w["accuracy"] * correct,
            "latency": -w["latency"] * latency_s,
            "energy": -w["energy"] * energy_j,
            "deadline_miss": -w["deadline_miss"] * missed,
        }

    def step(self, action):
        if self._step_idx < 0:
            raise RuntimeError("call reset() before step()")
        if self._step_idx >= self.horizon:
            raise RuntimeError("the episode is over: call reset()")
        split, t, comp = self.decode_action(action)
        i = self._step_idx
        heads = t < self.n_t - 1
        if self._live_mode:
            exit_k, prediction = self._live(split, t, comp)
            correct = prediction == int(self.profile.labels[self._samples[i]])
        else:
            sample = self._samples[i]
            exit_k = int(self.tables.exit_index[sample, split, comp, t])
            correct = self.tables.correct[sample, split, comp, exit_k]
        latency, energy, timed_out, dev_wait, tx_time, srv_wait, payload, uplink = self._outcome(
            split, comp, exit_k, heads, commit=True
        )
        correct = bool(correct) and not timed_out
        missed = timed_out or latency > self.deadline_s
        parts = self._reward_parts(correct, latency, energy, missed)
        reward = parts["accuracy"] + parts["latency"] + parts["energy"] + parts["deadline_miss"]
        self._energy_j += energy
        self._step_idx += 1
        terminated = self._battery_j is not None and self._energy_j >= self._battery_j
        truncated = self._step_idx >= self.horizon and not terminated
        info = {
            "split": split,
            "threshold": self.thresholds[t],
            "compression": self.compressions[comp],
            "exit_block": self.tables.exit_blocks[exit_k],
            "correct": correct,
            "latency_s": latency,
            "energy_j": energy,
            "deadline_missed": missed,
            "timed_out": timed_out,
            "payload_bytes": payload,
            "uplink_bps": uplink,
            "tx_time_s": tx_time,
            "device_wait_s": dev_wait,
            "server_wait_s": srv_wait,
            "sample_index": int(self._samples[i]),
            "rewards": parts,
        }
        self._last = (info, reward)
        return self._observation(), reward, terminated, truncated, info

    # -- oracles -----------------------------------------------------------------------------

    def expected_rewards(self, hindsight: bool = False) -> np.ndarray:
        """Expected reward of every flat action for the current request, given the true state
        (channel capacity, server queue, device backlog), without changing it.

        Averaged over what the exits of a sample drawn from the data set would say; with
        ``hindsight`` the current sample's own exits are used (an upper bound, not deployable).
        """
        if not 0 <= self._step_idx < self.horizon:
            raise RuntimeError("expected_rewards() needs a request: call reset() first")
        n_e = len(self.tables.exit_blocks)
        values = np.empty((self.num_splits, self.n_t, self.n_c))
        sample = self._samples[self._step_idx]
        for s in range(self.num_splits):
            for c in range(self.n_c):
                costs = {}
                for heads in (False, True):
                    for e in range(n_e):
                        lat, en, to, *_ = self._outcome(s, c, e, heads, commit=False)
                        missed = to or lat > self.deadline_s
                        parts = self._reward_parts(False, lat, en, missed)
                        costs[heads, e] = (
                            parts["latency"] + parts["energy"] + parts["deadline_miss"],
                            to,
                        )
                for t in range(self.n_t):
                    heads = t < self.n_t - 1
                    if hindsight:
                        e = int(self.tables.exit_index[sample, s, c, t])
                        cost, to = costs[heads, e]
                        right = self.tables.correct[sample, s, c, e] and not to
                        values[s, t, c] = self.weights["accuracy"] * right + cost
                    else:
                        p = self.tables.exit_prob[s, c, t]
                        pc = self.tables.exit_correct_prob[s, c, t]
                        v = 0.0
                        for e in range(n_e):
                            if p[e] > 0:
                                cost, to = costs[heads, e]
                                v += p[e] * cost + (0.0 if to else self.weights["accuracy"] * pc[e])
                        values[s, t, c] = v
        return values.reshape(-1)

    # -- live mode ---------------------------------------------------------------------------

    def _live(self, split: int, t: int, comp: int) -> tuple[int, int]:
        """Run the torch model on the request's real image; (exit index, prediction)."""
        from splitexit.dnn_profiles.data import load_fashion_mnist
        from splitexit.dnn_profiles.model import split_inference
        from splitexit.dnn_profiles.train import WEIGHTS_PATH, load_model

        if self._model is None:
            self._model = load_model(self.config["weights"] or WEIGHTS_PATH)
            self._images = load_fashion_mnist("test").images
        sample = int(self._samples[self._step_idx])
        result = split_inference(
            self._model, self._images[sample], split, self.thresholds[t], self.compressions[comp]
        )
        return self.tables.exit_blocks.index(result.exit_block), result.prediction

    # -- rendering ---------------------------------------------------------------------------

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode")
            return None
        if self.render_mode == "ansi":
            return self._render_ansi()
        return self._render_rgb()

    def _render_ansi(self) -> str:
        if self._last is None:
            return f"t={self._step_idx} (no request yet)\n"
        info, reward = self._last
        return (
            f"req {self._step_idx:4d} split {info['split']} thr {info['threshold']:.2f} "
            f"exit {info['exit_block']} {'ok ' if info['correct'] else 'bad'} "
            f"lat {info['latency_s'] * 1e3:7.1f} ms E {info['energy_j'] * 1e3:6.2f} mJ "
            f"up {info['uplink_bps'] / 1e6:6.2f} Mbit/s bytes {info['payload_bytes']:5d} "
            f"r {reward:+.3f}\n"
        )

    def _render_rgb(self) -> np.ndarray:
        """A 120x240 picture: the measured uplink throughput over the episode (grey bars) and
        the current request (red line)."""
        height, width = 120, 240
        img = np.full((height, width, 3), 255, np.uint8)
        if self._step_idx < 0:
            return img
        tp = self._throughput_obs
        cols = np.minimum((np.arange(width) * len(tp)) // width, len(tp) - 1)
        bars = (tp[cols] * (height - 1)).astype(int)
        rows = np.arange(height)[:, None]
        img[rows >= (height - 1 - bars)[None, :]] = (160, 160, 160)
        x = min((self._step_idx + self.history) * width // len(tp), width - 1)
        img[:, x] = (220, 30, 30)
        return img
