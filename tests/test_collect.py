"""The batched K-task loop: equals K one-task runs, resumes exactly, fails loudly on NaN."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import wait_until
from paper_repro import buffers, collect
from paper_repro.algos import sac, td3

SEEDS = [3, 11, 7]


def pendulum():
    return gym.make("Pendulum-v1")


def small(algo, **kw):
    base = dict(total_steps=300, learning_starts=50, batch_size=32, hidden=(32, 32), eval_every=150,
                eval_episodes=1)
    return algo.Config(**{**base, **kw})


RUN = dict(checkpoint_every=100, log_every=100)  # run control: arguments of train, not of the result


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("algo", [sac, td3])
def test_batched_equals_separate_runs(algo, tmp_path):
    cfg = small(algo)
    batched = collect.train([pendulum] * 3, algo, cfg, tmp_path / "b", seeds=SEEDS, write_outputs=False)
    for k, seed in enumerate(SEEDS):
        one = collect.train([pendulum], algo, cfg, tmp_path / f"s{k}", seeds=[seed], write_outputs=False)
        np.testing.assert_array_equal(one["buffers"][0].arrays()["obs"][:51], batched["buffers"][k].arrays()["obs"][:51])
        for (n, p), q in zip(batched["agent"]["actor"].named_parameters(), one["agent"]["actor"].parameters()):
            torch.testing.assert_close(p[k], q[0], rtol=1e-4, atol=1e-5, msg=f"task {k} {n}")
        np.testing.assert_allclose(batched["buffers"][k].arrays()["reward"], one["buffers"][0].arrays()["reward"],
                                   rtol=1e-4, atol=1e-4)


class Crash(Exception):
    pass


@pytest.mark.parametrize("algo", [sac, td3])
def test_resume_ends_where_uninterrupted_run_ends(algo, tmp_path):
    cfg = small(algo, total_steps=250)
    full = collect.train([pendulum] * 2, algo, cfg, tmp_path / "full", seeds=SEEDS[:2])

    def crash(step):
        if step == 170:  # after the checkpoint at 100, mid-episode
            raise Crash

    with pytest.raises(Crash):
        collect.train([pendulum] * 2, algo, cfg, tmp_path / "cut", seeds=SEEDS[:2], callback=crash, **RUN)
    assert (tmp_path / "cut" / collect.CHECKPOINT).exists()
    assert not list((tmp_path / "cut").glob("*.npz"))  # nothing complete-looking
    resumed = collect.train([pendulum] * 2, algo, cfg, tmp_path / "cut", seeds=SEEDS[:2], **RUN)
    for a, b in zip(full["agent"]["actor"].parameters(), resumed["agent"]["actor"].parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for k in range(2):
        x = buffers.load_buffer(tmp_path / "full" / f"task{k}.npz")
        y = buffers.load_buffer(tmp_path / "cut" / f"task{k}.npz")
        for name in buffers.ARRAYS:
            np.testing.assert_array_equal(x[name], y[name])
        assert (tmp_path / "cut" / f"task{k}.curve.csv").read_text() == (tmp_path / "full" / f"task{k}.curve.csv").read_text()
    assert not (tmp_path / "cut" / collect.CHECKPOINT).exists()


def test_resume_accepts_new_run_control_and_names_a_changed_result_key(tmp_path):
    """A cluster user may checkpoint more often to fit a shorter time limit: the run resumes and ends
    where the uninterrupted run ends. A change that alters the result is refused, by name."""
    cfg = small(td3, total_steps=250)
    full = collect.train([pendulum], td3, cfg, tmp_path / "full", seeds=SEEDS[:1], **RUN)

    def crash(step):
        if step == 170:
            raise Crash

    with pytest.raises(Crash):
        collect.train([pendulum], td3, cfg, tmp_path / "cut", seeds=SEEDS[:1], callback=crash, **RUN)
    with pytest.raises(ValueError, match=r"checkpoint.pt: written with other values of \['config.lr'\]"):
        collect.train([pendulum], td3, small(td3, total_steps=250, lr=1e-3), tmp_path / "cut", seeds=SEEDS[:1], **RUN)
    with pytest.raises(ValueError, match=r"\['seeds'\]"):
        collect.train([pendulum], td3, cfg, tmp_path / "cut", seeds=[5], **RUN)
    resumed = collect.train([pendulum], td3, cfg, tmp_path / "cut", seeds=SEEDS[:1], checkpoint_every=30, log_every=10)
    for a, b in zip(full["agent"]["actor"].parameters(), resumed["agent"]["actor"].parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for name in buffers.ARRAYS:
        np.testing.assert_array_equal(buffers.load_buffer(tmp_path / "full" / "task0.npz")[name],
                                      buffers.load_buffer(tmp_path / "cut" / "task0.npz")[name])


def test_outputs(tmp_path):
    cfg = small(sac, total_steps=120)
    collect.train([pendulum] * 2, sac, cfg, tmp_path, seeds=[0, 1], tasks=[{"g": 10.0}, {"g": 9.0}], **RUN)
    b = buffers.load_buffer(tmp_path / "task1.npz")
    assert len(b["reward"]) == 120 and b["task"] == {"g": 9.0} and b["config"] == dataclasses.asdict(cfg) | {"hidden": [32, 32]}
    assert b["truncated"].sum() == 0 and not b["terminated"].any()
    assert (tmp_path / "task0.curve.csv").read_text().splitlines()[0] == "env_steps,eval_return"
    policy = torch.load(tmp_path / "task0.policy.pt", weights_only=True)  # plain tensors: no code runs on load
    assert policy["net.layers.0.weight"].shape == (3, 32)
    assert (tmp_path / "task0.npz.provenance.json").exists()
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"env_steps", "task", "train/critic_loss", "train/alpha", "time/steps_per_s"} <= set(header)


class Succeeds(gym.Wrapper):
    """Pendulum that reports Meta-World's ``info["success"]``: true at step ``at`` of an episode only
    (None: never), whatever the policy does."""

    def __init__(self, env, at):
        super().__init__(env)
        self.at, self.t = at, 0

    def reset(self, **kwargs):
        self.t = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, term, trunc, info = self.env.step(action)
        self.t += 1
        return obs, reward, term, trunc, {**info, "success": self.t == self.at}


def test_curves_record_success_where_the_env_reports_it(tmp_path):
    """MACAW Fig 7's agents: the evaluations' success rate (an episode succeeds if some step does) beside
    the return; an env without success keeps the two-column curve (test_outputs). Task 0's episodes
    succeed at step 5 only (then fail at every later step): rate 1; task 1's never: rate 0."""
    cfg = small(sac, total_steps=100, eval_every=50, eval_episodes=2)
    collect.train([lambda: Succeeds(pendulum(), 5), lambda: Succeeds(pendulum(), None)], sac, cfg, tmp_path,
                  seeds=[0, 1], **RUN)
    for task, rate in ((0, 1.0), (1, 0.0)):
        lines = (tmp_path / f"task{task}.curve.csv").read_text().splitlines()
        assert lines[0] == "env_steps,eval_return,eval_success"
        assert [float(line.split(",")[2]) for line in lines[1:]] == [rate, rate]


def test_no_auto_reset_transition_in_buffer(tmp_path):
    cfg = small(sac, total_steps=420, learning_starts=420)  # two full episodes of 200, random actions
    out = collect.train([pendulum], sac, cfg, tmp_path, seeds=[0], write_outputs=False)
    a = out["buffers"][0].arrays()
    assert a["truncated"].nonzero()[0].tolist() == [199, 399]
    # within an episode next_obs[t] == obs[t+1]; across the boundary the new episode starts fresh
    np.testing.assert_array_equal(a["next_obs"][:199], a["obs"][1:200])
    assert not np.array_equal(a["next_obs"][199], a["obs"][200])


def test_nan_loss_names_task_and_step(tmp_path, monkeypatch):
    real = sac.critic_loss

    def poisoned(agent, b, gens, cfg):
        loss, m = real(agent, b, gens, cfg)
        return loss * torch.tensor([1.0, float("nan")]), m

    monkeypatch.setattr(sac, "critic_loss", poisoned)
    with pytest.raises(FloatingPointError, match=r"critic_loss.*task 1.*step 50"):
        collect.train([pendulum] * 2, sac, small(sac), tmp_path, seeds=[0, 1])
    assert not list(tmp_path.glob("*.npz")) and not list(tmp_path.glob("*.csv"))


def test_checkpoints_write_only_new_rows(tmp_path):
    cfg = small(td3, total_steps=250)

    def crash(step):
        if step == 230:
            raise Crash

    with pytest.raises(Crash):
        collect.train([pendulum] * 2, td3, cfg, tmp_path, seeds=SEEDS[:2], callback=crash, **RUN)
    chunk_dir = tmp_path / collect.CHUNK_DIR
    assert sorted(p.name for p in chunk_dir.iterdir()) == ["rows000000000100.npz", "rows000000000200.npz"]
    with np.load(chunk_dir / "rows000000000200.npz") as z:
        assert int(z["begin"]) == 100 and len(z["t1_reward"]) == 100 and z["t0_obs"].shape == (100, 3)
    (chunk_dir / "rows000000000300.npz").write_bytes(b"stale")  # not listed by the checkpoint: ignored, removed
    collect.train([pendulum] * 2, td3, cfg, tmp_path, seeds=SEEDS[:2], **RUN)
    assert not chunk_dir.exists() and not (tmp_path / collect.CHECKPOINT).exists()
    assert len(buffers.load_buffer(tmp_path / "task1.npz")["reward"]) == 250


def test_missing_chunk_is_reported(tmp_path):
    cfg = small(sac, total_steps=250)

    def crash(step):
        if step == 150:
            raise Crash

    with pytest.raises(Crash):
        collect.train([pendulum], sac, cfg, tmp_path, seeds=[0], callback=crash, **RUN)
    next((tmp_path / collect.CHUNK_DIR).iterdir()).unlink()
    with pytest.raises(ValueError, match="chunk"):
        collect.train([pendulum], sac, cfg, tmp_path, seeds=[0])


KILL_CHILD = """
import sys, time
from pathlib import Path
import gymnasium as gym
import torch
from paper_repro import collect
from paper_repro.algos import {algo} as algo
torch.set_num_threads(1)
out, pause_at = Path(sys.argv[1]), int(sys.argv[2])
def hold(step):  # after the first checkpoint, mid-episode: announce, then wait to be killed
    if step == pause_at:
        (out / "ready").write_text("")
        time.sleep(120)
cfg = algo.Config(total_steps=300, learning_starts=50, batch_size=32, hidden=(32, 32), eval_every=150,
                  eval_episodes=1)
collect.train([lambda: gym.make("Pendulum-v1")] * 2, algo, cfg, out, seeds=[3, 11],
              callback=hold if pause_at else None, checkpoint_every=100, log_every=100)
"""


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_resume_after_sigkill_is_bit_exact(algo, tmp_path):
    import signal
    import subprocess
    import sys

    code = KILL_CHILD.format(algo=algo)

    def run(out, pause_at):
        out.mkdir(exist_ok=True)
        return subprocess.Popen([sys.executable, "-c", code, str(out), str(pause_at)])

    full, cut = tmp_path / "full", tmp_path / "cut"
    ref = run(full, 0)
    child = run(cut, 170)
    wait_until((cut / "ready").exists, child, "its first checkpoint")
    assert (cut / collect.CHECKPOINT).exists()
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    assert not list(cut.glob("*.npz"))
    assert run(cut, 0).wait() == 0 and ref.wait() == 0
    for k in range(2):
        x = buffers.load_buffer(full / f"task{k}.npz")
        y = buffers.load_buffer(cut / f"task{k}.npz")
        for name in buffers.ARRAYS:
            np.testing.assert_array_equal(x[name], y[name])
        assert (cut / f"task{k}.curve.csv").read_text() == (full / f"task{k}.curve.csv").read_text()
        p, q = torch.load(full / f"task{k}.policy.pt"), torch.load(cut / f"task{k}.policy.pt")
        assert p.keys() == q.keys() and all(torch.equal(p[n], q[n]) for n in p)
    assert not (cut / collect.CHECKPOINT).exists() and not (cut / collect.CHUNK_DIR).exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("algo", [sac, td3])
def test_cuda_run_matches_cpu_run(algo, tmp_path):
    """Initial weights and noise come from the CPU generators on every device, so a CUDA run
    starts where the CPU run starts and stays within float tolerance of it over its first updates."""
    cfg = small(algo, total_steps=70, learning_starts=50, eval_every=70)
    runs = {dev: collect.train([pendulum] * 2, algo, cfg, tmp_path / dev, seeds=SEEDS[:2], write_outputs=False,
                               device=dev) for dev in ("cpu", "cuda")}
    cpu, gpu = runs["cpu"], runs["cuda"]
    for k in range(2):
        np.testing.assert_array_equal(cpu["buffers"][k].arrays()["obs"][:51], gpu["buffers"][k].arrays()["obs"][:51])
        np.testing.assert_allclose(cpu["buffers"][k].arrays()["obs"], gpu["buffers"][k].arrays()["obs"], atol=1e-3)
    for (n, p), q in zip(cpu["agent"]["actor"].named_parameters(), gpu["agent"]["actor"].parameters()):
        assert q.is_cuda
        torch.testing.assert_close(p, q.cpu(), rtol=1e-3, atol=1e-4, msg=n)
    policy = algo.policy_state(gpu["agent"], 1)  # what collect writes: loadable without a GPU
    assert all(t.device.type == "cpu" for t in policy.values())
