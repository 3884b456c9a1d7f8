"""Atomic writes, checkpoints and provenance.

Every file the workflow writes goes through :func:`atomic_path`: it is written
under a temporary name in the same directory and renamed into place only when
the writer returns without error, so a killed job never leaves a file that looks
complete. Provenance is written as a ``<file>.provenance.json`` sidecar.
"""

from __future__ import annotations

import contextlib
import copy
import glob
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KEY_PACKAGES = ("torch", "numpy", "pandas", "gymnasium", "mujoco", "snakemake", "matplotlib", "seaborn")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary name keeps the final suffix, so libraries that infer the
    format from it (``np.savez``, ``savefig``) behave as they would on ``path``.
    Temporaries of ``path`` left by a writer that was killed (SIGKILL skips the
    cleanup below) are removed first: only one job ever writes a given output.
    The file gets the mode any other tool would give it under the user's umask
    (``mkstemp`` alone makes it private, 0600), so a group can share results.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp{path.suffix}"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.fchmod(fd, 0o666 & ~current_umask())
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def current_umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def load_json(path: str | os.PathLike) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def to_cpu(tree: Any) -> Any:
    """``tree`` with every tensor in it (nested in dicts, lists and tuples: weights, optimizer states)
    on the CPU. CPU tensors are kept as they are, not copied; dicts keep their type and attributes
    (a state_dict's ``_metadata``)."""
    import torch

    if isinstance(tree, torch.Tensor):
        return tree.cpu()
    if isinstance(tree, dict):
        out = copy.copy(tree)
        out.update((k, to_cpu(v)) for k, v in tree.items())
        return out
    if type(tree) in (list, tuple):
        return type(tree)(to_cpu(v) for v in tree)
    return tree


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Atomically ``torch.save`` a checkpoint dict, its tensors moved to the CPU (:func:`to_cpu`), so
    that it loads on a machine without a GPU."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(to_cpu(dict(state)), tmp)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any] | None:
    """Load a checkpoint or saved model written by :func:`save_checkpoint`; ``None`` if there is none.

    Loaded with torch's ``weights_only`` loader: a saved state holds only tensors, numbers, strings,
    lists, tuples and dicts (no numpy arrays, no instances of project classes), so renaming a class
    never breaks a saved file, and loading one runs no code from it.
    """
    import pickle
    import re

    import torch

    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a checkpoint is only ever replaced atomically, so this is real damage
        other = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if isinstance(e, pickle.UnpicklingError) and other:  # intact, but written by an older version
            raise ValueError(f"{path}: holds {other.group(1)}, not only tensors, numbers, strings, lists and "
                             "dicts (written by an older version of paper_repro?); delete it to start over") from None
        raise ValueError(f"{path}: corrupt checkpoint ({type(e).__name__}: {e}); delete it to start over") from None


def config_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two JSON-like configs (nested dicts compared key by key)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return [d for k in sorted(set(old) | set(new), key=str)
                for d in config_diff(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if _jsonable(old) == _jsonable(new) else [prefix.rstrip(".")]


def check_resumable(path: str | os.PathLike, saved: Mapping, current: Mapping, ignore: tuple[str, ...] = ()) -> None:
    """Refuse to resume from the checkpoint at ``path`` where what it was written with (``saved``)
    differs from the current run in anything but ``ignore``d keys: the error names each key."""
    changed = [k for k in config_diff(saved, current) if k not in ignore]
    if changed:
        raise ValueError(f"{path}: written with other values of {changed}, which change the result; "
                         "delete it to start over, or set them back to resume")


def start_or_resume(run_dir: str | os.PathLike, run: Mapping, checkpointed: bool = True) -> tuple[Path, Path]:
    """A job's ``checkpoint.pt`` and ``progress.jsonl`` in ``run_dir``, guarded by ``checkpoint.run.json``
    (what the result depends on): a checkpoint written for another ``run`` is refused, naming the keys
    (:func:`check_resumable`); without a checkpoint the job starts fresh, dropping an earlier life's rows.
    ``checkpointed=False``: the job's whole state is its progress rows (a job of independent pieces, each
    appended when done), which are then what is guarded and resumed. A resumed job's progress loses the
    torn last line a kill in the middle of :func:`append_rows` may have left (the piece it was writing)."""
    run_dir = Path(run_dir)
    checkpoint, progress, run_file = run_dir / "checkpoint.pt", run_dir / "progress.jsonl", run_dir / "checkpoint.run.json"
    state = checkpoint if checkpointed else progress
    if state.exists() and run_file.exists():
        check_resumable(state, load_json(run_file), run)
        _drop_torn_line(progress)
    elif not state.exists():
        progress.unlink(missing_ok=True)
        save_json(run_file, run)
    return checkpoint, progress


def _drop_torn_line(progress: Path) -> None:
    """Cut a ``progress.jsonl`` back to its last newline: what follows it is a write a kill cut short."""
    if progress.exists() and progress.stat().st_size:
        with open(progress, "r+b") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":  # torn: rare, so reading the whole file is fine
                f.seek(0)
                f.truncate(f.read().rfind(b"\n") + 1)


def append_rows(progress: str | os.PathLike, rows: Sequence[Mapping]) -> None:
    """Append ``rows`` to a ``progress.jsonl`` as one write: a kill leaves at most a torn last line, which
    :func:`start_or_resume` cuts off when the job resumes."""
    with open(progress, "a") as f:
        f.write("".join(json.dumps(row) + "\n" for row in rows))


def read_rows(progress: str | os.PathLike) -> list[dict]:
    """The rows of a ``progress.jsonl`` (none where it does not exist)."""
    progress = Path(progress)
    return [json.loads(line) for line in progress.read_text().splitlines()] if progress.exists() else []


def keep_rows(progress: str | os.PathLike, keep: Callable[[dict], bool]) -> None:
    """Rewrite a ``progress.jsonl`` with only the rows ``keep`` accepts, atomically: a job that resumes
    from a checkpoint drops the rows it logged after it, which it is about to log again."""
    progress = Path(progress)
    if progress.exists():
        write_text(progress, "".join(json.dumps(row) + "\n" for row in read_rows(progress) if keep(row)))


def finish_run(run_dir: str | os.PathLike) -> None:
    """Remove what :func:`start_or_resume` kept once the job's outputs are written."""
    for name in ("checkpoint.pt", "checkpoint.run.json", "progress.jsonl"):
        (Path(run_dir) / name).unlink(missing_ok=True)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=_json_default))


def config_hash(config: Any) -> str:
    """Short, stable hash of a JSON-able config slice."""
    blob = json.dumps(config, sort_keys=True, default=_json_default).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def git_describe() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def provenance(config: Any, **extra: Any) -> dict[str, Any]:
    """Where a result came from: code version, packages, config slice and its hash, host."""
    return {
        "git_describe": git_describe(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "config": config,
        "config_hash": config_hash(config),
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "platform": platform.platform(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def provenance_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".provenance.json")


def write_provenance(path: str | os.PathLike, config: Any, **extra: Any) -> Path:
    """Write the provenance sidecar of ``path``; ``extra`` holds seeds, device, inputs..."""
    side = provenance_path(path)
    save_json(side, provenance(config, **extra))
    return side


def file_sha256(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_job_provenance(job: Any, config: Any, **extra: Any) -> None:
    """The provenance sidecar of every output of a Snakemake job (``job`` is a script's ``snakemake``
    object), always rewritten from the job itself: ``config`` as it was run (the resolved dataclass,
    not the YAML overrides), the rule, wildcards and scale, the SHA-256 of every input file, and the
    rule's ``code`` param: the digest of every library file the job runs (``paper_repro.digests``)."""
    inputs = {str(p): file_sha256(p) for p in dict.fromkeys(map(str, job.input)) if Path(p).is_file()}
    code = getattr(getattr(job, "params", None), "code", None)
    for path in job.output:
        write_provenance(path, config, rule=job.rule, wildcards=dict(job.wildcards.items()),
                         scale=job.config.get("scale"), inputs=inputs, **({"code": dict(code)} if code else {}), **extra)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
