"""HalfCheetah families: cheetah-vel, cheetah-dir, cheetah-negated-joints, cheetah-highdim.

Built on gymnasium's HalfCheetah-v5 (assets and 17-d observation of v5; the authors used gym 0.12's
v2 assets through rllab / rlkit, whose observation is the same 17-d vector). ``v_x`` is the torso's
x displacement over the env's ``dt`` (0.05 s), as in TASKS.md. Episodes last 200 steps and never
terminate early.
"""

from __future__ import annotations

import functools
import itertools
import json
from pathlib import Path

import numpy as np
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

from .tasks import Family, TaskEnv, by_index, box_boundary, complement, flatten, vector

HORIZON = 200
STATS_FILE = Path(__file__).with_name("data") / "admrl_cheetah_highdim_stats.json"
"""The authors' μ, σ of cheetah-highdim's 18-d state, converted from ``HCstate-state.pkl`` (AdMRL spec R5)."""


class CheetahTaskEnv(TaskEnv, HalfCheetahEnv):
    """HalfCheetah whose step reports the pieces every cheetah reward is made of."""

    ctrl_weight = 0.05

    def action_to_sim(self, action: np.ndarray) -> np.ndarray:
        return action

    def step(self, action):
        action = np.asarray(action, dtype=np.float64)
        x_before = self.data.qpos[0]
        self.do_simulation(self.action_to_sim(action), self.frame_skip)
        x_velocity = (self.data.qpos[0] - x_before) / self.dt
        ctrl_cost = self.ctrl_weight * float(np.sum(np.square(action)))
        task_reward = self.task_reward(x_velocity)
        info = {"x_velocity": x_velocity, "reward_task": task_reward, "reward_ctrl": -ctrl_cost}
        return self._get_obs(), task_reward - ctrl_cost, False, False, info

    def task_reward(self, x_velocity: float) -> float:
        raise NotImplementedError


class CheetahVel(CheetahTaskEnv):
    """``-|v_x - v_goal| - 0.05‖a‖²``."""

    task_keys = ("velocity",)

    def task_reward(self, x_velocity):
        return -abs(x_velocity - self.task["velocity"])


class CheetahDir(CheetahTaskEnv):
    """``d·v_x - 0.05‖a‖²``, d ∈ {-1, +1}."""

    task_keys = ("direction",)

    def task_reward(self, x_velocity):
        return self.task["direction"] * x_velocity


class CheetahNegatedJoints(CheetahTaskEnv):
    """``v_x - 0.1‖a‖²``; a ±1 mask over the 6 actuators multiplies the action before the simulator."""

    task_keys = tuple(f"mask_{i}" for i in range(6))
    ctrl_weight = 0.1

    def apply_task(self, task):
        self.mask = vector(task, "mask", 6)

    def action_to_sim(self, action):
        return self.mask * action

    def task_reward(self, x_velocity):
        return x_velocity


def highdim_state(data) -> np.ndarray:
    """``s = (qpos[0:9], qvel[0:9])``, the 18-d state the AdMRL high-dimensional reward reads."""
    return np.concatenate([data.qpos[:9], data.qvel[:9]])


class CheetahHighDim(CheetahTaskEnv):
    """``ψᵀ·((s' - μ)/σ) - 0.05‖clip(a)‖²`` with ψ ∈ [-1, 1]^18 and the authors' μ, σ.

    As AdMRL's authors ran it (``half_cheetah_linearstate_env.py``): frame skip 1 (dt 0.01 s) and the
    action clipped to [-1, 1] before the simulator and the control cost.
    """

    task_keys = tuple(f"psi_{i}" for i in range(18))

    def apply_task(self, task):
        self.psi = vector(task, "psi", 18)
        stats = load_highdim_stats()
        self.mu, self.sigma = stats["mean"], stats["std"]

    def step(self, action):
        return super().step(np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0))

    def task_reward(self, x_velocity):
        return float(self.psi @ ((highdim_state(self.data) - self.mu) / self.sigma))


@functools.cache
def load_highdim_stats() -> dict[str, np.ndarray]:
    stats = json.loads(STATS_FILE.read_text())
    return {k: np.array(stats[k]) for k in ("mean", "std")}


def highdim_model_reward(obs, act, next_obs, psi):
    """The env's reward: the observation is the 18-d state itself."""
    stats = load_highdim_stats()
    mu, sigma = (next_obs.new_tensor(stats[k]) for k in ("mean", "std"))
    return (psi * ((next_obs - mu) / sigma)).sum(-1) - 0.05 * act.clamp(-1.0, 1.0).square().sum(-1)


def never_done(next_obs):
    return next_obs.new_zeros(next_obs.shape[:-1]).bool()


# --- task splits -------------------------------------------------------------------

MACAW_VELOCITIES = np.linspace(0.075, 3.0, 40)
MACAW_TEST = [2, 7, 15, 23, 26]


def _velocities(values) -> list[dict]:
    return [{"velocity": float(v)} for v in values]


def mier_benchmark(rng):
    """PEARL's protocol (MIER Fig 2): 130 velocities from U(0, 3); the first 100 train, the last 30 test."""
    tasks = _velocities(rng.uniform(0.0, 3.0, size=130))
    return by_index(tasks, train=range(100), test=range(100, 130))


def mier_extrapolation(rng):
    """MIER Fig 3: train velocities from U(0, 1), test 0.5, 1.0, ..., 2.5 (adapting on 2 trajectories).

    The paper gives no count; the authors' half_cheetah_vel.py task set "restricted-0-1" draws 130
    velocities from U(0, 1) of which the first 100 train.
    """
    tasks = _velocities(rng.uniform(0.0, 1.0, size=100)) + _velocities([0.5, 1.0, 1.5, 2.0, 2.5])
    return by_index(tasks, train=range(100), test=range(100, 105))


def macaw(rng):
    """MACAW: 40 velocities linspace(0.075, 3.0, 40); test indices [2, 7, 15, 23, 26], the other 35 train."""
    return by_index(_velocities(MACAW_VELOCITIES), train=complement(40, MACAW_TEST), test=MACAW_TEST)


def macaw_ood(rng):
    """MACAW Table 1: train indices 0-25 (v ≤ 1.95), test 26-39 (v ≥ 2.025).

    That is 14 test tasks where the paper reports 13; the authors' config/cheetah_vel/extrapolation.json
    also lists indices 26-39.
    """
    return by_index(_velocities(MACAW_VELOCITIES), train=range(26), test=range(26, 40))


def macaw_sparsity(n_train: int):
    """MACAW Fig 4 right: n_train tasks at every (40 / n_train)-th index; test = every other velocity
    (the authors' config/cheetah_vel/{half,quarter,eighth,sixteenth}_tasks_offline.json)."""
    stride = {20: 2, 10: 4, 5: 8, 3: 16}[n_train]

    def protocol(rng):
        train = list(range(0, 40, stride)[:n_train])
        return by_index(_velocities(MACAW_VELOCITIES), train=train, test=complement(40, train))

    protocol.__doc__ = f"MACAW Fig 4 right: {n_train} train tasks (indices 0, {stride}, ...); test = the other {40 - n_train}."
    return protocol


def macaw_dir(rng):
    """MACAW cheetah-dir: exactly 2 tasks, d = -1 and +1, used for both training and testing."""
    tasks = [{"direction": -1.0}, {"direction": 1.0}]
    return by_index(tasks, train=[0, 1], test=[0, 1])


def negated_joint_masks(negate: list[tuple[int, ...]]) -> list[dict]:
    masks = []
    for joints in negate:
        mask = np.ones(6)
        mask[list(joints)] = -1.0
        masks.append(flatten("mask", mask))
    return masks


def mier_negated(rng):
    """MIER Fig 4: train = the 10 masks negating exactly 3 of joints 1-5 (never 6);
    test = the 10 masks negating joint 6 and exactly 2 of joints 1-5."""
    train = list(itertools.combinations(range(5), 3))
    test = [pair + (5,) for pair in itertools.combinations(range(5), 2)]
    return by_index(negated_joint_masks(train + test), train=range(10), test=range(10, 20))


def admrl_highdim(rng):
    """AdMRL Fig 4b: training tasks are picked by the algorithm in [-1, 1]^18; 20 test tasks uniform on its boundary."""
    psi = box_boundary(rng, -np.ones(18), np.ones(18), 20)
    return by_index([flatten("psi", p) for p in psi], test=range(20))


SIGNS = frozenset({-1.0, 1.0})
"""A direction, or a mask entry: the only values a sign can take."""

FAMILIES = [
    Family("cheetah-vel", CheetahVel, HORIZON, {
        "mier-benchmark": mier_benchmark,
        "mier-extrapolation": mier_extrapolation,
        "macaw": macaw,
        "macaw-ood": macaw_ood,
        **{f"macaw-sparsity-{n}": macaw_sparsity(n) for n in (20, 10, 5, 3)},
    }),
    Family("cheetah-dir", CheetahDir, HORIZON, {"macaw": macaw_dir}, task_range={"direction": SIGNS}.get),
    Family("cheetah-negated-joints", CheetahNegatedJoints, HORIZON, {"mier": mier_negated}, dynamics_vary=True,
           task_range={f"mask_{i}": SIGNS for i in range(6)}.get),
    # AdMRL observes (qpos, qvel), 18 numbers: the x position the reward reads is kept.
    Family("cheetah-highdim", CheetahHighDim, HORIZON, {"admrl": admrl_highdim},
           task_box={f"psi_{i}": (-1.0, 1.0) for i in range(18)},
           env_kwargs={"exclude_current_positions_from_observation": False, "frame_skip": 1},
           model_reward=highdim_model_reward, model_done=never_done,
           task_range={f"psi_{i}": (-1.0, 1.0) for i in range(18)}.get),  # AdMRL's ψ space
]
