"""metaworld-ml45 (MACAW Fig 7): Meta-World's ML45 through the ``metaworld`` package (v3 envs on
gymnasium and MuJoCo; MACAW used the v1 envs of 2020). 39-d observation with the goal hidden,
4-d action, 150 steps per trajectory; the reward and ``info['success']`` are Meta-World's own.

A task is one environment name and one of its 50 goals (continuous randomisation of object and
goal positions). Building ``metaworld.ML45`` takes ~30 s, so the task table stores each goal's
data (Meta-World's pickled ``Task.data``, base64) and ``make`` rebuilds the task from the row alone.
"""

from __future__ import annotations

import base64
import functools

import gymnasium as gym

from .tasks import Family, TaskEnv

HORIZON = 150


@functools.lru_cache(maxsize=4)
def benchmark(seed: int):
    import metaworld

    return metaworld.ML45(seed=seed)


class MetaWorldML45(TaskEnv, gym.Env):
    """A thin gymnasium env that builds the Meta-World env of the task it is given."""

    task_keys = ("env_name", "goal", "task_data")

    def __init__(self):
        self.env = None

    def apply_task(self, task):
        import metaworld
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        self.env = ALL_V3_ENVIRONMENTS[task["env_name"]]()
        self.env.set_task(metaworld.Task(env_name=task["env_name"], data=base64.b64decode(task["task_data"])))
        self.observation_space = self.env.observation_space
        self.action_space = self.env.action_space

    def reset(self, *, seed=None, options=None):
        if self.env is None:
            raise RuntimeError("metaworld-ml45: set_task before reset")
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        obs, reward, terminated, _, info = self.env.step(action)
        return obs, float(reward), bool(terminated), False, info  # truncation is TimeLimit's (150)

    def close(self):
        if self.env is not None:
            self.env.close()


def ml45(rng):
    """ML45: the 45 train environments' 50 goals each for training, the 5 test environments' for test.

    Meta-World draws the goals from its own seed, which we take from ``rng``.
    """
    bench = benchmark(int(rng.integers(2**31)))
    splits = {}
    for split, tasks in (("train", bench.train_tasks), ("test", bench.test_tasks)):
        goal_of = {}
        rows = {}
        for task in tasks:
            goal = goal_of[task.env_name] = goal_of.get(task.env_name, -1) + 1
            rows[len(rows) + (0 if split == "train" else len(bench.train_tasks))] = {
                "env_name": task.env_name, "goal": goal, "task_data": base64.b64encode(task.data).decode()}
        splits[split] = rows
    return splits


FAMILIES = [Family("metaworld-ml45", MetaWorldML45, HORIZON, {"macaw": ml45}, dynamics_vary=True)]
