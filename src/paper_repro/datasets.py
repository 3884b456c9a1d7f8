"""The offline data as Minari datasets (Farama's format for offline RL, D4RL's successor): export a
collected buffer, and read a Minari dataset back as a buffer.

    export_buffer("results/quick/data/cheetah-vel/td3/seed0/task3.npz", "cheetah-vel", "td3", root)
    # -> "paper-repro/cheetah-vel/task3-v0", under root/paper-repro/cheetah-vel/task3-v0/
    buffer = read_buffer(root / "paper-repro/cheetah-vel/task3-v0")   # as buffers.load_buffer gives it

Reading is the buffers' own: ``buffers.load_task_buffer`` takes a Minari dataset's directory wherever it
takes a ``.npz``, so the offline meta-learners train on either.

A dataset holds the buffer's episodes as they were collected, in order: terminations and truncations
apart, each episode's true final observation, and the buffer's last episode unfinished where the buffer
ended inside one (neither flag on its last step). Its metadata (``dataset.storage.metadata``) holds,
under ``paper_repro``, the family, the task, the collecting algorithm and its config, the source buffer's
SHA-256 and its provenance sidecar; its env spec is the task's registered env, so
``dataset.recover_environment()`` is ``gymnasium.make("paper_repro/<Family>-v0", task=...)``.
Writing goes through Minari's own ``create_dataset_from_buffers``.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from paper_repro import buffers, envs, io

NAMESPACE = "paper-repro"
METADATA_KEY = buffers.MINARI_METADATA_KEY


def dataset_id(family: str, task_id: int) -> str:
    """``paper-repro/<family>/task<id>-v0``."""
    return f"{NAMESPACE}/{family}/task{int(task_id)}-v0"


@contextlib.contextmanager
def datasets_path(root: str | os.PathLike) -> Iterator[Path]:
    """Minari reads and writes under ``$MINARI_DATASETS_PATH``: ``root`` for the duration."""
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(Path(root).resolve())
    try:
        yield Path(root)
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def episodes(buffer: Mapping[str, np.ndarray], source: str = "buffer") -> list:
    """The buffer's episodes as Minari ``EpisodeBuffer``s: ``observations`` [T+1] (the last is the
    episode's true final observation), ``actions``, ``rewards``, ``terminations``, ``truncations`` [T].

    Minari keeps one observation per step, so within an episode ``next_obs[t]`` must be ``obs[t+1]``;
    a buffer where it is not is refused (``ValueError`` naming ``source`` and the row)."""
    from minari.data_collector import EpisodeBuffer

    obs, next_obs = buffer["obs"], buffer["next_obs"]
    starts, ends = buffers.episode_bounds(buffer["terminated"], buffer["truncated"])
    out = []
    for k, (s, e) in enumerate(zip(starts, ends)):
        broken = np.flatnonzero((next_obs[s:e - 1] != obs[s + 1:e]).any(-1))
        if len(broken):
            raise ValueError(f"{source}: row {s + broken[0]}'s next_obs is not row {s + broken[0] + 1}'s obs inside "
                             f"episode {k}; a Minari episode holds one observation per step")
        out.append(EpisodeBuffer(id=k, observations=np.concatenate([obs[s:e], next_obs[e - 1:e]]),
                                 actions=buffer["action"][s:e], rewards=buffer["reward"][s:e],
                                 terminations=buffer["terminated"][s:e], truncations=buffer["truncated"][s:e]))
    return out


def _float32_box(space: gym.spaces.Box) -> gym.spaces.Box:
    """The env's observation box with the buffer's dtype (float32), so the metadata says what is stored."""
    return gym.spaces.Box(space.low.astype(np.float32), space.high.astype(np.float32), space.shape, np.float32)


def requirements(family: str) -> list[str]:
    """What ``recover_environment`` needs installed (Minari warns where a version differs)."""
    names = ("gymnasium", "mujoco", *(("metaworld",) if family.startswith("metaworld") else ()))
    return ["paper-repro", *(f"{n}=={v}" for n, v in io.package_versions(names).items() if v != "not installed")]


def export_buffer(path: str | os.PathLike, family: str, algorithm: str, root: str | os.PathLike,
                  provenance: Mapping[str, Any] | None = None) -> str:
    """Write the buffer ``path`` (of ``family``, collected by ``algorithm``) as the Minari dataset
    :func:`dataset_id` under ``root``; return its id. ``provenance`` (default: the buffer's sidecar,
    ``<path>.provenance.json``, where it exists) goes into the metadata whole."""
    import minari

    path = Path(path)
    b = buffers.load_buffer(path)
    held = dict(b["task"])
    if held.pop("family", family) != family:
        raise ValueError(f"{path}: the buffer holds a task of {b['task'].get('family')!r}, not of {family!r}")
    task_id = held.pop("task_id")
    if provenance is None and io.provenance_path(path).exists():
        provenance = io.load_json(io.provenance_path(path))
    ident = dataset_id(family, task_id)
    env = gym.make(envs.env_id(family), task=held)  # checks the task; its spec is the dataset's env spec
    with datasets_path(root), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`author_email` is set to None")  # there is none to give
        dataset = minari.create_dataset_from_buffers(
            ident, episodes(b, str(path)), env=env, eval_env=env.spec, algorithm_name=algorithm, author="paper-repro",
            code_permalink=f"paper-repro {(provenance or {}).get('git_describe', io.git_describe())}",
            observation_space=_float32_box(env.observation_space), action_space=env.action_space,
            description=f"{family} task {task_id} ({json.dumps(held, sort_keys=True)}): the lifetime replay buffer "
                        f"of a {algorithm} agent trained on this task alone, every transition in the order collected "
                        f"(paper-repro; MACAW App. D.2's offline data).",
            requirements=requirements(family))
        dataset.storage.update_metadata({METADATA_KEY: {
            "family": family, "task_id": int(task_id), "task": held, "env_id": envs.env_id(family),
            "algorithm": algorithm, "algorithm_config": b["config"], "buffer_sha256": io.file_sha256(path),
            "buffer_format_version": buffers.FORMAT_VERSION, "provenance": provenance}})
    env.close()
    return ident


def dataset_dir(dataset: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """A dataset's directory (the one holding ``data/``): ``dataset`` itself where it is one, else the
    id ``dataset`` under ``root`` (default ``$MINARI_DATASETS_PATH``, then Minari's ``~/.minari/datasets``)."""
    if (Path(dataset) / "data" / "metadata.json").is_file():
        return Path(dataset)
    if root is None:
        from minari.storage.datasets_root_dir import get_dataset_path

        return Path(get_dataset_path(str(dataset)))
    return Path(root) / str(dataset)


def read_buffer(dataset: str | os.PathLike, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """A Minari dataset (its directory, or its id under ``root``) as a buffer: :func:`buffers.load_minari`."""
    return buffers.load_minari(dataset_dir(dataset, root))
