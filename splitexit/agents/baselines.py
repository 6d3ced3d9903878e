"""Heuristic baselines and oracles for :class:`~splitexit.envs.splitexit_env.SplitExitEnv`.

Every policy has the interface of a stable-baselines3 model, so the evaluation code treats the
baselines, the oracles and the trained agents alike::

    policy = make_policy("neurosurgeon", env.unwrapped).fit(train_env, seeds=range(10))
    action, _ = policy.predict(obs, deterministic=True)

``predict`` takes one observation (1-D, returns one action: an ``int`` for a ``Discrete``
action space, an array ``[split, threshold, compression]`` for ``MultiDiscrete``) or a batch
``(n, obs_dim)`` (returns an array of ``n`` actions). ``fit`` tunes a policy on training
episodes, possibly of another env (other traces, other config with the same action grid); it
is a no-op for the policies that need no tuning.

The oracles (``deployable = False``) ignore the observation: they read the true state of the
env they were built with (:meth:`SplitExitEnv.expected_rewards`), so they only act in that env,
one request at a time.

Online learners (``online = True``: SplitEE, SplitEE-S, LinUCB) also get
``policy.update(obs, action, reward, next_obs, info)`` after every env step from whoever rolls
the episodes out (:func:`run_episode_rewards`, ``evaluate.run_episodes``). They keep learning
across episodes, as a deployed device would; their ``fit`` tunes the exploration constant and
warms up on the training episodes, and ``predict`` never changes their state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from splitexit.envs.energy import tx_energy_j
from splitexit.envs.observation import FRAME_STATS
from splitexit.envs.splitexit_env import SplitExitEnv

# The measured throughput may be 0 (an outage of the trace); the predictors use this floor so
# that the predicted transfer time stays finite (and huge): 1 kbit/s.
MIN_UPLINK_BPS = 1e3
# Two expected accuracies closer than this count as equal (Edgent then takes the faster one).
ACCURACY_TIE_TOL = 1e-9

Triple = tuple[int, int, int]  # (split, threshold index, compression index)


def _as_batch(env: SplitExitEnv, observation: Any) -> tuple[np.ndarray, bool]:
    """Observation(s) as a float64 ``(n, obs_dim)`` array, and whether a single one was given."""
    obs = np.asarray(observation, dtype=np.float64)
    dim = env.observation_space.shape[0]
    if obs.ndim not in (1, 2) or obs.shape[-1] != dim:
        raise ValueError(
            f"observation must have shape ({dim},) or (n, {dim}), got shape {obs.shape}"
        )
    return (obs[None, :], True) if obs.ndim == 1 else (obs, False)


class Policy:
    """Base class: a stateless policy with the ``predict`` signature of stable-baselines3.

    Subclasses implement :meth:`_choose`, which maps a batch of observations to
    ``(split, threshold index, compression index)`` triples; ``predict`` encodes them with
    :meth:`SplitExitEnv.encode_action`.
    """

    name: str = "policy"
    deployable: bool = True  # False for oracles: they read state the device cannot observe
    online: bool = False  # True: call update() after every env step

    def __init__(self, env: SplitExitEnv) -> None:
        self.env = env.unwrapped

    def fit(self, env: SplitExitEnv, seeds: Sequence[int]) -> Policy:
        """Tune on the training episodes ``seeds`` of ``env`` (default: nothing to tune)."""
        return self

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
    ) -> tuple[int | np.ndarray, None]:
        """Action(s) for one observation (1-D) or a batch ``(n, obs_dim)``; state is None."""
        obs, single = _as_batch(self.env, observation)
        triples = np.asarray(self._choose(obs), dtype=np.int64).reshape(len(obs), 3)
        actions = [self.env.encode_action(int(s), int(t), int(c)) for s, t, c in triples]
        if single:
            a = actions[0]
            return (int(a) if np.ndim(a) == 0 else a), None
        return np.asarray(actions, dtype=np.int64), None

    def update(
        self,
        observation: np.ndarray,
        action: Any,
        reward: float,
        next_observation: np.ndarray,
        info: dict[str, Any],
    ) -> None:
        """Learn from one step: ``action`` taken at ``observation`` earned ``reward`` (called
        after every env step for ``online`` policies; the others ignore it)."""

    def _choose(self, obs: np.ndarray) -> np.ndarray:
        """``(n, 3)`` int array of (split, threshold index, compression index)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def run_episode_rewards(policy: Policy, env: SplitExitEnv, seeds: Sequence[int]) -> np.ndarray:
    """Mean reward per request of each episode ``env.reset(seed=seed)``, acting with
    ``policy.predict(obs, deterministic=True)`` (and ``policy.update`` after every step if
    ``policy.online``); shape ``(len(seeds),)``."""
    if not policy.deployable and policy.env is not env.unwrapped:
        raise ValueError(
            f"{policy.name!r} is an oracle: it reads the state of the env it was built with "
            "and can only be run in that env"
        )
    online = getattr(policy, "online", False)
    means = np.empty(len(seeds))
    for i, seed in enumerate(seeds):
        obs, _ = env.reset(seed=int(seed))
        total, steps, done, start = 0.0, 0, False, True
        while not done:
            action, _ = policy.predict(obs, episode_start=start, deterministic=True)
            next_obs, reward, terminated, truncated, info = env.step(action)
            if online:
                policy.update(obs, action, reward, next_obs, info)
            obs = next_obs
            total, steps, start = total + float(reward), steps + 1, False
            done = terminated or truncated
        means[i] = total / steps
    return means


# -- fixed actions -----------------------------------------------------------------------------


class FixedActionPolicy(Policy):
    """The same (split, threshold index, compression index) for every request."""

    name = "fixed"

    def __init__(self, env: SplitExitEnv, split: int, threshold_idx: int, compression_idx: int = 0):
        super().__init__(env)
        e = self.env
        if not (0 <= split < e.num_splits and 0 <= threshold_idx < e.n_t):
            raise ValueError(f"no action ({split}, {threshold_idx}) in {e.action_space}")
        if not 0 <= compression_idx < e.n_c:
            raise ValueError(f"compression_idx {compression_idx} not in 0..{e.n_c - 1}")
        self.triple: Triple = (split, threshold_idx, compression_idx)

    def _choose(self, obs: np.ndarray) -> np.ndarray:
        return np.tile(np.asarray(self.triple, dtype=np.int64), (len(obs), 1))


class LocalOnly(FixedActionPolicy):
    """Whole model on the device (split S), no early exit, nothing sent: the classic on-device
    baseline of the split-computing literature (Matsubara et al., ACM CSUR 2022, Sec. 3)."""

    name = "local-only"

    def __init__(self, env: SplitExitEnv) -> None:
        e = env.unwrapped
        super().__init__(e, e.num_splits - 1, e.n_t - 1, 0)


class EdgeOnly(FixedActionPolicy):
    """Raw input to the edge server (split 0), no early exit: full offloading, the other classic
    baseline (Matsubara et al., ACM CSUR 2022, Sec. 3; Kang et al., ASPLOS 2017)."""

    name = "edge-only"

    def __init__(self, env: SplitExitEnv) -> None:
        e = env.unwrapped
        super().__init__(e, 0, e.n_t - 1, 0)


def _check_same_grid(env: SplitExitEnv, train_env: SplitExitEnv) -> SplitExitEnv:
    train = train_env.unwrapped
    mine = (env.num_splits, env.thresholds, env.compressions)
    theirs = (train.num_splits, train.thresholds, train.compressions)
    if mine != theirs:
        raise ValueError(
            "fit needs a training env with the same (splits, thresholds, compressions), "
            f"got {theirs} for {mine}"
        )
    return train


def _best_candidate(policy_of, candidates: list, env: SplitExitEnv, seeds: Sequence[int]):
    """The candidate whose policy (``policy_of(candidate)``) has the highest mean reward on the
    episodes ``seeds`` of ``env`` (ties: the first), and every candidate's score by candidate."""
    if len(seeds) == 0:
        raise ValueError("fit needs at least one training seed")
    scores = [run_episode_rewards(policy_of(c), env, seeds).mean() for c in candidates]
    return candidates[int(np.argmax(scores))], dict(zip(candidates, scores))


class _TunedFixed(Policy):
    """A fixed action chosen in :meth:`fit` (``RuntimeError`` if predicting before ``fit``)."""

    triple: Triple | None = None

    def _candidates(self, env: SplitExitEnv) -> list[Triple]:
        raise NotImplementedError

    def fit(self, env: SplitExitEnv, seeds: Sequence[int]) -> Policy:
        """Pick the candidate with the highest mean reward on the episodes ``seeds`` of ``env``
        (ties: the first candidate); records every candidate's score in ``fit_scores_``."""
        train = _check_same_grid(self.env, env)
        self.triple, self.fit_scores_ = _best_candidate(
            lambda c: FixedActionPolicy(train, *c), self._candidates(train), env, seeds
        )
        return self

    def _choose(self, obs: np.ndarray) -> np.ndarray:
        if self.triple is None:
            raise RuntimeError(f"{self.name!r} is tuned on training episodes: call fit() first")
        return np.tile(np.asarray(self.triple, dtype=np.int64), (len(obs), 1))


class BranchyNet(_TunedFixed):
    """All on the device (split S) with one early-exit threshold on the max softmax, tuned on
    the training episodes: BranchyNet (Teerapittayanon, McDanel, Kung, ICPR 2016) and the
    Shallow-Deep Network (Kaya, Hong, Dumitras, ICML 2019) with a confidence threshold."""

    name = "branchynet"

    def _candidates(self, env: SplitExitEnv) -> list[Triple]:
        return [(env.num_splits - 1, t, 0) for t in range(env.n_t)]


class BestStatic(_TunedFixed):
    """The single (split, threshold, compression) with the highest mean reward on the training
    episodes: the best fixed configuration, the usual static baseline of adaptive offloading
    (e.g. the "fixed" policies of Matsubara et al., ACM CSUR 2022, Sec. 6)."""

    name = "best-static"

    def _candidates(self, env: SplitExitEnv) -> list[Triple]:
        return [
            (s, t, c) for s in range(env.num_splits) for t in range(env.n_t) for c in range(env.n_c)
        ]


class BranchyNetDemand(Policy):
    """BranchyNet with one threshold per demand class (SplitExit-v1): all on the device, the
    threshold of the request's class (read from its observed deadline and value), each tuned on
    the training episodes in turn, the others at the best single threshold (BranchyNet's)."""

    name = "branchynet-demand"

    def __init__(self, env: SplitExitEnv) -> None:
        super().__init__(env)
        e = self.env
        d = e.batch.world.demands
        self.keys = np.stack([d["obs_deadline"], d["obs_value"]], 1).astype(np.float32)
        self.thresholds: np.ndarray | None = None
        self._at = (e.layout.index("deadline"), e.layout.index("value") if e.layout.context else -1)

    def demand_class(self, obs: np.ndarray) -> np.ndarray:
        """The demand class of each observation, from its deadline and value features."""
        value = obs[:, self._at[1]] if self._at[1] >= 0 else np.full(len(obs), self.keys[0, 1])
        seen = np.stack([obs[:, self._at[0]], value], 1).astype(np.float32)
        return np.abs(seen[:, None, :] - self.keys[None]).sum(-1).argmin(1)

    def fit(self, env: SplitExitEnv, seeds: Sequence[int]) -> Policy:
        train = _check_same_grid(self.env, env)
        base = BranchyNet(train).fit(env, seeds).triple[1]
        self.thresholds = np.full(len(self.keys), base)
        for k in range(len(self.keys)):
            scores = []
            for t in range(train.n_t):
                self.thresholds[k] = t
                scores.append(run_episode_rewards(self._on(train), env, seeds).mean())
            self.thresholds[k] = int(np.argmax(scores))
        return self

    def _on(self, env: SplitExitEnv) -> BranchyNetDemand:
        """This policy acting in ``env`` (the same thresholds)."""
        policy = BranchyNetDemand(env)
        policy.thresholds = self.thresholds
        return policy

    def _choose(self, obs: np.ndarray) -> np.ndarray:
        if self.thresholds is None:
            raise RuntimeError(f"{self.name!r} is tuned on training episodes: call fit() first")
        e = self.env
        out = np.zeros((len(obs), 3), dtype=np.int64)
        out[:, 0] = e.num_splits - 1
        out[:, 1] = self.thresholds[self.demand_class(obs)]
        return out


# -- model-based heuristics --------------------------------------------------------------------


class _Predictor(Policy):
    """Shared latency / energy predictor from the profile tables and the observation.

    From the observation: the uplink (the most recent measured throughput, ``obs[H - 1]``,
    floored at ``MIN_UPLINK_BPS``), the queueing delay the server reported in its last
    heartbeat, and whether that heartbeat arrived (if not, offloading is predicted to take
    forever); see ``SplitExitEnv.decode_observation``.
    """

    def __init__(self, env: SplitExitEnv) -> None:
        super().__init__(env)
        e = self.env
        n_s, n_e = e.num_splits, len(e.tables.exit_blocks)
        # (S+1, E, 2) compute times (s); (S+1, C) payloads (bytes); (S+1, E) answered remotely.
        self.device_s = np.asarray(e.tables.device_time_s, dtype=np.float64)
        self.server_s = np.asarray(e.tables.server_time_s, dtype=np.float64)
        self.payload_bytes = np.asarray(e.tables.payload_bytes, dtype=np.float64)
        blocks = np.asarray(e.tables.exit_blocks)
        self.remote = blocks[None, :] > np.arange(n_s)[:, None]
        assert self.device_s.shape == (n_s, n_e, 2) and self.remote.shape == (n_s, n_e)
        self.rtt_s = float(e.config["rtt_s"])

    def uplink(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per observation: uplink estimate (bit/s), reported queue wait (s), server reachable."""
        decoded = [self.env.decode_observation(o) for o in obs]
        bps = np.array([max(d["uplink_bps"][-1], MIN_UPLINK_BPS) for d in decoded])
        wait_s = np.array([d["server_queue_s"] for d in decoded])
        return bps, wait_s, np.array([d["server_reachable"] for d in decoded])

    def latency_s(self, bps: float, wait_s: float, reachable: bool) -> np.ndarray:
        """Predicted latency (s) of every (split, compression, exit, heads): ``(S+1, C, E, 2)``."""
        tx_s = self.payload_bytes * 8.0 / bps  # (S+1, C)
        remote_s = tx_s[:, :, None, None] + self.rtt_s + wait_s + self.server_s[:, None]
        if not reachable:
            remote_s = np.full_like(remote_s, np.inf)
        return self.device_s[:, None] + np.where(self.remote[:, None, :, None], remote_s, 0.0)


class Neurosurgeon(_Predictor):
    """Neurosurgeon (Kang, Hauswald, Gao, Rovinski, Mudge, Mars, Tang, ASPLOS 2017): no early
    exits; per request, the split minimising the predicted end-to-end latency (or device energy
    with ``objective="energy"``) from per-layer profiles and the current uplink estimate.

    Latency of split ``s`` (final exit, no heads): device compute + payload / uplink + RTT +
    M/M/1 queue wait + server compute (the last three only if ``s < S``). Energy (J): device
    compute above idle + radio transmission energy (Huang et al., MobiSys 2012). The payload is
    sent with compression index ``compression_idx`` (Neurosurgeon itself does not compress).
    """

    name = "neurosurgeon"

    def __init__(
        self, env: SplitExitEnv, objective: str = "latency", compression_idx: int = 0
    ) -> None:
        super().__init__(env)
        if objective not in ("latency", "energy"):
            raise ValueError(f"objective must be 'latency' or 'energy', got {objective!r}")
        if not 0 <= compression_idx < self.env.n_c:
            raise ValueError(f"compression_idx {compression_idx} not in 0..{self.env.n_c - 1}")
        self.objective, self.compression_idx = objective, compression_idx

    def costs(self, obs: np.ndarray) -> np.ndarray:
        """Predicted latency (s) or energy (J) of every split, ``(n, S+1)``."""
        e, c, final = self.env, self.compression_idx, len(self.env.tables.exit_blocks) - 1
        out = np.empty((len(obs), e.num_splits))
        for i, (bps, wait_s, reachable) in enumerate(zip(*self.uplink(obs))):
            if self.objective == "latency":
                out[i] = self.latency_s(bps, wait_s, reachable)[:, c, final, 0]
                continue
            alpha, beta = e.radio.alpha_up_mw_per_mbps, e.radio.beta_mw
            for s in range(e.num_splits):
                energy = e.compute_above_idle_w * self.device_s[s, final, 0]
                if self.remote[s, final]:
                    payload = float(self.payload_bytes[s, c])
                    energy += tx_energy_j(alpha, beta, payload, payload * 8.0 / bps)
                    energy = energy if reachable else np.inf
                out[i, s] = energy
        return out

    def _choose(self, obs: np.ndarray) -> np.ndarray:
        split = np.argmin(self.costs(obs), axis=1)
        out = np.empty((len(obs), 3), dtype=np.int64)
        out[:, 0], out[:, 1] = split, self.env.n_t - 1
        # split 0 (raw image) and S (nothing sent) ignore the compression: use index 0 there
        last = self.env.num_splits - 1
        out[:, 2] = np.where((split == 0) | (split == last), 0, self.compression_idx)
        return out


class Edgent(_Predictor):
    """Edgent (Li, Zhou, Chen, "Edge AI: On-Demand Accelerating DNN Inference via Edge
    Computing", IEEE Trans. Wireless Commun. 2019): jointly picks the partition point and the
    early exit to maximise accuracy under a latency requirement.

    Over all (split, threshold, compression): expected accuracy ``sum_e P(exit e answers and
    is right)`` from the profile, expected latency ``sum_e P(exit e answers) * latency(s, c, e)``
    with the Neurosurgeon predictor; the most accurate action whose expected latency meets
    the request's deadline (observed: ``config["deadline_s"]``, or its demand's in v1; ties:
    the fastest), else the fastest action.
    """

    name = "edgent"

    def __init__(self, env: SplitExitEnv) -> None:
        super().__init__(env)
        t = self.env.tables
        # (S+1, C, T): expected accuracy; (S+1, C, T, E): exit distribution; over the camera
        # conditions by their shares of time (all clean without the camera)
        prior = self.env.condition_prior
        right = np.einsum("k,kscte->scte", prior, t.exit_correct_prob_by_condition)
        self.accuracy = right.sum(-1)
        self.exit_prob = np.einsum("k,kscte->scte", prior, t.exit_prob_by_condition)
        self.heads = (np.arange(self.env.n_t) < self.env.n_t - 1).astype(np.int64)
        # Actions that are equivalent to another (compression of split 0 or S) are never chosen.
        valid = np.ones_like(self.accuracy, dtype=bool)
        valid[0, 1:] = valid[-1, 1:] = False
        self.valid = valid

    def expected_latency_s(self, bps: float, wait_s: float, reachable: bool) -> np.ndarray:
        """Expected latency (s) of every (split, compression, threshold): ``(S+1, C, T)``."""
        lat = self.latency_s(bps, wait_s, reachable)  # (S+1, C, E, 2)
        per_t = np.moveaxis(lat[..., self.heads], -1, 2)  # (S+1, C, T, E)
        p = self.exit_prob
        return (p * np.where(p > 0, per_t, 0.0)).sum(-1)  # exits never taken add 0, not nan

    def _choose(self, obs: np.ndarray) -> np.ndarray:
        out = np.empty((len(obs), 3), dtype=np.int64)
        for i, (bps, wait_s, reachable) in enumerate(zip(*self.uplink(obs))):
            deadline = float(self.env.decode_observation(obs[i])["deadline_s"])  # the request's
            lat = np.where(self.valid, self.expected_latency_s(bps, wait_s, reachable), np.inf)
            ok = lat <= deadline
            if ok.any():
                best = self.accuracy[ok].max()
                ok &= self.accuracy >= best - ACCURACY_TIE_TOL
            else:
                ok = self.valid
            s, c, t = np.unravel_index(np.argmin(np.where(ok, lat, np.inf)), lat.shape)
            out[i] = (s, t, c)
        return out


# Prices on energy (multiples of the reward's energy weight, or per joule if that is 0) that
# the pacing tries, smallest first.
PRICE_GRID = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)
MIN_VARIANCE = 1e-6  # of a frame statistic within a condition (naive Bayes)
# What the planner's fit chooses from: the uplink estimate, and the share of the paced
# per-request budget it may spend (below 1 saves for later, above 1 spends ahead).
UPLINK_ESTIMATES = ("harmonic", "last")
PACING_GRID = (0.7, 0.85, 1.0, 1.2, 1.5)


def paced_choice(
    reward: np.ndarray, energy_j: np.ndarray, per_request_j: float, w_energy: float
) -> int:
    """Budget pacing (Balseiro and Gur, Management Science 2019): the flat index of the action
    of best ``reward - price * energy_j`` (``reward`` without its energy term) for the smallest
    price of ``PRICE_GRID`` (multiples of ``w_energy``, or per joule if it is 0; the first is
    ``w_energy`` itself) whose best action spends at most ``per_request_j``; the last price's
    best action if none does."""
    base = w_energy if w_energy > 0 else 1.0
    reward, energy_j = reward.reshape(-1), energy_j.reshape(-1)
    a = 0
    for price in PRICE_GRID:
        lam = w_energy if price == 1.0 else base * price
        a = int(np.argmax(reward - lam * energy_j))
        if energy_j[a] <= per_request_j:
            break
    return a


def harmonic_mean_bps(measured_bps: np.ndarray) -> float:
    """The harmonic mean of the measured throughputs, each floored at ``MIN_UPLINK_BPS``: the
    robust estimate of robustMPC (Yin, Jindal, Sekar and Sinopoli, SIGCOMM 2015), which a
    single low sample pulls down more than a high one pushes up."""
    x = np.maximum(np.asarray(measured_bps, dtype=np.float64), MIN_UPLINK_BPS)
    return float(len(x) / np.sum(1.0 / x))


class MyopicPlanner(_Predictor):
    """The myopic planner: per request, the action of best predicted reward, from the profile
    and what the device observes (in the spirit of SPINN's scheduler: Laskaridis, Venieris,
    Almeida, Leontiadis and Lane, MobiCom 2020).

    For every (split, threshold, compression) it predicts, per exit that may answer, the latency
    (device backlog + device compute + payload over the uplink estimate + RTT + the queue the
    server last reported + server compute), the device's energy (compute above idle
    + radio, Huang et al. 2012) and the chance the exit answers and is right, and scores them
    with the env's reward weights, the request's deadline and value, and the timeout. The
    exits' behaviour depends on the camera's condition, which the device does not know: the
    planner infers it from the frame statistics it observes (a Gaussian naive Bayes over the
    profile's statistics per condition, its prior the conditions' shares of time,
    ``env.condition_prior``) and averages the profile's
    per-condition exit tables over that belief.

    The uplink estimate is the harmonic mean of the throughputs measured over the observed
    frame periods (:func:`harmonic_mean_bps`, robustMPC's), or with ``uplink_estimate="last"``
    the most recent one. With a battery budget it paces its spending (:func:`paced_choice`):
    each request gets ``pacing`` times the energy left over the requests left. :meth:`fit`
    picks the estimate and the pacing from ``UPLINK_ESTIMATES`` x ``PACING_GRID`` by the mean
    reward on the training episodes.
    """

    name = "myopic-planner"

    def __init__(
        self, env: SplitExitEnv, uplink_estimate: str = "harmonic", pacing: float = 1.0
    ) -> None:
        super().__init__(env)
        if uplink_estimate not in UPLINK_ESTIMATES:
            raise ValueError(
                f"uplink_estimate must be one of {UPLINK_ESTIMATES}, got {uplink_estimate!r}"
            )
        if not (isinstance(pacing, (int, float)) and math.isfinite(pacing) and pacing > 0):
            raise ValueError(f"pacing must be a finite number > 0, got {pacing!r}")
        self.uplink_estimate, self.pacing = uplink_estimate, float(pacing)
        e = self.env
        t = e.tables
        self.layout = e.layout
        # (K, S+1, C, T, E): per condition, P(exit e answers) and P(it answers and is right)
        self.exit_prob = np.asarray(t.exit_prob_by_condition, dtype=np.float64)
        self.exit_right = np.asarray(t.exit_correct_prob_by_condition, dtype=np.float64)
        k, n = len(t.conditions), t.num_samples
        self.stats_known = self.layout.context and t.frame_stats.shape[1] == len(FRAME_STATS)
        if self.stats_known:
            stats = np.asarray(t.frame_stats, dtype=np.float64).reshape(k, n, -1)
            self.stats_mean = stats.mean(1)
            self.stats_var = np.maximum(stats.var(1), MIN_VARIANCE)
        self.w = dict(e.weights)
        self.budget_j = e.config["battery_j"]
        self.timeout_s = e.timeout_s
        # (S+1, C, E, 2) device energy of compute, and the payload's radio energy given bps
        self.compute_j = e.compute_above_idle_w * self.device_s[:, None]
        self.heads = (np.arange(e.n_t) < e.n_t - 1).astype(np.int64)
        valid = np.ones((e.num_splits, e.n_c, e.n_t), dtype=bool)
        valid[0, 1:] = valid[-1, 1:] = False  # equivalent to compression 0 there
        self.valid = valid

    def fit(self, env: SplitExitEnv, seeds: Sequence[int]) -> Policy:
        """Pick the uplink estimate and the pacing (only the estimate without a battery
        budget) of the highest mean reward on the episodes ``seeds`` of ``env`` (ties: the
        first); every candidate's score in ``fit_scores_``."""
        train = _check_same_grid(self.env, env)
        pacings = PACING_GRID if self.budget_j is not None and self.layout.context else (1.0,)
        candidates = [(u, k) for u in UPLINK_ESTIMATES for k in pacings]
        best, self.fit_scores_ = _best_candidate(
            lambda c: MyopicPlanner(train, *c), candidates, env, seeds
        )
        self.uplink_estimate, self.pacing = best
        return self

    def belief(self, obs: np.ndarray) -> np.ndarray:
        """P(condition | the frame's statistics), ``(K,)``; the prior without them."""
        k = self.exit_prob.shape[0]
        prior = self.env.condition_prior
        if not self.stats_known or k == 1:
            return prior
        x = np.array([obs[self.layout.index(name)] for name in FRAME_STATS], dtype=np.float64)
        log_lik = -0.5 * (((x - self.stats_mean) ** 2) / self.stats_var).sum(1)
        log_lik -= 0.5 * np.log(self.stats_var).sum(1)
        with np.errstate(divide="ignore"):
            log_post = log_lik + np.log(prior)
        p = np.exp(log_post - log_post.max())
        return p / p.sum()

    def scores(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted reward (without the energy term) and energy (J) of every action,
        ``(S+1, C, T)`` each, for one observation."""
        e, w = self.env, self.w
        d = e.decode_observation(obs)
        if self.uplink_estimate == "harmonic":
            bps = harmonic_mean_bps(d["uplink_bps"])
        else:
            bps = max(float(d["uplink_bps"][-1]), MIN_UPLINK_BPS)
        latency = d["device_backlog_s"] + self.latency_s(
            bps, d["server_queue_s"], d["server_reachable"]
        )  # (S+1, C, E, 2)
        radio_j = np.array(
            [
                [
                    tx_energy_j(e.radio.alpha_up_mw_per_mbps, e.radio.beta_mw, p, p * 8.0 / bps)
                    for p in row
                ]
                for row in self.payload_bytes
            ]
        )  # (S+1, C)
        energy = self.compute_j + np.where(
            self.remote[:, None, :, None], radio_j[:, :, None, None], 0.0
        )  # (S+1, C, E, 2)
        b = self.belief(obs)
        p_exit = np.einsum("k,kscte->scte", b, self.exit_prob)  # (S+1, C, T, E)
        p_right = np.einsum("k,kscte->scte", b, self.exit_right)
        lat = latency[:, :, :, self.heads].transpose(0, 1, 3, 2)  # (S+1, C, T, E)
        en = energy[:, :, :, self.heads].transpose(0, 1, 3, 2)
        in_time = lat <= self.timeout_s
        value = float(d.get("value", 1.0))
        deadline_s = float(d["deadline_s"])
        per_exit = (
            w["accuracy"] * value * p_right * in_time
            - p_exit * w["latency"] * np.minimum(lat, self.timeout_s)
            - p_exit * w["deadline_miss"] * (lat > deadline_s)
        )
        return per_exit.sum(-1), (p_exit * en).sum(-1)

    def _choose(self, obs: np.ndarray) -> np.ndarray:
        e = self.env
        out = np.empty((len(obs), 3), dtype=np.int64)
        for i, o in enumerate(obs):
            reward, energy = self.scores(o)
            reward = np.where(self.valid, reward, -np.inf)
            per_request_j = np.inf
            if self.budget_j is not None and self.layout.context:
                d = e.decode_observation(o)
                left = max(float(d["requests_left_fraction"]) * e.horizon, 1.0)
                per_request_j = self.pacing * float(d["battery_fraction"]) * self.budget_j / left
            a = paced_choice(reward, energy, per_request_j, self.w["energy"])
            s, c, t = np.unravel_index(a, reward.shape)
            out[i] = (s, t, c)
        return out


# -- online learners ---------------------------------------------------------------------------

# UCB1's exploration constant in SplitEE (Bajpai et al. 2023; code Div290/SplitEE, splitee.py:
# ``best_arm_finder(..., c=1)``), on its rewards (confidence minus costs, about [-1.3, 0.9]).
SPLITEE_UCB_C = 1.0
# Exploration constants ``fit`` chooses from, in reward units (the env's reward is used as it
# is): the paper's c = 1 and smaller, by factors of about 3.
UCB_C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
# LinUCB's alpha (Li et al., WWW 2010): their bound takes 1 + sqrt(ln(2 / delta) / 2), at least
# 1; in practice it is tuned. Before fit: 1; fit picks from the grid (rewards in reward units).
LINUCB_ALPHA = 1.0
LINUCB_ALPHA_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)


class _OnlineBandit(Policy):
    """Base of the online bandits: one arm per valid flat action, learning from ``update``.

    Arms: every flat action but the compressions of split 0 and S, which change nothing (the
    rule of :meth:`SplitExitEnv.action_masks`). While the observation says that the server's
    last heartbeat is missing, only the all-on-device arms are played (``action_masks`` again,
    decided from what the device observes). Ties go to the arm first in a permutation drawn
    from ``np.random.default_rng(seed)``. ``predict`` reads the state and never changes it.

    ``fit(env, seeds)`` runs the training episodes once per value of the exploration constant
    in ``grid`` (only ``param`` if one was given), each time learning online from a fresh
    state, keeps the value with the best mean reward (ties: the first) and the state learned
    with it (a warm start), and records every value's score in ``fit_scores_``.
    """

    online = True
    grid: tuple[float, ...] = ()
    default_param: float = 1.0

    def __init__(self, env: SplitExitEnv, param: float | None = None, seed: int = 0) -> None:
        super().__init__(env)
        e = self.env
        self.seed = seed
        self.tune = param is None
        self.param = self.default_param if param is None else float(param)
        shape = (e.num_splits, e.n_t, e.n_c)
        valid = np.ones(shape, dtype=bool)
        valid[0, :, 1:] = valid[-1, :, 1:] = False
        rng = np.random.default_rng(seed)
        self.arm_actions = rng.permutation(np.flatnonzero(valid.reshape(-1)))  # tie-break order
        self.arm_of = np.full(e.n_actions, -1, dtype=np.int64)  # flat action -> arm (-1: none)
        self.arm_of[self.arm_actions] = np.arange(len(self.arm_actions))
        self.arm_triples = np.stack(np.unravel_index(self.arm_actions, shape), axis=1)
        self.local_arms = self.arm_triples[:, 0] == e.num_splits - 1
        try:
            self._reachable_idx: int | None = e.layout.index("server_reachable")
        except (AttributeError, ValueError):
            self._reachable_idx = None
        self.reset_learning()

    @property
    def n_arms(self) -> int:
        return len(self.arm_actions)

    def flat(self, split: int, threshold_idx: int, compression_idx: int) -> int:
        """Flat action index of a triple (``a = (s * T + t) * C + c``)."""
        return (split * self.env.n_t + threshold_idx) * self.env.n_c + compression_idx

    def arm(self, action: Any) -> int:
        """The arm of an action (the compression of split 0 or S counts as the first one)."""
        s, t, c = self.env.decode_action(action)
        if s in (0, self.env.num_splits - 1):
            c = 0
        return int(self.arm_of[self.flat(s, t, c)])

    # state: implemented by the subclasses
    def reset_learning(self) -> None:
        """Forget everything learned."""
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _set_state(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value.copy() if isinstance(value, np.ndarray) else value)

    def _scores(self, obs: np.ndarray) -> np.ndarray:
        """``(n, n_arms)`` index of every arm for each observation (float64 ``(n, obs_dim)``)."""
        raise NotImplementedError

    def _learn(self, arm: int, observation: np.ndarray, reward: float) -> None:
        raise NotImplementedError

    def _choose(self, obs: np.ndarray) -> np.ndarray:
        scores = self._scores(obs)
        if self._reachable_idx is not None:
            scores[np.ix_(obs[:, self._reachable_idx] <= 0.5, ~self.local_arms)] = -np.inf
        return self.arm_triples[np.argmax(scores, axis=1)]

    def update(
        self,
        observation: np.ndarray,
        action: Any,
        reward: float,
        next_observation: np.ndarray,
        info: dict[str, Any],
    ) -> None:
        """Credit the arm of ``action`` played at ``observation`` with what the device can
        observe of ``reward`` (:meth:`observable_reward`)."""
        obs = np.asarray(observation, dtype=np.float64)
        self._learn(self.arm(action), obs, self.observable_reward(action, reward, info))

    def observable_reward(self, action: Any, reward: float, info: dict[str, Any]) -> float:
        """``reward`` with its accuracy part replaced by what the device can know without the
        label: the answer's confidence (``info["confidence"]``, v1; the exits' max softmax is
        calibrated to within about 0.05), else the profile's chance that the answering exit is
        right for this action (pooled over the profile's frames), times the accuracy weight and
        the request's value; nothing for a request that timed out. The latency, energy and
        deadline parts are the device's own measurements. An env whose info has no reward parts
        is taken at its reward."""
        if "rewards" not in info or info.get("timed_out", False):
            return float(reward)
        e = self.env
        confidence = info.get("confidence")
        if confidence is None:
            s, t, c = e.decode_action(action)
            k = e.tables.exit_blocks.index(info["exit_block"])
            p = e.tables.exit_prob[s, c, t, k]
            confidence = e.tables.exit_correct_prob[s, c, t, k] / p if p > 0 else 0.0
        accuracy = e.weights["accuracy"] * float(info.get("value", 1.0)) * float(confidence)
        return float(reward) - float(info["rewards"]["accuracy"]) + accuracy

    def fit(self, env: SplitExitEnv, seeds: Sequence[int]) -> Policy:
        """Tune the exploration constant and warm up on the training episodes ``seeds``."""
        _check_same_grid(self.env, env)
        if len(seeds) == 0:
            raise ValueError("fit needs at least one training seed")
        values = self.grid if self.tune else (self.param,)
        scores, states = [], []
        for value in values:
            self.param = value
            self.reset_learning()
            scores.append(float(run_episode_rewards(self, env, seeds).mean()))
            states.append(self._state())
        best = int(np.argmax(scores))
        self.param = values[best]
        self._set_state(states[best])
        self.fit_scores_ = dict(zip(values, scores))
        return self


class SplitEE(_OnlineBandit):
    """SplitEE (Bajpai et al., "SplitEE: Early Exit in Deep Neural Networks with Split
    Computing", 2023; code Div290/SplitEE): UCB1 (Auer, Cesa-Bianchi, Fischer, Mach. Learn.
    2002) over the arms, context-free, learning online.

    The paper's arms are the layer where the head ends, with one fixed threshold; here they are
    every (split, threshold, compression), so that the best static action is among them. Play
    ``argmax mean_i + c sqrt(ln t / n_i)`` (each arm once first), ``t`` the requests learned
    from so far, ``n_i`` the rewards credited to arm ``i``. Reward: the env's own reward (the
    paper's is confidence minus costs, a proxy for the same trade-off), not rescaled: it lies in
    ``[-(w_latency * timeout + w_energy * E_max + w_deadline_miss), w_accuracy]``, about
    ``[-2.3, 1]`` by default, near the paper's span (about ``[-1.3, 0.9]``), so ``c`` means
    about what it means there (UCB1 is shift-invariant: only the scale matters); ``fit`` tunes
    it over ``UCB_C_GRID`` (the paper's ``c = 1`` included) unless ``c`` is given.
    """

    name = "splitee"
    grid = UCB_C_GRID
    default_param = SPLITEE_UCB_C

    def __init__(self, env: SplitExitEnv, c: float | None = None, seed: int = 0) -> None:
        super().__init__(env, c, seed)

    @property
    def c(self) -> float:
        return self.param

    def reset_learning(self) -> None:
        self.counts = np.zeros(self.n_arms)
        self.sums = np.zeros(self.n_arms)
        self.rounds = 0

    def _state(self) -> dict[str, Any]:
        return {"counts": self.counts.copy(), "sums": self.sums.copy(), "rounds": self.rounds}

    def _scores(self, obs: np.ndarray) -> np.ndarray:
        n = self.counts
        with np.errstate(divide="ignore", invalid="ignore"):
            ucb = self.sums / n + self.param * np.sqrt(np.log(max(self.rounds, 1)) / n)
        return np.tile(np.where(n > 0, ucb, np.inf), (len(obs), 1))

    def _learn(self, arm: int, observation: np.ndarray, reward: float) -> None:
        self.counts[arm] += 1
        self.sums[arm] += reward
        self.rounds += 1


class SplitEES(SplitEE):
    """SplitEE-S (Bajpai et al. 2023, ``splitee_s.py``): SplitEE that also credits the arms
    whose outcome for this request the run revealed.

    The paper credits every shallower arm ``j < i`` on every request with the reward computed
    from the confidences seen. Here the shallower arms of a played (split ``s``, threshold
    ``t``, compression ``c``) are the lower thresholds ``t' < t`` at the same ``s`` and ``c``:
    the exits they would consult all ran, so their path is known. This needs
    ``info["exit_confidences"]`` (the max-softmax confidence of every exit that ran, -1 for the
    others); SplitExit-v0 has none, and then this is SplitEE. For a request that ran the exit
    heads (``t`` below the top) and did not time out, answered by exit ``k``, each ``t'`` is
    credited with:

    * the played reward if exit ``k`` answers under ``t'`` too (no earlier exit reaches ``t'``);
    * else, with ``j`` the first exit reaching ``t'``: ``w_accuracy * confidence_j`` (the
      paper's reward uses the confidence; whether exit ``j`` is right is not observed; the
      shipped model is calibrated within about 0.05) less the exact costs: on the device,
      latency = the observed device wait + the device time up to exit ``j`` and energy = compute
      power x that time (``tables.device_time_s``); on the server, the observed latency less
      the server time of the blocks after exit ``j`` (``tables.server_time_s``) and the
      observed energy; deadline missed if the latency exceeds the observed deadline.

    Credits add to ``n_i`` and the mean, not to ``t`` of ``ln t``. Only the lower thresholds,
    on every such request: an arm credited only when its outcome happens to be determined
    (say a higher threshold when the answering exit's confidence also reaches it, or another
    split when the answer came from the device) would see a selected sample of its rewards
    (the confident, cheap ones) and its mean would be biased up.
    """

    name = "splitee-s"

    def __init__(self, env: SplitExitEnv, c: float | None = None, seed: int = 0) -> None:
        super().__init__(env, c, seed)
        e, tables = self.env, self.env.tables
        self.exit_blocks = tuple(int(b) for b in tables.exit_blocks)
        self.device_s = np.asarray(tables.device_time_s, dtype=np.float64)  # (S+1, E, heads)
        self.server_s = np.asarray(tables.server_time_s, dtype=np.float64)
        self.thresholds32 = np.asarray(e.thresholds[:-1], dtype=np.float32)  # as the profile

    def revealed(
        self,
        split: int,
        threshold_idx: int,
        compression_idx: int,
        reward: float,
        observation: np.ndarray,
        info: dict[str, Any],
    ) -> list[tuple[int, float]]:
        """``(flat action, reward)`` of the lower thresholds at the played split and
        compression, for this request (empty where nothing is revealed)."""
        conf = info.get("exit_confidences")
        if conf is None or threshold_idx in (0, self.env.n_t - 1) or info["timed_out"]:
            return []
        k = self.exit_blocks.index(int(info["exit_block"]))
        ran = np.asarray(conf, dtype=np.float32)[: k + 1]
        if not (ran >= 0).all() or (ran[:k] >= self.thresholds32[threshold_idx]).any():
            return []  # the confidences do not explain the played path
        out = []
        for t in range(threshold_idx):
            fires = np.flatnonzero(ran[:k] >= self.thresholds32[t])
            a = self.flat(split, t, compression_idx)
            if self.arm_of[a] < 0:
                continue
            if len(fires) == 0:
                out.append((a, float(reward)))  # exit k answers under t as well
            else:
                j = int(fires[0])
                out.append((a, self._reward_at(split, j, k, float(ran[j]), observation, info)))
        return out

    def _reward_at(
        self,
        split: int,
        j: int,
        k: int,
        confidence: float,
        observation: np.ndarray,
        info: dict[str, Any],
    ) -> float:
        """Reward had exit ``j`` answered (exit ``k`` did), its accuracy by its confidence."""
        e = self.env
        if self.exit_blocks[j] <= split:  # on the device: nothing sent
            device_s = self.device_s[split, j, 1]
            done_s = float(info["device_wait_s"]) + device_s
            latency_s, timed_out = min(done_s, e.timeout_s), done_s > e.timeout_s
            energy_j = e.compute_above_idle_w * device_s
        else:  # on the server: its later blocks and heads are not run
            saved_s = self.server_s[split, k, 1] - self.server_s[split, j, 1]
            latency_s, timed_out = float(info["latency_s"]) - saved_s, False
            energy_j = float(info["energy_j"])
        deadline_s = float(e.decode_observation(observation)["deadline_s"])
        missed = timed_out or latency_s > deadline_s
        w = e.weights
        value = float(info.get("value", 1.0))  # what a right answer is worth (v1: per request)
        return (
            w["accuracy"] * value * confidence * (not timed_out)
            - w["latency"] * latency_s
            - w["energy"] * energy_j
            - w["deadline_miss"] * missed
        )

    def update(
        self,
        observation: np.ndarray,
        action: Any,
        reward: float,
        next_observation: np.ndarray,
        info: dict[str, Any],
    ) -> None:
        """SplitEE's update, then credit every arm :meth:`revealed` names."""
        super().update(observation, action, reward, next_observation, info)
        s, t, c = self.env.decode_action(action)
        played = self.observable_reward(action, reward, info)
        for a, r in self.revealed(s, t, c, played, observation, info):
            arm = self.arm_of[a]
            self.counts[arm] += 1
            self.sums[arm] += r


class LinUCB(_OnlineBandit):
    """LinUCB with disjoint linear models (Li, Chu, Langford, Schapire, "A Contextual-Bandit
    Approach to Personalized News Article Recommendation", WWW 2010, Algorithm 1).

    Context ``x`` = the observation and a constant 1 (``d = obs_dim + 1``). Per arm ``a``:
    ``A_a = I``, ``b_a = 0``, ``theta_a = A_a^-1 b_a``; play ``argmax theta_a . x + alpha
    sqrt(x^T A_a^-1 x)``, then ``A_a += x x^T``, ``b_a += r x``. ``A_a^-1`` is kept by
    Sherman-Morrison updates, so a step costs ``O(n_arms d^2)``. ``fit`` tunes ``alpha`` over
    ``LINUCB_ALPHA_GRID`` unless ``alpha`` is given.

    ``r`` is the env's reward less its upper bound ``w_accuracy`` (a right answer at no cost),
    so ``r <= 0`` and the prior ``theta_a = 0`` is optimistic, as for the paper's click rewards
    (0 or 1, mostly 0). On the raw reward (about 0.8 for good actions) an untried arm would
    score ``alpha ||x||_{A^-1}``, below the tried ones for every alpha below about 0.5, and
    most arms would never be tried.
    """

    name = "linucb"
    grid = LINUCB_ALPHA_GRID
    default_param = LINUCB_ALPHA

    def __init__(self, env: SplitExitEnv, alpha: float | None = None, seed: int = 0) -> None:
        super().__init__(env, alpha, seed)
        weights = getattr(self.env, "weights", None) or {}
        # the reward's upper bound: a right answer of the most valued demand, at no cost
        batch = getattr(self.env, "batch", None)
        top = float(batch.world.demands["value"].max()) if batch is not None else 1.0
        self.reward_max = float(weights.get("accuracy", 0.0)) * top

    @property
    def alpha(self) -> float:
        return self.param

    def reset_learning(self) -> None:
        d = self.env.observation_space.shape[0] + 1
        self.a_inv = np.tile(np.eye(d), (self.n_arms, 1, 1))  # (K, d, d)
        self.b = np.zeros((self.n_arms, d))
        self.theta = np.zeros((self.n_arms, d))

    def _state(self) -> dict[str, Any]:
        return {"a_inv": self.a_inv.copy(), "b": self.b.copy(), "theta": self.theta.copy()}

    @staticmethod
    def _context(obs: np.ndarray) -> np.ndarray:
        return np.concatenate([obs, np.ones((len(obs), 1))], axis=1)

    def _scores(self, obs: np.ndarray) -> np.ndarray:
        x = self._context(obs)  # (n, d)
        a_inv_x = self.a_inv @ x.T  # (K, d, n)
        var = np.einsum("kdn,nd->nk", a_inv_x, x)
        mean = x @ self.theta.T + self.reward_max
        return mean + self.param * np.sqrt(np.maximum(var, 0.0))

    def _learn(self, arm: int, observation: np.ndarray, reward: float) -> None:
        x = self._context(observation[None, :])[0]
        a_inv = self.a_inv[arm]
        a_inv_x = a_inv @ x
        a_inv -= np.outer(a_inv_x, a_inv_x) / (1.0 + x @ a_inv_x)
        self.b[arm] += (reward - self.reward_max) * x
        self.theta[arm] = a_inv @ self.b[arm]


# -- random and oracles ------------------------------------------------------------------------


class RandomPolicy(Policy):
    """Uniform over the whole action space, from ``np.random.default_rng(seed)``: the floor of
    every comparison. The same seed gives the same sequence of actions."""

    name = "random"

    def __init__(self, env: SplitExitEnv, seed: int = 0) -> None:
        super().__init__(env)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def _choose(self, obs: np.ndarray) -> np.ndarray:
        e = self.env
        return self.rng.integers(0, [e.num_splits, e.n_t, e.n_c], size=(len(obs), 3))


class _Oracle(Policy):
    """Argmax of :meth:`SplitExitEnv.expected_rewards` for the env's current request; ignores
    the observation (a batch gets the same action for every row). With a battery budget it
    paces its spending as the planner does (:func:`paced_choice`), from the true energy left:
    greedy on a budget would spend it on the first requests."""

    deployable = False
    hindsight = False

    def _choose(self, obs: np.ndarray) -> np.ndarray:
        e = self.env
        if e.config["battery_j"] is None:
            a = int(np.argmax(e.expected_rewards(hindsight=self.hindsight)))
        else:
            values, energy_j = e.expected_outcomes(hindsight=self.hindsight)
            w_energy = e.weights["energy"]
            per_request_j = e.energy_left_j / max(e.requests_left, 1)
            a = paced_choice(values + w_energy * energy_j, energy_j, per_request_j, w_energy)
        s, t, c = np.unravel_index(a, (e.num_splits, e.n_t, e.n_c))
        return np.tile(np.array([s, t, c], dtype=np.int64), (len(obs), 1))


class ChannelOracle(_Oracle):
    """Knows the true uplink capacity, server queue and device backlog (not the sample): the
    per-request optimum in expectation over the sample's exits; greedy, not planning ahead."""

    name = "channel-oracle"


class HindsightOracle(_Oracle):
    """Also knows the current sample's own exits (which exit answers, whether it is right): an
    upper bound on any policy's per-request reward."""

    name = "hindsight-oracle"
    hindsight = True


BASELINES: dict[str, type[Policy]] = {
    cls.name: cls
    for cls in (
        LocalOnly,
        EdgeOnly,
        Neurosurgeon,
        BranchyNet,
        Edgent,
        MyopicPlanner,
        BestStatic,
        BranchyNetDemand,
        RandomPolicy,
        SplitEE,
        SplitEES,
        LinUCB,
        ChannelOracle,
        HindsightOracle,
    )
}


def make_policy(name: str, env: SplitExitEnv, **kwargs: Any) -> Policy:
    """The baseline or oracle called ``name`` (a key of ``BASELINES``) acting in ``env``."""
    if name not in BASELINES:
        raise ValueError(f"unknown policy {name!r}; known policies: {sorted(BASELINES)}")
    return BASELINES[name](env, **kwargs)
