"""SplitExitEnv: pick a split point and an early-exit threshold for every inference request."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from splitexit.dnn_profiles import zoo
from splitexit.envs import core
from splitexit.envs.batch import Batch
from splitexit.envs.capacity import CapacityTrace
from splitexit.envs.config import make_config
from splitexit.envs.context import camera_mix, context_chains
from splitexit.envs.energy import radio_model
from splitexit.envs.observation import ObservationLayout
from splitexit.envs.traces import MAX_RATE_MBPS
from splitexit.envs.world import (
    NEVER_EXIT,
    build_world,
    live_model,
    load_profile,
    make_channel,
    trace_bank,
    world_tables,
)


# A step's info dict from the output record as a tuple (``splitexit.envs.core.OUTPUT``, whose
# fields are the info keys, then the reward parts) and the compression names: one dict display,
# generated from the keys (twice as fast as ``dict(zip(...))``, per step).
def _info_function(keys: tuple[str, ...]):
    """The info dict of an output record with ``keys`` (then ``rewards``)."""
    source = ", ".join(
        [f"{key!r}: names[o[{core.OUTPUT.names.index(key)}]]" if key == "compression"
         else f"{key!r}: o[{core.OUTPUT.names.index(key)}]" for key in keys]
        + ["'rewards': {"
           + ", ".join(f"{key!r}: o[{core.OUTPUT.names.index(key)}]" for key in core.REWARD_KEYS)
           + "}"]
    )  # fmt: skip
    return eval(f"lambda o, names: {{{source}}}")  # noqa: S307 (our own keys)


_info = _info_function(core.INFO_KEYS)
# With a context (SplitExit-v1): also the frame's condition (an index into
# ``tables.conditions``), the request's demand
# class, deadline and value, and the answering exit's confidence.
_context_info = _info_function(core.INFO_KEYS + core.CONTEXT_INFO_KEYS)
_REWARD, _TERMINATED, _TRUNCATED = (
    core.OUTPUT.names.index(key) for key in ("reward", "terminated", "truncated")
)


# Bounds on the oracle API's arguments. Times: the bits delivered are float64 sums, exact to
# well under a bit per second of mean up to 1e9 s (31 years; 1e25 s gave a negative mean).
# Capacities: 1 Tbit/s, the bound on trace rates (envs.traces.MAX_RATE_MBPS).
MAX_ORACLE_TIME_S = 1e9
MAX_ORACLE_CAPACITY_BPS = MAX_RATE_MBPS * 1e6


# info["exit_confidences"] of an exit whose answer did not reach the device: not NaN, so that
# equal steps give equal infos (Gymnasium's check_env compares them).
UNKNOWN_CONFIDENCE = -1.0


class SplitExitEnv(gym.Env):
    """
    ## Description

    A mobile device classifies a stream of images with a multi-exit CNN that can be split
    between the device and an edge server (Matsubara, Levorato and Restuccia, "Split Computing
    and Early Exiting for Deep Learning Applications", ACM CSUR 2022): Fashion-MNIST on a
    Cortex-M4 board in v0, the split multi-exit ResNet on CIFAR-10 on a Cortex-M7 board in v1.
    One step is one request (a frame arriving every ``frame_period_s``): the agent picks where
    to split the network and the confidence threshold of its early exits; the env then runs the
    request to completion through the device (blocks ``1..s``, stopping at the first exit whose
    max-softmax confidence reaches the threshold), the payload of split ``s`` over a real uplink
    trace, the edge server's queue, blocks ``s+1..S`` on the server and the answer back after
    the RTT, and scores accuracy, latency and energy.

    ## Action Space

    Split ``s`` in ``0..S`` (0 = send the raw image, S = all on the device), threshold index
    ``t`` into ``config["thresholds"] + [never]`` and compression index ``c`` into
    ``config["compressions"]``. ``Discrete(n)`` with ``a = (s * T + t) * C + c`` by default;
    ``MultiDiscrete([S + 1, T, C])`` with ``action_type="multidiscrete"``. ``action_masks()``
    gives the mask for MaskablePPO (one entry per flat action; for ``MultiDiscrete``, per value
    of each dimension).

    ## Observation Space

    ``Box(0, 1, (H + 6,), float32)``, only what the device can know when the request arrives:
    the uplink throughput measured over each of the last ``H`` frame periods (log scale,
    ``log1p(Mbit/s) / log1p(100)``), the RTT (/ timeout), the queueing delay the server
    reported in its last heartbeat (one frame period ago), whether that heartbeat arrived, the
    device's own backlog (both waits as ``log1p(wait / 1 ms) / log1p(10 frame periods / 1 ms)``),
    the battery fraction and the deadline (/ timeout). With ``observation="context"`` (v1) it is
    ``Box(0, 1, (H + 13,), float32)``: then ``requests_left``, ``value`` (/ 10), the frame's
    ``brightness``, ``contrast`` and ``sharpness`` (each over its largest value in the
    profile), and the confidence and exit of the latest answer back on the device.
    ``decode_observation`` turns an observation back into physical units and ``layout.slices``
    names where each feature sits.

    ## Rewards

    ``accuracy * correct - latency * latency_s - energy * energy_j - deadline_miss * missed``
    with the weights of ``config["reward"]``; the four parts are in ``info["rewards"]``. A
    request's energy is what it adds above the device's idle draw; a request that waits past
    ``timeout_s`` is dropped (latency ``timeout_s``, counted wrong and missed).

    ## Starting State

    At ``reset`` one call ``np_random.random(horizon + 4)`` draws the episode: the samples of the
    test split that will arrive, a trace and the slot to read it from (the Markov channel is one
    long realised path), the offset into the server's world (background load and intermittent
    outages realised once per process from ``config["world_seed"]``, so the queue starts in its
    stationary regime), and the time of a permanent failure. The fading channel draws its
    realisation after that; with a context (v1), a second call ``np_random.random(5 * horizon)``
    draws the camera's regimes, the application's phases and each request's demand class.
    Given the seed and the actions, the trajectory is fixed.

    ## Episode End

    Truncated after ``config["horizon"]`` requests (enforced here, no ``TimeLimit`` needed);
    terminated when ``config["battery_j"]`` is spent, unless ``battery_empty="drop"`` (v1),
    which drops every later request until the horizon instead.

    ## Arguments

    ``gym.make("splitexit:SplitExit-v1", config={...}, render_mode=None | "ansi" | "rgb_array")``
    or keyword overrides of ``splitexit.envs.default_config()``; a single dict (RLlib's
    ``EnvContext``) works too. Precedence: the defaults, then the registered id's preset, then
    ``config``, then keyword arguments. Unknown keys and bad values raise ``ValueError`` naming
    the key.

    ## Version History

    * v1: the CIFAR-10 workload (``splitexit.V1``): the split multi-exit ResNet on the
      STM32H7A3 board (``device="mcu"``), camera conditions, application demands, a battery
      budget that drops requests when spent, and the context observation.
    * v0: initial version (Fashion-MNIST on the Cortex-M4 board, mains powered); unchanged, bit
      for bit, since v1.
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
        self._discrete = cfg["action_type"] == "discrete"
        self.history = cfg["throughput_history"]
        self.frame_s, self.deadline_s = cfg["frame_period_s"], cfg["deadline_s"]
        self.timeout_s, self.horizon = cfg["timeout_s"], cfg["horizon"]
        context_obs = cfg["observation"] == "context"
        self.layout = ObservationLayout(self.history, self.frame_s, self.timeout_s, context_obs)
        self.observation_space = spaces.Box(0.0, 1.0, (self.layout.size,), np.float32)
        self._backlog = self.layout.index("device_backlog")
        self.weights = cfg["reward"]
        # The fading channel draws its capacity per episode; the others are in the world.
        self._fading = make_channel(cfg) if cfg["channel"] == "fading" else None
        # The request's context: its chains, and whether the info reports it.
        self._context = cfg["camera"] != "none" or cfg["demands"] != "none" or context_obs
        chains = None
        if cfg["camera"] != "none" or cfg["demands"] != "none":
            chains = context_chains(cfg, self.tables.conditions)
        # The shares of time of the profile's camera conditions (what a planner may assume
        # before it sees a frame): the camera's mix, or all clean without the camera.
        self.condition_prior = np.zeros(len(self.tables.conditions))
        if cfg["camera"] != "none":
            self.condition_prior[:] = camera_mix(self.tables.conditions)
        else:
            self.condition_prior[self.tables.conditions.index("clean")] = 1.0
        self.batch = Batch(build_world(cfg), 1, self.layout, cfg["outage_mean_up_s"], chains)
        params = self.batch.world.params[0]
        self.t0_s = float(params["t0_s"])  # the first request, after H measured periods
        # The device's and the radio's power models (what heuristic baselines plan with).
        self.compute_above_idle_w = float(params["compute_above_idle_w"])
        self.radio = radio_model(cfg["radio"], tail=cfg["lte_tail"])
        self._row = self.batch.all_rows
        self._live_mode = cfg["mode"] == "live"
        self._model = None  # live mode: the torch model, loaded on first use
        if self._live_mode:  # (its weights checked now, not at the first step)
            self._live_spec, self._live_weights = live_model(self.profile, cfg["weights"])
        self._images = None
        self._step_idx = -1
        self._terminated = False
        self._last = None

    # -- episode -----------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Draw a new episode from ``seed`` (see Starting State); return ``(obs, info)``."""
        super().reset(seed=seed)
        batch = self.batch
        # One call draws the episode (the vector env draws and uses it alike): the samples that
        # arrive, a trace and a slot in it, an offset into the server's world, a failure time.
        self.np_random.random(out=batch.draws[0])
        if self._fading is not None:  # its realisation is drawn after that
            duration_s = float(batch.world.params[0]["duration_s"])
            trace = self._fading.sample(self.np_random, duration_s)
            scale = self.config["capacity_scale"]
            trace = trace.scaled(scale) if scale != 1.0 else trace
            batch.set_traces(*trace_bank([trace]))
        if batch.context_draws.size:  # the request's context, drawn last
            self.np_random.random(out=batch.context_draws[0])
        batch.start(self._row)
        batch.observe()
        self._step_idx = 0
        self._terminated = False
        self._last = None
        return batch.obs[0].copy(), {}

    def _arrival_s(self, i: int) -> float:
        return self.t0_s + i * self.frame_s

    @property
    def arrival_s(self) -> float:
        """Arrival time of the current request (s, episode time)."""
        return self._arrival_s(self._step_idx)

    def mean_capacity_bps(self, t0_s: float, t1_s: float) -> float:
        """The uplink's capacity averaged over episode times ``[t0_s, t1_s]`` (bit/s): what the
        device would measure by saturating the link (the capacity at ``t0_s`` if empty)."""
        if not 0.0 <= t0_s <= t1_s <= MAX_ORACLE_TIME_S:
            raise ValueError(
                f"need times 0 <= t0_s <= t1_s <= {MAX_ORACLE_TIME_S:g} s, got t0_s={t0_s!r}, "
                f"t1_s={t1_s!r}"
            )
        if self._step_idx < 0:
            raise RuntimeError("call reset() before mean_capacity_bps()")
        return self.batch.mean_capacity_bps(0, t0_s, t1_s)

    def decode_observation(self, observation: np.ndarray) -> dict[str, Any]:
        """An observation in physical units (what a heuristic policy may use)."""
        return self.layout.decode(observation)

    # -- actions -----------------------------------------------------------------------------

    def _flat_action(self, action) -> int:
        """The flat index of ``action``; ``ValueError`` naming the space if it is not in it."""
        if self._discrete:
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
            return action
        arr = np.asarray(action)
        if arr.dtype.kind not in "iu" or not self.action_space.contains(arr.astype(np.int64)):
            raise ValueError(f"action {action!r} is not in the action space {self.action_space}")
        s, t, c = (int(x) for x in arr)
        return core.flat_action(s, t, c, self.n_t, self.n_c)

    def decode_action(self, action) -> tuple[int, int, int]:
        """(split, threshold index, compression index) of an action; ``ValueError`` if invalid."""
        a = self.batch.world.actions[self._flat_action(action)]
        return int(a["split"]), int(a["threshold_idx"]), int(a["compression_idx"])

    def encode_action(self, split: int, threshold_idx: int, compression_idx: int = 0):
        """Inverse of :meth:`decode_action`."""
        if self._discrete:
            return core.flat_action(split, threshold_idx, compression_idx, self.n_t, self.n_c)
        return np.array([split, threshold_idx, compression_idx], dtype=np.int64)

    def action_masks(self) -> np.ndarray:
        """Valid actions (sb3-contrib MaskablePPO): split 0 (raw image) and split S (nothing
        sent) ignore the compression, so only their first compression is valid; while the last
        heartbeat from the server is missing, only all-on-device actions are valid. One entry
        per flat action (``Discrete``), or per value of each action dimension
        (``MultiDiscrete``: ``S + 1 + T + C`` entries, see :meth:`masks_of_space`)."""
        mask = np.ones((self.num_splits, self.n_t, self.n_c), dtype=bool)
        mask[0, :, 1:] = mask[-1, :, 1:] = False
        i = self._step_idx
        if 0 <= i <= self.horizon and not self.batch.server_reachable(i, 0):
            mask[:-1] = False
        return self.masks_of_space(mask)

    def masks_of_space(self, mask: np.ndarray) -> np.ndarray:
        """Masks of shape ``(..., S + 1, T, C)`` over (split, threshold, compression) as this
        env's action space takes them: flat; or, for ``MultiDiscrete``, each dimension's values
        concatenated, a value valid where some valid action has it (the compression a split of
        0 or S ignores is then allowed: it acts as the first one)."""
        if self._discrete:
            return mask.reshape(*mask.shape[:-3], -1)
        return np.concatenate(
            [mask.any(axis=tuple(a for a in (-3, -2, -1) if a != k)) for k in (-3, -2, -1)],
            axis=-1,
        )

    # -- steps -------------------------------------------------------------------------------

    def step(self, action):
        """Run one request to completion with ``action``; return ``(obs, reward, terminated,
        truncated, info)``, ``info`` holding the request's outcome (``latency_s``, ``energy_j``,
        ``exit_block``, ``correct``, ``rewards``, ...)."""
        if not 0 <= self._step_idx < self.horizon:
            if self._step_idx < 0:
                raise RuntimeError("call reset() before step()")
            raise RuntimeError("the episode is over: call reset()")
        if self._terminated:
            raise RuntimeError(
                "the episode is over (terminated: the battery is spent): call reset()"
            )
        a = self._flat_action(action)
        batch = self.batch
        if self._live_mode:
            batch.live_code[0], batch.live_conf[0] = self._live(a)
        batch.actions[0] = a
        busy = batch.step_all()
        self._step_idx += 1
        out = batch.out.item()
        obs = batch.obs[0].copy()
        if busy:
            obs[self._backlog] = batch.backlog_feature_one()
        if self._context:
            info = _context_info(out, self.compressions)
            info["exit_confidences"] = self.exit_confidences(batch.out)[0]
        else:
            info = _info(out, self.compressions)
        reward = out[_REWARD]
        self._last = (info, reward)
        self._terminated = bool(out[_TERMINATED])
        return obs, reward, out[_TERMINATED], out[_TRUNCATED], info

    # -- oracles -----------------------------------------------------------------------------

    def expected_rewards(
        self, hindsight: bool = False, capacity_bps: float | None = None
    ) -> np.ndarray:
        """Expected reward of every flat action for the current request, given the true state
        (channel capacity, server queue, device backlog), without changing it.

        Averaged over what the exits of a sample drawn from the data set would say; with
        ``hindsight`` the current sample's own exits are used (an upper bound, not deployable).
        With ``capacity_bps`` the uplink is taken to keep that capacity (a planner's estimate).
        """
        return self.expected_outcomes(hindsight, capacity_bps)[0]

    def expected_outcomes(
        self, hindsight: bool = False, capacity_bps: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`expected_rewards` and the device's expected energy (J) of every flat action,
        as two arrays."""
        if not 0 <= self._step_idx < self.horizon:
            raise RuntimeError("expected_rewards() needs a request: call reset() first")
        uplink = None
        if capacity_bps is not None and not 0.0 <= capacity_bps <= MAX_ORACLE_CAPACITY_BPS:
            raise ValueError(
                f"capacity_bps must be in [0, {MAX_ORACLE_CAPACITY_BPS:g}], got {capacity_bps!r}"
            )
        if capacity_bps is not None:  # (one 1000 s slot, looping: constant)
            uplink = trace_bank([CapacityTrace(1e3, np.array([float(capacity_bps)]))])
        t = self.tables
        exit_prob, exit_correct_prob = t.exit_prob, t.exit_correct_prob
        if len(t.conditions) > 1:  # the condition of the current frame is known too
            k = self.condition
            exit_prob = t.exit_prob_by_condition[k]
            exit_correct_prob = t.exit_correct_prob_by_condition[k]
        return self.batch.expected_outcomes(0, exit_prob, exit_correct_prob, hindsight, uplink)

    @property
    def energy_left_j(self) -> float:
        """The battery's energy left in this episode (J); ``inf`` when mains-powered."""
        budget = self.config["battery_j"]
        if budget is None:
            return math.inf
        return max(budget - float(self.batch.devices[0]["energy_j"]), 0.0)

    @property
    def requests_left(self) -> int:
        """Requests of this episode not yet stepped, the current one included."""
        return max(self.horizon - max(self._step_idx, 0), 0)

    def exit_confidences(self, out: np.ndarray) -> np.ndarray:
        """``(n, E)`` max-softmax confidence of each exit whose answer reached the device,
        ``UNKNOWN_CONFIDENCE`` (-1: a confidence is in [0, 1]) for the others, for the output
        records ``out`` of a step: the exits the device passed (their heads on) and, if the
        answer came back, the server's up to the answering one (the server returns the
        confidences of the exits it ran)."""
        t = self.tables
        n_e = len(t.exit_blocks)
        frame = out["condition"] * t.num_samples + out["sample_index"]
        conf = t.confidence[frame, out["split"], out["compression"]].astype(np.float64)
        exit_k = core.exit_of_answer(out["answer"], n_e)
        e = np.arange(n_e)[None, :]
        heads = out["threshold"] <= 1.0
        blocks = np.asarray(t.exit_blocks)[None, :]
        ran = (e <= exit_k[:, None]) & (heads[:, None] | (e == exit_k[:, None]))
        started = ~(out["timed_out"] & (out["energy_j"] == 0.0))  # not dropped or never begun
        on_device = blocks <= out["split"][:, None]
        known = ran & started[:, None] & (on_device | ~out["timed_out"][:, None])
        return np.where(known, conf, UNKNOWN_CONFIDENCE)

    @property
    def condition(self) -> int:
        """The camera condition of the current request's frame (index into
        ``tables.conditions``; not observed by the device)."""
        i = min(max(self._step_idx, 0), self.horizon - 1)
        return int(self.batch.samples[i, 0]) // self.tables.num_samples

    # -- live mode ---------------------------------------------------------------------------

    def _live(self, action: int) -> tuple[int, float]:
        """Run the torch model on the request's real image (corrupted as its camera condition
        says); its answer code (``splitexit.envs.core.pack_answer``) and confidence."""
        from splitexit.dnn_profiles.corruptions import apply_condition
        from splitexit.dnn_profiles.model import split_inference, torch_threads
        from splitexit.dnn_profiles.train import load_model

        if self._model is None:
            self._model = load_model(self._live_weights, self._live_spec.name)
            self._images = zoo.get_dataset(self._live_spec.dataset).load("test").images
        split, t, comp = self.decode_action(action)
        frame = int(self.batch.samples[self._step_idx, 0])
        n = self.tables.num_samples
        sample, condition = frame % n, frame // n
        image = self._images[sample]
        if len(self.tables.conditions) > 1:
            image = apply_condition(
                image, self.tables.conditions[condition], sample, dataset=self._model.dataset
            )
        with torch_threads(self.profile.torch_threads):  # as the profile's numbers were made
            result = split_inference(
                self._model, image, split, self.thresholds[t], self.compressions[comp]
            )
        exit_k = self.tables.exit_blocks.index(result.exit_block)
        heads = t < self.n_t - 1
        correct = result.prediction == int(self.profile.labels[sample])
        answer = core.answer_index(split, exit_k, int(heads), len(self.tables.exit_blocks))
        return core.pack_answer(answer, int(correct)), float(result.confidence)

    # -- rendering ---------------------------------------------------------------------------

    def render(self):
        """The latest request as a line of text (``"ansi"``), or a 120x240 picture of the
        measured uplink throughput over the episode and the current request (``"rgb_array"``)."""
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
        tp = self.batch.throughput_feature(0)
        cols = np.minimum((np.arange(width) * len(tp)) // width, len(tp) - 1)
        bars = (tp[cols] * (height - 1)).astype(int)
        rows = np.arange(height)[:, None]
        img[rows >= (height - 1 - bars)[None, :]] = (160, 160, 160)
        x = min((self._step_idx + self.history) * width // len(tp), width - 1)
        img[:, x] = (220, 30, 30)
        return img
