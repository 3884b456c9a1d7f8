"""Every task family of MIER, AdMRL and MACAW, as TASKS.md defines them, on gymnasium MuJoCo v5.

    env = make("cheetah-vel", {"velocity": 1.5}, seed=0)     # a ready env, horizon applied
    tables = task_table("cheetah-vel", "macaw", seed=0)       # {"train": DataFrame, "test": DataFrame}

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
from gymnasium.wrappers import TimeLimit

from . import ant, cheetah, hopper, humanoid, meta_world, walker
from .tasks import Family, to_tables

_REGISTRY: dict[str, Family] = {f.name: f for m in (cheetah, ant, humanoid, walker, hopper, meta_world) for f in m.FAMILIES}
FAMILIES: tuple[str, ...] = tuple(_REGISTRY)

__all__ = ["FAMILIES", "Family", "get_family", "make", "protocols", "splits", "task_table", "varies_dynamics"]


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

    Each (family, protocol) draws from its own stream, so no two protocols share draws.
    """
    rng = np.random.default_rng([seed, zlib.crc32(family.encode()), zlib.crc32(protocol.encode())])
    return to_tables(_protocol(family, protocol)(rng))


def splits(family: str, protocol: str) -> tuple[str, ...]:
    """The split names of a protocol, without sampling (every protocol has 'test'; most have 'train')."""
    _protocol(family, protocol)
    fam = get_family(family)
    return ("test",) if fam.task_box is not None else ("train", "test")


def make(family: str, task: Mapping[str, Any], seed: int | None = None) -> gym.Env:
    """A ready env of ``family`` with ``task`` applied and the family's horizon.

    With ``seed``, the env and its action space are seeded (``reset(seed=seed)``), so the same seed
    and actions give the same trajectory.
    """
    fam = get_family(family)
    env = fam.env_cls(**fam.env_kwargs)
    env.set_task(task)
    env = TimeLimit(env, max_episode_steps=fam.horizon)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env
