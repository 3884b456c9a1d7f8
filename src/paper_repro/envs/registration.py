"""Every task family as a registered Gymnasium environment: ``paper_repro/<Family>-v0``.

    import gymnasium as gym
    import paper_repro.envs  # registers the twelve families
    env = gym.make("paper_repro/CheetahVel-v0", task={"velocity": 2.5})

The task is the ``task`` keyword: a task-table row (its ``task_id`` is ignored). The family's horizon
is the spec's ``max_episode_steps``. :func:`build` is the one place an env is built;
``paper_repro.envs.make`` goes through ``gymnasium.make`` to it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import gymnasium as gym

from .tasks import Family, Task

NAMESPACE = "paper_repro"
VERSION = 0
ENTRY_POINT = f"{__name__}:build"
"""A string, so that an env spec is JSON (Minari stores it) and ``gym.make(spec)`` imports this module."""

_WORDS = {"2d": "2D", "3d": "3D", "highdim": "HighDim", "metaworld": "MetaWorld", "ml45": "ML45"}


def env_id(family: str) -> str:
    """``cheetah-vel`` -> ``paper_repro/CheetahVel-v0``: each word capitalised (2d, highdim, ml45 as 2D,
    HighDim, ML45)."""
    name = "".join(_WORDS.get(w, w.capitalize()) for w in family.split("-"))
    return f"{NAMESPACE}/{name}-v{VERSION}"


def check_task(family: Family, keys: Iterable[str], task: Mapping[str, Any]) -> Task:
    """``task`` as plain Python scalars, without ``task_id``, once its keys are exactly ``keys`` and every
    value lies in the family's ``task_range``. A ``ValueError`` names the family and the key."""
    if not isinstance(task, Mapping):
        raise ValueError(f"{family.name}: the task must be a mapping of its keys {list(keys)}, got {task!r}")
    keys = list(keys)
    task = {k: v for k, v in task.items() if k != "task_id"}
    missing = [k for k in keys if k not in task]
    if missing:
        raise ValueError(f"{family.name}: task {task} lacks {missing}; expected keys {keys}")
    unknown = [k for k in task if k not in keys]
    if unknown:
        raise ValueError(f"{family.name}: unknown task key {unknown[0]!r} (of {unknown}); expected keys {keys}")
    out = {}
    for k in keys:
        v = task[k]
        v = v.item() if hasattr(v, "item") else v  # numpy scalars (a pandas row) to Python
        allowed = family.task_range(k) if family.task_range else None
        if isinstance(allowed, frozenset):
            if v not in allowed:
                raise ValueError(f"{family.name}: task key {k!r} = {v!r} is not one of {sorted(allowed)}")
        elif allowed is not None:
            lo, hi = allowed
            slack = 1e-9 * (hi - lo)  # a float32 round trip of a task on the range's edge
            if isinstance(v, str) or not (isinstance(v, (int, float)) and math.isfinite(v) and lo - slack <= v <= hi + slack):
                raise ValueError(f"{family.name}: task key {k!r} = {v!r} is outside its range [{lo:g}, {hi:g}]")
        out[k] = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
    return out


def build(family: str, task: Mapping[str, Any] | None = None, render_mode: str | None = None) -> gym.Env:
    """The entry point of every family: its env (unwrapped) with ``task`` checked and applied.
    ``gymnasium.make`` adds the time limit. ``render_mode`` goes to the MuJoCo env."""
    from . import get_family  # the registry of families lives in the package

    fam = get_family(family)
    if task is None:
        raise ValueError(f"{family}: gymnasium.make({env_id(family)!r}) needs the task, as task={{...}}; "
                         f"paper_repro.envs.task_table({family!r}, protocol) lists the papers' tasks")
    env = fam.env_cls(**fam.env_kwargs, **({} if render_mode is None else {"render_mode": render_mode}))
    keys = getattr(env, "task_keys", None)  # a stand-in family of a test may not declare its keys
    env.set_task(dict(task) if keys is None else check_task(fam, keys, task))
    return env


def register_all(families: Iterable[Family]) -> None:
    """Register every family under :func:`env_id` (once: an id already registered is kept)."""
    for fam in families:
        if env_id(fam.name) in gym.registry:
            continue
        gym.register(env_id(fam.name), entry_point=ENTRY_POINT, max_episode_steps=fam.horizon,
                     kwargs={"family": fam.name})
