"""humanoid-dir (PEARL's protocol, MIER Fig 2), on gymnasium's Humanoid-v5 (348-d observation with
its default cinert/cvel/qfrc_actuator/cfrc_ext terms; the authors' gym v2 env had 376).

Reward ``1.25·(dir·v_com_xy) - 0.1‖a‖² - min(0.5e-6‖cfrc_ext‖², 10) + 5``: the authors divide the
centre-of-mass displacement by the 0.003 s timestep and multiply by 0.25, which with frame skip 5 is
1.25 × the displacement over ``dt`` (0.015 s). The episode ends when the torso height ``qpos[2]``
leaves (1, 2).

Actions are in the unit box [-1, 1]^17, mapped onto the motors' range ±0.4 before the step, as the
authors' ``NormalizedBoxEnv`` does (``mier_public`` metalearning_envs/wrappers.py; oyster, rlkit): the
learners' policies live in the unit box, so SAC's log-probabilities and its target entropy (MIER: -1)
are measured there. In gymnasium's ±0.4 units every log-probability would be 17·ln 0.4 = -15.6 lower,
and MIER's target entropy of -1 beyond the highest entropy a squashed policy can reach (17·ln 0.8 = -3.8):
its temperature then grows without bound. The reward's control cost is on the motors' action.
"""

from __future__ import annotations

import numpy as np
from gymnasium.spaces import Box
from gymnasium.envs.mujoco.humanoid_v5 import HumanoidEnv, mass_center

from .tasks import Family, TaskEnv, by_index

HORIZON = 200


class HumanoidDir(TaskEnv, HumanoidEnv):
    task_keys = ("theta",)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.ctrl_low, self.ctrl_high = self.action_space.low.astype(np.float64), self.action_space.high.astype(np.float64)
        self.action_space = Box(-1.0, 1.0, self.action_space.shape, np.float32)

    def step(self, action):
        unit = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        action = self.ctrl_low + (unit + 1.0) * 0.5 * (self.ctrl_high - self.ctrl_low)
        com_before = mass_center(self.model, self.data)
        self.do_simulation(action, self.frame_skip)
        v_com = (mass_center(self.model, self.data) - com_before) / self.dt
        theta = self.task["theta"]
        forward = 1.25 * float(v_com @ [np.cos(theta), np.sin(theta)])
        ctrl_cost = 0.1 * float(np.sum(np.square(action)))
        contact_cost = min(0.5e-6 * float(np.sum(np.square(self.data.cfrc_ext))), 10.0)
        z = self.data.qpos[2]
        terminated = not (1.0 < z < 2.0)
        info = {"x_velocity": v_com[0], "y_velocity": v_com[1], "reward_task": forward,
                "reward_ctrl": -ctrl_cost, "reward_contact": -contact_cost, "reward_survive": 5.0}
        return self._get_obs(), forward - ctrl_cost - contact_cost + 5.0, terminated, False, info


def mier_benchmark(rng):
    """PEARL's humanoid-dir: 130 directions from U(0, 2π); the first 100 train, the last 30 test."""
    tasks = [{"theta": float(t)} for t in rng.uniform(0.0, 2 * np.pi, size=130)]
    return by_index(tasks, train=range(100), test=range(100, 130))


FAMILIES = [Family("humanoid-dir", HumanoidDir, HORIZON, {"mier-benchmark": mier_benchmark})]
