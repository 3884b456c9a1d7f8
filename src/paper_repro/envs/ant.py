"""Ant families: ant-dir (MACAW), ant-2d and ant-3d (AdMRL).

Built on gymnasium's Ant-v5 with ``include_cfrc_ext_in_observation=False`` (the authors' observation
has no contact forces): a 27-d observation. The torso velocity is its xy displacement over ``dt``.
An episode ends when the torso height ``qpos[2]`` leaves [0.2, 1.0], in all three families
(MACAW's rand_param/ant_dir code and AdMRL's ``ant2d_task_env.py``/``ant3d_task_env.py`` agree).

ant-dir keeps v5's control period (frame skip 5, dt 0.05 s). ant-2d and ant-3d run as AdMRL's
authors ran them (``rllab/rllab/envs/mujoco/ant_env.py``): frame skip 1 (dt 0.01 s), the action
clipped to [-1, 1] before the simulator and the control cost, and the torso velocity appended to
the observation (29-d), so that a learned model's reward is a function of observations alone
(AdMRL observes the torso position and velocity too: 35-d). The appended velocity is 0 right after
a reset, as the authors' ``comvel``. v5's reset noise is already theirs: U(±0.1) on qpos, 0.1·N on qvel.
"""

from __future__ import annotations

import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.spaces import Box

from .tasks import Family, TaskEnv, by_index, grid

HORIZON = 200
Z_RANGE = (0.2, 1.0)


class AntTaskEnv(TaskEnv, AntEnv):
    """Ant whose step hands the torso velocity, height and contact forces to ``task_reward``."""

    ctrl_weight = 0.005
    velocity_in_obs = False
    """AdMRL: append the torso's (v_x, v_y) to the observation and clip actions to [-1, 1]."""

    def __init__(self, **kwargs):
        super().__init__(include_cfrc_ext_in_observation=False, healthy_z_range=Z_RANGE, **kwargs)
        self.v_xy = np.zeros(2)
        if self.velocity_in_obs:
            n = self.observation_space.shape[0] + 2
            self.observation_space = Box(-np.inf, np.inf, shape=(n,), dtype=np.float64)

    def _get_obs(self):
        obs = super()._get_obs()
        return np.concatenate([obs, self.v_xy]) if self.velocity_in_obs else obs

    def reset_model(self):
        self.v_xy = np.zeros(2)
        return super().reset_model()

    def step(self, action):
        action = np.asarray(action, dtype=np.float64)
        if self.velocity_in_obs:
            action = np.clip(action, -1.0, 1.0)
        xy_before = self.data.body("torso").xpos[:2].copy()
        self.do_simulation(action, self.frame_skip)
        v_xy = self.v_xy = (self.data.body("torso").xpos[:2] - xy_before) / self.dt
        z = self.data.qpos[2]
        ctrl_cost = self.ctrl_weight * float(np.sum(np.square(action)))
        task_reward, extra = self.task_reward(v_xy, z)
        terminated = not (np.isfinite(self.state_vector()).all() and Z_RANGE[0] <= z <= Z_RANGE[1])
        info = {"x_velocity": v_xy[0], "y_velocity": v_xy[1], "z": z,
                "reward_task": task_reward, "reward_ctrl": -ctrl_cost, **extra}
        return self._get_obs(), task_reward - ctrl_cost + sum(extra.values()), terminated, False, info

    def task_reward(self, v_xy: np.ndarray, z: float) -> tuple[float, dict[str, float]]:
        """The task's term, and any further reward terms by name (survive bonus, contact cost)."""
        raise NotImplementedError


class AntDir(AntTaskEnv):
    """``v_xy·(cos θ, sin θ) - 0.5‖a‖² - 0.5e-3‖clip(cfrc_ext, -1, 1)‖² + 1.0``."""

    task_keys = ("theta",)
    ctrl_weight = 0.5

    def task_reward(self, v_xy, z):
        theta = self.task["theta"]
        contact_cost = 0.5e-3 * float(np.sum(np.square(np.clip(self.data.cfrc_ext, -1.0, 1.0))))
        return float(v_xy @ [np.cos(theta), np.sin(theta)]), {"reward_contact": -contact_cost, "reward_survive": 1.0}


class Ant2D(AntTaskEnv):
    """``-|v_x - g_x| - |v_y - g_y| - 0.005‖clip(a)‖² + 5.05``, no contact cost.

    The survive bonus is AdMRL's ``survive_reward = 0.05`` plus its constant ``entry = 5.0``.
    """

    task_keys = ("goal_vx", "goal_vy")
    velocity_in_obs = True
    survive = 0.05 + 5.0

    def task_reward(self, v_xy, z):
        t = self.task
        return -abs(v_xy[0] - t["goal_vx"]) - abs(v_xy[1] - t["goal_vy"]), {"reward_survive": self.survive}


class Ant3D(AntTaskEnv):
    """ant-2d plus ``-30|z - g_z|``; AdMRL's ``entry`` is 3.0 here, so the survive bonus is 3.05."""

    task_keys = ("goal_vx", "goal_vy", "goal_z")
    velocity_in_obs = True
    survive = 0.05 + 3.0

    def task_reward(self, v_xy, z):
        t = self.task
        r = -abs(v_xy[0] - t["goal_vx"]) - abs(v_xy[1] - t["goal_vy"]) - 30.0 * abs(z - t["goal_z"])
        return r, {"reward_survive": self.survive}


# --- AdMRL's rewards and terminations as functions of observations (its model-based twins) --------
# obs[0] is the torso height qpos[2]; obs[27:29] the appended torso velocity. psi is ordered as the
# family's task_box. The authors' ``slbo/envs/mujoco/ant*_task_env.py`` skip the clip in the control
# cost; we clip in both, so that the model's reward is the env's (AdMRL spec R3).


def _ant_reward(obs, act, next_obs, psi, survive):
    act = act.clamp(-1.0, 1.0)
    r = -(next_obs[..., 27:29] - psi[..., :2]).abs().sum(-1) - 0.005 * act.square().sum(-1) + survive
    if psi.shape[-1] == 3:
        r = r - 30.0 * (next_obs[..., 0] - psi[..., 2]).abs()
    return r


def ant_2d_reward(obs, act, next_obs, psi):
    return _ant_reward(obs, act, next_obs, psi, Ant2D.survive)


def ant_3d_reward(obs, act, next_obs, psi):
    return _ant_reward(obs, act, next_obs, psi, Ant3D.survive)


def ant_done(next_obs):
    z = next_obs[..., 0]
    return ~(next_obs.isfinite().all(-1) & (z >= Z_RANGE[0]) & (z <= Z_RANGE[1]))


# --- task splits -------------------------------------------------------------------

ANT_DIR_TEST = [6, 17, 23, 30, 41]


def macaw_dir(rng):
    """MACAW ant-dir: 50 directions from U(0, 2π); indices [6, 17, 23, 30, 41] held out for test."""
    tasks = [{"theta": float(t)} for t in rng.uniform(0.0, 2 * np.pi, size=50)]
    return by_index(tasks, train=[i for i in range(50) if i not in ANT_DIR_TEST], test=ANT_DIR_TEST)


def admrl_2d(points=6):
    """AdMRL: evaluation on the 6×6 grid over [-3, 3]² (3×3 at the quick scale's coarse grids);
    training tasks are the algorithm's choice."""
    def protocol(rng):
        tasks = grid({"goal_vx": np.linspace(-3, 3, points), "goal_vy": np.linspace(-3, 3, points)})
        return by_index(tasks, test=range(len(tasks)))
    return protocol


def admrl_2d_ood(points=6):
    """AdMRL Fig 5: trained in [-3, 3]², tested on the boundary of [-5, 5]².

    We take the 20 boundary points of the 6×6 grid over [-5, 5]² (the same spacing as the
    in-distribution grid; the 8 of the 3×3 grid when coarse); the paper does not list its boundary tasks.
    """
    def protocol(rng):
        tasks = [t for t in grid({"goal_vx": np.linspace(-5, 5, points), "goal_vy": np.linspace(-5, 5, points)})
                 if max(abs(t["goal_vx"]), abs(t["goal_vy"])) == 5.0]
        return by_index(tasks, test=range(len(tasks)))
    return protocol


def admrl_3d(points=(4, 4, 3)):
    """AdMRL: the 4×4×3 evaluation grid over [-3, 3]² × [0.4, 0.6] (``ant3d_task_env.get_all_eval_tasks``;
    its 2×2×2 corners when coarse)."""
    def protocol(rng):
        nx, ny, nz = points
        tasks = grid({"goal_vx": np.linspace(-3, 3, nx), "goal_vy": np.linspace(-3, 3, ny),
                      "goal_z": np.linspace(0.4, 0.6, nz)})
        return by_index(tasks, test=range(len(tasks)))
    return protocol


BOX_2D = {"goal_vx": (-3.0, 3.0), "goal_vy": (-3.0, 3.0)}

FAMILIES = [
    Family("ant-dir", AntDir, HORIZON, {"macaw": macaw_dir}),
    Family("ant-2d", Ant2D, HORIZON, {"admrl": admrl_2d(), "admrl-ood": admrl_2d_ood(),
                                              "admrl-coarse": admrl_2d(3), "admrl-ood-coarse": admrl_2d_ood(3)}, task_box=BOX_2D,
           env_kwargs={"frame_skip": 1}, model_reward=ant_2d_reward, model_done=ant_done),
    Family("ant-3d", Ant3D, HORIZON, {"admrl": admrl_3d(), "admrl-coarse": admrl_3d((2, 2, 2))}, task_box={**BOX_2D, "goal_z": (0.4, 0.6)},
           env_kwargs={"frame_skip": 1}, model_reward=ant_3d_reward, model_done=ant_done),
]

