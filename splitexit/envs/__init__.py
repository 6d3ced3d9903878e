"""The environment: one world model, compiled once, and its views.

::

    dnn_profiles: profile      traces.py, channel.py     server.py: background    config.py
    (exits, times, payloads)   (uplink capacity)         load, outages            (validated)
              \\                        |                        |                    /
               world.py: the world's tables as named arrays (core.World), once per config
                                                 |
               core.py: a request's path (device, uplink, server, energy, outcome,
               observation), compiled with numba, over named rows: a CELL per world (its
               trace and server queue, shared by its devices), a DEVICE per device
                                                 |
               batch.py: N rows of that state and the calls of the core
                      /                                              \\
    splitexit_env.py: SplitExitEnv (one row)         vector.py: SplitExitVectorEnv (N rows)
                      \\                                              /
               splitexit.agents: SB3 / RLlib training, baselines, oracles, reports

The other modules: ``capacity.py`` (piecewise-constant capacity traces), ``energy.py`` (the
radio's power model), ``observation.py`` (the observation's layout). The plain-Python
reference model that the core is tested against lives in ``tests/envs/reference.py``.
"""

from splitexit.envs.config import REWARD_PRESETS, default_config, make_config
from splitexit.envs.splitexit_env import SplitExitEnv

__all__ = ["REWARD_PRESETS", "SplitExitEnv", "default_config", "make_config"]
