"""Atomic writes honour the user's umask, and resume checks name what changed."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from paper_repro import io


@pytest.fixture
def umask():
    """Set the process umask for one test, then put the old one back."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o027, 0o640), (0o077, 0o600)])
def test_outputs_honour_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    io.write_text(tmp_path / "table.csv", "a\n1\n")
    io.save_checkpoint(tmp_path / "model.pt", {"w": 1})
    with io.atomic_path(tmp_path / "buffer.npz") as tmp:
        np.savez(tmp, x=np.zeros(3))
    for name in ("table.csv", "model.pt", "buffer.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert io.current_umask() == mask


def test_config_diff_names_nested_keys():
    old = {"config": {"lr": 3e-4, "hidden": (256, 256), "log_every": 1000}, "seeds": [1, 2]}
    new = {"config": {"lr": 1e-3, "hidden": [256, 256], "log_every": 10}, "seeds": [1, 2], "extra": 1}
    assert io.config_diff(old, new) == ["config.log_every", "config.lr", "extra"]
    with pytest.raises(ValueError, match=r"ckpt.pt: written with other values of \['config.lr', 'extra'\]"):
        io.check_resumable("ckpt.pt", old, new, ignore=("config.log_every",))
    io.check_resumable("ckpt.pt", old, {**old, "config": {**old["config"], "log_every": 5}}, ignore=("config.log_every",))


def test_start_or_resume_guards_a_checkpoint_with_its_run(tmp_path):
    run = {"config": {"lr": 0.1}, "seed": 0}
    checkpoint, progress = io.start_or_resume(tmp_path, run)
    assert (tmp_path / "checkpoint.run.json").exists() and not checkpoint.exists()
    progress.write_text("{}\n")
    io.save_checkpoint(checkpoint, {"step": 3})
    assert io.start_or_resume(tmp_path, run) == (checkpoint, progress) and progress.read_text() == "{}\n"  # resumes
    with pytest.raises(ValueError, match=r"checkpoint.pt: written with other values of \['config.lr'\]"):
        io.start_or_resume(tmp_path, {**run, "config": {"lr": 0.2}})
    checkpoint.unlink()  # no checkpoint: a fresh start drops the earlier life's rows
    io.start_or_resume(tmp_path, {**run, "config": {"lr": 0.2}})
    assert not progress.exists() and io.load_json(tmp_path / "checkpoint.run.json")["config"]["lr"] == 0.2
    io.finish_run(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_job_of_pieces_resumes_from_its_rows(tmp_path):
    """checkpointed=False (MACAW Table 1's fine-tuning, one test task a piece): the finished pieces' rows are
    the state, kept for the same run and refused, naming the key, for another."""
    run = {"finetune": {"steps": 10}, "seed": 0}
    _, progress = io.start_or_resume(tmp_path, run, checkpointed=False)
    io.append_rows(progress, [{"task_id": 3, "rows": [{"return": 1.0}, {"return": 2.0}]}])
    _, again = io.start_or_resume(tmp_path, run, checkpointed=False)
    assert io.read_rows(again) == [{"task_id": 3, "rows": [{"return": 1.0}, {"return": 2.0}]}]
    with pytest.raises(ValueError, match=r"progress.jsonl: written with other values of \['finetune.steps'\]"):
        io.start_or_resume(tmp_path, {**run, "finetune": {"steps": 20}}, checkpointed=False)


@pytest.mark.parametrize("checkpointed", [True, False])
def test_a_resumed_job_loses_its_torn_last_row(tmp_path, checkpointed):
    """A kill in the middle of a write leaves part of a line: the resume cuts it off, and the rows before
    it and after it read back."""
    run = {"seed": 0}
    checkpoint, progress = io.start_or_resume(tmp_path, run, checkpointed)
    assert io.read_rows(progress) == []
    io.append_rows(progress, [{"a": 1}, {"a": 2}])
    if checkpointed:
        io.save_checkpoint(checkpoint, {"step": 2})
    with open(progress, "a") as f:
        f.write('{"a": 3, "b"')  # killed here
    _, progress = io.start_or_resume(tmp_path, run, checkpointed)
    assert io.read_rows(progress) == [{"a": 1}, {"a": 2}]
    io.append_rows(progress, [{"a": 4}])
    assert io.read_rows(progress) == [{"a": 1}, {"a": 2}, {"a": 4}]


def test_keep_rows_drops_what_a_resumed_job_logs_again(tmp_path):
    """AdMRL's training resumes after its last finished task: the rows of the task the kill interrupted go."""
    checkpoint, progress = io.start_or_resume(tmp_path, {"seed": 0})
    io.append_rows(progress, [{"task": 0, "loss": 1.0}, {"task": 1, "loss": 2.0}, {"task": 2, "loss": 3.0}])
    io.keep_rows(progress, lambda row: row["task"] < 2)
    assert io.read_rows(progress) == [{"task": 0, "loss": 1.0}, {"task": 1, "loss": 2.0}]
    io.keep_rows(tmp_path / "absent.jsonl", lambda row: True)
    assert not (tmp_path / "absent.jsonl").exists()


def test_provenance_is_written_beside_the_result_and_reads_back(tmp_path):
    """``write_provenance``: the sidecar ``<file>.provenance.json`` holds the git describe of this checkout,
    the key packages' versions, the config (numpy and dataclass values as JSON) with its hash, and the extras
    (seeds, inputs); it reads back equal."""
    import dataclasses
    import json
    import subprocess

    @dataclasses.dataclass
    class Cfg:
        lr: float = 1e-3
        hidden: tuple = (8, 8)

    result = tmp_path / "run" / "metrics.csv"
    result.parent.mkdir()
    config = {"algo": "sac", "agent": Cfg(), "goals": np.array([0.5, 1.5])}
    side = io.write_provenance(result, config, seeds=[0, 1], inputs={"buffer.npz": "ab12"})
    assert side == tmp_path / "run" / "metrics.csv.provenance.json" == io.provenance_path(result)
    prov = io.load_json(side)
    assert prov == json.loads(side.read_text())
    assert prov["config"] == {"algo": "sac", "agent": {"lr": 1e-3, "hidden": [8, 8]}, "goals": [0.5, 1.5]}
    assert prov["config_hash"] == io.config_hash(config) == io.config_hash(prov["config"])
    assert prov["config_hash"] != io.config_hash({**prov["config"], "algo": "td3"})
    assert prov["seeds"] == [0, 1] and prov["inputs"] == {"buffer.npz": "ab12"}
    head = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=io.PROJECT_ROOT,
                          capture_output=True, text=True, check=True).stdout.strip()
    assert prov["git_describe"] == head
    assert set(prov["packages"]) == set(io.KEY_PACKAGES)
    assert prov["packages"]["numpy"] == np.__version__
