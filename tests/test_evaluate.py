"""The evaluation protocol shared by meta-training's learning curves and the evaluation jobs: the
seeds, the options and the rows; and a real algorithm through it on a real family."""

from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch

from paper_repro import buffers, envs, evaluate
from paper_repro.algos import macaw, maml


def test_each_task_gets_its_seed_options_and_rows():
    calls = []

    def adapt_and_evaluate(state, make_env, horizon, *, adapt_trajectories, eval_episodes, seed, device, **options):
        calls.append((state, make_env(), horizon, adapt_trajectories, eval_episodes, seed, options, device))
        return [{"stage": "prior", "steps": 0, "return": -1.0}, {"stage": "adapted", "steps": 0, "return": float(seed)}]

    algo = SimpleNamespace(adapt_and_evaluate=adapt_and_evaluate)
    tasks = [{"task_id": 7, "goal": 1.0}, {"task_id": 3, "goal": 2.0}]
    rows = evaluate.on_test_tasks(algo, "STATE", "toy", tasks, 50, 2, 5, seed=4,
                                  make_env=lambda task: task["goal"], device="cuda", relabel=False)
    # task i of a job with seed s: seed s * 10_000 + i; every task its own env; options and device passed through
    assert [(c[1], c[5]) for c in calls] == [(1.0, 40_000), (2.0, 40_001)]
    assert all(c[0] == "STATE" and c[2:5] == (50, 2, 5) and c[6] == {"relabel": False} and c[7] == "cuda"
               for c in calls)
    assert rows == [{"task_id": 7, "stage": "prior", "steps": 0, "return": -1.0},
                    {"task_id": 7, "stage": "adapted", "steps": 0, "return": 40_000.0},
                    {"task_id": 3, "stage": "prior", "steps": 0, "return": -1.0},
                    {"task_id": 3, "stage": "adapted", "steps": 0, "return": 40_001.0}]


def test_maml_on_the_family_envs():
    family = "cheetah-vel"
    tasks = envs.task_table(family, envs.protocols(family)[0])
    split = next(iter(tasks.values())).head(2).to_dict("records")
    cfg = maml.Config(hidden=(8,), trajectories=2, meta_batch=2, meta_iterations=1)
    state = maml.train(lambda t: envs.make(family, t), split, 5, cfg, seed=0)
    rows = evaluate.on_test_tasks(maml, state, family, split, 5, 2, 2, seed=1)
    assert [(r["task_id"], r["stage"]) for r in rows] == [(t["task_id"], s) for t in split
                                                          for s in ("prior", "adapted")]
    assert all(np.isfinite(r["return"]) for r in rows)
    assert rows == evaluate.on_test_tasks(maml, state, family, split, 5, 2, 2, seed=1)  # the seeds fix the result


def test_offline_protocol_adapts_each_task_on_its_own_data():
    calls = []

    def adapt_and_evaluate(state, make_env, horizon, *, adapt_data, eval_episodes, seed, device):
        calls.append((adapt_data, eval_episodes, seed, device))
        return [{"stage": "adapted", "steps": 0, "return": float(adapt_data)}]

    algo = SimpleNamespace(adapt_and_evaluate=adapt_and_evaluate)
    tasks = [{"task_id": 7}, {"task_id": 3}]
    rows = evaluate.on_test_tasks_offline(algo, "STATE", "cheetah-vel", tasks, [10, 20], 200, 3, seed=1, step=250)
    assert calls == [(10, 3, evaluate.offline_seed(1, 0, 250), "cpu"), (20, 3, evaluate.offline_seed(1, 1, 250), "cpu")]
    assert rows == [{"task_id": 7, "stage": "adapted", "steps": 0, "return": 10.0},
                    {"task_id": 3, "stage": "adapted", "steps": 0, "return": 20.0}]
    with pytest.raises(ValueError, match="1 offline data sets for 2 test tasks"):
        evaluate.on_test_tasks_offline(algo, "STATE", "cheetah-vel", tasks, [10], 200, 3, seed=1, step=250)


def test_offline_seeds_are_fresh_at_every_evaluation_and_fixed_by_seed_task_and_step():
    """Each offline evaluation of a learning curve (and the final one) adapts on its own draws: the seed of
    (run seed, task, step) differs across steps, tasks and runs, and is the same for the same three."""
    seeds = {(s, i, step): evaluate.offline_seed(s, i, step) for s in (0, 1) for i in range(3) for step in (0, 250, 500)}
    assert len(set(seeds.values())) == len(seeds)
    assert all(evaluate.offline_seed(*key) == value for key, value in seeds.items())
    assert all(isinstance(v, int) and 0 <= v < 2**32 for v in seeds.values())


class Reach(gym.Env):
    """Toy task: reward = the action."""
    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), {}

    def step(self, action):
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), float(action[0]), False, False, {}


def test_macaw_adapts_on_a_fresh_batch_at_every_checkpoint(monkeypatch):
    """MACAW through the offline protocol: each test task's adaptation batch differs between two checkpoints'
    evaluations (steps 0 and 250) and is the same when the same step is evaluated again."""
    rng = np.random.default_rng(0)
    n = 200
    buffer = {"obs": rng.uniform(-1, 1, (n, 2)).astype(np.float32), "action": rng.uniform(-1, 1, (n, 1)).astype(np.float32),
              "reward": rng.uniform(-1, 1, n).astype(np.float32), "next_obs": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
              "terminated": np.zeros(n, bool), "truncated": np.arange(n) % 10 == 9}
    cfg = macaw.Config(width=8, depth=1, latent=4, adv_head=4, eval_batch=16, data_stride=1, train_steps=0)
    make = lambda *_: gym.wrappers.TimeLimit(Reach(), 10)  # noqa: E731
    state = macaw.train(make, [{"task_id": 0}], 10, cfg, seed=0, data=[macaw.task_data(buffer, cfg)])
    monkeypatch.setattr(envs, "make", make)
    drawn, sample_offline = [], buffers.sample_offline
    monkeypatch.setattr(buffers, "sample_offline", lambda *a, **k: (lambda b: (drawn.append(b["obs"]), b)[1])(
        sample_offline(*a, **k)))
    tasks, data = [{"task_id": 0}, {"task_id": 1}], [macaw.test_data(buffer, cfg)] * 2

    def batches(step):
        drawn.clear()
        evaluate.on_test_tasks_offline(macaw, state, "toy", tasks, data, 10, 1, seed=3, step=step)
        return list(drawn)

    first, later, again = batches(0), batches(250), batches(0)
    assert len(first) == len(later) == 2 and not torch.equal(first[0], first[1])
    assert all(not torch.equal(a, b) for a, b in zip(first, later))
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_offline_protocol_evaluates_each_task_on_its_own_env():
    """MACAW issue #7 (macaw-min never set the evaluation env's task, so every adapted policy was scored
    on task 0): each test task's rollouts run in an env of that task."""
    seen = []

    def adapt_and_evaluate(state, make_env, horizon, *, adapt_data, eval_episodes, seed, device):
        seen.append(make_env().unwrapped.task["direction"])
        return [{"stage": "adapted", "steps": 0, "return": 0.0}]

    tasks = envs.task_table("cheetah-dir", "macaw", seed=0)["test"].to_dict("records")
    evaluate.on_test_tasks_offline(SimpleNamespace(adapt_and_evaluate=adapt_and_evaluate), "STATE", "cheetah-dir",
                                   tasks, [None] * len(tasks), 200, 1, seed=0, step=0)
    assert seen == [t["direction"] for t in tasks] == [-1.0, 1.0]
