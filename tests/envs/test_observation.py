"""splitexit.envs.observation: one layout names every feature and where it sits."""

from __future__ import annotations

import numpy as np

from splitexit.envs import SplitExitEnv
from splitexit.envs.observation import FEATURES, ObservationLayout


def test_slices_cover_the_observation_once_in_order():
    layout = ObservationLayout(history=5, frame_s=0.1, timeout_s=1.0)
    covered = np.concatenate([np.arange(layout.size)[s] for s in layout.slices.values()])
    np.testing.assert_array_equal(covered, np.arange(layout.size))
    assert list(layout.slices) == ["uplink_throughput", *FEATURES]
    assert [layout.index(f) for f in FEATURES] == [layout.slices[f].start for f in FEATURES]


def test_the_env_writes_each_feature_where_the_layout_says():
    env = SplitExitEnv({"deadline_s": 0.05, "battery_j": 100.0, "throughput_history": 3})
    obs, _ = env.reset(seed=0)
    layout = env.layout
    assert obs.shape == (layout.size,)
    assert obs[layout.index("deadline")] == np.float32(0.05 / env.timeout_s)
    assert obs[layout.index("battery")] == 1.0
    decoded = env.decode_observation(obs)
    assert np.isclose(decoded["deadline_s"], 0.05)
    assert decoded["uplink_bps"].shape == (3,)
