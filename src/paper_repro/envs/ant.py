"""Ant families: ant-dir (MACAW), ant-2d and ant-3d (AdMRL).

Built on gymnasium's Ant-v5 with ``include_cfrc_ext_in_observation=False`` (the authors' observation
has no contact forces): a 27-d observation. The torso velocity is its xy displacement over ``dt``
(0.05 s). An episode ends when the torso height ``qpos[2]`` leaves [0.2, 1.0], in all three families
(MACAW's rand_param/ant_dir code and AdMRL's ``ant2d_task_env.py``/``ant3d_task_env.py`` agree).
"""

from __future__ import annotations

import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv

from .tasks import Family, TaskEnv, by_index, grid

HORIZON = 200
Z_RANGE = (0.2, 1.0)


class AntTaskEnv(TaskEnv, AntEnv):
    """Ant whose step hands the torso velocity, height and contact forces to ``task_reward``."""

    ctrl_weight = 0.005

    def __init__(self, **kwargs):
        super().__init__(include_cfrc_ext_in_observation=False, healthy_z_range=Z_RANGE, **kwargs)

    def step(self, action):
        action = np.asarray(action, dtype=np.float64)
        xy_before = self.data.body("torso").xpos[:2].copy()
        self.do_simulation(action, self.frame_skip)
        v_xy = (self.data.body("torso").xpos[:2] - xy_before) / self.dt
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
    """``-|v_x - g_x| - |v_y - g_y| - 0.005‖a‖² + 5.05``, no contact cost.

    The survive bonus is AdMRL's ``survive_reward = 0.05`` plus its constant ``entry = 5.0``.
    """

    task_keys = ("goal_vx", "goal_vy")
    survive = 0.05 + 5.0

    def task_reward(self, v_xy, z):
        t = self.task
        return -abs(v_xy[0] - t["goal_vx"]) - abs(v_xy[1] - t["goal_vy"]), {"reward_survive": self.survive}


class Ant3D(AntTaskEnv):
    """ant-2d plus ``-30|z - g_z|``; AdMRL's ``entry`` is 3.0 here, so the survive bonus is 3.05."""

    task_keys = ("goal_vx", "goal_vy", "goal_z")
    survive = 0.05 + 3.0

    def task_reward(self, v_xy, z):
        t = self.task
        r = -abs(v_xy[0] - t["goal_vx"]) - abs(v_xy[1] - t["goal_vy"]) - 30.0 * abs(z - t["goal_z"])
        return r, {"reward_survive": self.survive}


# --- task splits -------------------------------------------------------------------

ANT_DIR_TEST = [6, 17, 23, 30, 41]


def macaw_dir(rng):
    """MACAW ant-dir: 50 directions from U(0, 2π); indices [6, 17, 23, 30, 41] held out for test."""
    tasks = [{"theta": float(t)} for t in rng.uniform(0.0, 2 * np.pi, size=50)]
    return by_index(tasks, train=[i for i in range(50) if i not in ANT_DIR_TEST], test=ANT_DIR_TEST)


def admrl_2d(rng):
    """AdMRL: evaluation on the 6×6 grid over [-3, 3]²; training tasks are the algorithm's choice."""
    tasks = grid({"goal_vx": np.linspace(-3, 3, 6), "goal_vy": np.linspace(-3, 3, 6)})
    return by_index(tasks, test=range(len(tasks)))


def admrl_2d_ood(rng):
    """AdMRL Fig 5: trained in [-3, 3]², tested on the boundary of [-5, 5]².

    We take the 20 boundary points of the 6×6 grid over [-5, 5]² (the same spacing as the
    in-distribution grid); the paper does not list its boundary tasks.
    """
    tasks = [t for t in grid({"goal_vx": np.linspace(-5, 5, 6), "goal_vy": np.linspace(-5, 5, 6)})
             if max(abs(t["goal_vx"]), abs(t["goal_vy"])) == 5.0]
    return by_index(tasks, test=range(len(tasks)))


def admrl_3d(rng):
    """AdMRL: the 4×4×3 evaluation grid over [-3, 3]² × [0.4, 0.6] (``ant3d_task_env.get_all_eval_tasks``)."""
    tasks = grid({"goal_vx": np.linspace(-3, 3, 4), "goal_vy": np.linspace(-3, 3, 4), "goal_z": np.linspace(0.4, 0.6, 3)})
    return by_index(tasks, test=range(len(tasks)))


BOX_2D = {"goal_vx": (-3.0, 3.0), "goal_vy": (-3.0, 3.0)}

FAMILIES = [
    Family("ant-dir", AntDir, HORIZON, {"macaw": macaw_dir}),
    Family("ant-2d", Ant2D, HORIZON, {"admrl": admrl_2d, "admrl-ood": admrl_2d_ood}, task_box=BOX_2D),
    Family("ant-3d", Ant3D, HORIZON, {"admrl": admrl_3d}, task_box={**BOX_2D, "goal_z": (0.4, 0.6)}),
]

