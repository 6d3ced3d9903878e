"""Online-learning baselines (SplitEE, SplitEE-S, LinUCB) and the ``update`` hook."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from splitexit.agents.baselines import (
    LINUCB_ALPHA_GRID,
    UCB_C_GRID,
    LinUCB,
    Policy,
    SplitEE,
    SplitEES,
    make_policy,
    run_episode_rewards,
)
from splitexit.agents.evaluate import run_episodes
from splitexit.envs import SplitExitEnv

HORIZON = 30
ONLINE = ("splitee", "splitee-s", "linucb")


class TwoContextEnv(gym.Env):
    """A tiny env with the interface the bandits use: 2 splits x 2 thresholds = 4 actions; the
    observation is one bit drawn per request; reward ``means[bit, action]`` + N(0, 0.1)."""

    num_splits, n_t, n_c, n_actions = 2, 2, 1, 4
    thresholds = (0.5, math.inf)
    compressions = ("int8",)

    def __init__(self, means, horizon: int = 50) -> None:
        self.means = np.asarray(means, dtype=np.float64)
        self.horizon = horizon
        self.observation_space = spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Discrete(self.n_actions)

    def encode_action(self, split: int, threshold_idx: int, compression_idx: int = 0) -> int:
        return (split * self.n_t + threshold_idx) * self.n_c + compression_idx

    def decode_action(self, action) -> tuple[int, int, int]:
        a = int(action)
        return a // self.n_t, a % self.n_t, 0

    def _observe(self) -> np.ndarray:
        self.bit = int(self.np_random.integers(2))
        return np.array([self.bit], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action):
        reward = self.means[self.bit, int(action)] + self.np_random.normal(0.0, 0.1)
        self.t += 1
        return self._observe(), float(reward), False, self.t >= self.horizon, {}


class ExitConfidences(gym.Wrapper):
    """SplitExitEnv with ``info["exit_confidences"]`` as SplitExit-v1 will give it: the
    confidence of every exit that ran for the request (from the profile), -1 for the others."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        e = self.env.unwrapped
        s, t, c = e.decode_action(action)
        profile = e.profile
        conf = np.full(len(e.tables.exit_blocks), -1.0, np.float32)
        if not info["timed_out"]:
            k = e.tables.exit_blocks.index(info["exit_block"])
            row = profile.confidence[
                info["sample_index"], s, profile.compressions.index(e.compressions[c])
            ]
            ran = slice(0, k + 1) if t < e.n_t - 1 else slice(k, k + 1)  # heads off: final only
            conf[ran] = row[ran]
        return obs, reward, terminated, truncated, {**info, "exit_confidences": conf}


@pytest.fixture(scope="module")
def env():
    return SplitExitEnv(horizon=HORIZON)


@pytest.fixture(scope="module")
def train_env():
    return SplitExitEnv(horizon=HORIZON)


def state(policy) -> dict:
    return {k: np.copy(v) for k, v in policy._state().items()}


def assert_same_state(a, b) -> None:
    sa, sb = state(a), state(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)


# -- learning ----------------------------------------------------------------------------------


def test_splitee_converges_to_the_clearly_best_arm():
    env = TwoContextEnv([[0.5, 0.5, 0.9, 0.5]] * 2)
    policy = SplitEE(env, c=0.3).fit(env, range(4))  # 200 requests
    best = policy.arm_of[2]
    assert np.argmax(policy.counts) == best
    assert policy.counts[best] > 0.8 * policy.counts.sum()
    assert policy.predict(np.zeros(1, np.float32))[0] == 2
    before = policy.counts[best]
    run_episode_rewards(policy, env, [99])  # keeps learning: the best arm gets ~all new plays
    assert policy.counts[best] - before >= 0.9 * env.horizon


def test_splitee_tunes_c_on_the_grid():
    env = TwoContextEnv([[0.5, 0.5, 0.9, 0.5]] * 2, horizon=20)
    policy = make_policy("splitee", env).fit(env, range(2))
    assert tuple(policy.fit_scores_) == UCB_C_GRID
    assert policy.c == max(policy.fit_scores_, key=policy.fit_scores_.get)


def test_linucb_learns_a_context_dependent_choice():
    # bit 0: action 1 is best; bit 1: action 3 is best; no single action is good for both
    env = TwoContextEnv([[0.3, 0.9, 0.3, 0.3], [0.3, 0.3, 0.3, 0.9]])
    policy = make_policy("linucb", env).fit(env, range(6))
    assert tuple(policy.fit_scores_) == LINUCB_ALPHA_GRID
    assert policy.alpha == max(policy.fit_scores_, key=policy.fit_scores_.get)
    assert policy.predict(np.array([0.0], np.float32))[0] == 1
    assert policy.predict(np.array([1.0], np.float32))[0] == 3
    actions, _ = policy.predict(np.array([[0.0], [1.0]], np.float32))
    np.testing.assert_array_equal(actions, [1, 3])
    # the context-free bandit cannot: it plays one action for both bits
    splitee = make_policy("splitee", env).fit(env, range(6))
    assert max(splitee.fit_scores_.values()) < max(policy.fit_scores_.values())


def test_linucb_sherman_morrison_keeps_the_inverse():
    env = TwoContextEnv([[0.3, 0.9, 0.3, 0.3], [0.3, 0.3, 0.3, 0.9]])
    policy = LinUCB(env, alpha=0.1).fit(env, range(3))
    arm = int(np.argmax(policy.b[:, -1] != 0))
    a_inv = policy.a_inv[arm]
    a = np.linalg.inv(a_inv)
    np.testing.assert_allclose(a @ a_inv, np.eye(len(a)), atol=1e-9)
    np.testing.assert_allclose(policy.theta[arm], np.linalg.solve(a, policy.b[arm]), atol=1e-9)


def test_linucb_tries_every_arm_even_with_a_small_alpha(env, train_env):
    # the rewards are learned less their upper bound, so an untried arm's prior is optimistic
    policy = LinUCB(env, alpha=0.01).fit(train_env, range(2))  # 60 requests, 48 arms
    assert policy.reward_max == env.weights["accuracy"]
    assert (np.abs(policy.b).sum(axis=1) > 0).all()


def test_predict_does_not_learn(env, train_env):
    policy = make_policy("linucb", env).fit(train_env, [0])
    before = state(policy)
    batch = np.stack([env.observation_space.sample() for _ in range(8)])
    policy.predict(batch)
    policy.predict(batch[0])
    for key, value in state(policy).items():
        np.testing.assert_array_equal(value, before[key])


@pytest.mark.parametrize("name", ONLINE)
def test_without_a_heartbeat_only_local_arms_are_played(env, name):
    policy = make_policy(name, env)  # fresh: every arm ties, the first in the order wins
    obs, _ = env.reset(seed=0)
    obs = obs.copy()
    local = env.num_splits - 1
    assert env.decode_action(policy.arm_actions[0])[0] != local  # (seed 0's order)
    assert policy.predict(obs)[0] == policy.arm_actions[0]
    obs[env.layout.index("server_reachable")] = 0.0
    first_local = next(a for a in policy.arm_actions if env.decode_action(int(a))[0] == local)
    assert policy.predict(obs)[0] == first_local


# -- determinism -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ONLINE)
def test_online_baselines_are_deterministic_for_a_seed(env, train_env, name):
    first = make_policy(name, env, seed=3).fit(train_env, range(2))
    second = make_policy(name, env, seed=3).fit(SplitExitEnv(horizon=HORIZON), range(2))
    assert first.fit_scores_ == second.fit_scores_
    assert_same_state(first, second)
    np.testing.assert_array_equal(
        run_episode_rewards(first, env, range(3)), run_episode_rewards(second, env, range(3))
    )
    assert_same_state(first, second)  # learned the same on the way
    other = make_policy(name, env, seed=4)
    assert not np.array_equal(other.arm_actions, first.arm_actions)  # another tie-break order


# -- the hook ----------------------------------------------------------------------------------


class Recorder(Policy):
    """An online policy that plays a fixed cycle of actions and records every call."""

    name = "recorder"
    online = True

    def __init__(self, env) -> None:
        super().__init__(env)
        self.predicted: list[tuple[np.ndarray, int]] = []
        self.updates: list[tuple] = []

    def _choose(self, obs: np.ndarray) -> np.ndarray:
        a = (len(self.predicted) * 7) % self.env.n_actions
        self.predicted.append((obs[0].copy(), a))
        return np.array([self.env.decode_action(a)])

    def update(self, observation, action, reward, next_observation, info) -> None:
        self.updates.append((observation.copy(), action, reward, next_observation.copy(), info))


@pytest.mark.parametrize("runner", ["run_episodes", "run_episode_rewards"])
def test_update_is_called_once_per_step_with_that_step(env, runner):
    policy = Recorder(env)
    seeds = [5, 6]
    if runner == "run_episodes":
        episodes = run_episodes(policy, env, seeds)
        rewards = [e["reward"] for e in episodes]
    else:
        rewards = run_episode_rewards(policy, env, seeds).tolist()
    assert len(policy.updates) == len(policy.predicted) == HORIZON * len(seeds)
    # replay the same actions by hand: the hook saw exactly each step
    k = 0
    for seed, mean_reward in zip(seeds, rewards):
        obs, _ = env.reset(seed=seed)
        total = 0.0
        for _ in range(HORIZON):
            seen_obs, action, reward, next_obs, info = policy.updates[k]
            np.testing.assert_array_equal(seen_obs, obs)
            np.testing.assert_array_equal(policy.predicted[k][0], obs)
            assert action == policy.predicted[k][1]
            obs, r, _, _, step_info = env.step(action)
            assert reward == r and info == step_info
            np.testing.assert_array_equal(next_obs, obs)
            total += r
            k += 1
        assert total / HORIZON == pytest.approx(mean_reward)


def test_offline_policies_get_no_update(env):
    policy = Recorder(env)
    policy.online = False
    run_episodes(policy, env, [0])
    run_episode_rewards(policy, env, [0])
    assert policy.updates == [] and len(policy.predicted) == 2 * HORIZON


# -- SplitEE-S ---------------------------------------------------------------------------------


def test_splitee_s_is_splitee_without_exit_confidences(env, train_env):
    plain = SplitEE(env, c=0.03).fit(train_env, range(2))
    side = SplitEES(env, c=0.03).fit(train_env, range(2))
    assert plain.fit_scores_ == side.fit_scores_
    assert_same_state(plain, side)
    assert [e["reward"] for e in run_episodes(plain, env, range(2))] == [
        e["reward"] for e in run_episodes(side, env, range(2))
    ]


def test_splitee_s_credits_the_lower_thresholds_with_their_costs(env):
    """SplitEE-S credits exactly the lower thresholds at the played split; each credit is the
    reward that arm would have earned (the hindsight oracle's, used here only to check), but
    for an earlier exit's accuracy, which it takes from that exit's confidence."""
    wrapped = ExitConfidences(env)
    policy = SplitEES(env, c=0.1)
    rng = np.random.default_rng(0)
    tables, never = env.tables, env.n_t - 1
    same, earlier = 0, 0
    for seed in range(3):
        obs, _ = wrapped.reset(seed=seed)
        for _ in range(HORIZON):
            truth = env.expected_rewards(hindsight=True)
            a = int(rng.integers(env.n_actions))
            s, t, c = env.decode_action(a)
            next_obs, reward, _, _, info = wrapped.step(a)
            assert truth[a] == pytest.approx(reward, abs=1e-12)
            revealed = policy.revealed(s, t, c, reward, obs, info)
            expected = [] if t in (0, never) or info["timed_out"] else list(range(t))
            assert [env.decode_action(b) for b, _ in revealed] == [(s, u, c) for u in expected]
            sample, k = info["sample_index"], tables.exit_blocks.index(info["exit_block"])
            for b, r in revealed:
                j = tables.exit_index[sample, s, c, env.decode_action(b)[1]]
                if j == k:  # the same exit answers: the same reward
                    assert r == pytest.approx(truth[b], abs=1e-12)
                    same += 1
                else:  # an earlier exit: exact costs, accuracy by its confidence
                    right = float(tables.correct[sample, s, c, j])
                    conf = float(info["exit_confidences"][j])
                    assert r - conf == pytest.approx(truth[b] - right, abs=1e-12)
                    earlier += 1
            obs = next_obs
    assert same > 0 and earlier > 0


def test_splitee_s_updates_more_arms_with_exit_confidences(env, train_env):
    wrapped = ExitConfidences(train_env)
    side = SplitEES(env, c=0.03).fit(wrapped, range(2))
    plain = SplitEE(env, c=0.03).fit(wrapped, range(2))
    assert plain.counts.sum() == plain.rounds == 2 * HORIZON
    assert side.rounds == 2 * HORIZON and side.counts.sum() > side.rounds
    # without the info key nothing is credited
    info = {"exit_block": env.tables.exit_blocks[0], "timed_out": False}
    assert side.revealed(env.num_splits - 1, 0, 0, 0.5, np.zeros(10), info) == []


# -- registration ------------------------------------------------------------------------------


def test_registered_for_the_evaluate_command(evaluate_json):
    for name in ONLINE:
        row = evaluate_json("--baseline", name, "--episodes", "2", "--env-kwargs", "horizon:10")
        assert row["name"] == name and row["deployable"] and row["episodes"] == 2


def test_online_learners_never_see_the_label():
    """What they learn from is the device's own: the answer's confidence (v1) or the profile's
    chance for the exit (v0) stands in for whether the answer was right."""
    import splitexit
    from splitexit.agents.baselines import SplitEE
    from splitexit.envs import SplitExitEnv

    for config in ({"horizon": 30}, {**splitexit.V1_DRAFT, "horizon": 30}):
        env = SplitExitEnv(config)
        policy = SplitEE(env)
        env.reset(seed=0)
        for a in range(30):
            _, reward, _, _, info = env.step(a % env.n_actions)
            seen = policy.observable_reward(a % env.n_actions, reward, info)
            flipped = dict(info, correct=not info["correct"])
            flipped["rewards"] = dict(info["rewards"], accuracy=0.0)
            relabelled = reward - info["rewards"]["accuracy"]
            assert policy.observable_reward(a % env.n_actions, relabelled, flipped) == (
                pytest.approx(seen, abs=1e-12)
            )
            if "confidence" in info and not info["timed_out"]:
                w = env.weights["accuracy"] * info["value"]
                assert seen == pytest.approx(
                    reward - info["rewards"]["accuracy"] + w * info["confidence"], abs=1e-12
                )
