"""Per-task replay buffers, their on-disk format and Monte-Carlo returns.

On disk a buffer is one ``.npz`` (format_version 1) holding, in lifetime order
(nothing is ever overwritten; capacity = total env steps):

  obs [T,O] f32, action [T,A] f32, reward [T] f32, next_obs [T,O] f32,
  terminated [T] bool, truncated [T] bool,
  task (JSON string of the task parameters), config (JSON string),
  format_version (int).

An episode ends where ``terminated | truncated``. ``next_obs`` is the true
final observation of an episode, never an auto-reset observation.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from paper_repro import io

FORMAT_VERSION = 1
ARRAYS = {  # name: (dtype, ndim)
    "obs": (np.float32, 2), "action": (np.float32, 2), "reward": (np.float32, 1),
    "next_obs": (np.float32, 2), "terminated": (np.bool_, 1), "truncated": (np.bool_, 1),
}
KEYS = (*ARRAYS, "task", "config", "format_version")


class Batch(NamedTuple):
    obs: Any
    action: Any
    reward: Any
    next_obs: Any
    terminated: Any


class ReplayBuffer:
    """Preallocated, append-only buffer of one task's transitions."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int):
        self.capacity, self.size = capacity, 0
        self.data = {
            "obs": np.zeros((capacity, obs_dim), np.float32), "action": np.zeros((capacity, act_dim), np.float32),
            "reward": np.zeros(capacity, np.float32), "next_obs": np.zeros((capacity, obs_dim), np.float32),
            "terminated": np.zeros(capacity, np.bool_), "truncated": np.zeros(capacity, np.bool_),
        }

    def add(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        if self.size >= self.capacity:
            raise IndexError(f"replay buffer full ({self.capacity} transitions); it never overwrites")
        i = self.size
        for name, v in zip(ARRAYS, (obs, action, reward, next_obs, terminated, truncated)):
            self.data[name][i] = v
        self.size += 1

    def arrays(self) -> dict[str, np.ndarray]:
        """Views of the filled part (no copy)."""
        return {k: v[: self.size] for k, v in self.data.items()}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        n = len(arrays["reward"])
        for k in ARRAYS:
            self.data[k][:n] = arrays[k]
        self.size = n


def sample_batched(buffers: list[ReplayBuffer], rngs: list[np.random.Generator], batch_size: int) -> Batch:
    """``[K, B, ...]`` numpy batch; task k's indices come from task k's own generator."""
    idx = [rng.integers(0, b.size, batch_size) for b, rng in zip(buffers, rngs)]
    return Batch(*(np.stack([b.data[name][i] for b, i in zip(buffers, idx)])
                   for name in ("obs", "action", "reward", "next_obs", "terminated")))


def save_buffer(path: str | os.PathLike, arrays: dict[str, np.ndarray], task: Any, config: Any) -> None:
    """Write a buffer ``.npz`` atomically (temporary name, then rename)."""
    out = {k: np.asarray(arrays[k], dtype=ARRAYS[k][0]) for k in ARRAYS}
    with io.atomic_path(path) as tmp:
        np.savez(tmp, **out, task=np.array(json.dumps(task, sort_keys=True, default=io._json_default)),
                 config=np.array(json.dumps(config, sort_keys=True, default=io._json_default)),
                 format_version=np.array(FORMAT_VERSION))


def load_buffer(path: str | os.PathLike, keys: Sequence[str] = KEYS) -> dict[str, Any]:
    """Read and validate a buffer; ``task``/``config`` come back parsed. ``ValueError`` names the file.

    ``keys`` picks the members to read (an ``.npz`` member is only read when asked for), so
    ``keys=("reward", "terminated", "truncated")`` skips the observations of a long buffer.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such buffer file")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in KEYS if k not in z.files]
            if missing:
                raise ValueError(f"missing key(s) {missing}; expected {list(KEYS)}")
            out = {k: z[k] for k in (*keys, "format_version")}
    except (zipfile.BadZipFile, EOFError, OSError, zlib_error()) as e:
        raise ValueError(f"{path}: truncated or corrupt buffer file ({type(e).__name__}: {e})") from None
    except ValueError as e:
        raise ValueError(f"{path}: bad buffer file: {e}") from None
    version = int(out.pop("format_version"))
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {version}, expected {FORMAT_VERSION}")
    arrays = [k for k in ARRAYS if k in out]
    n = len(out[arrays[0]]) if arrays else 0
    for k in arrays:
        a, (dtype, ndim) = out[k], ARRAYS[k]
        if a.dtype != dtype or a.ndim != ndim:
            raise ValueError(f"{path}: array '{k}' has dtype {a.dtype} and {a.ndim} dims; "
                             f"expected {np.dtype(dtype)} with {ndim} dims")
        if len(a) != n:
            raise ValueError(f"{path}: array '{k}' has {len(a)} rows, '{arrays[0]}' has {n}")
    if "obs" in out and "next_obs" in out and out["obs"].shape != out["next_obs"].shape:
        raise ValueError(f"{path}: obs {out['obs'].shape} and next_obs {out['next_obs'].shape} differ")
    try:
        for k in ("task", "config"):
            if k in out:
                out[k] = json.loads(str(out[k]))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: 'task' or 'config' is not valid JSON ({e})") from None
    return out


def warmup_returns(path: str | os.PathLike) -> np.ndarray:
    """Returns of the episodes a buffer's random warm-up collected: the uniform random policy on its task.

    These are the episodes that ended within the first ``config["learning_starts"]`` transitions,
    before the first gradient step (empty when the warm-up is shorter than an episode).
    """
    b = load_buffer(path, keys=("reward", "terminated", "truncated", "config"))
    done = b["terminated"] | b["truncated"]
    starts, ends = episode_bounds(b["terminated"], b["truncated"])
    keep = (ends <= b["config"]["learning_starts"]) & done[ends - 1]
    sums = np.add.reduceat(b["reward"].astype(np.float64), starts) if len(starts) else np.zeros(0)
    return sums[keep]


def zlib_error():
    import zlib

    return zlib.error


def episode_bounds(terminated: np.ndarray, truncated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, ends)`` of every episode, ``ends`` exclusive. A trailing unfinished episode counts."""
    done = np.asarray(terminated) | np.asarray(truncated)
    ends = np.flatnonzero(done) + 1
    if len(done) and not done[-1]:
        ends = np.append(ends, len(done))
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    return starts, ends.astype(np.int64)


def _discounted_cumsum(x: np.ndarray, g: float, block: int = 64) -> np.ndarray:
    """``y[n] = x[n] + g * y[n-1]`` (``y[-1] = 0``) without a Python loop per element.

    Blocks of ``block`` elements are solved by one matrix product with the [block, block]
    lower-triangular matrix ``g**(i-j)``; the carries between blocks are the same
    recurrence on the block ends with ``g**block``, solved recursively.
    """
    n = len(x)
    if n == 0:
        return x.copy()
    i = np.arange(block)
    powers = np.where(i[:, None] >= i[None, :], float(g) ** np.maximum(i[:, None] - i[None, :], 0), 0.0)
    if n <= block:
        return powers[:n, :n] @ x
    nb = -(-n // block)
    xs = np.zeros(nb * block)
    xs[:n] = x
    y0 = xs.reshape(nb, block) @ powers.T  # within-block recurrence
    carry = _discounted_cumsum(y0[:, -1], float(g) ** block, block)  # y at the end of each block
    y0[1:] += carry[:-1, None] * float(g) ** (i + 1)[None, :]
    return y0.ravel()[:n]


def monte_carlo_returns(reward: np.ndarray, done: np.ndarray, gamma: float) -> np.ndarray:
    """Discounted return-to-go within each trajectory (resets at every ``done``).

    ``G[t] = sum_{j=t}^{e-1} gamma**(j-t) r[j]`` with ``e`` the end (exclusive) of t's episode.
    Vectorised: ``H`` = the return-to-go ignoring episode ends, then
    ``G[t] = H[t] - gamma**(e-t) H[e]`` (float64 throughout; float32 out).
    """
    reward, done = np.asarray(reward, np.float64), np.asarray(done, bool)
    n = len(reward)
    h = np.append(_discounted_cumsum(reward[::-1], gamma)[::-1], 0.0)  # h[n] = 0
    ends = np.flatnonzero(done) + 1
    t = np.arange(n)
    pos = np.searchsorted(ends, t, side="right")  # first episode end strictly after t
    end = np.append(ends, n)[pos]
    g = h[:n] - np.power(float(gamma), end - t) * h[end]
    return g.astype(np.float32)


def _monte_carlo_returns_loop(reward: np.ndarray, done: np.ndarray, gamma: float) -> np.ndarray:
    """Reference implementation (one Python step per transition), for tests."""
    reward, done = np.asarray(reward, np.float64), np.asarray(done, bool)
    out = np.zeros_like(reward)
    g = 0.0
    for t in range(len(reward) - 1, -1, -1):
        if done[t]:
            g = 0.0
        g = reward[t] + gamma * g
        out[t] = g
    return out.astype(np.float32)


def trajectory_slice(buffer: dict[str, np.ndarray], which: str, n: int = 500) -> slice:
    """The first, middle or last ``n`` trajectories (episodes) of a lifetime buffer, as one slice.

    MACAW's data-quality ablation (App. D.3): "first, middle, and last 500 trajectories". Index
    arithmetic on episode boundaries only; index the arrays with the result (a view, no copy).
    """
    if which not in ("first", "middle", "last"):
        raise ValueError(f"which={which!r}; expected 'first', 'middle' or 'last'")
    starts, ends = episode_bounds(buffer["terminated"], buffer["truncated"])
    count = len(starts)
    if count == 0:
        return slice(0, 0)
    n = min(n, count)
    first = {"first": 0, "middle": (count - n) // 2, "last": count - n}[which]
    return slice(int(starts[first]), int(ends[first + n - 1]))
