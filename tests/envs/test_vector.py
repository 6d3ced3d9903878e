"""SplitExitVectorEnv: the same world as N single envs, bit for bit."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import splitexit  # noqa: F401  (registers the ids)
from splitexit.envs import SplitExitEnv
from splitexit.envs.core import INFO_KEYS
from splitexit.envs.vector import SplitExitVectorEnv
from tests.envs.reference import WORLDS


def random_actions(env: SplitExitVectorEnv, rng: np.random.Generator) -> np.ndarray:
    if env.config["action_type"] == "discrete":
        return rng.integers(env.env.n_actions, size=env.num_envs)
    return rng.integers(env.single_action_space.nvec, size=(env.num_envs, 3))


def assert_same_as_singles(config: dict, n: int, steps: int, seed: int, same_step: bool) -> None:
    mode = "same_step" if same_step else "next_step"
    vec = SplitExitVectorEnv(n, config=config, autoreset_mode=mode)
    singles = [SplitExitEnv(config) for _ in range(n)]
    obs, _ = vec.reset(seed=seed)
    expected = [env.reset(seed=seed + i)[0] for i, env in enumerate(singles)]
    np.testing.assert_array_equal(obs, np.stack(expected))
    rng = np.random.default_rng(seed)
    ended = np.zeros(n, dtype=bool)
    episodes_ended = 0
    for k in range(steps):
        actions = random_actions(vec, rng)
        obs, reward, terminated, truncated, info = vec.step(actions)
        for i, env in enumerate(singles):
            if ended[i] and not same_step:  # NEXT_STEP: this step only resets sub-env i
                o, r, te, tr, inf = env.reset()[0], 0.0, False, False, None
            else:
                o, r, te, tr, inf = env.step(actions[i])
            where = f"step {k}, sub-env {i}"
            if same_step and (te or tr):
                np.testing.assert_array_equal(info["final_obs"][i], o, err_msg=where)
                o = env.reset()[0]
            np.testing.assert_array_equal(obs[i], o, err_msg=where)
            assert (reward[i], terminated[i], truncated[i]) == (r, te, tr), where
            if inf is None:
                assert not info or not info["_latency_s"][i], where
                continue
            assert info["_latency_s"][i], where
            for key in INFO_KEYS:
                assert info[key][i] == inf[key], (where, key, info[key][i], inf[key])
            for key, value in inf["rewards"].items():
                assert info["rewards"][key][i] == value, (where, key)
        ended = terminated | truncated
        episodes_ended += int(ended.sum())
    assert episodes_ended >= n  # every sub-env went through at least one autoreset


@pytest.mark.parametrize("name", list(WORLDS))
def test_sub_envs_equal_single_envs_with_the_same_seeds(name):
    config = WORLDS[name]
    assert_same_as_singles(
        config, n=5, steps=config.get("horizon", 200) * 2 + 5, seed=7, same_step=False
    )


def test_same_step_autoreset_equals_single_envs_and_keeps_the_final_obs():
    assert_same_as_singles({"horizon": 20, "battery_j": 0.1}, n=4, steps=70, seed=3, same_step=True)


def test_make_vec_returns_the_native_vector_env():
    for env_id in ("splitexit:SplitExit-v0", "SplitExitMarkov-v0", "SplitExitOutage-v0"):
        envs = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point")
        assert isinstance(envs, SplitExitVectorEnv)
        assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
        obs, _ = envs.reset(seed=0)
        assert obs.shape == (3, *envs.single_observation_space.shape)
        assert envs.observation_space.contains(obs)
    markov = gym.make_vec("SplitExitMarkov-v0", num_envs=2, vectorization_mode="vector_entry_point")
    assert markov.config["channel"] == "markov"  # the id's preset reaches the vector env
    custom = gym.make_vec(
        "splitexit:SplitExit-v0",
        num_envs=2,
        vectorization_mode="vector_entry_point",
        config={"horizon": 7},
    )
    assert custom.config["horizon"] == 7


def test_what_cannot_be_vectorised_says_so():
    for env_id in ("SplitExitFading-v0", "SplitExitLive-v0"):
        with pytest.raises(gym.error.Error, match="vector entry point"):
            gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point")
        assert isinstance(
            gym.make_vec(env_id, num_envs=2, vectorization_mode="sync"), gym.vector.SyncVectorEnv
        )
    with pytest.raises(ValueError, match="config key 'channel'.*fading"):
        SplitExitVectorEnv(2, channel="fading")
    with pytest.raises(ValueError, match="config key 'mode'.*live"):
        SplitExitVectorEnv(2, mode="live")
    with pytest.raises(ValueError, match="autoreset_mode must be one of"):
        SplitExitVectorEnv(2, autoreset_mode="sometimes")
    with pytest.raises(ValueError, match="num_envs must be"):
        SplitExitVectorEnv(0)
    with pytest.raises(ValueError, match="unknown config key 'horizn'"):
        SplitExitVectorEnv(2, horizn=5)


def test_invalid_actions_name_the_sub_env_and_the_space():
    envs = SplitExitVectorEnv(3)
    envs.reset(seed=0)
    with pytest.raises(
        ValueError, match=r"action 48 of sub-env 1 is not in the action space Discrete\(48\)"
    ):
        envs.step(np.array([0, 48, 2]))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        envs.step(np.array([0, 1]))
    with pytest.raises(ValueError, match="integers"):
        envs.step(np.array([0.0, 1.0, 2.0]))
    multi = SplitExitVectorEnv(2, action_type="multidiscrete")
    multi.reset(seed=0)
    with pytest.raises(ValueError, match=r"action \[6, 0, 0\] of sub-env 0"):
        multi.step(np.array([[6, 0, 0], [0, 0, 0]]))
    top = np.iinfo(np.uint64).max  # named as given, not wrapped to -1 by int64
    with pytest.raises(ValueError, match=f"action {top} of sub-env 2 is not in the action space"):
        envs.step(np.array([0, 1, top], dtype=np.uint64))


def test_seeds_lists_and_fresh_generators():
    a, b = SplitExitVectorEnv(3), SplitExitVectorEnv(3)
    np.testing.assert_array_equal(a.reset(seed=4)[0], b.reset(seed=[4, 5, 6])[0])
    again = a.reset()[0]  # continues each sub-env's generator, like a single env's reset()
    single = SplitExitEnv()
    single.reset(seed=5)
    np.testing.assert_array_equal(again[1], single.reset()[0])
    with pytest.raises(ValueError, match="must list 3 seeds"):
        a.reset(seed=[1, 2])
    for bad in (1.5, "7", [1, 2.5, 3]):
        with pytest.raises(ValueError, match="seed must be None, an int or a list of 3 ints"):
            a.reset(seed=bad)
    c, d = SplitExitVectorEnv(2), SplitExitVectorEnv(2)
    assert not np.array_equal(c.reset()[0], d.reset()[0])  # unseeded: fresh entropy


def test_multidiscrete_action_masks_match_the_single_envs():
    config = {"outage": "permanent", "outage_mean_up_s": 1e-9, "action_type": "multidiscrete"}
    vec = SplitExitVectorEnv(2, config=config)
    single = SplitExitEnv(config)
    vec.reset(seed=3)
    single.reset(seed=3)
    masks = vec.action_masks()
    assert masks.shape == (2, int(single.action_space.nvec.sum()))
    np.testing.assert_array_equal(masks[0], single.action_masks())


def test_action_masks_match_the_single_envs():
    config = {"outage": "intermittent", "outage_mean_up_s": 2.0, "outage_mean_down_s": 2.0}
    vec = SplitExitVectorEnv(4, config=config, compressions=["int8", "float16"])
    singles = [SplitExitEnv(config, compressions=["int8", "float16"]) for _ in range(4)]
    vec.reset(seed=11)
    for i, env in enumerate(singles):
        env.reset(seed=11 + i)
    masked = 0
    for _ in range(60):
        masks = vec.action_masks()
        for i, env in enumerate(singles):
            np.testing.assert_array_equal(masks[i], env.action_masks())
        masked += int((~masks[:, 0]).sum())  # split 0 is masked only while unreachable
        actions = np.array([int(np.flatnonzero(m)[-1]) for m in masks])
        vec.step(actions)
        for i, env in enumerate(singles):
            env.step(int(actions[i]))
    assert masked > 0  # the outages did hide the server at some point


def test_actions_of_any_integer_layout_step_alike():
    """The compiled step is bound to one argument type: strided, read-only or narrower action
    arrays are converted, not misread."""
    rng = np.random.default_rng(0)
    actions = rng.integers(48, size=(30, 8))
    results = []
    for convert in (
        lambda a: a,
        lambda a: np.asarray(a, dtype=np.int32),
        lambda a: np.repeat(a, 2)[::2],  # a strided view
        lambda a: np.frombuffer(a.astype(np.int64).tobytes(), dtype=np.int64),  # read-only
    ):
        vec = SplitExitVectorEnv(8, config={"horizon": 10})
        vec.reset(seed=1)
        results.append([vec.step(convert(a))[1].copy() for a in actions])
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


def test_infos_of_earlier_steps_are_not_overwritten():
    vec = SplitExitVectorEnv(4, config={"horizon": 5})
    vec.reset(seed=0)
    first = vec.step(np.zeros(4, dtype=np.int64))[4]
    kept = first["latency_s"].copy()
    for _ in range(7):
        vec.step(np.full(4, 47, dtype=np.int64))
    np.testing.assert_array_equal(first["latency_s"], kept)


def test_pickled_vector_env_continues_identically():
    import pickle

    vec = SplitExitVectorEnv(3, config={"horizon": 5, "channel": "markov"})
    vec.reset(seed=2)
    actions = np.random.default_rng(0).integers(48, size=(40, 3))
    for a in actions[:3]:
        vec.step(a)
    clone = pickle.loads(pickle.dumps(vec))  # mid-episode, then across autoresets
    for a in actions[3:]:
        expected, got = vec.step(a), clone.step(a)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])


def test_step_before_reset_raises_like_the_single_env():
    vec = SplitExitVectorEnv(2)
    with pytest.raises(RuntimeError, match="reset"):
        vec.step(np.zeros(2, dtype=np.int64))


def test_numpy_integer_seeds_are_seeds():
    a, b = SplitExitVectorEnv(3), SplitExitVectorEnv(3)
    np.testing.assert_array_equal(a.reset(seed=np.int64(3))[0], b.reset(seed=3)[0])


def test_reset_mask_resets_only_those_sub_envs():
    config = {"horizon": 30}
    vec = SplitExitVectorEnv(3, config=config)
    singles = [SplitExitEnv(config) for _ in range(3)]
    vec.reset(seed=0)
    for i, env in enumerate(singles):
        env.reset(seed=i)
    actions = np.random.default_rng(0).integers(48, size=(12, 3))
    for a in actions[:5]:
        obs = vec.step(a)[0]
        for i, env in enumerate(singles):
            env.step(a[i])
    mask = np.array([True, False, True])
    reset_obs, _ = vec.reset(seed=10, options={"reset_mask": mask})
    np.testing.assert_array_equal(reset_obs[1], obs[1])  # sub-env 1 goes on
    expected = {0: singles[0].reset(seed=10)[0], 2: singles[2].reset(seed=12)[0]}
    for i, o in expected.items():
        np.testing.assert_array_equal(reset_obs[i], o)
    for a in actions[5:]:
        obs, reward = vec.step(a)[:2]
        for i, env in enumerate(singles):
            o, r = env.step(a[i])[:2]
            np.testing.assert_array_equal(obs[i], o)
            assert reward[i] == r
    with pytest.raises(ValueError, match="reset_mask"):
        vec.reset(options={"reset_mask": np.zeros(3, dtype=bool)})
    with pytest.raises(RuntimeError, match="first reset"):
        SplitExitVectorEnv(3).reset(options={"reset_mask": mask})
