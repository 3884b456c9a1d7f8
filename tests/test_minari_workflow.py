"""`snakemake export_minari` at the smoke scale: every offline buffer as a Minari dataset, loaded back by id."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from conftest import snakemake
from paper_repro import buffers, envs


def check_export(workdir: Path, scale: str = "smoke") -> pd.DataFrame:
    """Every dataset of ``results/<scale>/minari`` equals its buffer, episode by episode, and recovers its task's env."""
    import minari

    root = workdir / "results" / scale / "minari"
    index = pd.read_csv(root / "datasets.csv")
    os.environ["MINARI_DATASETS_PATH"] = str(root)  # restored by the caller
    assert sorted(minari.list_local_datasets()) == sorted(index.dataset_id)
    for row in index.itertuples():
        assert row.dataset_id == f"paper-repro/{row.family}/task{row.task_id}-v0"
        b = buffers.load_buffer(workdir / row.buffer)
        assert b["task"]["family"] == row.family and int(b["task"]["task_id"]) == row.task_id
        ds = minari.load_dataset(row.dataset_id)
        starts, ends = buffers.episode_bounds(b["terminated"], b["truncated"])
        assert ds.total_episodes == len(starts) == row.episodes and ds.total_steps == len(b["reward"]) == row.steps
        for ep, s, e in zip(ds.iterate_episodes(), starts, ends, strict=True):
            np.testing.assert_array_equal(ep.observations, np.concatenate([b["obs"][s:e], b["next_obs"][e - 1:e]]))
            np.testing.assert_array_equal(ep.observations[1:], b["next_obs"][s:e])
            np.testing.assert_array_equal(ep.actions, b["action"][s:e])
            np.testing.assert_array_equal(ep.rewards, b["reward"][s:e])
            np.testing.assert_array_equal(ep.terminations, b["terminated"][s:e])
            np.testing.assert_array_equal(ep.truncations, b["truncated"][s:e])
        meta = ds.storage.metadata["paper_repro"]
        task = {k: v for k, v in b["task"].items() if k not in ("family", "task_id")}
        assert meta["task"] == task == json.loads(row.task) and meta["algorithm"] == row.algorithm
        assert meta["algorithm_config"] == b["config"] and meta["provenance"]["rule"] == f"collect_{row.family}"
        env = ds.recover_environment()
        assert env.spec.id == envs.env_id(row.family) and env.unwrapped.task == task
        env.close()
    return index


def test_export_minari_at_smoke_scale(tmp_path_factory, tmp_path, monkeypatch):
    """The export, run on a copy of the shared smoke run (tests/smoke_run.py): its buffers are reused, not rebuilt."""
    from smoke_run import SMOKE, smoke_results

    built, _ = smoke_results(tmp_path_factory)
    workdir = tmp_path / "wf"
    shutil.copytree(built, workdir, symlinks=True)  # copy2: mtimes kept, so Snakemake sees the buffers as current
    buffers_before = {p: p.stat().st_mtime_ns for p in (workdir / "results" / "smoke" / "data").rglob("*.npz")}
    monkeypatch.setenv("MINARI_DATASETS_PATH", "")  # check_export sets it; monkeypatch restores it
    snakemake(workdir, "--cores", "2", "export_minari", *SMOKE, timeout=1200)
    assert buffers_before and {p: p.stat().st_mtime_ns for p in buffers_before} == buffers_before
    index = check_export(workdir)
    assert set(index.family) == {"cheetah-vel", "cheetah-dir", "ant-dir", "walker-params", "metaworld-ml45-env"}
    assert (workdir / "results" / "smoke" / "minari.provenance.json").is_file()
