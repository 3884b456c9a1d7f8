"""The evaluation protocol shared by meta-training's learning curves and the evaluation jobs: the
seeds, the options and the rows; and a real algorithm through it on a real family."""

from types import SimpleNamespace

import numpy as np
import pytest

from paper_repro import envs, evaluate
from paper_repro.algos import maml


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
    rows = evaluate.on_test_tasks_offline(algo, "STATE", "cheetah-vel", tasks, [10, 20], 200, 3, seed=1)
    assert calls == [(10, 3, 10_000, "cpu"), (20, 3, 10_001, "cpu")]
    assert rows == [{"task_id": 7, "stage": "adapted", "steps": 0, "return": 10.0},
                    {"task_id": 3, "stage": "adapted", "steps": 0, "return": 20.0}]
    with pytest.raises(ValueError, match="1 offline data sets for 2 test tasks"):
        evaluate.on_test_tasks_offline(algo, "STATE", "cheetah-vel", tasks, [10], 200, 3, seed=1)


def test_offline_protocol_evaluates_each_task_on_its_own_env():
    """MACAW issue #7 (macaw-min never set the evaluation env's task, so every adapted policy was scored
    on task 0): each test task's rollouts run in an env of that task."""
    seen = []

    def adapt_and_evaluate(state, make_env, horizon, *, adapt_data, eval_episodes, seed, device):
        seen.append(make_env().unwrapped.task["direction"])
        return [{"stage": "adapted", "steps": 0, "return": 0.0}]

    tasks = envs.task_table("cheetah-dir", "macaw", seed=0)["test"].to_dict("records")
    evaluate.on_test_tasks_offline(SimpleNamespace(adapt_and_evaluate=adapt_and_evaluate), "STATE", "cheetah-dir",
                                   tasks, [None] * len(tasks), 200, 1, seed=0)
    assert seen == [t["direction"] for t in tasks] == [-1.0, 1.0]
