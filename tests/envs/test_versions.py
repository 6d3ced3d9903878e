"""Released versions stay bit for bit the same: seeded random rollouts of the v0 ids (and of
the v1 draft's config) hash to what they hashed to before the CIFAR-10 workload was added
(main at dda5232); SplitExit-v1 to what it hashed to when it was registered (issue 20).
The digest covers every observation, reward and info value."""

import hashlib
import json

import gymnasium as gym
import numpy as np
import pytest

import splitexit

DIGESTS = {
    ("SplitExit-v0", None): "a019f31770e3d4cc4366487132ca4eeff0300d574f95d2811e7df2266aa303b3",
    (
        "SplitExitMarkov-v0",
        None,
    ): "4a464ad8dbd525203216c3d4b6c09e6bf87fee0ac51b86c01ba44b567b383495",
    (
        "SplitExitOutage-v0",
        None,
    ): "76bc65423bf3a9b5c7e2871a5aa505f71620f498dca8186809e15b47b2a8a301",
    (
        "SplitExit-v0",
        "v1-draft",
    ): "d1c8b76e086bed1593eba106ad4a6f14ff8c4298859a551dabc10aae416c2693",
}


def rollout_digest(env_id: str, config: dict | None, seeds=(0, 1, 2)) -> str:
    env = gym.make(env_id, config=config or {}).unwrapped
    h = hashlib.sha256()
    for seed in seeds:
        rng = np.random.default_rng(seed)
        obs, _ = env.reset(seed=seed)
        h.update(obs.tobytes())
        done = False
        while not done:
            obs, r, term, trunc, info = env.step(int(rng.integers(env.action_space.n)))
            h.update(obs.tobytes())
            h.update(np.float64(r).tobytes())
            info = {k: v for k, v in info.items() if k != "exit_confidences"}
            h.update(json.dumps(info, sort_keys=True, default=float).encode())
            done = term or trunc
    return h.hexdigest()


@pytest.mark.parametrize(("env_id", "config"), list(DIGESTS), ids=lambda x: str(x))
def test_released_worlds_are_unchanged(env_id, config):
    cfg = {**splitexit.V1_DRAFT, "horizon": 100} if config == "v1-draft" else None
    cfg = {"horizon": 100} if env_id == "SplitExit-v1" else cfg
    assert rollout_digest(env_id, cfg) == DIGESTS[(env_id, config)]
