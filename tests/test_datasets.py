"""Collected buffers as Minari datasets, and Minari datasets as the offline meta-learners' data."""

import dataclasses
import json

import gymnasium as gym
import minari
import numpy as np
import pytest
import torch

from conftest import ROOT
from paper_repro import buffers, datasets, envs, evaluate, io
from paper_repro import config as prconfig
from paper_repro.algos import macaw, mt_awr, offline_pearl


def collected(path, family: str, task: dict, steps: int, seed: int = 0) -> dict:
    """A buffer as collection writes it (random actions): episodes end by termination, by the time limit,
    and the last is cut off where the buffer ends; with a provenance sidecar."""
    env = envs.make(family, task, seed=seed)
    buf = buffers.ReplayBuffer(steps, env.observation_space.shape[0], env.action_space.shape[0])
    obs, _ = env.reset(seed=seed)
    for _ in range(steps):
        action = env.action_space.sample()
        nxt, reward, terminated, truncated, _ = env.step(action)
        buf.add(obs, action, reward, nxt, terminated, truncated)
        obs = env.reset()[0] if terminated or truncated else nxt
    buffers.save_buffer(path, buf.arrays(), {"family": family, **task}, {"learning_starts": 50, "gamma": 0.99})
    io.write_provenance(path, {"family": family, "algo": "paper_repro.algos.sac"}, rule="collect_test")
    return buffers.load_buffer(path)


def test_dataset_ids():
    assert datasets.dataset_id("cheetah-vel", 3) == "paper-repro/cheetah-vel/task3-v0"
    assert datasets.dataset_id("walker-params", 43.0) == "paper-repro/walker-params/task43-v0"


@pytest.mark.parametrize("family, protocol, steps", [("hopper-2d", "admrl", 700), ("cheetah-vel", "macaw", 450)])
def test_every_episode_is_the_buffer_rows(tmp_path, monkeypatch, family, protocol, steps):
    task = envs.task_table(family, protocol)["test"].iloc[3].to_dict()
    b = collected(tmp_path / "task.npz", family, task, steps)
    ident = datasets.export_buffer(tmp_path / "task.npz", family, "sac", tmp_path / "minari")
    assert ident == f"paper-repro/{family}/task{int(task['task_id'])}-v0"

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    ds = minari.load_dataset(ident)
    starts, ends = buffers.episode_bounds(b["terminated"], b["truncated"])
    assert ds.total_episodes == len(starts) and ds.total_steps == steps
    for ep, s, e in zip(ds.iterate_episodes(), starts, ends, strict=True):
        np.testing.assert_array_equal(ep.observations[:-1], b["obs"][s:e])
        np.testing.assert_array_equal(ep.observations[1:], b["next_obs"][s:e])  # the true final observation last
        np.testing.assert_array_equal(ep.actions, b["action"][s:e])
        np.testing.assert_array_equal(ep.rewards, b["reward"][s:e])
        np.testing.assert_array_equal(ep.terminations, b["terminated"][s:e])  # apart from truncations
        np.testing.assert_array_equal(ep.truncations, b["truncated"][s:e])
    assert not (b["terminated"][-1] or b["truncated"][-1])  # the buffer ends inside an episode, and so does the dataset
    if family == "hopper-2d":  # both ends occur
        assert b["terminated"].any() and b["truncated"].any()

    meta = ds.storage.metadata["paper_repro"]
    params = {k: v for k, v in task.items() if k != "task_id"}
    assert meta["family"] == family and meta["task_id"] == task["task_id"] and meta["task"] == params
    assert meta["algorithm"] == "sac" and ds.storage.metadata["algorithm_name"] == "sac"
    assert meta["algorithm_config"] == {"learning_starts": 50, "gamma": 0.99}
    assert meta["buffer_sha256"] == io.file_sha256(tmp_path / "task.npz")
    assert meta["provenance"]["rule"] == "collect_test" and "config_hash" in meta["provenance"]

    env = ds.recover_environment()
    assert env.spec.id == envs.env_id(family) and env.spec.max_episode_steps == envs.get_family(family).horizon
    assert env.unwrapped.task == params
    np.testing.assert_array_equal(env.reset(seed=5)[0], envs.make(family, task).reset(seed=5)[0])

    back = buffers.load_task_buffer(tmp_path / "minari" / ident, family, task)  # the one data layer
    for k in buffers.ARRAYS:
        assert back[k].dtype == b[k].dtype
        np.testing.assert_array_equal(back[k], b[k])


def test_a_buffer_minari_cannot_hold_is_refused(tmp_path):
    b = collected(tmp_path / "task.npz", "cheetah-vel", {"task_id": 0, "velocity": 1.0}, 30)
    b["next_obs"][10] += 1.0  # no longer row 11's observation, inside an episode
    buffers.save_buffer(tmp_path / "bad.npz", b, b["task"], b["config"])
    with pytest.raises(ValueError, match=r"bad.npz: row 10's next_obs is not row 11's obs"):
        datasets.export_buffer(tmp_path / "bad.npz", "cheetah-vel", "td3", tmp_path / "minari")
    with pytest.raises(ValueError, match="holds a task of 'cheetah-vel', not of 'cheetah-dir'"):
        datasets.export_buffer(tmp_path / "task.npz", "cheetah-dir", "sac", tmp_path / "minari")


def test_another_tasks_dataset_is_refused(tmp_path):
    collected(tmp_path / "task.npz", "cheetah-vel", {"task_id": 2, "velocity": 1.0}, 30)
    ident = datasets.export_buffer(tmp_path / "task.npz", "cheetah-vel", "td3", tmp_path / "minari")
    with pytest.raises(ValueError, match="holds task .* expected"):
        buffers.load_task_buffer(tmp_path / "minari" / ident, "cheetah-vel", {"task_id": 2, "velocity": 1.5})
    with pytest.raises(FileNotFoundError, match="no Minari dataset"):
        buffers.load_minari(tmp_path / "minari")


@pytest.mark.filterwarnings("ignore::UserWarning")  # Minari asks for an author, a description...
def test_a_dataset_collected_elsewhere_reads_by_its_env_spec(tmp_path, monkeypatch):
    """Data the workflow did not collect: a Minari dataset of a registered env, no paper_repro metadata."""
    b = collected(tmp_path / "task.npz", "cheetah-vel", {"task_id": 0, "velocity": 2.0}, 250)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    env = gym.make("paper_repro/CheetahVel-v0", task={"velocity": 2.0})
    minari.create_dataset_from_buffers("someone/cheetah-vel-v0", datasets.episodes(b), env=env, algorithm_name="mine",
                                       observation_space=gym.spaces.Box(-np.inf, np.inf, (17,), np.float32))
    path = tmp_path / "minari" / "someone" / "cheetah-vel-v0"
    back = buffers.load_task_buffer(path, "cheetah-vel", {"task_id": 7, "velocity": 2.0})  # no id to match
    np.testing.assert_array_equal(back["obs"], b["obs"])
    assert back["task"] == {"family": "cheetah-vel", "velocity": 2.0} and back["config"] == {}
    with pytest.raises(ValueError, match="holds task"):
        buffers.load_task_buffer(path, "cheetah-vel", {"task_id": 7, "velocity": 1.0})


# --- the offline meta-learners train on a Minari copy as on the buffers -------------------------------------

SMOKE = prconfig.resolve({**prconfig.load_yaml(ROOT / "config" / "config.yaml"), "scale": "smoke"}, ROOT)  # as the workflow
METHODS = {  # method: (algorithm, its smoke config): MACAW, Meta-BC (MACAW's imitation loss), MT+FT, Offline PEARL
    "macaw": (macaw, prconfig.from_dict(macaw.Config, SMOKE["macaw"], "macaw")),
    "meta-bc": (macaw, dataclasses.replace(prconfig.from_dict(macaw.Config, SMOKE["macaw"], "macaw"), loss="imitation")),
    "offline-mt-ft": (mt_awr, prconfig.from_dict(mt_awr.Config, SMOKE["mt_awr"], "mt_awr")),
    "offline-pearl": (offline_pearl, prconfig.from_dict(offline_pearl.Config, SMOKE["offline_pearl"], "offline_pearl")),
}


@pytest.fixture(scope="module")
def task_copies(tmp_path_factory):
    """Three cheetah-vel tasks' buffers and their Minari copies: (tasks, npz paths, dataset paths)."""
    d = tmp_path_factory.mktemp("roundtrip")
    tasks = envs.task_table("cheetah-vel", "macaw")["train"].head(3).to_dict("records")
    npz, copies = [], []
    for k, task in enumerate(tasks):
        path = d / f"task{int(task['task_id'])}.npz"
        collected(path, "cheetah-vel", task, 300, seed=k)
        npz.append(path)
        copies.append(d / "minari" / datasets.export_buffer(path, "cheetah-vel", "td3", d / "minari"))
    return tasks, npz, copies


@pytest.mark.parametrize("method", METHODS)
def test_training_from_the_minari_copy_gives_the_same_numbers(task_copies, method):
    algo, cfg = METHODS[method]
    tasks, npz, copies = task_copies
    train, test = tasks[:2], tasks[2:]

    def run(paths):
        data = [algo.task_data(buffers.load_task_buffer(p, "cheetah-vel", t), cfg) for p, t in zip(paths[:2], train)]
        test_data = [algo.test_data(buffers.load_task_buffer(p, "cheetah-vel", t), cfg) for p, t in zip(paths[2:], test)]
        metrics = []
        state = algo.train(lambda t: envs.make("cheetah-vel", t), train, 200, cfg, seed=1, data=data, log=metrics.append)
        rows = evaluate.on_test_tasks_offline(algo, state, "cheetah-vel", test, test_data, 200, 1, 1, step=cfg.train_steps)
        return metrics, state, rows

    (m1, s1, r1), (m2, s2, r2) = run(npz), run(copies)
    assert m1 and json.dumps(m1, sort_keys=True, default=str) == json.dumps(m2, sort_keys=True, default=str)
    assert r1 and r1 == r2
    flat1, flat2 = (torch.nn.utils.parameters_to_vector([t.float() for t in _tensors(s)]) for s in (s1, s2))
    assert torch.equal(flat1, flat2)


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for k in sorted(tree) for t in _tensors(tree[k])]
    if isinstance(tree, (list, tuple)):
        return [t for v in tree for t in _tensors(v)]
    return []
