"""Atomic writes, checkpoints and provenance.

Every file the workflow writes goes through :func:`atomic_path`: it is written
under a temporary name in the same directory and renamed into place only when
the writer returns without error, so a killed job never leaves a file that looks
complete. Provenance is written as a ``<file>.provenance.json`` sidecar.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
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
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp{path.suffix}"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Atomically ``torch.save`` a checkpoint dict."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any] | None:
    """Load a checkpoint written by :func:`save_checkpoint`; ``None`` if there is none."""
    import torch

    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a checkpoint is only ever replaced atomically, so this is real damage
        raise ValueError(f"{path}: corrupt checkpoint ({type(e).__name__}: {e}); delete it to start over") from None


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


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
