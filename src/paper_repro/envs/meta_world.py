"""Meta-World's ML45 through the ``metaworld`` package (v3 envs on gymnasium and MuJoCo; MACAW used the
v1 envs of 2020): 39-d observation, 4-d action, 150 steps per trajectory; the reward and
``info['success']`` are Meta-World's own.

``metaworld-ml45-env`` (MACAW Fig 7, App. D.1: "continuous randomisation of object and goal positions"):
a task is one environment; every episode draws new object and goal positions from the env's generator,
and the goal is in the observation (the authors' ``ML45Env``, ``obs_type='with_goal'``, ``src/envs.py``).
45 training and 5 test tasks. (Meta-World's own meta-RL task, one environment and one of its 50 goals
with the goal hidden, was the project's first definition; nothing used it once Fig 7 took MACAW's.)

Building ``metaworld.ML45`` takes ~30 s, so the task table stores a goal's data (Meta-World's pickled
``Task.data``, base64) and ``make`` rebuilds the task from the row alone.
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


class MetaWorldML45Env(TaskEnv, gym.Env):
    """MACAW's ML45 task: a thin gymnasium env around one Meta-World environment whose object and goal
    positions are drawn afresh at every reset (from this env's generator: ``reset(seed=...)`` seeds it),
    with the goal in the last 3 entries of the observation."""

    task_keys = ("env_name", "task_data")

    def __init__(self):
        self.env = None

    def apply_task(self, task):
        import metaworld
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        self.env = ALL_V3_ENVIRONMENTS[task["env_name"]]()
        # Meta-World needs a task before its first reset; then a new random vector every reset, goal visible
        self.env.set_task(metaworld.Task(env_name=task["env_name"], data=base64.b64decode(task["task_data"])))
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
    (45-49), each with its first goal's data (the positions are redrawn at every reset anyway)."""
    bench = benchmark(int(rng.integers(2**31)))
    splits, i = {}, 0
    for split, tasks in (("train", bench.train_tasks), ("test", bench.test_tasks)):
        first = {}
        for task in tasks:
            first.setdefault(task.env_name, task)
        splits[split] = {}
        for name in sorted(first):
            splits[split][i] = {"env_name": name, "task_data": base64.b64encode(first[name].data).decode()}
            i += 1
    return splits


FAMILIES = [Family("metaworld-ml45-env", MetaWorldML45Env, HORIZON, {"macaw": ml45_envs}, dynamics_vary=True)]
