"""The request's context (SplitExit-v1's mechanisms): demands, camera conditions, the battery
that drops requests when spent, and the context features of the observation."""

from __future__ import annotations

import numpy as np
import pytest

from splitexit.envs import SplitExitEnv
from splitexit.envs.context import (
    DEMAND_CLASSES,
    PHASES,
    camera_mix,
    context_chains,
    episode_budget_j,
    jump_matrix,
)
from splitexit.envs.core import CONTEXT_INFO_KEYS, INFO_KEYS
from splitexit.envs.observation import MAX_VALUE
from splitexit.envs.vector import SplitExitVectorEnv

DEMANDS = {"demands": "markov", "observation": "context", "horizon": 300}
DROP = {"battery_j": 0.5, "battery_empty": "drop", "horizon": 120}


def run(env: SplitExitEnv, seed: int, actions) -> list[tuple]:
    obs, _ = env.reset(seed=seed)
    steps = [(obs, None, None)]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(int(a))
        steps.append((obs, reward, info))
        if terminated or truncated:
            break
    return steps


def test_demands_set_each_requests_deadline_value_and_features():
    env = SplitExitEnv(DEMANDS)
    rng = np.random.default_rng(0)
    steps = run(env, 3, rng.integers(env.n_actions, size=env.horizon))
    layout = env.layout
    classes = []
    for (obs, _, _), (_, reward, info) in zip(steps[:-1], steps[1:], strict=True):
        d = DEMAND_CLASSES[info["demand"]]
        classes.append(info["demand"])
        assert (info["deadline_s"], info["value"]) == (d.deadline_s, d.value)
        # the observation before the request showed its deadline and value
        assert obs[layout.index("deadline")] == np.float32(min(d.deadline_s / env.timeout_s, 1))
        assert obs[layout.index("value")] == np.float32(d.value / MAX_VALUE)
        missed = info["timed_out"] or info["latency_s"] > d.deadline_s
        assert info["deadline_missed"] == missed
        assert info["rewards"]["accuracy"] == env.weights["accuracy"] * d.value * info["correct"]
        assert reward == sum(info["rewards"].values())
    assert len(set(classes)) >= 2  # the phases change within an episode
    left = [obs[layout.index("requests_left")] for obs, _, _ in steps]
    assert left[0] == 1.0 and left[-1] == 0.0 and np.all(np.diff(left) < 0)


def test_the_chains_spend_their_shares_of_time_and_dwell_as_configured():
    """Over long episodes the camera's conditions and the application's phases take their
    configured shares of the time, each run of a state lasts its mean dwell, and the demand
    classes follow the phases' mixes."""
    import splitexit

    env = SplitExitEnv({**splitexit.V1_DRAFT, "horizon": 20_000, "battery_j": None})
    n = env.tables.num_samples
    conditions, classes, runs = [], [], []
    for seed in range(8):
        env.reset(seed=seed)
        cond = env.batch.samples[:, 0] // n
        conditions.append(cond)
        classes.append(env.batch.demand[:, 0])
        change = np.flatnonzero(np.diff(cond)) + 1
        runs.append(np.diff(change))  # whole runs only
    share = np.bincount(np.concatenate(conditions), minlength=9) / (8 * env.horizon)
    np.testing.assert_allclose(share, camera_mix(env.tables.conditions), atol=0.02)
    frames = np.concatenate(runs).mean()
    assert frames == pytest.approx(env.config["camera_dwell_s"] / env.frame_s, rel=0.1)
    expected = np.array([ph.share for ph in PHASES]) @ np.array([ph.mix for ph in PHASES])
    counts = np.bincount(np.concatenate(classes), minlength=len(DEMAND_CLASSES))
    np.testing.assert_allclose(counts / counts.sum(), expected, atol=0.03)
    chains = context_chains(env.config, env.tables.conditions)
    dwell_frames = np.array([ph.mean_dwell_s for ph in PHASES]) / env.frame_s
    np.testing.assert_allclose(chains.phase_stay, np.exp(-1 / dwell_frames))


@pytest.mark.parametrize(
    ("shares", "dwell"),
    [
        ([0.5, 0.2, 0.3], [20.0, 5.0, 15.0]),
        ([0.5, 0.25, 0.25], [1.0, 1.0, 1.0]),  # half of the visits: alternation
        ([0.25, 0.25, 0.25, 0.25], [1.0, 2.0, 3.0, 4.0]),
        ([0.45, 0.3, 0.25], [1.0, 1.0, 1.0]),  # the most visited state needs w > 1/2
    ],
)
def test_jump_matrices_give_the_shares_of_time(shares, dwell):
    jump = jump_matrix(np.array(shares), np.array(dwell))
    assert (np.diag(jump) == 0).all() and np.allclose(jump.sum(1), 1.0) and (jump >= 0).all()
    values, vectors = np.linalg.eig(jump.T)  # the jump chain's stationary law
    nu = np.real(vectors[:, np.argmin(np.abs(values - 1))])
    time = nu / nu.sum() * np.array(dwell)
    np.testing.assert_allclose(time / time.sum(), shares, atol=1e-9)


def test_shares_a_chain_cannot_reach_are_refused():
    with pytest.raises(ValueError, match="over half of the visits"):
        jump_matrix(np.array([0.9, 0.05, 0.05]), np.ones(3))


def test_a_spent_battery_drops_every_later_request():
    env = SplitExitEnv(DROP)
    steps = run(env, 0, [0] * env.horizon)  # send the raw image: the battery runs out
    infos = [info for _, _, info in steps[1:]]
    assert len(infos) == env.horizon  # not terminated: every request is a step
    spent = np.cumsum([i["energy_j"] for i in infos])
    first = int(np.argmax(spent >= DROP["battery_j"])) + 1
    assert 0 < first < env.horizon
    w = env.weights
    for i, (_, reward, info) in enumerate(steps[1 + first :]):
        assert info["timed_out"] and not info["correct"] and info["energy_j"] == 0.0, i
        assert reward == -w["latency"] * env.timeout_s - w["deadline_miss"]
    battery = [obs[env.layout.index("battery")] for obs, _, _ in steps]
    assert battery[0] == 1.0 and battery[-1] == 0.0
    # "terminate" (the default) ends the episode instead
    env = SplitExitEnv({**DROP, "battery_empty": "terminate"})
    steps = run(env, 0, [0] * env.horizon)
    assert len(steps) - 1 == first and steps[-1][0] is not None


def test_last_confidence_is_the_newest_answer_back_in_time():
    env = SplitExitEnv({"observation": "context", "horizon": 200, "frame_period_s": 0.05})
    rng = np.random.default_rng(1)
    steps = run(env, 5, rng.integers(env.n_actions, size=env.horizon))
    conf_at = env.layout.index("last_confidence")
    exit_at = env.layout.index("last_exit")
    known, pending = (0.0, 0), None  # what the device holds, and an answer on its way
    n_exits = len(env.tables.exit_blocks)
    for i, (obs, _, info) in enumerate(steps[1:]):
        arrival = env.t0_s + i * env.frame_s
        nxt = arrival + env.frame_s
        if pending is not None and pending[2] <= nxt:
            known, pending = pending[:2], None
        if not info["timed_out"]:
            answer = (info["confidence"], env.tables.exit_blocks.index(info["exit_block"]))
            if arrival + info["latency_s"] <= nxt:
                known, pending = answer, None
            else:
                pending = (*answer, arrival + info["latency_s"])
        assert obs[conf_at] == np.float32(known[0]), i
        assert obs[exit_at] == np.float32(known[1] / (n_exits - 1)), i


def test_context_features_are_in_the_space_and_the_budget_has_its_source():
    env = SplitExitEnv({**DEMANDS, **DROP})
    for obs, _, _ in run(env, 2, np.zeros(env.horizon, int)):
        assert env.observation_space.contains(obs)
    assert episode_budget_j(600, 0.1) == pytest.approx(9.25, abs=0.01)  # 154 mW for 60 s
    decoded = env.decode_observation(env.reset(seed=0)[0])
    assert decoded["requests_left_fraction"] == 1.0 and 0 < decoded["value"] <= MAX_VALUE


@pytest.mark.parametrize("world", ["demands", "v1"])
@pytest.mark.parametrize("same_step", [False, True])
def test_vector_env_equals_single_envs_with_a_context(same_step, world):
    import splitexit

    config = {**DEMANDS, **DROP, "horizon": 40}
    if world == "v1":  # the CIFAR-10 draft: camera, demands, a battery that runs out
        config = {**splitexit.V1, "horizon": 40, "battery_j": 0.3}
    n, seed = 4, 11
    vec = SplitExitVectorEnv(
        n, config=config, autoreset_mode="same_step" if same_step else "next_step"
    )
    singles = [SplitExitEnv(config) for _ in range(n)]
    obs, _ = vec.reset(seed=seed)
    np.testing.assert_array_equal(
        obs, np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(singles)])
    )
    rng = np.random.default_rng(0)
    ended = np.zeros(n, dtype=bool)
    for k in range(100):
        actions = rng.integers(singles[0].n_actions, size=n)
        obs, reward, terminated, truncated, info = vec.step(actions)
        for i, env in enumerate(singles):
            if ended[i] and not same_step:
                np.testing.assert_array_equal(obs[i], env.reset()[0])
                continue
            o, r, te, tr, inf = env.step(int(actions[i]))
            if same_step and (te or tr):
                o = env.reset()[0]
            np.testing.assert_array_equal(obs[i], o, err_msg=f"step {k}, sub-env {i}")
            assert reward[i] == r
            for key in INFO_KEYS + CONTEXT_INFO_KEYS:
                assert info[key][i] == inf[key], (k, i, key)
        ended = terminated | truncated


def test_v1_budget_is_the_sourced_one():
    import splitexit

    v1 = splitexit.V1_DRAFT
    assert v1["battery_j"] == pytest.approx(
        episode_budget_j(v1["horizon"], v1["frame_period_s"]), rel=1e-9
    )


def test_exit_confidences_are_those_the_device_learns():
    env = SplitExitEnv({**DEMANDS, "horizon": 100})
    rng = np.random.default_rng(4)
    n_e = len(env.tables.exit_blocks)
    blocks = np.asarray(env.tables.exit_blocks)
    vec = SplitExitVectorEnv(1, config={**DEMANDS, "horizon": 100})
    vec.reset(seed=9)
    env.reset(seed=9)
    for _ in range(100):
        a = int(rng.integers(env.n_actions))
        info = env.step(a)[-1]
        vinfo = vec.step(np.array([a]))[-1]
        conf = info["exit_confidences"]
        np.testing.assert_array_equal(conf, vinfo["exit_confidences"][0])
        assert conf.shape == (n_e,)
        k = env.tables.exit_blocks.index(info["exit_block"])
        known = conf >= 0  # the others are -1 (not NaN: check_env compares infos)
        assert not known[k + 1 :].any()  # nothing past the answering exit
        if not info["timed_out"]:
            assert conf[k] == np.float32(info["confidence"])
            if info["threshold"] <= 1.0:
                assert known[: k + 1].all()
                assert (conf[:k] < info["threshold"]).all()  # the exits before did not reach it
        elif info["energy_j"] == 0.0:
            assert not known.any()
        else:
            assert not known[blocks > info["split"]].any()  # the server's never came back


def _live_rollout(config: dict, actions: list[int], threads: int) -> list:
    """Observations, rewards and infos of a live rollout, torch set to ``threads`` threads."""
    from splitexit.dnn_profiles.model import torch_threads

    with torch_threads(threads):
        env = SplitExitEnv({**config, "mode": "live"})
        out = [env.reset(seed=21)[0]]
        for a in actions:
            obs, reward, _, _, info = env.step(a)
            out.append((obs, reward, info))
        return out


def test_live_inference_runs_at_the_profiles_thread_count(monkeypatch):
    """Issue 19, item 7: on the CPU the probe used, 2 threads moved confidences in the 7th
    digit (on this one they may not: the rollouts below then agree either way)."""
    import torch

    import splitexit
    from splitexit.dnn_profiles import model

    seen = []
    inference = model.split_inference

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return inference(*args, **kwargs)

    monkeypatch.setattr(model, "split_inference", spy)
    env = SplitExitEnv({**splitexit.V1_DRAFT, "horizon": 5, "mode": "live"})
    assert env.profile.torch_threads == 1  # the robust profile's host: "1 torch threads"
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        env.reset(seed=0)
        for a in range(5):
            env.step(a)
        assert torch.get_num_threads() == 2  # given back after each step
    finally:
        torch.set_num_threads(before)
    assert seen == [1] * 5


def test_replay_and_live_agree_on_the_v1_draft():
    """Live mode corrupts the real image as the frame's condition says and runs the robust
    model: the same observations (confidences included), rewards and infos as replay. Live
    inference runs at the profile's torch thread count whatever the process's (issue 19, item
    7), so live rollouts at 1 and 2 threads are the same bit for bit; against replay, bit for
    bit on the CPU that made the profile, and on another torch's convolution kernels round the
    last float32 bits of the confidences differently (and, rarely, an int8 payload's rounding
    with them: a confidence then moves by ~1e-4)."""
    import splitexit

    config = {**splitexit.V1_DRAFT, "horizon": 100}
    rng = np.random.default_rng(3)
    replay = SplitExitEnv(config)
    actions = [int(a) for a in rng.integers(replay.n_actions, size=100)]
    one, two = (_live_rollout(config, actions, threads) for threads in (1, 2))
    np.testing.assert_array_equal(one[0], two[0])
    for (o1, r1, i1), (o2, r2, i2) in zip(one[1:], two[1:]):
        assert o1.tobytes() == o2.tobytes() and r1 == r2
        assert i1.pop("exit_confidences").tobytes() == i2.pop("exit_confidences").tobytes()
        assert i1 == i2
    np.testing.assert_array_equal(replay.reset(seed=21)[0], one[0])
    conditions = set()
    # (40 steps: later ones hit an int8 payload whose rounding another CPU's kernels flip)
    for a, (obs, reward, info) in zip(actions[:40], one[1:]):
        r_obs, r_reward, _, _, r_info = replay.step(a)
        np.testing.assert_allclose(r_obs, obs, rtol=1e-5, atol=1e-6)
        assert r_reward == reward
        assert r_info.pop("confidence") == pytest.approx(info.pop("confidence"), rel=1e-5)
        r_info.pop("exit_confidences")  # (popped from the live infos above)
        assert r_info == info
        conditions.add(r_info["condition"])
    assert len(conditions) >= 2  # the camera's regime changed within the rollout


def test_a_profile_with_other_frame_statistics_is_refused_for_the_context(tmp_path):
    """Also seen in issue 19: such a profile was observed as zeros, silently."""
    import dataclasses

    import splitexit
    from splitexit.dnn_profiles.profile import Profile

    robust = SplitExitEnv(splitexit.V1_DRAFT).profile
    stats = robust.by_condition["image_stats"][..., :2]
    other = dataclasses.replace(
        Profile.load(robust.source),
        meta={**robust.meta, "image_stats_names": ["brightness", "contrast"]},
        by_condition={**robust.by_condition, "image_stats": stats},
    )
    other.save(tmp_path / "other.json")
    with pytest.raises(ValueError, match=r"records \['brightness', 'contrast'\]"):
        SplitExitEnv({**splitexit.V1_DRAFT, "profile": str(tmp_path / "other.json")})


def test_a_profile_without_a_clean_condition_is_named_in_the_error():
    from splitexit.envs.context import camera_mix

    with pytest.raises(ValueError, match="config key 'camera'.*none named 'clean'"):
        camera_mix(("sunny", "noise_mild"))
    assert camera_mix(("noise_mild", "clean"))[1] == camera_mix(("clean", "noise_mild"))[0]
