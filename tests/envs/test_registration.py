"""Every family as a registered Gymnasium env: ``gymnasium.make("paper_repro/<Family>-v0", task=...)``."""

import re
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from paper_repro import envs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "tasks.md"
# Gymnasium's own MuJoCo envs draw the same two: their observation boxes are unbounded.
UNBOUNDED = ("observation space minimum value is -infinity", "observation space maximum value is infinity")


def first_test_task(family: str) -> dict:
    return envs.task_table(family, envs.protocols(family)[0])["test"].iloc[0].to_dict()


def test_ids():
    assert envs.env_id("cheetah-vel") == "paper_repro/CheetahVel-v0"
    assert envs.env_id("ant-2d") == "paper_repro/Ant2D-v0"
    assert envs.env_id("cheetah-highdim") == "paper_repro/CheetahHighDim-v0"
    assert envs.env_id("metaworld-ml45-env") == "paper_repro/MetaWorldML45Env-v0"
    assert len({envs.env_id(f) for f in envs.FAMILIES}) == len(envs.FAMILIES) == 12


@pytest.mark.parametrize("family", envs.FAMILIES)
def test_registered_with_the_family_horizon(family):
    spec = gym.spec(envs.env_id(family))
    assert spec.max_episode_steps == envs.get_family(family).horizon
    assert spec.kwargs == {"family": family}
    assert isinstance(spec.entry_point, str)  # a spec is JSON: Minari stores it


@pytest.mark.parametrize("family", envs.FAMILIES)
def test_check_env(family):
    """Gymnasium's checker passes on every family, with no warning but the unbounded observation box.
    Rendering is not checked: 'human' needs a display (check_env's own advice for CI)."""
    env = gym.make(envs.env_id(family), task=first_test_task(family))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=True)
    env.close()
    others = [str(w.message) for w in caught if not any(u in str(w.message) for u in UNBOUNDED)]
    assert others == []


@pytest.mark.parametrize("family", ["cheetah-vel", "ant-2d", "walker-params"])
def test_make_is_gymnasium_make(family):
    """envs.make is gymnasium.make plus a seed: the same trajectory, the same time limit."""
    task = first_test_task(family)
    ours, theirs = envs.make(family, task, seed=3), gym.make(envs.env_id(family), task=task)
    assert ours.spec.id == theirs.spec.id == envs.env_id(family)
    o1, o2 = ours.reset(seed=3)[0], theirs.reset(seed=3)[0]
    np.testing.assert_array_equal(o1, o2)
    rng = np.random.default_rng(0)
    for _ in range(10):
        a = rng.uniform(-1, 1, ours.action_space.shape)
        for x, y in zip(ours.step(a), theirs.step(a)):
            np.testing.assert_array_equal(x, y) if not isinstance(x, dict) else None
    assert theirs.unwrapped.task == {k: v for k, v in task.items() if k != "task_id"}


def test_horizon_truncates():
    env = gym.make("paper_repro/CheetahVel-v0", task={"velocity": 2.5})
    env.reset(seed=0)
    steps, truncated = 0, False
    while not truncated:
        *_, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
    assert steps == 200 and not terminated


@pytest.mark.parametrize("family, task, message", [
    ("cheetah-vel", {"velocity": 1.0, "direction": 1.0}, "cheetah-vel: unknown task key 'direction'"),
    ("cheetah-vel", {"speed": 1.0}, r"cheetah-vel: task .* lacks \['velocity'\]"),
    ("cheetah-dir", {"direction": 0.5}, r"cheetah-dir: task key 'direction' = 0.5 is not one of \[-1.0, 1.0\]"),
    ("cheetah-negated-joints", {**{f"mask_{i}": 1.0 for i in range(6)}, "mask_3": 0.0},
     "cheetah-negated-joints: task key 'mask_3' = 0.0 is not one of"),
    ("cheetah-highdim", {**{f"psi_{i}": 0.0 for i in range(18)}, "psi_7": 1.5},
     r"cheetah-highdim: task key 'psi_7' = 1.5 is outside its range \[-1, 1\]"),
    ("metaworld-ml45-env", {"env_name": "reach-v9"}, "metaworld-ml45-env: task key 'env_name' = 'reach-v9' is not one of"),
    ("ant-2d", {"goal_vx": 0.0, "goal_vy": 0.0, "goal_z": 0.5}, "ant-2d: unknown task key 'goal_z'"),
])
def test_bad_tasks_are_refused_naming_family_and_key(family, task, message):
    with pytest.raises(ValueError, match=message):
        gym.make(envs.env_id(family), task=task)
    with pytest.raises(ValueError, match=message):
        envs.make(family, task)


def test_walker_params_range_is_rand_param_envs():
    row = envs.task_table("walker-params", "macaw")["train"].iloc[0].to_dict()
    gym.make("paper_repro/WalkerParams-v0", task=row)  # the papers' tasks are inside
    key = next(k for k in row if k.startswith("dof_damping"))
    with pytest.raises(ValueError, match=f"walker-params: task key '{key}' = 3.0 is outside its range"):
        gym.make("paper_repro/WalkerParams-v0", task={**row, key: 3.0})  # 1.3 ** 3 = 2.197


def test_tasks_outside_the_box_are_tasks():
    """A task box is where AdMRL trains, not a range: its ant-2d test tasks lie outside it (Fig 5)."""
    ood = envs.task_table("ant-2d", "admrl-ood")["test"].iloc[0].to_dict()
    assert max(abs(ood["goal_vx"]), abs(ood["goal_vy"])) == 5.0
    gym.make("paper_repro/Ant2D-v0", task=ood)


def test_a_task_is_required():
    with pytest.raises(ValueError, match=r"cheetah-vel: gymnasium.make\('paper_repro/CheetahVel-v0'\) needs the task"):
        gym.make("paper_repro/CheetahVel-v0")


def test_docs_list_every_id():
    text = DOCS.read_text()
    for family in envs.FAMILIES:
        assert re.search(rf"`{re.escape(envs.env_id(family))}`", text), f"docs/tasks.md lacks {envs.env_id(family)}"
