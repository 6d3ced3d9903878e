"""SplitExitVectorEnv: many SplitExitEnv worlds stepped at once.

The same world as :class:`~splitexit.envs.splitexit_env.SplitExitEnv` in replay mode, step for
step: both run the compiled core (:mod:`splitexit.envs.core`) over rows of one state layout
(:class:`~splitexit.envs.batch.Batch`), the single env one row, this env ``N``. Sub-env ``i``
owns its own ``np.random.Generator`` and draws its episodes exactly as a single env does, so
``N`` sub-envs seeded ``s .. s + N - 1`` give the observations, rewards, flags and infos of
``N`` single envs with those seeds, bit for bit (``tests/envs/test_vector.py``). An episode's
world is a pair of offsets into long shared realisations (the capacity traces, the server's
background load and outages), so a reset is one generator call per sub-env and copies nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from splitexit.envs import core
from splitexit.envs.batch import Batch
from splitexit.envs.splitexit_env import SplitExitEnv


class SplitExitVectorEnv(VectorEnv):
    """``num_envs`` SplitExitEnv worlds in replay mode, stepped together by compiled loops.

    ``gym.make_vec("splitexit:SplitExit-v0", num_envs=N,
    vectorization_mode="vector_entry_point", config={...})``. Arguments as
    :class:`SplitExitEnv` (a config dict, the registered preset, keyword overrides). Autoreset
    mode ``NEXT_STEP``: the step after an episode ends resets that sub-env and returns its first
    observation with reward 0; with ``autoreset_mode="same_step"`` the sub-env resets in the
    step that ends its episode, and ``info["final_obs"]`` holds the last observation. Infos are
    Gymnasium's vector infos: ``info[key]`` is an array over sub-envs and ``info["_" + key]``
    marks the sub-envs that stepped.

    Not vectorised (raise ``ValueError``; use ``vectorization_mode="sync"`` or ``"async"``):
    ``mode="live"`` (runs the torch model per request) and ``channel="fading"`` (draws a new
    capacity trace per episode).
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        config: dict | None = None,
        preset: dict | None = None,
        render_mode: str | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        **kwargs: Any,
    ) -> None:
        modes = {m.name.lower(): m for m in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)}
        mode = modes.get(str(getattr(autoreset_mode, "name", autoreset_mode)).lower())
        if mode is None:
            raise ValueError(
                f"autoreset_mode must be one of {list(modes)} (or AutoresetMode), "
                f"got {autoreset_mode!r}"
            )
        self._same_step = mode == AutoresetMode.SAME_STEP
        self.metadata = {**self.metadata, "autoreset_mode": mode}
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if render_mode is not None:
            raise ValueError(f"SplitExitVectorEnv does not render, got render_mode={render_mode!r}")
        self.env = env = SplitExitEnv(config, preset=preset, **kwargs)  # validates the config
        cfg = self.config = env.config
        if cfg["mode"] != "replay":
            raise ValueError(
                f"config key 'mode' must be 'replay' for the vector env, got {cfg['mode']!r}: "
                "use gym.make_vec(..., vectorization_mode='sync') for live mode"
            )
        if cfg["channel"] == "fading":
            raise ValueError(
                f"config key 'channel' must be 'trace' or 'markov' for the vector env, got "
                f"{cfg['channel']!r}: use gym.make_vec(..., vectorization_mode='sync')"
            )
        self.num_envs = num_envs
        self.render_mode = None
        self.single_observation_space = env.observation_space
        self.single_action_space = env.action_space
        self.observation_space = batch_space(env.observation_space, num_envs)
        self.action_space = batch_space(env.action_space, num_envs)
        self._multidiscrete = cfg["action_type"] == "multidiscrete"
        self._compressions = np.asarray(env.compressions)
        # with one compression its info is the same every step: one read-only array
        self._one_compression = None
        if env.n_c == 1:
            self._one_compression = np.full(num_envs, env.compressions[0])
            self._one_compression.flags.writeable = False
        self.batch = Batch(
            env.batch.world, num_envs, env.layout, cfg["outage_mean_up_s"], env.batch.chains
        )
        self._rngs: list[np.random.Generator] = []
        self._prev_done = np.zeros(num_envs, dtype=bool)
        self._all_live = np.ones(num_envs, dtype=bool)  # (read-only: shared by the infos)
        self._all_live.flags.writeable = False
        keys = core.INFO_KEYS + (core.CONTEXT_INFO_KEYS if env._context else ())
        self._info_keys = [(key, "_" + key) for key in keys]
        self._reward_keys = [(key, "_" + key) for key in core.REWARD_KEYS]

    # -- episodes ----------------------------------------------------------------------------

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        """Reset every sub-env; ``seed`` ``s`` seeds sub-env ``i`` with ``s + i`` (a list gives
        each its own). Without a seed, sub-envs continue their generators (fresh ones at first).
        With ``options={"reset_mask": mask}`` (Gymnasium 1.x) only the sub-envs of the boolean
        ``mask`` reset (and take their seeds); the others go on where they are."""
        n = self.num_envs
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            seed = int(seed)
        mask = np.ones(n, dtype=bool)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"])
            if mask.shape != (n,) or mask.dtype != np.bool_ or not mask.any():
                raise ValueError(
                    f"options['reset_mask'] must be a bool array of shape ({n},) with a True, "
                    f"got {mask.dtype} of shape {mask.shape}"
                )
            if not self._rngs and not mask.all():
                raise RuntimeError("the first reset() must reset every sub-env (no reset_mask)")
        super().reset(seed=seed if isinstance(seed, int) and mask.all() else None)
        if seed is not None or not self._rngs:
            if seed is None or isinstance(seed, int):
                seeds = [None if seed is None else seed + i for i in range(n)]
            else:
                if not isinstance(seed, (list, tuple)) or not all(
                    s is None or (isinstance(s, (int, np.integer)) and not isinstance(s, bool))
                    for s in seed
                ):
                    raise ValueError(
                        f"seed must be None, an int or a list of {n} ints (or None), got {seed!r}"
                    )
                seeds = list(seed)
                if len(seeds) != n:
                    raise ValueError(f"seed must list {n} seeds, got {len(seeds)}")
            rngs = [seeding.np_random(s)[0] if m else None for s, m in zip(seeds, mask)]
            self._rngs = [new or old for new, old in zip(rngs, self._rngs or rngs)]
        rows = np.flatnonzero(mask)
        self._reset_rows(rows)
        self._prev_done[rows] = False
        self.batch.observe()
        return self.batch.obs.copy(), {}

    def _reset_rows(self, rows: np.ndarray) -> None:
        """Draw new episodes for ``rows``, as ``SplitExitEnv.reset`` does for each."""
        rngs, draws, context = self._rngs, self.batch.draws, self.batch.context_draws
        for r in rows.tolist():  # as SplitExitEnv.reset: one call per episode (and context)
            rngs[r].random(out=draws[r])
            if context.size:
                rngs[r].random(out=context[r])
        self.batch.start(rows)

    # -- steps -------------------------------------------------------------------------------

    def _flat_actions(self, actions) -> np.ndarray:
        """Flat action indices; ``ValueError`` naming the sub-env and the space if invalid."""
        a = np.asarray(actions)
        n = self.num_envs
        shape = (n, 3) if self._multidiscrete else (n,)
        if a.shape != shape or a.dtype.kind not in "iu":
            raise ValueError(
                f"actions must be integers of shape {shape} in {self.action_space}, "
                f"got {a.dtype} of shape {a.shape}"
            )
        if a.dtype.kind == "u" and a.size and a.max() > np.iinfo(np.int64).max:
            i = int(np.flatnonzero((a > np.iinfo(np.int64).max).reshape(n, -1).any(axis=1))[0])
            raise ValueError(  # (named before int64 would wrap it to a negative number)
                f"action {a[i].tolist()!r} of sub-env {i} is not in the action space "
                f"{self.single_action_space}"
            )
        if not (a.dtype == np.int64 and a.flags.c_contiguous and a.flags.writeable):
            a = np.array(a, dtype=np.int64)  # C-contiguous and writable, as Batch.step needs
        if self._multidiscrete:
            bad = (a < 0) | (a >= self.single_action_space.nvec)
            i = int(np.flatnonzero(bad.any(axis=1))[0]) if bad.any() else -1
        else:
            i = core.first_invalid(a, self.env.n_actions)
        if i >= 0:
            raise ValueError(
                f"action {a[i].tolist()!r} of sub-env {i} is not in the action space "
                f"{self.single_action_space}"
            )
        if self._multidiscrete:
            n_t, n_c = self.env.n_t, self.env.n_c
            return core.flat_action(a[:, 0], a[:, 1], a[:, 2], n_t, n_c)
        return a

    def step(self, actions):
        """Step every sub-env with its action; Gymnasium vector returns and infos."""
        if not self._rngs:
            raise RuntimeError("call reset() before step()")
        a = self._flat_actions(actions)
        n, batch = self.num_envs, self.batch
        if self._prev_done.any():  # NEXT_STEP: these sub-envs reset and do not step
            self._reset_rows(np.flatnonzero(self._prev_done))
            live = ~self._prev_done
            rows = np.flatnonzero(live)
            batch.out = np.zeros(n, core.OUTPUT)  # reward 0, not done, for the others
        else:
            live, rows = self._all_live, batch.all_rows
            batch.out = np.empty(n, core.OUTPUT)  # (every field is written)
        busy = batch.step(rows, a)
        if busy:
            batch.observe_backlog(busy)
        out, obs = batch.out, batch.obs.copy()
        info = self._vector_info(a, live, out) if rows.size else {}
        terminated, truncated = out["terminated"], out["truncated"]
        done = terminated | truncated
        if self._same_step and done.any():  # SAME_STEP: reset now, keep the final obs
            ended = np.flatnonzero(done)
            final_obs = np.empty(n, dtype=object)
            final_obs[ended] = list(obs[ended])
            info["final_obs"], info["_final_obs"] = final_obs, done
            self._reset_rows(ended)
            batch.observe()
            obs = batch.obs.copy()
        else:
            self._prev_done = done
        return obs, out["reward"], terminated, truncated, info

    def _vector_info(self, a: np.ndarray, live: np.ndarray, out: np.ndarray) -> dict:
        """Gymnasium vector infos: arrays over all sub-envs, masked by ``_key``."""
        all_live = live is self._all_live
        compression = self._one_compression
        if compression is None:
            compression = self._compressions[out["compression"]]
        info: dict[str, Any] = {}
        for key, mask_key in self._info_keys:
            info[key], info[mask_key] = out[key], live
        info["compression"] = compression if all_live else np.where(live, compression, "")
        rewards: dict[str, np.ndarray] = {}
        for key, mask_key in self._reward_keys:
            rewards[key], rewards[mask_key] = out[key], live
        info["rewards"], info["_rewards"] = rewards, live
        if self.env._context:
            info["exit_confidences"] = self.env.exit_confidences(out)
            info["_exit_confidences"] = live
        return info

    # -- what policies and baselines use -----------------------------------------------------

    def action_masks(self) -> np.ndarray:
        """``SplitExitEnv.action_masks`` of every sub-env, one row each."""
        env = self.env
        masks = np.ones((self.num_envs, env.num_splits, env.n_t, env.n_c), dtype=bool)
        masks[:, 0, :, 1:] = masks[:, -1, :, 1:] = False
        i = np.minimum(self.batch.devices["step"], env.horizon)
        masks[~self.batch.server_reachable(i, self.batch.all_rows), :-1] = False
        return env.masks_of_space(masks)
