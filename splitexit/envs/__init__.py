"""The Gymnasium environment and the world it simulates."""

from splitexit.envs.config import REWARD_PRESETS, default_config, make_config
from splitexit.envs.splitexit_env import SplitExitEnv

__all__ = ["REWARD_PRESETS", "SplitExitEnv", "default_config", "make_config"]
