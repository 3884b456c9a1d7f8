"""Walker2d families: walker-params (MACAW) and walker-2d (AdMRL), on gymnasium's Walker2d-v5
(17-d observation).

walker-params runs as the offline data's authors ran it (MACAW took it from PEARL's
``rand_param_envs``; russellmendonca/mier_public at af56fa8): ``rand_param_envs/gym/envs/mujoco/
assets/walker2d.xml`` sets ``<option integrator="RK4" timestep="0.004"/>`` and ``friction="0.9"`` on
the right foot (``foot_geom``), 1.9 on the left (``foot_left_geom``). The frame skip is 4:
``RandomEnv.__init__`` in ``rand_param_envs/base.py`` calls ``MujocoEnv.__init__(self, file_name, 4)``
(the 5 that ``walker2d_rand_params.py`` passes lands in ``*args``, unused), as gym's
``rand_param_envs/gym/envs/mujoco/walker2d.py`` does; ``dt = timestep * frame_skip``
(``mujoco_env.py``) is 0.016 s. We load v5's assets (gym's model rewritten without global
coordinates: the same capsules, joints, actuators, RK4 and other frictions) and set the timestep and
the right foot's friction after load.

walker-2d runs as AdMRL's authors ran it (``rllab/rllab/envs/mujoco/walker_env.py``): gym 0.17.1's
``walker2d.xml`` (``requirements.txt``), frame skip 1 (dt 0.002 s), rllab's reset noise, the action
clipped to [-1, 1], and ``v_x`` read as they read it, the clipped ``qvel[0]`` (``obs[8]``), so that
reward and termination are functions of the observation alone. gym's ``walker2d.xml`` differs from
v5's assets in one number only, the right foot's friction (0.9; v5 gives both feet 1.9), which we set
after load as for walker-params.

walker-params' ``v_x`` is the x displacement over ``dt`` (TASKS.md); ``h = qpos[1]``, torso angle ``qpos[2]``.
"""

from __future__ import annotations

import mujoco
import numpy as np
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

from .tasks import AuthorsResetNoise, Family, TaskEnv, by_index, flatten, grid

HORIZON = 200

# walker-params: every element of each field is multiplied by base ** U(-3, 3) (rand_param_envs,
# log_scale_limit = 3.0, as MACAW's code uses it).
PARAM_BASE = {"body_mass": 1.5, "body_inertia": 1.5, "dof_damping": 1.3, "geom_friction": 1.5}

# walker-params' simulation, from rand_param_envs (module docstring): dt = 0.004 × 4 = 0.016 s.
PARAMS_TIMESTEP = 0.004
PARAMS_FRAME_SKIP = 4
AUTHORS_FOOT_FRICTION = {"foot_geom": 0.9, "foot_left_geom": 1.9}
"""Sliding friction of the right and left foot in both authors' ``walker2d.xml`` (rand_param_envs' for
walker-params, gym 0.17.1's for walker-2d; v5 has 1.9 on both); the torsional and rolling terms stay at
the 0.1 that every XML's ``<default>`` gives."""


def set_authors_foot_friction(model: mujoco.MjModel) -> None:
    for geom, friction in AUTHORS_FOOT_FRICTION.items():
        model.geom_friction[model.geom(geom).id, 0] = friction


class WalkerTaskEnv(TaskEnv, Walker2dEnv):
    ctrl_weight = 1e-3
    admrl = False
    """AdMRL's walker: actions clipped to [-1, 1] and v_x = clip(qvel[0], -10, 10)."""

    def step(self, action):
        action = np.asarray(action, dtype=np.float64)
        if self.admrl:
            action = np.clip(action, -1.0, 1.0)
        x_before = self.data.qpos[0]
        self.do_simulation(action, self.frame_skip)
        if self.admrl:
            x_velocity = float(np.clip(self.data.qvel[0], -10, 10))
        else:
            x_velocity = (self.data.qpos[0] - x_before) / self.dt
        height, angle = self.data.qpos[1], self.data.qpos[2]
        ctrl_cost = self.ctrl_weight * float(np.sum(np.square(action)))
        task_reward, alive = self.task_reward(x_velocity, height)
        terminated = not (0.8 < height < 2.0 and -1.0 < angle < 1.0)
        info = {"x_velocity": x_velocity, "height": height, "reward_task": task_reward,
                "reward_ctrl": -ctrl_cost, "reward_survive": alive}
        return self._get_obs(), task_reward - ctrl_cost + alive, terminated, False, info

    def task_reward(self, x_velocity: float, height: float) -> tuple[float, float]:
        """The task term and the alive bonus."""
        raise NotImplementedError


class WalkerParams(WalkerTaskEnv):
    """``v_x + 1 - 1e-3‖a‖²``; the task scales body masses, inertias, joint damping and friction.

    The simulation is rand_param_envs' (timestep 0.004 s, frame skip 4, right foot 0.9): set on the
    loaded model before the nominal fields are copied, so friction multipliers scale the authors' 0.9
    and 1.9. The nominal fields are copied once at construction and every task scales the copy, so
    multipliers never compound (``model.body_mass`` and friends are views into the model).
    """

    def __init__(self, **kwargs):
        super().__init__(frame_skip=PARAMS_FRAME_SKIP, **kwargs)
        self.model.opt.timestep = PARAMS_TIMESTEP
        set_authors_foot_friction(self.model)
        # Walker2dEnv.__init__ set render_fps from v5's 0.008 s (125); MujocoEnv wants round(1 / dt).
        self.metadata = {**self.metadata, "render_fps": int(np.round(1.0 / self.dt))}
        self.nominal = {name: getattr(self.model, name).copy() for name in PARAM_BASE}
        self.task_keys = tuple(f"{name}_{i}" for name, v in self.nominal.items() for i in range(v.size))

    def apply_task(self, task):
        for name, nominal in self.nominal.items():
            factor = np.array([task[f"{name}_{i}"] for i in range(nominal.size)]).reshape(nominal.shape)
            getattr(self.model, name)[:] = nominal * factor
        mujoco.mj_setConst(self.model, self.data)

    def task_reward(self, x_velocity, height):
        return x_velocity, 1.0


class Walker2D(AuthorsResetNoise, WalkerTaskEnv):
    """``-|v_x - g_v| - 5|z - g_h| - 1e-3‖clip(a)‖² + 10`` (AdMRL ``walker_2d_env.py``: coef [1, 5], alive 10),
    on gym 0.17.1's model: v5's with the right foot's friction at 0.9."""

    task_keys = ("goal_v", "goal_h")
    admrl = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        set_authors_foot_friction(self.model)

    def task_reward(self, x_velocity, height):
        return -abs(x_velocity - self.task["goal_v"]) - 5.0 * abs(height - self.task["goal_h"]), 10.0


def model_reward(obs, act, next_obs, psi):
    """walker-2d's reward from ``obs[8]`` (clipped qvel[0]) and ``obs[0]`` (height)."""
    r = -(next_obs[..., 8] - psi[..., 0]).abs() - 5.0 * (next_obs[..., 0] - psi[..., 1]).abs()
    return r - 1e-3 * act.clamp(-1.0, 1.0).square().sum(-1) + 10.0


def model_done(next_obs):
    h, angle = next_obs[..., 0], next_obs[..., 1]
    return ~((h > 0.8) & (h < 2.0) & (angle > -1.0) & (angle < 1.0))


def sample_params(rng: np.random.Generator, shapes: dict[str, tuple[int, ...]]) -> dict:
    task = {}
    for name, base in PARAM_BASE.items():
        task.update(flatten(name, base ** rng.uniform(-3.0, 3.0, size=shapes[name])))
    return task


def params_range(key: str) -> tuple[float, float] | None:
    """rand_param_envs' range of a multiplier: base ** [-3, 3] (its log_scale_limit), the range tasks are drawn from."""
    base = PARAM_BASE.get(key.rsplit("_", 1)[0])
    return None if base is None else (base ** -3.0, base ** 3.0)


WALKER_PARAMS_TEST = [43, 15, 12, 39, 2]  # the authors' config/walker_params/50tasks_offline.json


def macaw_params(rng):
    """MACAW walker-params: 50 parameter sets; indices [43, 15, 12, 39, 2] held out for test."""
    model = Walker2dEnv().model
    shapes = {name: getattr(model, name).shape for name in PARAM_BASE}
    tasks = [sample_params(rng, shapes) for _ in range(50)]
    return by_index(tasks, train=[i for i in range(50) if i not in WALKER_PARAMS_TEST], test=WALKER_PARAMS_TEST)


def admrl_2d(points=6):
    """AdMRL: evaluation on the 6×6 grid over g_v ∈ [-2, 2], g_h ∈ [1.0, 1.8] (3×3 when coarse)."""
    def protocol(rng):
        tasks = grid({"goal_v": np.linspace(-2, 2, points), "goal_h": np.linspace(1.0, 1.8, points)})
        return by_index(tasks, test=range(len(tasks)))
    return protocol


FAMILIES = [
    Family("walker-params", WalkerParams, HORIZON, {"macaw": macaw_params}, dynamics_vary=True, task_range=params_range),
    Family("walker-2d", Walker2D, HORIZON, {"admrl": admrl_2d(), "admrl-coarse": admrl_2d(3)}, task_box={"goal_v": (-2.0, 2.0), "goal_h": (1.0, 1.8)},
           env_kwargs={"frame_skip": 1}, model_reward=model_reward, model_done=model_done),
]
