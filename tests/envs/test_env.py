import math
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import splitexit
from splitexit.envs import SplitExitEnv, default_config

ENV_ID = "splitexit:SplitExit-v0"


def rollout(env, seed, n_steps=60, action_seed=0):
    """Observations, rewards, flags and infos of a seeded random rollout."""
    rng = np.random.default_rng(action_seed)
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for _ in range(n_steps):
        action = int(rng.integers(env.action_space.n))
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((obs, reward, terminated, truncated, info))
        if terminated or truncated:
            obs, _ = env.reset()
            out.append(obs)
    return out


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if isinstance(x, np.ndarray):
            assert np.array_equal(x, y)
        else:
            assert np.array_equal(x[0], y[0]) and x[1:] == y[1:]


def test_gymnasium_check_env():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", ".*SplitExit-v0 is out of date", DeprecationWarning)
        gym_check_env(gym.make(ENV_ID).unwrapped)
        gym_check_env(gym.make(ENV_ID, action_type="multidiscrete").unwrapped)
        # the v1 draft too: its exit_confidences hold no NaN, which check_env would not equate
        gym_check_env(gym.make(ENV_ID, config=splitexit.V1_DRAFT).unwrapped)
        gym_check_env(gym.make("splitexit:SplitExit-v1").unwrapped)


def test_sb3_check_env():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", ".*SplitExit-v0 is out of date", DeprecationWarning)
        sb3_check_env(gym.make(ENV_ID).unwrapped, warn=True)
        sb3_check_env(gym.make("splitexit:SplitExit-v1").unwrapped, warn=True)


@pytest.mark.parametrize("env_id", list(splitexit.ENV_PRESETS))
def test_every_registered_id_makes_and_steps(env_id):
    env = gym.make(f"splitexit:{env_id}", config={"horizon": 5})
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and math.isfinite(reward)
    assert truncated


def test_preset_merges_with_config():
    env = gym.make("splitexit:SplitExitMarkov-v0", config={"horizon": 7})
    assert env.unwrapped.config["channel"] == "markov" and env.unwrapped.config["horizon"] == 7


def test_same_seed_same_rollout_other_seed_different():
    a = rollout(gym.make(ENV_ID), seed=3)
    b = rollout(gym.make(ENV_ID), seed=3)
    c = rollout(gym.make(ENV_ID), seed=4)
    assert_same(a, b)
    assert not all(np.array_equal(x[0], y[0]) for x, y in zip(a[1:], c[1:]) if len(x) == 5)


def test_observations_in_space_and_info_keys_stable():
    for cfg in ({}, {"channel": "markov"}, {"channel": "fading"}, {"outage": "intermittent"}):
        env = gym.make(ENV_ID, config={**cfg, "horizon": 50})
        keys = None
        for item in rollout(env, seed=1, n_steps=120):
            obs = item if isinstance(item, np.ndarray) else item[0]
            assert env.observation_space.contains(obs), (cfg, obs)
            if not isinstance(item, np.ndarray):
                info = item[4]
                keys = keys or set(info)
                assert set(info) == keys
                assert set(info["rewards"]) == {"accuracy", "latency", "energy", "deadline_miss"}
                assert math.isclose(sum(info["rewards"].values()), item[1], abs_tol=1e-12)


def test_horizon_truncates_without_time_limit():
    env = SplitExitEnv(horizon=3)
    env.reset(seed=0)
    flags = [env.step(0)[3] for _ in range(3)]
    assert flags == [False, False, True]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


@pytest.mark.parametrize(
    "config", [{}, {"channel": "fading", "horizon": 6}], ids=["trace", "fading"]
)
def test_pickle_round_trip_continues_identically(config):
    env = gym.make(ENV_ID, config=config).unwrapped
    env.reset(seed=5)
    for a in (3, 17, 40):
        env.step(a)
    clone = pickle.loads(pickle.dumps(env))
    for a in (0, 11, 23, 47, 5, 1, 2, 9, 30):  # (and across a reset)
        x, y = env.step(a), clone.step(a)
        assert np.array_equal(x[0], y[0]) and x[1:] == y[1:]
        if x[2] or x[3]:
            assert np.array_equal(env.reset()[0], clone.reset()[0])


def test_subproc_and_async_vector_envs():
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv

    vec = make_vec_env(ENV_ID, n_envs=2, seed=0, vec_env_cls=SubprocVecEnv)
    try:
        vec.reset()
        obs, rewards, dones, infos = vec.step(np.array([0, 47]))
        assert obs.shape == (2, 10) and np.isfinite(rewards).all()
    finally:
        vec.close()
    envs = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="async")
    try:
        obs, _ = envs.reset(seed=0)
        obs, rewards, *_ = envs.step(np.array([1, 2]))
        assert obs.shape == (2, 10) and np.isfinite(rewards).all()
    finally:
        envs.close()


def test_replay_and_live_agree_over_a_rollout():
    replay = SplitExitEnv(horizon=40)
    live = SplitExitEnv(horizon=40, mode="live")
    keys = ("exit_block", "correct", "payload_bytes", "latency_s", "energy_j")
    rng = np.random.default_rng(7)
    replay.reset(seed=11)
    live.reset(seed=11)
    for _ in range(40):
        a = int(rng.integers(replay.n_actions))
        r1, r2 = replay.step(a), live.step(a)
        assert np.array_equal(r1[0], r2[0]) and r1[1] == r2[1]
        assert [r1[4][k] for k in keys] == [r2[4][k] for k in keys]


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ("no-such.safetensors", "no-such.safetensors: weights file not found"),
        ("123", r"config key 'weights' \('123'\): 123: weights file not found"),
        ("robust", "is not the model the profile .* was made with"),  # the clean profile's
        ("/etc/passwd", "is not the model the profile"),
        ("/dev/zero", "weights file is not a regular file"),
    ],
)
def test_live_weights_are_checked_when_the_env_is_built(weights, message):
    """Not at the first step (issue 19, item 22): a run would start, then fail."""
    with pytest.raises(ValueError, match=message):
        SplitExitEnv(horizon=5, mode="live", weights=weights)


def test_hindsight_values_equal_the_rewards_that_step_gives():
    env = SplitExitEnv(horizon=60, outage="intermittent", outage_mean_up_s=3.0)
    env.reset(seed=2)
    rng = np.random.default_rng(0)
    for _ in range(60):
        values = env.expected_rewards(hindsight=True)
        a = int(rng.integers(env.n_actions))
        _, reward, *_ = env.step(a)
        assert values[a] == pytest.approx(reward, abs=1e-12)


def test_expected_energies_are_the_energies_that_step_spends():
    env = SplitExitEnv(horizon=60, battery_j=50.0, lte_tail=True)
    env.reset(seed=3)
    rng = np.random.default_rng(1)
    assert env.energy_left_j == 50.0 and env.requests_left == 60
    spent = 0.0
    for k in range(60):
        values, energies_j = env.expected_outcomes(hindsight=True)
        np.testing.assert_array_equal(values, env.expected_rewards(hindsight=True))
        mean_j = env.expected_outcomes()[1]
        assert (energies_j > 0).all() and (mean_j > 0).all()
        a = int(rng.integers(env.n_actions))
        info = env.step(a)[4]
        assert energies_j[a] == pytest.approx(info["energy_j"], rel=1e-12)
        spent += info["energy_j"]
        assert env.energy_left_j == pytest.approx(50.0 - spent, rel=1e-12)
        assert env.requests_left == 59 - k
    assert SplitExitEnv().energy_left_j == math.inf


@pytest.mark.parametrize(
    "override, message",
    [
        ({"frame_rate": 10}, "unknown config key 'frame_rate'"),
        ({"deadline_s": -1}, "'deadline_s' must be a finite number >= 0"),
        ({"channel": "wired"}, "'channel' must be one of"),
        ({"thresholds": [0.9, 0.5]}, "'thresholds' must be a strictly increasing"),
        ({"compressions": ["int4"]}, "'compressions' must be"),
        ({"reward": {"accuracy": 1}}, "'reward' must be a preset name or a dict"),
        ({"horizon": 0}, "'horizon' must be an integer in 1..1000000"),
        ({"device": "cray"}, "'device' must be one of"),
    ],
)
def test_config_errors_name_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        gym.make(ENV_ID, config=override)


def test_invalid_action_names_action_and_space():
    env = SplitExitEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action 48 is not in the action space Discrete\(48\)"):
        env.step(48)
    with pytest.raises(ValueError, match="action 1.5"):
        env.step(1.5)


def test_multidiscrete_matches_discrete():
    flat, multi = SplitExitEnv(), SplitExitEnv(action_type="multidiscrete")
    flat.reset(seed=9)
    multi.reset(seed=9)
    for a in (0, 13, 29, 47):
        r1 = flat.step(a)
        r2 = multi.step(multi.encode_action(*flat.decode_action(a)))
        assert r1[1] == r2[1] and np.array_equal(r1[0], r2[0])


def test_action_masks_with_compressions_and_outage():
    env = SplitExitEnv(compressions=["float32", "float16", "int8"])
    env.reset(seed=0)
    mask = env.action_masks().reshape(env.num_splits, env.n_t, env.n_c)
    assert mask[1:-1].all() and mask[0, :, 0].all() and not mask[0, :, 1:].any()
    down = SplitExitEnv(outage="permanent", outage_mean_up_s=1e-9)
    down.reset(seed=0)
    mask = down.action_masks().reshape(down.num_splits, down.n_t, down.n_c)
    assert mask[-1].any() and not mask[:-1].any()


@pytest.mark.parametrize("outage", ["none", "permanent"])
def test_multidiscrete_masks_are_one_per_value_of_each_dimension(outage):
    """Issue 19, item 17: MaskablePPO takes MultiDiscrete masks as sum(nvec) entries."""
    config = {"compressions": ["float32", "int8"], "outage": outage, "outage_mean_up_s": 1e-9}
    flat = SplitExitEnv(config)
    multi = SplitExitEnv(config, action_type="multidiscrete")
    flat.reset(seed=0)
    multi.reset(seed=0)
    masks = multi.action_masks()
    assert masks.shape == (int(multi.action_space.nvec.sum()),) and masks.dtype == bool
    joint = flat.action_masks().reshape(flat.num_splits, flat.n_t, flat.n_c)
    splits, thresholds, compressions = np.split(masks, np.cumsum(multi.action_space.nvec)[:-1])
    np.testing.assert_array_equal(splits, joint.any(axis=(1, 2)))
    np.testing.assert_array_equal(thresholds, joint.any(axis=(0, 2)))
    np.testing.assert_array_equal(compressions, joint.any(axis=(0, 1)))
    if outage == "permanent":  # only all-on-device, with the compression it ignores as first
        assert splits.tolist() == [False] * (multi.num_splits - 1) + [True]
        assert compressions.tolist() == [True, False]


@pytest.mark.filterwarnings("ignore:You have specified a mini-batch size")
def test_maskable_ppo_trains_on_the_multidiscrete_actions():
    from sb3_contrib import MaskablePPO

    env = SplitExitEnv(horizon=20, action_type="multidiscrete")
    model = MaskablePPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0)
    model.learn(64)
    action, _ = model.predict(env.reset(seed=1)[0], action_masks=env.action_masks())
    assert env.action_space.contains(action)


def test_outages_time_out_offloads_and_the_episode_goes_on():
    env = SplitExitEnv(outage="permanent", outage_mean_up_s=1e-9, horizon=20)
    env.reset(seed=0)
    for _ in range(20):
        _, reward, terminated, _, info = env.step(0)  # always send the raw image
        assert info["timed_out"] and not info["correct"] and info["deadline_missed"]
        assert info["latency_s"] == pytest.approx(env.config["timeout_s"])
        assert math.isfinite(reward) and not terminated


def test_local_only_never_sends_and_raw_offload_sends_raw_bytes():
    env = SplitExitEnv()
    env.reset(seed=0)
    s_max = env.num_splits - 1
    never = env.n_t - 1
    for _ in range(20):
        assert env.step(env.encode_action(s_max, never))[4]["payload_bytes"] == 0
    env.reset(seed=0)
    for _ in range(20):
        info = env.step(env.encode_action(0, never))[4]
        assert info["payload_bytes"] == 784 and info["exit_block"] == env.tables.exit_blocks[-1]


def test_battery_terminates():
    env = SplitExitEnv(battery_j=0.01, horizon=1000)
    env.reset(seed=0)
    steps = 0
    terminated = truncated = False
    while not (terminated or truncated):
        _, _, terminated, truncated, _ = env.step(0)
        steps += 1
    assert terminated and not truncated and steps < 1000
    with pytest.raises(RuntimeError, match="the episode is over .terminated"):
        env.step(0)  # as after truncation: the finished episode does not go on
    env.reset(seed=1)
    env.step(0)


def test_render_modes():
    env = SplitExitEnv(render_mode="ansi")
    env.reset(seed=0)
    env.step(0)
    assert "split 0" in env.render()
    env = SplitExitEnv(render_mode="rgb_array")
    env.reset(seed=0)
    env.step(0)
    img = env.render()
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert (img != 255).any()


def test_render_before_reset_gives_an_empty_line_and_frame():
    assert "no request yet" in SplitExitEnv(render_mode="ansi").render()
    img = SplitExitEnv(render_mode="rgb_array").render()
    assert img.dtype == np.uint8 and (img == 255).all()


EXTREME = st.fixed_dictionaries(
    {
        "capacity_scale": st.sampled_from([0.0, 1e-3, 1.0, 100.0]),
        "deadline_s": st.sampled_from([0.0, 0.01, 0.1, 5.0]),
        "frame_period_s": st.sampled_from([1e-4, 0.033, 1.0]),
        "timeout_s": st.sampled_from([1e-3, 1.0]),
        "rtt_s": st.sampled_from([0.0, 0.2]),
        "channel": st.sampled_from(["trace", "markov", "fading"]),
        "server_load": st.sampled_from(["none", "markov", "trace"]),
        "outage": st.sampled_from(["none", "intermittent", "permanent"]),
        "lte_tail": st.booleans(),
        "radio": st.sampled_from(["lte", "wifi", "3g"]),
        "horizon": st.just(15),
    }
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cfg=EXTREME,
    seed=st.integers(0, 2**16),
    actions=st.lists(st.integers(0, 47), min_size=15, max_size=15),
)
def test_extreme_configs_never_give_nan(cfg, seed, actions):
    env = SplitExitEnv(cfg)
    obs, _ = env.reset(seed=seed)
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        assert env.observation_space.contains(obs)
        assert math.isfinite(reward)
        assert 0 <= info["latency_s"] <= env.config["timeout_s"] + 1e-12
        assert info["energy_j"] >= 0 and math.isfinite(info["energy_j"])
        if terminated or truncated:
            break


def test_default_config_is_a_fresh_copy():
    a = default_config()
    a["thresholds"].append(0.999)
    assert 0.999 not in default_config()["thresholds"]


@pytest.mark.e2e
def test_registration_is_idempotent_and_works_in_a_fresh_process():
    import subprocess
    import sys

    splitexit.register_envs()
    splitexit.register_envs()
    code = (
        "import gymnasium as gym; env = gym.make('splitexit:SplitExit-v0'); "
        "env.reset(seed=0); print(env.step(0)[1])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert math.isfinite(float(out.stdout.strip().splitlines()[-1]))


def test_decode_observation_round_trips_units():
    env = SplitExitEnv()
    obs, _ = env.reset(seed=0)
    d = env.decode_observation(obs)
    assert d["rtt_s"] == pytest.approx(env.config["rtt_s"], rel=1e-6)
    assert d["deadline_s"] == pytest.approx(env.config["deadline_s"], rel=1e-6)
    assert d["server_reachable"] and d["device_backlog_s"] == 0.0
    assert (d["uplink_bps"] >= 0).all() and len(d["uplink_bps"]) == env.history


def test_lte_tail_energy_is_charged_between_transmissions_only():
    with_tail, without = SplitExitEnv(lte_tail=True), SplitExitEnv(lte_tail=False)
    raw = with_tail.encode_action(0, with_tail.n_t - 1)
    for seed in range(20):  # an episode whose first two uploads go through, a frame apart
        with_tail.reset(seed=seed)
        without.reset(seed=seed)
        info = [with_tail.step(raw)[4], without.step(raw)[4]]
        first = info[0]["energy_j"] - info[1]["energy_j"]
        info += [with_tail.step(raw)[4], without.step(raw)[4]]
        if all(i["tx_time_s"] > 0 and not i["timed_out"] for i in info) and not any(
            i["device_wait_s"] for i in info
        ):
            break
    assert first == 0.0  # no earlier transmission, no tail to pay for
    second = info[2]["energy_j"] - info[3]["energy_j"]
    gap_s = with_tail.frame_s  # one frame period between the two uploads, roughly
    assert 0.5 * gap_s * 1.06 < second < 1.5 * gap_s * 1.06  # Huang et al.: 1060 mW tail


def test_compute_times_follow_the_blocks_and_heads_on_each_side():
    from splitexit.dnn_profiles.hardware import compute_latency_s, get_device_preset

    env = SplitExitEnv()
    prof, dev = env.profile, get_device_preset(env.config["device"])
    block_s = [compute_latency_s(float(f), dev) for f in prof.block_flops]
    head_s = [compute_latency_s(float(f), dev) for f in prof.exit_flops]
    final = len(prof.exit_blocks) - 1
    # split 3, answered by the final exit on the server, no early exits: blocks 1-3 only
    assert env.tables.device_time_s[3][final][False] == pytest.approx(sum(block_s[:3]))
    # with early exits the device also runs the heads of the exits at blocks 1 and 3
    assert env.tables.device_time_s[3][final][True] == pytest.approx(
        sum(block_s[:3]) + head_s[0] + head_s[1]
    )
    # all on the device, no early exit: every block and the final head
    assert env.tables.device_time_s[5][final][False] == pytest.approx(sum(block_s) + head_s[-1])


@pytest.mark.parametrize("capacity_bps", [1e308, -1.0, float("nan")])
def test_the_oracle_api_refuses_capacities_out_of_range(capacity_bps):
    """Issue 19, item 25: not a ZeroDivisionError in the compiled core."""
    env = SplitExitEnv(horizon=5)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="capacity_bps must be in \\[0, 1e\\+12\\]"):
        env.expected_rewards(capacity_bps=capacity_bps)
    assert np.isfinite(env.expected_rewards(capacity_bps=1e12)).all()


def test_the_oracle_api_refuses_times_past_its_precision():
    """Issue 19, item 25: mean_capacity_bps(0, 1e25) was negative."""
    env = SplitExitEnv(horizon=5)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="t1_s <= 1e\\+09 s"):
        env.mean_capacity_bps(0.0, 1e25)
    assert env.mean_capacity_bps(0.0, 1e9) >= 0
