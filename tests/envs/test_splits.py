"""Task splits as TASKS.md states them, and determinism of tasks and trajectories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from paper_repro import envs

MUJOCO_FAMILIES = [f for f in envs.FAMILIES if f != "metaworld-ml45-env"]
PROTOCOLS = [(f, p) for f in MUJOCO_FAMILIES for p in envs.protocols(f)]

# (family, protocol) -> {split: size}; from TASKS.md
SIZES = {
    ("cheetah-vel", "mier-benchmark"): {"train": 100, "test": 30},
    ("cheetah-vel", "mier-extrapolation"): {"train": 100, "test": 5},
    ("cheetah-vel", "macaw"): {"train": 35, "test": 5},
    ("cheetah-vel", "macaw-ood"): {"train": 26, "test": 14},
    ("cheetah-vel", "macaw-sparsity-20"): {"train": 20, "test": 20},
    ("cheetah-vel", "macaw-sparsity-10"): {"train": 10, "test": 30},
    ("cheetah-vel", "macaw-sparsity-5"): {"train": 5, "test": 35},
    ("cheetah-vel", "macaw-sparsity-3"): {"train": 3, "test": 37},
    ("cheetah-dir", "macaw"): {"train": 2, "test": 2},
    ("cheetah-negated-joints", "mier"): {"train": 10, "test": 10},
    ("cheetah-highdim", "admrl"): {"train": 150, "test": 20},
    ("ant-dir", "macaw"): {"train": 45, "test": 5},
    ("ant-2d", "admrl"): {"train": 150, "test": 36},
    ("ant-2d", "admrl-ood"): {"train": 150, "test": 20},
    ("ant-3d", "admrl"): {"train": 150, "test": 48},
    ("ant-2d", "admrl-coarse"): {"train": 150, "test": 9},
    ("ant-2d", "admrl-ood-coarse"): {"train": 150, "test": 8},
    ("ant-3d", "admrl-coarse"): {"train": 150, "test": 8},
    ("walker-2d", "admrl-coarse"): {"train": 150, "test": 9},
    ("hopper-2d", "admrl-coarse"): {"train": 150, "test": 9},
    ("humanoid-dir", "mier-benchmark"): {"train": 100, "test": 30},
    ("walker-params", "macaw"): {"train": 45, "test": 5},
    ("walker-2d", "admrl"): {"train": 150, "test": 36},
    ("hopper-2d", "admrl"): {"train": 150, "test": 36},
}
SHARED_SPLITS = {("cheetah-dir", "macaw")}  # MACAW trains and tests on the same 2 directions


def test_every_protocol_is_listed():
    assert set(PROTOCOLS) == set(SIZES)


@pytest.mark.parametrize("family,protocol", PROTOCOLS)
def test_sizes_and_disjointness(family, protocol):
    tables = envs.task_table(family, protocol, seed=0)
    assert {s: len(t) for s, t in tables.items()} == SIZES[family, protocol]
    assert tuple(tables) == envs.splits(family, protocol)
    for t in tables.values():
        assert t["task_id"].is_unique
        assert all(pd.api.types.is_numeric_dtype(t[c]) for c in t.columns)
    if "train" in tables and (family, protocol) not in SHARED_SPLITS:
        train = {tuple(r) for r in tables["train"].drop(columns="task_id").round(12).to_numpy()}
        test = {tuple(r) for r in tables["test"].drop(columns="task_id").round(12).to_numpy()}
        assert not train & test
        if envs.get_family(family).task_box is None:  # a box family's pool is numbered on its own
            assert not set(tables["train"].task_id) & set(tables["test"].task_id)


@pytest.mark.parametrize("family,protocol", PROTOCOLS)
def test_same_seed_same_tasks(family, protocol):
    a, b = envs.task_table(family, protocol, seed=3), envs.task_table(family, protocol, seed=3)
    for split in a:
        pd.testing.assert_frame_equal(a[split], b[split])


def test_sampled_protocols_depend_on_the_seed():
    for family, protocol in [("cheetah-vel", "mier-benchmark"), ("ant-dir", "macaw"), ("walker-params", "macaw"),
                             ("humanoid-dir", "mier-benchmark"), ("cheetah-highdim", "admrl")]:
        a, b = envs.task_table(family, protocol, seed=0), envs.task_table(family, protocol, seed=1)
        assert not a["test"].equals(b["test"]), family


def test_cheetah_vel_splits_follow_tasks_md():
    vel = envs.task_table("cheetah-vel", "macaw")
    assert sorted(vel["test"].task_id) == [2, 7, 15, 23, 26]
    np.testing.assert_allclose(sorted(pd.concat(vel.values()).velocity), np.linspace(0.075, 3.0, 40))
    ood = envs.task_table("cheetah-vel", "macaw-ood")
    assert ood["train"].velocity.max() < 2 < ood["test"].velocity.min()
    for n, ids in {20: range(0, 40, 2), 10: range(0, 40, 4), 5: range(0, 40, 8), 3: [0, 16, 32]}.items():
        assert list(envs.task_table("cheetah-vel", f"macaw-sparsity-{n}")["train"].task_id) == list(ids)
    mier = envs.task_table("cheetah-vel", "mier-benchmark")
    assert mier["train"].velocity.between(0, 3).all() and mier["test"].velocity.between(0, 3).all()
    extra = envs.task_table("cheetah-vel", "mier-extrapolation")
    assert extra["train"].velocity.between(0, 1).all()
    assert list(extra["test"].velocity) == [0.5, 1.0, 1.5, 2.0, 2.5]


def test_other_splits_follow_tasks_md():
    assert sorted(envs.task_table("ant-dir", "macaw")["test"].task_id) == [6, 17, 23, 30, 41]
    assert list(envs.task_table("walker-params", "macaw")["test"].task_id) == [43, 15, 12, 39, 2]
    mier = envs.task_table("cheetah-vel", "mier-benchmark")["train"].velocity.to_numpy()
    extra = envs.task_table("cheetah-vel", "mier-extrapolation")["train"].velocity.to_numpy()
    assert not np.allclose(mier / 3, extra)  # protocols draw from independent streams
    assert envs.task_table("ant-dir", "macaw")["train"].theta.between(0, 2 * np.pi).all()
    assert sorted(envs.task_table("cheetah-dir", "macaw")["train"].direction) == [-1, 1]
    for protocol in ("admrl-ood", "admrl-ood-coarse"):
        ood = envs.task_table("ant-2d", protocol)["test"]
        assert (np.maximum(ood.goal_vx.abs(), ood.goal_vy.abs()) == 5).all()
    psi = envs.task_table("cheetah-highdim", "admrl")["test"].drop(columns="task_id").to_numpy()
    assert (np.abs(psi) <= 1).all() and (np.isclose(np.abs(psi), 1).sum(1) >= 1).all()
    grid3 = envs.task_table("ant-3d", "admrl")["test"]
    assert sorted(grid3.goal_z.unique()) == [0.4, 0.5, 0.6]
    for family in ("ant-2d", "ant-3d", "walker-2d", "hopper-2d"):
        box = envs.get_family(family).task_box
        for protocol in ("admrl", "admrl-coarse"):  # the coarse grids span the same box
            test = envs.task_table(family, protocol)["test"]
            for key, (lo, hi) in box.items():
                assert test[key].min() == lo and test[key].max() == hi


@pytest.mark.parametrize("family", ["ant-2d", "ant-3d", "walker-2d", "hopper-2d", "cheetah-highdim"])
def test_box_families_train_pool(family):
    """AdMRL Sec. 5: the model-free baselines train on 150 tasks drawn uniformly from the box, one pool per
    family (every test protocol shares it), fixed by the task seed."""
    box = envs.get_family(family).task_box
    pools = [envs.task_table(family, p)["train"] for p in envs.protocols(family)]
    train = pools[0]
    assert len(train) == envs.BOX_TRAIN_TASKS == 150 and list(train.columns) == ["task_id", *box]
    for other in pools[1:]:
        pd.testing.assert_frame_equal(other, train)
    for key, (lo, hi) in box.items():
        assert train[key].between(lo, hi).all() and train[key].std() > (hi - lo) / 5  # spread over the box
    assert not envs.task_table(family, envs.protocols(family)[0], seed=1)["train"].equals(train)


def test_task_parameter_observation():
    """The multi-task baselines see x(ψ) = 2(ψ - lo)/(hi - lo) - 1 after the observation, every step."""
    task = {"goal_vx": 3.0, "goal_vy": -1.5}
    np.testing.assert_allclose(envs.task_parameter("ant-2d", task), [1.0, -0.5])
    np.testing.assert_allclose(envs.task_parameter("ant-2d", {"goal_vx": -5.0, "goal_vy": 0.0}), [-5 / 3, 0.0])
    plain, mt = envs.make("ant-2d", task, seed=3), envs.make("ant-2d", task, seed=3, multitask=True)
    assert mt.observation_space.shape[0] == plain.observation_space.shape[0] + 2
    o, o_mt = plain.reset(seed=3)[0], mt.reset(seed=3)[0]
    np.testing.assert_array_equal(o_mt, np.concatenate([o, [1.0, -0.5]]).astype(np.float32))
    a = plain.action_space.sample()
    np.testing.assert_array_equal(mt.step(a)[0], np.concatenate([plain.step(a)[0], [1.0, -0.5]]).astype(np.float32))
    with pytest.raises(ValueError, match="cheetah-vel has no task box"):
        envs.make("cheetah-vel", {"velocity": 1.0}, multitask=True)


@pytest.mark.parametrize("family", MUJOCO_FAMILIES)
def test_same_seed_same_trajectory(family):
    task = envs.task_table(family, envs.protocols(family)[0])["test"].iloc[-1].to_dict()

    def rollout(seed):
        env = envs.make(family, task, seed=seed)
        obs = [env.reset(seed=seed)[0]]
        for _ in range(15):
            obs.append(env.step(env.action_space.sample())[0])
        return np.array(obs)

    np.testing.assert_array_equal(rollout(4), rollout(4))
    assert not np.array_equal(rollout(4), rollout(5))


def test_unknown_names_are_named():
    with pytest.raises(ValueError, match="unknown task family 'cheetah-velo'.*cheetah-vel"):
        envs.make("cheetah-velo", {})
    with pytest.raises(ValueError, match="no split protocol 'pearl'.*mier-benchmark"):
        envs.task_table("cheetah-vel", "pearl")
    with pytest.raises(ValueError, match="lacks \\['velocity'\\]"):
        envs.make("cheetah-vel", {"direction": 1.0})


def test_metaworld_ml45():
    tables = envs.task_table("metaworld-ml45-env", "macaw", seed=0)
    assert tables["train"].env_name.nunique() == 45 and tables["test"].env_name.nunique() == 5
    assert not set(tables["train"].env_name) & set(tables["test"].env_name)
    for split in ("train", "test"):
        row = tables[split].iloc[min(7, len(tables[split]) - 1)].to_dict()
        trajectories = []
        for _ in range(2):
            env = envs.make("metaworld-ml45-env", row, seed=0)
            obs = [env.reset(seed=0)[0]]
            steps = 0
            while True:
                o, r, term, trunc, info = env.step(env.action_space.sample())
                obs.append(o)
                steps += 1
                assert np.isfinite(r) and "success" in info
                if term or trunc:
                    break
            assert steps == 150 and trunc
            trajectories.append(np.array(obs))
        np.testing.assert_array_equal(*trajectories)
