"""Heuristic baselines and oracles (splitexit.agents.baselines)."""

import numpy as np
import pytest

import splitexit
from splitexit.agents.baselines import (
    BASELINES,
    MIN_UPLINK_BPS,
    PACING_GRID,
    UPLINK_ESTIMATES,
    MyopicPlanner,
    Neurosurgeon,
    Policy,
    harmonic_mean_bps,
    make_policy,
    paced_choice,
    run_episode_rewards,
)
from splitexit.envs import SplitExitEnv

HORIZON = 50
EVAL_SEEDS = range(10)
TRAIN_SEEDS = range(100, 105)


@pytest.fixture(scope="module")
def env():
    return SplitExitEnv(horizon=HORIZON)


@pytest.fixture(scope="module")
def train_env():
    return SplitExitEnv(horizon=HORIZON)


def fitted(name, env, train_env, **kwargs):
    return make_policy(name, env, **kwargs).fit(train_env, TRAIN_SEEDS)


def infos(policy, env, seeds):
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            action, _ = policy.predict(obs)
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            yield info


def test_local_only_never_sends(env):
    policy = make_policy("local-only", env)
    for info in infos(policy, env, range(3)):
        assert info["payload_bytes"] == 0
        assert info["split"] == env.num_splits - 1


def test_edge_only_sends_the_raw_image_answered_by_the_final_exit(env):
    policy = make_policy("edge-only", env)
    for info in infos(policy, env, range(3)):
        assert info["split"] == 0
        assert info["payload_bytes"] == 784  # one 28x28 uint8 Fashion-MNIST image
        assert info["exit_block"] == env.tables.exit_blocks[-1]


@pytest.mark.parametrize("action_type", ["discrete", "multidiscrete"])
def test_every_policy_predicts_valid_actions(action_type):
    env = SplitExitEnv(horizon=HORIZON, action_type=action_type)
    train = SplitExitEnv(horizon=5, action_type=action_type)
    batch = np.stack([env.observation_space.sample() for _ in range(4)])
    for name in BASELINES:
        policy = make_policy(name, env).fit(train, [0])
        assert policy.name == name
        obs, _ = env.reset(seed=1)
        action, state = policy.predict(obs)
        assert state is None
        assert env.action_space.contains(action), (name, action)
        if action_type == "discrete":
            assert isinstance(action, int)
        actions, _ = policy.predict(batch)
        assert isinstance(actions, np.ndarray) and len(actions) == len(batch)
        assert all(env.action_space.contains(a) for a in actions), (name, actions)
        env.step(action)


@pytest.fixture(scope="module")
def mean_rewards(env, train_env):
    return {
        name: run_episode_rewards(fitted(name, env, train_env), env, EVAL_SEEDS).mean()
        for name in BASELINES
    }


def test_channel_oracle_beats_every_deployable_baseline(mean_rewards):
    oracle = mean_rewards["channel-oracle"]
    for name, cls in BASELINES.items():
        if cls.deployable:
            assert oracle >= mean_rewards[name], (name, mean_rewards)


def test_hindsight_oracle_beats_the_channel_oracle(mean_rewards):
    assert mean_rewards["hindsight-oracle"] >= mean_rewards["channel-oracle"], mean_rewards


def test_oracles_are_not_deployable_and_only_act_in_their_env(env, train_env):
    for name in ("channel-oracle", "hindsight-oracle"):
        policy = make_policy(name, env)
        assert not policy.deployable
        with pytest.raises(ValueError, match="oracle"):
            run_episode_rewards(policy, train_env, [0])


@pytest.mark.parametrize("name", ["branchynet", "best-static"])
def test_fit_is_deterministic(name, env):
    first = fitted(name, env, SplitExitEnv(horizon=HORIZON))
    second = fitted(name, env, SplitExitEnv(horizon=HORIZON))
    assert first.triple == second.triple
    assert first.fit_scores_ == second.fit_scores_
    if name == "branchynet":
        assert first.triple[0] == env.num_splits - 1  # all on the device


def test_tuned_policies_need_fit(env):
    with pytest.raises(RuntimeError, match="fit"):
        make_policy("best-static", env).predict(env.observation_space.sample())


def test_fit_rejects_another_action_grid(env):
    other = SplitExitEnv(horizon=5, thresholds=[0.5, 0.9])
    with pytest.raises(ValueError, match="same"):
        make_policy("branchynet", env).fit(other, [0])


def test_random_is_deterministic_for_a_seed(env):
    batch = np.zeros((64, env.observation_space.shape[0]), np.float32)
    a = make_policy("random", env, seed=3).predict(batch)[0]
    b = make_policy("random", env, seed=3).predict(batch)[0]
    c = make_policy("random", env, seed=4).predict(batch)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def hand_obs(env, throughput, reachable=1.0, load=0.0):
    obs = np.zeros(env.observation_space.shape, np.float32)
    obs[: env.history] = throughput
    obs[env.history + 1] = load
    obs[env.history + 2] = reachable
    return obs


@pytest.mark.parametrize("objective", ["latency", "energy"])
def test_neurosurgeon_follows_the_uplink(env, objective):
    policy = Neurosurgeon(env, objective=objective)
    local = env.num_splits - 1
    for obs in (hand_obs(env, 0.0), hand_obs(env, 1.0, reachable=0.0)):
        split, t, _ = env.decode_action(policy.predict(obs)[0])
        assert split == local and t == env.n_t - 1
    split, t, _ = env.decode_action(policy.predict(hand_obs(env, 1.0))[0])
    assert split < local and t == env.n_t - 1  # 100 Mbit/s: offload or split


def test_edgent_stays_local_without_uplink_and_meets_the_deadline_with_one(env):
    policy = make_policy("edgent", env)
    split, _, _ = env.decode_action(policy.predict(hand_obs(env, 0.0))[0])
    assert split == env.num_splits - 1
    obs = hand_obs(env, 1.0)
    s, t, c = env.decode_action(policy.predict(obs)[0])
    lat = policy.expected_latency_s(*(x[0] for x in policy.uplink(obs[None].astype(float))))
    assert lat[s, c, t] <= env.config["deadline_s"]


def test_unknown_name_raises(env):
    with pytest.raises(ValueError, match="no-such-policy.*local-only"):
        make_policy("no-such-policy", env)


def test_paced_choice_takes_the_smallest_price_whose_action_fits():
    reward = np.array([1.0, 0.8, 0.1])
    energy_j = np.array([0.2, 0.05, 0.0])
    assert paced_choice(reward, energy_j, np.inf, 1.0) == 0  # no budget: the reward's own price
    assert paced_choice(reward, energy_j, 0.05, 1.0) == 1  # price 3: 0.8 - 0.15 > 1 - 0.6
    assert paced_choice(reward, energy_j, 0.0, 1.0) == 2  # price 30: only the free action
    assert paced_choice(reward, energy_j, -1.0, 1.0) == 2  # nothing fits: the last price's
    assert paced_choice(reward, 10 * energy_j, np.inf, 0.0) == 0  # w = 0: the reward alone
    assert paced_choice(reward, energy_j, 0.05, 0.0) == 1  # ... then prices per joule


def test_harmonic_mean_is_pulled_down_by_one_low_measurement():
    assert harmonic_mean_bps([2e6, 2e6]) == pytest.approx(2e6)
    assert harmonic_mean_bps([1e6, 1e6, 1e4]) == pytest.approx(3 / (2e-6 + 1e-4))
    assert harmonic_mean_bps([0.0, 1e6]) == pytest.approx(2 / (1 / MIN_UPLINK_BPS + 1e-6))


V1_SHORT = {**splitexit.V1, "horizon": 100, "battery_j": splitexit.V1["battery_j"] / 6}


def test_the_planners_fit_picks_its_best_estimate_and_pacing():
    env, train = SplitExitEnv(V1_SHORT), SplitExitEnv(V1_SHORT)
    planner = MyopicPlanner(env).fit(train, range(100, 102))
    assert len(planner.fit_scores_) == len(UPLINK_ESTIMATES) * len(PACING_GRID)
    best = max(planner.fit_scores_, key=planner.fit_scores_.get)
    assert (planner.uplink_estimate, planner.pacing) == best
    # mains-powered there is nothing to pace: only the estimate is chosen
    mains = SplitExitEnv({**V1_SHORT, "battery_j": None})
    assert len(MyopicPlanner(mains).fit(mains, [100]).fit_scores_) == len(UPLINK_ESTIMATES)
    with pytest.raises(ValueError, match="uplink_estimate"):
        MyopicPlanner(env, uplink_estimate="mean")
    with pytest.raises(ValueError, match="pacing"):
        MyopicPlanner(env, pacing=0.0)


def test_on_a_battery_the_oracle_paces_and_beats_its_greedy_self():
    env = SplitExitEnv(V1_SHORT)

    class Greedy(Policy):
        def _choose(self, obs):
            a = int(np.argmax(self.env.expected_rewards()))
            return np.array([np.unravel_index(a, (env.num_splits, env.n_t, env.n_c))])

    seeds = range(3)
    paced = run_episode_rewards(make_policy("channel-oracle", env), env, seeds)
    greedy = run_episode_rewards(Greedy(env), env, seeds)
    assert (paced > greedy).all(), (paced, greedy)
