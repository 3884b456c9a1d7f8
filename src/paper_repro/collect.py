"""Batched per-task data collection: K independent SAC/TD3 agents, one computation.

``train(env_fns, algo, cfg, out_dir)`` steps K environments together (one
batched policy forward, then each env in turn, stepped by hand so that no
auto-reset transition ever enters a buffer), makes one gradient step per
environment step after the warm-up, checkpoints at a steady rate and resumes
from the checkpoint to end exactly where an uninterrupted run ends.

Randomness is per task and independent of K: task k owns a ``torch.Generator``
(initial weights, policy and target noise), a numpy ``Generator`` (warm-up
actions, minibatch indices) and its env seeded with ``seeds[k]``; the eval env
of task k is reset with ``seeds[k] + 10_000 + i`` for its i-th episode.

Outputs per task (written atomically, only once training has finished):
``<name>.npz`` (buffer, see :mod:`paper_repro.buffers`), ``<name>.curve.csv``
(env_steps, eval_return, and eval_success where the env reports success) and ``<name>.policy.pt``
(that task's actor slice); plus ``metrics.csv`` (one row per task per ``log_every`` steps: losses,
return, steps/s).

Run control (``checkpoint_every``, ``log_every``) is an argument of :func:`train`, not a field of
the algorithm's Config: it does not change the result, so a job resumes from a checkpoint written
under another cadence, and refuses (naming the key) only a change of the Config or the seeds.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from paper_repro import config as prconfig
from paper_repro import io, rollout
from paper_repro.buffers import ARRAYS, ReplayBuffer, sample, save_buffer
from paper_repro.progress import Progress

log = logging.getLogger("paper_repro.collect")
CHECKPOINT = "checkpoint.pt"
# Config keys of older checkpoints that are run control now, not part of the result
RUN_CONTROL = ("config.checkpoint_every", "config.log_every")
CHUNK_DIR = "checkpoint.chunks"


# --- incremental buffer checkpoints --------------------------------------------------------------
# A checkpoint holds the small state (weights, optimizers, RNGs, env states, curves) in
# checkpoint.pt; the buffers go to append-only chunk files checkpoint.chunks/rows<end>.npz, one
# per checkpoint, each holding every task's rows [previous end, end). Writing a checkpoint thus
# costs O(rows since the last one), not O(buffer), at any budget. checkpoint.pt lists the chunks
# it covers; both are written atomically, chunk first.

def _chunk_path(chunk_dir: Path, end: int) -> Path:
    return chunk_dir / f"rows{end:012d}.npz"


def _chunk_end(path: Path) -> int | None:
    stem = path.name[len("rows"):-len(".npz")]
    return int(stem) if path.name.startswith("rows") and stem.isdigit() else None


def write_chunk(chunk_dir: Path, buffers: Sequence[ReplayBuffer], begin: int, end: int) -> None:
    """Atomically write rows ``[begin, end)`` of every task's buffer as one chunk file."""
    arrays = {f"t{k}_{name}": b.data[name][begin:end] for k, b in enumerate(buffers) for name in ARRAYS}
    with io.atomic_path(_chunk_path(chunk_dir, end)) as tmp:
        np.savez(tmp, begin=np.array(begin), **arrays)


def load_chunks(chunk_dir: Path, ends: Sequence[int], K: int, ckpt_path: Path) -> list[dict[str, np.ndarray]]:
    """Every task's buffer rows ``[0, ends[-1])`` from the chunks a checkpoint lists."""
    parts: list[dict[str, list[np.ndarray]]] = [{name: [] for name in ARRAYS} for _ in range(K)]
    begin = 0
    for end in ends:
        path = _chunk_path(chunk_dir, end)
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["begin"]) != begin:
                    raise ValueError(f"starts at row {int(z['begin'])}, expected {begin}")
                for k in range(K):
                    for name in ARRAYS:
                        a = z[f"t{k}_{name}"]
                        if len(a) != end - begin:
                            raise ValueError(f"task {k} '{name}' has {len(a)} rows, expected {end - begin}")
                        parts[k][name].append(a)
        except (OSError, KeyError, ValueError, EOFError) as e:
            raise ValueError(f"{ckpt_path}: buffer chunk {path} is missing or damaged ({e}); "
                             "delete the checkpoint and its chunks to start over") from None
        begin = end
    return [{name: (np.concatenate(p[name]) if p[name] else np.zeros((0,))) for name in ARRAYS} for p in parts]


# --- allocator ---------------------------------------------------------------------------------

def _tune_malloc() -> None:
    """Keep freed activation/gradient blocks in the heap instead of returning them to the OS.

    A K-task update allocates and frees many [K, 256, 256] float tensors (MBs each) per
    step; with glibc's defaults many of them are mmap'ed and unmapped again, and every
    step pays the page faults of zeroing fresh pages (on a loaded 2-core machine one A/B
    gave 33 vs 46 ms per K=10 SAC step; the gain is noisy and smaller at 1 thread).
    A fixed mmap threshold (32 MiB, glibc's maximum) and a high trim threshold keep them
    in the heap. Process-wide, harmless elsewhere; a no-op off glibc.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 512 * 1024 * 1024)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


# --- env state (for checkpoints taken mid-episode) -------------------------------------------

def _time_limit(env):
    while env is not None:
        if hasattr(env, "_elapsed_steps"):
            return env
        env = getattr(env, "env", None)
    return None


def _saveable(v: Any) -> Any:
    """numpy arrays and scalars as tensors: a checkpoint loads with torch's weights_only loader."""
    return torch.from_numpy(np.array(v)) if isinstance(v, (np.ndarray, np.generic)) else copy.deepcopy(v)


def _restored(v: Any) -> Any:
    """The inverse of :func:`_saveable` (an env holds numpy values, never tensors)."""
    return (v.numpy().copy() if v.dim() else v.numpy()[()]) if isinstance(v, torch.Tensor) else copy.deepcopy(v)


def env_state(env) -> dict[str, Any]:
    """Everything needed to continue an episode: RNG, physics state, step count."""
    u = env.unwrapped
    st: dict[str, Any] = {"np_random": copy.deepcopy(u.np_random.bit_generator.state)}
    if hasattr(u, "data") and hasattr(u, "set_state"):  # MuJoCo
        st["mujoco"] = tuple(map(_saveable, (u.data.qpos, u.data.qvel, u.data.act))) + (float(u.data.time),)
    else:  # classic control and other envs with plain-attribute state
        st["attrs"] = {k: _saveable(v) for k, v in vars(u).items()
                       if k in ("state", "last_u", "steps_beyond_terminated")}
    tl = _time_limit(env)
    if tl is not None:
        st["elapsed"] = tl._elapsed_steps
    return st


def set_env_state(env, st: dict[str, Any], seed: int) -> None:
    env.reset(seed=seed)  # marks the env as reset for the wrappers
    u = env.unwrapped
    u.np_random.bit_generator.state = st["np_random"]
    if "mujoco" in st:
        qpos, qvel, act, t = map(_restored, st["mujoco"])
        u.set_state(qpos, qvel)
        u.data.act[:] = act
        u.data.time = t
    for k, v in st.get("attrs", {}).items():
        setattr(u, k, _restored(v))
    tl = _time_limit(env)
    if tl is not None and "elapsed" in st:
        tl._elapsed_steps = st["elapsed"]


# --- the loop ----------------------------------------------------------------------------------

def train(
    env_fns: Sequence[Callable[[], Any]],
    algo: ModuleType,
    cfg: Any,
    out_dir: str | os.PathLike,
    seeds: Sequence[int],
    tasks: Sequence[Any] | None = None,
    names: Sequence[str] | None = None,
    callback: Callable[[int], None] | None = None,
    write_outputs: bool = True,
    device: str | torch.device = "cpu",
    checkpoint_every: int = 10_000,
    log_every: int = 1_000,
) -> dict[str, Any]:
    """Train ``len(env_fns)`` agents of ``algo`` (``paper_repro.algos.sac`` or ``.td3``) together.

    ``env_fns[k]()`` builds task k's env (train and eval copies); ``tasks[k]`` is
    its JSON-able task description (stored in the buffer); ``names[k]`` prefixes
    its output files (default ``task<k>``). ``callback(step)`` runs after every
    env step (tests use it to simulate a crash). The networks and updates run on
    ``device``; buffers, environments and random generators stay on the CPU, so a
    run draws the same initial weights and noise on every device. Returns the
    agent, buffers and learning curves.
    """
    prconfig.check_bf16(cfg.amp_bf16, device)  # bf16 without native units: ~100x slower, refused
    _tune_malloc()
    out_dir = Path(out_dir)
    K = len(env_fns)
    assert len(seeds) == K, "one seed per task"
    tasks = list(tasks) if tasks is not None else [{} for _ in range(K)]
    names = list(names) if names is not None else [f"task{k}" for k in range(K)]
    envs = [f() for f in env_fns]
    eval_envs = [f() for f in env_fns]
    obs_dim = envs[0].observation_space.shape[0]
    act_dim = envs[0].action_space.shape[0]
    low, high = envs[0].action_space.low.astype(np.float32), envs[0].action_space.high.astype(np.float32)

    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    rngs = [np.random.default_rng(int(s)) for s in seeds]
    device = torch.device(device)
    agent = algo.init(cfg, gens, obs_dim, act_dim, low, high, device)
    buffers = [ReplayBuffer(cfg.total_steps, obs_dim, act_dim) for _ in range(K)]
    obs = rollout.reset(envs, seeds)
    ep_ret, last_ret = np.zeros(K), np.full(K, np.nan)
    curves: list[list[tuple[int, float]]] = [[] for _ in range(K)]
    metric_rows: list[dict[str, Any]] = []  # one row per task per log_every steps -> metrics.csv
    metrics: dict[str, torch.Tensor] = {}
    start = 0

    ckpt_path = out_dir / CHECKPOINT
    chunk_dir = out_dir / CHUNK_DIR
    ckpt = io.load_checkpoint(ckpt_path)
    chunks: list[int] = []  # end rows of the buffer chunks the current checkpoint covers
    saved_rows = 0  # buffer rows already on disk in chunks
    if ckpt is not None:
        io.check_resumable(ckpt_path, {"config": ckpt["config"], "seeds": list(ckpt["seeds"])},
                           {"config": dataclasses.asdict(cfg), "seeds": list(seeds)}, ignore=RUN_CONTROL)
        start = ckpt["step"]
        for name, obj in agent.items():
            if hasattr(obj, "load_state_dict"):
                obj.load_state_dict(ckpt["agent"][name])
            elif isinstance(obj, torch.Tensor):
                with torch.no_grad():
                    obj.copy_(ckpt["agent"][name])
        for b, arrays in zip(buffers, load_chunks(chunk_dir, ckpt["buffer_chunks"], K, ckpt_path)):
            b.load_arrays(arrays)
        saved_rows = start
        for g, s in zip(gens, ckpt["torch_rng"]):
            g.set_state(s)
        for r, s in zip(rngs, ckpt["numpy_rng"]):
            r.bit_generator.state = s
        for env, st, s in zip(envs, ckpt["env_states"], seeds):
            set_env_state(env, st, int(s))
        obs, ep_ret, last_ret = (ckpt[k].numpy() for k in ("obs", "ep_ret", "last_ret"))
        curves = ckpt["curves"]
        metric_rows = ckpt["metric_rows"]
        chunks = list(ckpt["buffer_chunks"])
        log.info("resumed from %s at step %d", ckpt_path, start)

    # Chunks that no checkpoint lists (a run killed between writing a chunk and its checkpoint,
    # or a finished/abandoned run's leftovers) are stale: the rows are rewritten when reached.
    if chunk_dir.exists():
        for f in chunk_dir.glob("*.npz"):
            if _chunk_end(f) not in chunks:
                f.unlink()

    def check(loss_name: str, per_task: torch.Tensor) -> None:
        bad = ~torch.isfinite(per_task.detach())
        if bad.any():
            k = int(bad.nonzero()[0])
            raise FloatingPointError(f"non-finite {loss_name} = {per_task[k].item()} in task {k} "
                                     f"({names[k]}) at env step {step}")

    def policy(o: np.ndarray, deterministic: bool) -> np.ndarray:
        return algo.act(agent, torch.from_numpy(o).to(device), gens, deterministic, cfg).cpu().numpy()

    def evaluate() -> tuple[np.ndarray, np.ndarray]:
        """Each task's mean deterministic return, and its share of successful episodes where the env
        reports success (Meta-World; NaN elsewhere)."""
        rets, wins = np.zeros(K), []
        for i in range(cfg.eval_episodes):
            wins.append([])
            rets += rollout.episodes(eval_envs, lambda o: policy(o, True), [int(s) + 10_000 + i for s in seeds],
                                     successes=wins[-1])
        return rets / cfg.eval_episodes, np.mean(wins, axis=0)

    t0, t_last, step_last = time.perf_counter(), time.perf_counter(), start
    where = Progress(cfg.total_steps, "step")
    for step in range(start, cfg.total_steps):
        # collect
        if step < cfg.learning_starts:
            actions = np.stack([r.uniform(low, high) for r in rngs]).astype(np.float32)
        else:
            actions = policy(obs, False)
        rewards, done = rollout.step(envs, obs, actions, buffers)  # no auto-reset transition enters a buffer
        ep_ret += rewards
        last_ret[done], ep_ret[done] = ep_ret[done], 0.0

        # update
        if step >= cfg.learning_starts:
            batch = sample(buffers, cfg.batch_size, rngs).tensors(device)
            metrics = algo.update(agent, batch, gens, step, cfg, check)

        # evaluate
        done_steps = step + 1
        if cfg.eval_episodes and (done_steps % cfg.eval_every == 0 or done_steps == cfg.total_steps):
            for k, (ret, win) in enumerate(zip(*evaluate())):
                curves[k].append((done_steps, float(ret), float(win)))
        if done_steps % log_every == 0:
            now = time.perf_counter()
            speed = (done_steps - step_last) / (now - t_last)
            log.info("%s  %.1f steps/s  recent return per task %s", where.line(done_steps), speed,
                     np.array2string(last_ret, precision=1))
            for k in range(K):
                metric_rows.append({"env_steps": done_steps, "task": names[k],
                                    "train/episode_return": float(last_ret[k]),
                                    **{n: float(v[k]) for n, v in metrics.items()}, "time/steps_per_s": speed})
            t_last, step_last = now, done_steps
        if done_steps % checkpoint_every == 0 and done_steps < cfg.total_steps:
            # Only the rows added since the last checkpoint are written (an atomic chunk file);
            # the checkpoint that lists the chunk is replaced atomically after it.
            write_chunk(chunk_dir, buffers, saved_rows, done_steps)
            chunks.append(done_steps)
            saved_rows = done_steps
            io.save_checkpoint(ckpt_path, {
                "step": done_steps, "config": dataclasses.asdict(cfg), "seeds": [int(s) for s in seeds],
                "agent": {n: (o.state_dict() if hasattr(o, "state_dict") else o.detach().clone())
                          for n, o in agent.items() if hasattr(o, "state_dict") or isinstance(o, torch.Tensor)},
                "buffer_chunks": list(chunks),
                "torch_rng": [g.get_state() for g in gens],
                "numpy_rng": [r.bit_generator.state for r in rngs],
                "env_states": [env_state(e) for e in envs],
                "obs": torch.tensor(obs), "ep_ret": torch.tensor(ep_ret), "last_ret": torch.tensor(last_ret),
                "curves": copy.deepcopy(curves),
                "metric_rows": copy.deepcopy(metric_rows),
            })
        if callback is not None:
            callback(done_steps)

    log.info("done: %d steps per task in %.1f s", cfg.total_steps - start, time.perf_counter() - t0)
    if write_outputs:
        cfg_dict = dataclasses.asdict(cfg)
        for k in range(K):
            stem = out_dir / names[k]
            save_buffer(stem.with_suffix(".npz"), buffers[k].arrays(), tasks[k], cfg_dict)
            with io.atomic_path(stem.with_suffix(".curve.csv")) as tmp, open(tmp, "w", newline="") as f:
                w = csv.writer(f)
                success = any(len(row) > 2 and not np.isnan(row[2]) for row in curves[k])
                w.writerow(["env_steps", "eval_return", *(["eval_success"] if success else [])])
                w.writerows(row[: 3 if success else 2] for row in curves[k])
            with io.atomic_path(stem.with_suffix(".policy.pt")) as tmp:
                torch.save(algo.policy_state(agent, k), tmp)
            io.write_provenance(stem.with_suffix(".npz"), cfg_dict, seeds={"task": int(seeds[k])},
                                device=str(device), task=tasks[k], algo=algo.__name__)
        if metric_rows:
            fields = list(dict.fromkeys(f for row in metric_rows for f in row))
            with io.atomic_path(out_dir / "metrics.csv") as tmp, open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=fields)
                w.writeheader()
                w.writerows(metric_rows)
        ckpt_path.unlink(missing_ok=True)
        if chunk_dir.exists():
            for f in chunk_dir.glob("*.npz"):
                f.unlink()
            chunk_dir.rmdir()
    return {"agent": agent, "buffers": buffers, "curves": curves}
