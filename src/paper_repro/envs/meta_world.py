"""Meta-World's ML45 through the ``metaworld`` package (v3 envs on gymnasium and MuJoCo; MACAW used the
v1 envs of 2020): 39-d observation, 4-d action, 150 steps per trajectory; the reward and
``info['success']`` are Meta-World's own.

``metaworld-ml45-env`` (MACAW Fig 7, App. D.1: "continuous randomisation of object and goal positions"):
a task is one environment; every episode draws new object and goal positions from the env's generator,
and the goal is in the observation (the authors' ``ML45Env``, ``obs_type='with_goal'``, ``src/envs.py``).
45 training and 5 test tasks. (Meta-World's own meta-RL task, one environment and one of its 50 goals
with the goal hidden, was the project's first definition; nothing used it once Fig 7 took MACAW's.)

A task is its environment's name alone. ``metaworld.ML45`` is not built: it draws 50 fixed goals per
environment (2,500 resets, ~25 s, and the DAG reads the task table on every snakemake call), and a fixed
goal is what this task does not have. ``apply_task`` sets the environment up as Meta-World's own
``set_task`` would, minus the frozen goal.
"""

from __future__ import annotations

import gymnasium as gym

from .tasks import Family, TaskEnv

HORIZON = 150


class MetaWorldML45Env(TaskEnv, gym.Env):
    """MACAW's ML45 task: a thin gymnasium env around one Meta-World environment whose object and goal
    positions are drawn afresh at every reset (from this env's generator: ``reset(seed=...)`` seeds it),
    with the goal in the last 3 entries of the observation."""

    task_keys = ("env_name",)

    def __init__(self):
        self.env = None

    def apply_task(self, task):
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        self.env = ALL_V3_ENVIRONMENTS[task["env_name"]]()
        # Meta-World's set_task (sawyer_xyz_env.py) without its frozen random vector: a new one every
        # reset, from this env's generator, goal visible. ML45's task kwargs are only the task_id.
        self.env._set_task_called = True
        self.env._set_task_inner()
        self.env._freeze_rand_vec, self.env.seeded_rand_vec = False, True
        self.env._partially_observable = False
        self.env.__dict__.pop("sawyer_observation_space", None)  # a cached property: recomputed with the goal's
        self.env.observation_space = self.observation_space = self.env.sawyer_observation_space  # bounds
        self.action_space = self.env.action_space

    def reset(self, *, seed=None, options=None):
        if self.env is None:
            raise RuntimeError("metaworld-ml45-env: set_task before reset")
        super().reset(seed=seed)  # seeds this env's generator; Meta-World's reset ignores its seed argument,
        self.env.np_random = self.np_random  # so the inner env draws its positions from this one
        return self.env.reset()

    def step(self, action):
        obs, reward, terminated, _, info = self.env.step(action)
        return obs, float(reward), bool(terminated), False, info  # truncation is TimeLimit's (150)

    def close(self):
        if self.env is not None:
            self.env.close()


def ml45_envs(rng):
    """ML45 as MACAW defines its tasks: the 45 training environments (ids 0-44) and the 5 test ones
    (45-49), in name order. Nothing is drawn (``rng`` is unused): every reset draws new positions."""
    from metaworld.env_dict import ML45_V3

    names = {split: sorted(ML45_V3[split]) for split in ("train", "test")}
    ids = iter(range(sum(map(len, names.values()))))
    return {split: {next(ids): {"env_name": name} for name in names[split]} for split in ("train", "test")}


def ml45_range(key: str) -> frozenset | None:
    """``env_name``: one of ML45's 50 environments (its 45 training and 5 test ones)."""
    from metaworld.env_dict import ML45_V3

    return frozenset(name for split in ("train", "test") for name in ML45_V3[split]) if key == "env_name" else None


FAMILIES = [Family("metaworld-ml45-env", MetaWorldML45Env, HORIZON, {"macaw": ml45_envs}, dynamics_vary=True,
                   task_range=ml45_range)]
