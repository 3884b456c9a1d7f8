"""hopper-2d (AdMRL Fig 2) on gymnasium's Hopper-v5 (11-d observation).

Reward ``-|v_x - g_v| - 5|z - g_h| - 1e-3‖clip(a)‖² + 10`` (AdMRL ``hopper_2d_env.py``: coef [1, 5],
alive bonus 10). The episode ends as in that file: unless the state is finite, every entry of
``obs[2:] = (qpos[3:], clip(qvel, -10, 10))`` is below 100 in magnitude, ``z = qpos[1] > 0.7`` and
``|qpos[2]| < 0.2``.

As AdMRL's authors ran it: frame skip 1 (dt 0.002 s), rllab's reset noise, the action clipped to
[-1, 1], and ``v_x`` read as they read it, the clipped ``qvel[0]`` (``obs[5]``), not TASKS.md's
displacement over dt, so that reward and termination are functions of the observation alone.
"""

from __future__ import annotations

import numpy as np
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv

from .tasks import AuthorsResetNoise, Family, TaskEnv, by_index, grid

HORIZON = 200


class Hopper2D(AuthorsResetNoise, TaskEnv, HopperEnv):
    task_keys = ("goal_v", "goal_h")

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self.do_simulation(action, self.frame_skip)
        x_velocity = float(np.clip(self.data.qvel[0], -10, 10))
        height, angle = self.data.qpos[1], self.data.qpos[2]
        task_reward = -abs(x_velocity - self.task["goal_v"]) - 5.0 * abs(height - self.task["goal_h"])
        ctrl_cost = 1e-3 * float(np.sum(np.square(action)))
        rest = np.concatenate([self.data.qpos[3:], np.clip(self.data.qvel, -10, 10)])
        healthy = np.isfinite(self.state_vector()).all() and (np.abs(rest) < 100).all() and height > 0.7 and abs(angle) < 0.2
        info = {"x_velocity": x_velocity, "height": height, "reward_task": task_reward,
                "reward_ctrl": -ctrl_cost, "reward_survive": 10.0}
        return self._get_obs(), task_reward - ctrl_cost + 10.0, not healthy, False, info


def model_reward(obs, act, next_obs, psi):
    """The env's reward from ``obs[5]`` (clipped qvel[0]) and ``obs[0]`` (height)."""
    r = -(next_obs[..., 5] - psi[..., 0]).abs() - 5.0 * (next_obs[..., 0] - psi[..., 1]).abs()
    return r - 1e-3 * act.clamp(-1.0, 1.0).square().sum(-1) + 10.0


def model_done(next_obs):
    healthy = (next_obs.isfinite().all(-1) & (next_obs[..., 2:].abs() < 100).all(-1)
               & (next_obs[..., 0] > 0.7) & (next_obs[..., 1].abs() < 0.2))
    return ~healthy


def admrl_2d(points=6):
    """AdMRL: evaluation on the 6×6 grid over g_v ∈ [-2, 2], g_h ∈ [1.2, 2.0] (3×3 when coarse)."""
    def protocol(rng):
        tasks = grid({"goal_v": np.linspace(-2, 2, points), "goal_h": np.linspace(1.2, 2.0, points)})
        return by_index(tasks, test=range(len(tasks)))
    return protocol


FAMILIES = [Family("hopper-2d", Hopper2D, HORIZON, {"admrl": admrl_2d(), "admrl-coarse": admrl_2d(3)}, task_box={"goal_v": (-2.0, 2.0), "goal_h": (1.2, 2.0)},
                   env_kwargs={"frame_skip": 1}, model_reward=model_reward, model_done=model_done)]
