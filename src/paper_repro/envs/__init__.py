"""Every task family of MIER, AdMRL and MACAW, as TASKS.md defines them, on gymnasium MuJoCo v5.

    env = make("cheetah-vel", {"velocity": 1.5}, seed=0)     # a ready env, horizon applied
    tables = task_table("cheetah-vel", "macaw", seed=0)       # {"train": DataFrame, "test": DataFrame}

Importing this package registers every family with Gymnasium as ``paper_repro/<Family>-v0``
(``env_id(family)``; registration.py), the task as a keyword:

    env = gymnasium.make("paper_repro/CheetahVel-v0", task={"velocity": 2.5})

``make`` is that call plus a seed; a bad task (a missing or unknown key, a value outside the family's
``task_range``) is refused with a ``ValueError`` naming the family and the key.

A task is a flat mapping of scalars (a row of a task table); ``protocols(family)`` names the splits
each paper uses. The families' own modules (cheetah.py, ant.py, ...) hold the rewards and document
every departure from the authors' code.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd

from . import ant, cheetah, hopper, humanoid, meta_world, walker
from .registration import env_id, register_all
from .tasks import Family, box_uniform, to_tables

_REGISTRY: dict[str, Family] = {f.name: f for m in (cheetah, ant, humanoid, walker, hopper, meta_world) for f in m.FAMILIES}
FAMILIES: tuple[str, ...] = tuple(_REGISTRY)
register_all(_REGISTRY.values())

__all__ = ["FAMILIES", "BOX_TRAIN_TASKS", "Family", "TaskParameterObservation", "env_id", "get_family", "make", "protocols",
           "splits", "task_parameter", "task_table", "varies_dynamics"]

BOX_TRAIN_TASKS = 150
"""The training pool of the model-free baselines on a task-box family: "we allow MAML and PEARL to visit
150 tasks" (AdMRL Sec. 5, Training), drawn uniformly from the box."""


def get_family(name: str) -> Family:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown task family {name!r}; known families: {list(FAMILIES)}") from None


def varies_dynamics(family: str) -> bool:
    """Whether the family's tasks change the dynamics, not only the reward. MIER's model predicts
    next states only for these (MIER App. A)."""
    return get_family(family).dynamics_vary


def protocols(family: str) -> tuple[str, ...]:
    return tuple(get_family(family).protocols)


def _protocol(family: str, protocol: str):
    fam = get_family(family)
    if protocol not in fam.protocols:
        raise ValueError(f"{family} has no split protocol {protocol!r}; its protocols: {list(fam.protocols)}")
    return fam.protocols[protocol]


def task_table(family: str, protocol: str, seed: int = 0) -> dict[str, pd.DataFrame]:
    """The tasks of every split of ``protocol``: split -> table (``task_id`` + parameter columns).

    Each (family, protocol) draws from its own stream, so no two protocols share draws. A task-box
    family's training split is the baselines' pool of ``BOX_TRAIN_TASKS`` uniform tasks, drawn from the
    family's own stream, so every protocol of the family (its test grids) shares one pool.
    """
    rng = np.random.default_rng([seed, zlib.crc32(family.encode()), zlib.crc32(protocol.encode())])
    splits = _protocol(family, protocol)(rng)
    box = get_family(family).task_box
    if box is not None:
        pool = np.random.default_rng([seed, zlib.crc32(family.encode()), zlib.crc32(b"box-train")])
        splits = {"train": dict(enumerate(box_uniform(pool, box, BOX_TRAIN_TASKS))), **splits}
    return to_tables(splits)


def splits(family: str, protocol: str) -> tuple[str, ...]:
    """The split names of a protocol, without sampling (every protocol has 'test'; most have 'train')."""
    _protocol(family, protocol)
    return ("train", "test")


def task_parameter(family: str, task: Mapping[str, Any]) -> np.ndarray:
    """x(ψ) = 2(ψ - lo)/(hi - lo) - 1: a task-box family's task parameter normalised to [-1, 1]^k
    (outside it for tasks outside the box)."""
    box = get_family(family).task_box
    if box is None:
        raise ValueError(f"{family} has no task box: its tasks have no parameter vector")
    lo, hi = (np.array([b[i] for b in box.values()]) for i in (0, 1))
    return (2 * (np.array([task[k] for k in box], dtype=np.float64) - lo) / (hi - lo) - 1).astype(np.float32)


class TaskParameterObservation(gym.ObservationWrapper):
    """The multi-task baselines' observation (AdMRL Sec. 5: MT-joint, MAML-MT, PEARL-MT): the env's
    observation with the normalised task parameter x(ψ) appended."""

    def __init__(self, env: gym.Env, x: np.ndarray):
        super().__init__(env)
        self.x = np.asarray(x, dtype=np.float32)
        space = env.observation_space
        inf = np.full(len(self.x), np.inf, dtype=np.float32)
        self.observation_space = gym.spaces.Box(np.concatenate([space.low, -inf]).astype(np.float32),
                                                np.concatenate([space.high, inf]).astype(np.float32), dtype=np.float32)

    def observation(self, observation):
        return np.concatenate([observation, self.x]).astype(np.float32)


def make(family: str, task: Mapping[str, Any], seed: int | None = None, multitask: bool = False) -> gym.Env:
    """A ready env of ``family`` with ``task`` applied and the family's horizon:
    ``gymnasium.make(env_id(family), task=task)``, without Gymnasium's passive env checker (a test runs
    ``check_env`` on every family; the checker would warn in every job).

    With ``seed``, the env and its action space are seeded (``reset(seed=seed)``), so the same seed
    and actions give the same trajectory. ``multitask`` appends the task parameter x(ψ) to every
    observation (``TaskParameterObservation``; task-box families only).
    """
    fam = get_family(family)  # an unknown family is named, with the known ones
    if env_id(family) not in gym.registry:  # a family added after import (a test's stand-in)
        register_all([fam])
    env = gym.make(env_id(family), task=task, disable_env_checker=True)
    if multitask:
        env = TaskParameterObservation(env, task_parameter(family, task))
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env
