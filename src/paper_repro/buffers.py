"""Per-task replay buffers, the typed batch, their on-disk format and Monte-Carlo returns.

One buffer type serves collection and the meta-RL algorithms: :class:`ReplayBuffer` holds one task's
transitions in the order they came and never overwrites. Collection preallocates its capacity (the
total env steps) and refuses more; MIER and PEARL let it grow. Updates read a :class:`Batch`.

On disk a buffer is one ``.npz`` (format_version 1) holding, in lifetime order
(nothing is ever overwritten; capacity = total env steps):

  obs [T,O] f32, action [T,A] f32, reward [T] f32, next_obs [T,O] f32,
  terminated [T] bool, truncated [T] bool,
  task (JSON string of the task parameters), config (JSON string),
  format_version (int).

An episode ends where ``terminated | truncated``. ``next_obs`` is the true
final observation of an episode, never an auto-reset observation.

A Minari dataset (``paper_repro.datasets`` exports every buffer as one) reads as a buffer too:
:func:`load_minari`, and :func:`load_task_buffer` takes its directory wherever it takes a ``.npz``.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from paper_repro import io

FORMAT_VERSION = 1
ARRAYS = {  # name: (dtype, ndim)
    "obs": (np.float32, 2), "action": (np.float32, 2), "reward": (np.float32, 1),
    "next_obs": (np.float32, 2), "terminated": (np.bool_, 1), "truncated": (np.bool_, 1),
}
KEYS = (*ARRAYS, "task", "config", "format_version")
MINARI_METADATA_KEY = "paper_repro"
"""Where a dataset that ``paper_repro.datasets`` exported keeps the task, the algorithm and its config."""


class Batch(NamedTuple):
    """Transitions with a common leading shape (``[N]``, or ``[tasks, N]`` stacked), as numpy arrays
    or tensors. ``truncated`` is left out: no update reads it (Bellman targets bootstrap through a
    time limit; only ``terminated`` stops them)."""

    obs: Any
    action: Any
    reward: Any
    next_obs: Any
    terminated: Any

    def tensors(self, device: str | torch.device | None = None) -> Batch:
        """The batch as float32 tensors (``terminated`` as 0/1) on ``device``."""
        out = (torch.from_numpy(np.asarray(x, np.float32)) for x in self)
        return Batch(*(out if device is None else (t.to(device) for t in out)))


def stack(batches: Sequence[Batch]) -> Batch:
    """``[len(batches), ...]``: the batches (arrays or tensors) along a new leading task axis."""
    return Batch(*(torch.stack(x) if torch.is_tensor(x[0]) else np.stack(x) for x in zip(*batches)))


def concat(batches: Sequence[Batch]) -> Batch:
    """The batches' transitions one after the other (arrays or tensors)."""
    return Batch(*(torch.cat(x) if torch.is_tensor(x[0]) else np.concatenate(x) for x in zip(*batches)))


class ReplayBuffer:
    """One task's transitions in the order they came; never overwrites.

    ``ReplayBuffer(capacity, obs_dim, act_dim)`` preallocates ``capacity`` rows and refuses more
    (collection: capacity = total env steps). With ``grow=True`` the capacity doubles when full
    (MIER, PEARL: they append without knowing the total). Next to the on-disk arrays every row has a
    ``prior`` tag: collected with the prior context (MIER's adaptation data, the authors'
    pre-adaptation buffer); it is False unless :meth:`add`/:meth:`extend` are told otherwise.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, grow: bool = False):
        self.capacity, self.size, self.grow = capacity, 0, grow
        self.data = {
            "obs": np.zeros((capacity, obs_dim), np.float32), "action": np.zeros((capacity, act_dim), np.float32),
            "reward": np.zeros(capacity, np.float32), "next_obs": np.zeros((capacity, obs_dim), np.float32),
            "terminated": np.zeros(capacity, np.bool_), "truncated": np.zeros(capacity, np.bool_),
            "prior": np.zeros(capacity, np.bool_),
        }
        self._prior_rows: np.ndarray | None = None

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any]) -> ReplayBuffer:
        """A growable buffer over ``arrays`` (numpy arrays or CPU tensors, as :meth:`arrays` or
        :meth:`tensors` gave them) without copying them: for reading a saved state's data."""
        buf = cls(0, 0, 0, grow=True)
        n = len(arrays["reward"])
        buf.data = {k: np.asarray(arrays[k], dtype) for k, (dtype, _) in ARRAYS.items()}
        buf.data["prior"] = np.asarray(arrays["prior"], np.bool_) if "prior" in arrays else np.zeros(n, np.bool_)
        buf.capacity = buf.size = n
        return buf

    def add(self, obs, action, reward, next_obs, terminated, truncated, prior: bool = False) -> None:
        """Append one transition."""
        if self.size >= self.capacity:
            self._make_room(1)
        i = self.size
        for name, v in zip(ARRAYS, (obs, action, reward, next_obs, terminated, truncated)):
            self.data[name][i] = v
        self.data["prior"][i] = prior
        self.size += 1
        self._prior_rows = None

    def extend(self, rows: Mapping[str, np.ndarray], prior: bool = False) -> None:
        """Append the transitions ``rows`` (arrays named as :data:`ARRAYS`, e.g. another buffer's
        :meth:`arrays`), all tagged ``prior``."""
        n = len(rows["reward"])
        self._make_room(n)
        for name in ARRAYS:
            self.data[name][self.size: self.size + n] = rows[name]
        self.data["prior"][self.size: self.size + n] = prior
        self.size += n
        self._prior_rows = None

    def _make_room(self, n: int) -> None:
        if self.size + n <= self.capacity:
            return
        if not self.grow:
            raise IndexError(f"replay buffer full ({self.capacity} transitions); it never overwrites")
        self.capacity = max(2 * self.capacity, self.size + n)
        for k, v in self.data.items():
            grown = np.zeros((self.capacity, *v.shape[1:]), v.dtype)
            grown[: self.size] = v[: self.size]
            self.data[k] = grown

    def clear(self) -> None:
        self.size = 0
        self._prior_rows = None

    def arrays(self) -> dict[str, np.ndarray]:
        """Views of the filled part (no copy), the ``prior`` tags included."""
        return {k: v[: self.size] for k, v in self.data.items()}

    def tensors(self) -> dict[str, torch.Tensor]:
        """A copy of the filled part as tensors: what a saved state holds (torch's ``weights_only``
        loader takes tensors, not numpy arrays)."""
        return {k: torch.from_numpy(v.copy()) for k, v in self.arrays().items()}

    def load_arrays(self, arrays: Mapping[str, Any]) -> None:
        """Hold a copy of ``arrays`` and nothing else (checkpoint resume); no ``prior`` column: False."""
        n = len(arrays["reward"])
        self.size = 0
        self._make_room(n)
        for k in ARRAYS:
            self.data[k][:n] = np.asarray(arrays[k])
        self.data["prior"][:n] = np.asarray(arrays["prior"]) if "prior" in arrays else False
        self.size = n
        self._prior_rows = None

    def batch(self, rows: Any = slice(None)) -> Batch:
        """The transitions at ``rows`` (indices or a slice of the filled part), as numpy arrays."""
        return Batch(*(self.data[k][: self.size][rows] for k in Batch._fields))

    def prior_rows(self) -> np.ndarray:
        """Indices of the rows tagged ``prior``."""
        if self._prior_rows is None:
            self._prior_rows = np.flatnonzero(self.data["prior"][: self.size])
        return self._prior_rows


def sample(buffers: Sequence[ReplayBuffer], n: int, rngs: np.random.Generator | Sequence[np.random.Generator]
           ) -> Batch:
    """``n`` uniform transitions (with replacement) of each buffer: numpy ``[len(buffers), n, ...]``.

    Buffer k's rows are drawn by ``rngs[k]`` (collection: each task its own generator, so a task's
    draws do not depend on the others), or, given one generator, by it, buffer after buffer.
    """
    if isinstance(rngs, np.random.Generator):
        rngs = [rngs] * len(buffers)
    return stack([b.batch(rng.integers(0, b.size, n)) for b, rng in zip(buffers, rngs)])


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


def is_minari(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a Minari dataset's directory (it holds ``data/metadata.json``)."""
    return (Path(path) / "data" / "metadata.json").is_file()


def load_minari(path: str | os.PathLike) -> dict[str, Any]:
    """A Minari dataset's directory as a buffer (:func:`load_buffer`'s keys): its episodes' steps in order,
    ``next_obs`` the episode's next observation (its last, the true final one), terminations and
    truncations as stored. ``task`` is what the export stored (``family``, ``task_id``, parameters) or, for
    a dataset collected elsewhere on a paper_repro env (Minari's DataCollector on ``paper_repro/<Family>-v0``),
    its env spec's family and task; ``config`` the collector's config (empty where there is none).
    Read from disk only: nothing is downloaded."""
    from minari import MinariDataset

    path = Path(path)
    if not is_minari(path):
        raise FileNotFoundError(f"{path}: no Minari dataset here (no data/metadata.json)")
    try:
        ds = MinariDataset(path / "data")
        meta, spec = ds.storage.metadata, ds.spec.env_spec
    except Exception as e:  # noqa: BLE001 (h5py, JSON and Minari's own errors alike)
        raise ValueError(f"{path}: unreadable Minari dataset ({type(e).__name__}: {e})") from None
    ours = meta.get(MINARI_METADATA_KEY)
    if ours is not None:
        task, config = {"family": ours["family"], "task_id": ours["task_id"], **ours["task"]}, ours["algorithm_config"]
    elif spec is not None and "family" in spec.kwargs and "task" in spec.kwargs:
        task, config = {"family": spec.kwargs["family"], **spec.kwargs["task"]}, {}
    else:
        raise ValueError(f"{path}: the dataset names no paper_repro task: its metadata has no "
                         f"{MINARI_METADATA_KEY!r} and its env spec ({spec.id if spec else None}) no family and task")
    parts: dict[str, list] = {k: [] for k in ARRAYS}
    for ep in ds.iterate_episodes():
        o = np.asarray(ep.observations)
        for k, v in (("obs", o[:-1]), ("next_obs", o[1:]), ("action", ep.actions), ("reward", ep.rewards),
                     ("terminated", ep.terminations), ("truncated", ep.truncations)):
            parts[k].append(np.asarray(v))
    out = {k: np.concatenate(parts[k]).astype(dtype) for k, (dtype, _) in ARRAYS.items()} if parts["reward"] else {}
    if not out:
        raise ValueError(f"{path}: the Minari dataset holds no episodes")
    return {**out, "task": task, "config": config}


def load_task_buffer(path: str | os.PathLike, family: str, task: Mapping[str, Any],
                     keys: Sequence[str] = KEYS) -> dict[str, Any]:
    """:func:`load_buffer`, checked to hold ``task`` of ``family`` (a task-table row: its id and parameters,
    as the collection stage stores them): a buffer collected on another task, or on another family's, is
    refused with a ``ValueError`` naming the file. ``path`` may be a Minari dataset's directory
    (:func:`load_minari`); the check is the same, except that a dataset collected elsewhere, which has no
    task id, is matched on the family and the task's parameters."""
    if is_minari(path):
        b = load_minari(path)
        if "task_id" not in b["task"]:
            task = {k: v for k, v in task.items() if k != "task_id"}
    else:
        b = load_buffer(path, keys=tuple(dict.fromkeys((*keys, "task"))))
    expected = {"family": family, **task}
    held = b["task"]
    same = set(held) == set(expected) and all(
        held[k] == v if isinstance(v, str) else bool(np.allclose(held[k], v)) for k, v in expected.items())
    if not same:
        raise ValueError(f"{path}: the buffer holds task {held}, expected {expected}")
    return b


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

    MACAW's data-quality ablation (App. D.3): "first, middle, and last 500 trajectories". ``quarter``
    is what the authors' code takes for "middle": the ``n`` centred at a quarter of the lifetime
    (``src/utils.py``: ``center = stored // 2``, then ``center // 2 ± chunk // 2``). Index arithmetic
    on episode boundaries only; index the arrays with the result (a view, no copy).
    """
    if which not in ("first", "middle", "last", "quarter"):
        raise ValueError(f"which={which!r}; expected 'first', 'middle', 'last' or 'quarter'")
    starts, ends = episode_bounds(buffer["terminated"], buffer["truncated"])
    count = len(starts)
    if count == 0:
        return slice(0, 0)
    n = min(n, count)
    first = {"first": 0, "middle": (count - n) // 2, "last": count - n, "quarter": max(0, count // 4 - n // 2)}[which]
    return slice(int(starts[first]), int(ends[first + n - 1]))


# --- offline meta-RL data (MACAW and its baselines) ---------------------------------

OFFLINE = ("obs", "action", "G", "s_T", "disc_T", "boot")
"""The per-task arrays of :func:`offline_arrays`."""


def offline_arrays(buffer: Mapping[str, np.ndarray], gamma: float, stride: int = 1, which: str | None = None,
                   n: int = 500) -> dict[str, np.ndarray]:
    """What offline meta-RL reads of one task's lifetime buffer, derived once (MACAW's data,
    ``src/utils.py`` of the authors' code): per transition t of an episode ending at e (exclusive),

    - ``G``: the discounted return-to-go Σ_{j=t}^{e-1} γ^{j-t} r_j (:func:`monte_carlo_returns`);
    - ``s_T``: the episode's final observation (``next_obs[e-1]``);
    - ``disc_T``: γ^{e-t}, the discount of a bootstrap from ``s_T``;
    - ``boot``: 1 where the episode was truncated (time limit, or the buffer's unfinished last
      episode) and 0 where it ``terminated``, so value targets bootstrap through time limits only;

    with ``obs`` and ``action``, all computed on the raw buffer and then kept every ``stride``-th row
    (the authors keep every 7th). ``which`` (first, middle, last) keeps only that slice of ``n``
    episodes first (:func:`trajectory_slice`; MACAW's data-quality ablation)."""
    rows = trajectory_slice(buffer, which, n) if which else slice(None)
    term, trunc = np.asarray(buffer["terminated"][rows]), np.asarray(buffer["truncated"][rows])
    starts, ends = episode_bounds(term, trunc)
    end = np.repeat(ends, ends - starts)  # each row's episode end (exclusive)
    t = np.arange(len(term))
    out = {"obs": buffer["obs"][rows], "action": buffer["action"][rows],
           "G": monte_carlo_returns(buffer["reward"][rows], term | trunc, gamma),
           "s_T": buffer["next_obs"][rows][end - 1],
           "disc_T": np.power(float(gamma), end - t).astype(np.float32),
           "boot": (~term[end - 1]).astype(np.float32)}
    return {k: np.ascontiguousarray(v[::stride], np.float32) for k, v in out.items()}


def sample_offline(tasks: Sequence[Mapping[str, np.ndarray]], n: int, rngs: Sequence[np.random.Generator],
                   contiguous: bool, device: str | torch.device | None = None) -> dict[str, torch.Tensor]:
    """``n`` rows of each task's :func:`offline_arrays`, as float32 tensors ``[len(tasks), n, ...]``:
    a contiguous window (start uniform over the windows that fit; MACAW's inner batches) or ``n``
    distinct rows drawn uniformly (outer batches, test-time adaptation). Task k's rows are drawn by
    ``rngs[k]``."""
    picks = []
    for k, (data, rng) in enumerate(zip(tasks, rngs)):
        size = len(data["G"])
        if size < n:
            raise ValueError(f"offline data of task {k} holds {size} rows, fewer than the {n} asked for")
        if contiguous:
            start = int(rng.integers(0, size - n + 1))
            picks.append(slice(start, start + n))
        else:
            picks.append(rng.choice(size, n, replace=False))
    out = {key: torch.from_numpy(np.stack([data[key][rows] for data, rows in zip(tasks, picks)])) for key in OFFLINE}
    return out if device is None else {k: v.to(device) for k, v in out.items()}
