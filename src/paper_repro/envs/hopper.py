"""hopper-2d (AdMRL Fig 2) on gymnasium's Hopper-v5 (11-d observation).

Reward ``-|v_x - g_v| - 5|z - g_h| - 1e-3‖a‖² + 10`` (AdMRL ``hopper_2d_env.py``: coef [1, 5],
alive bonus 10). The episode ends as in that file: unless the state is finite, every entry of
``(qpos[3:], clip(qvel, -10, 10))`` is below 100 in magnitude, ``z = qpos[1] > 0.7`` and
``|qpos[2]| < 0.2``. ``v_x`` is the x displacement over ``dt`` (0.008 s); the authors read the
clipped ``qvel[0]``.
"""

from __future__ import annotations

import numpy as np
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv

from .tasks import Family, TaskEnv, by_index, grid

HORIZON = 200


class Hopper2D(TaskEnv, HopperEnv):
    task_keys = ("goal_v", "goal_h")

    def step(self, action):
        action = np.asarray(action, dtype=np.float64)
        x_before = self.data.qpos[0]
        self.do_simulation(action, self.frame_skip)
        x_velocity = (self.data.qpos[0] - x_before) / self.dt
        height, angle = self.data.qpos[1], self.data.qpos[2]
        task_reward = -abs(x_velocity - self.task["goal_v"]) - 5.0 * abs(height - self.task["goal_h"])
        ctrl_cost = 1e-3 * float(np.sum(np.square(action)))
        rest = np.concatenate([self.data.qpos[3:], np.clip(self.data.qvel, -10, 10)])
        healthy = np.isfinite(self.state_vector()).all() and (np.abs(rest) < 100).all() and height > 0.7 and abs(angle) < 0.2
        info = {"x_velocity": x_velocity, "height": height, "reward_task": task_reward,
                "reward_ctrl": -ctrl_cost, "reward_survive": 10.0}
        return self._get_obs(), task_reward - ctrl_cost + 10.0, not healthy, False, info


def admrl_2d(rng):
    """AdMRL: evaluation on the 6×6 grid over g_v ∈ [-2, 2], g_h ∈ [1.2, 2.0]."""
    tasks = grid({"goal_v": np.linspace(-2, 2, 6), "goal_h": np.linspace(1.2, 2.0, 6)})
    return by_index(tasks, test=range(len(tasks)))


FAMILIES = [Family("hopper-2d", Hopper2D, HORIZON, {"admrl": admrl_2d}, task_box={"goal_v": (-2.0, 2.0), "goal_h": (1.2, 2.0)})]
