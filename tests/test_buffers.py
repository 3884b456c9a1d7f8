"""The replay buffer (preallocated and growing, prior tags, sampling) and its batch; the on-disk
format: round trip, validation of damaged files; episode arithmetic."""

import numpy as np
import pytest
import torch

from paper_repro import buffers as B


def _arrays(n=10, done_at=(3, 7)):
    rng = np.random.default_rng(0)
    term = np.zeros(n, bool)
    trunc = np.zeros(n, bool)
    term[done_at[0]] = True
    trunc[done_at[1]] = True
    return {"obs": rng.normal(size=(n, 3)).astype(np.float32), "action": rng.normal(size=(n, 1)).astype(np.float32),
            "reward": np.arange(n, dtype=np.float32), "next_obs": rng.normal(size=(n, 3)).astype(np.float32),
            "terminated": term, "truncated": trunc}


def _rows(n):
    return _arrays(n, (0, n - 1))


def test_round_trip(tmp_path):
    a = _arrays()
    B.save_buffer(tmp_path / "b.npz", a, {"velocity": 1.5}, {"lr": 3e-4})
    out = B.load_buffer(tmp_path / "b.npz")
    for k in B.ARRAYS:
        np.testing.assert_array_equal(out[k], a[k])
    assert out["task"] == {"velocity": 1.5} and out["config"] == {"lr": 3e-4}
    assert [p.name for p in tmp_path.iterdir()] == ["b.npz"]  # no temporary left


def test_truncated_file_is_rejected(tmp_path):
    p = tmp_path / "b.npz"
    B.save_buffer(p, _arrays(), {}, {})
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="b.npz"):
        B.load_buffer(p)


def test_missing_key_and_bad_lengths_are_rejected(tmp_path):
    a = _arrays()
    p = tmp_path / "c.npz"
    np.savez(p, **{k: v for k, v in a.items() if k != "reward"}, task="{}", config="{}", format_version=1)
    with pytest.raises(ValueError, match=r"c.npz.*reward"):
        B.load_buffer(p)
    a["reward"] = a["reward"][:-1]
    np.savez(p, **a, task="{}", config="{}", format_version=1)
    with pytest.raises(ValueError, match=r"c.npz.*rows"):
        B.load_buffer(p)


def test_task_buffer_of_another_task_or_family_is_refused_naming_the_file(tmp_path):
    p = tmp_path / "task7.npz"
    B.save_buffer(p, _arrays(), {"family": "cheetah-vel", "task_id": 7, "velocity": 0.6}, {})
    b = B.load_task_buffer(p, "cheetah-vel", {"task_id": np.int64(7), "velocity": np.float64(0.6)})
    assert len(b["reward"]) == 10
    for family, task in [("cheetah-vel", {"task_id": 8, "velocity": 0.675}),  # another task's buffer
                         ("cheetah-dir", {"task_id": 7, "direction": 1.0}),  # another family's
                         ("cheetah-vel", {"task_id": 7, "velocity": 0.7})]:  # the same id, another velocity
        with pytest.raises(ValueError, match=r"task7\.npz: the buffer holds task .*'velocity': 0\.6"):
            B.load_task_buffer(p, family, task)


def test_episode_bounds_and_returns():
    a = _arrays()
    starts, ends = B.episode_bounds(a["terminated"], a["truncated"])
    assert starts.tolist() == [0, 4, 8] and ends.tolist() == [4, 8, 10]
    done = a["terminated"] | a["truncated"]
    g = B.monte_carlo_returns(a["reward"], done, 0.5)
    assert g[3] == 3 and g[2] == pytest.approx(2 + 0.5 * 3) and g[9] == 9 and g[8] == pytest.approx(8 + 4.5)


def test_trajectory_slice_whole_episodes():
    n = 100
    a = _arrays(n, (9, 19))
    a["truncated"][9::10] = True  # episodes of 10
    # 10 episodes of 10 transitions: n counts trajectories, as MACAW's "500 trajectories"
    assert B.trajectory_slice(a, "first", n=3) == slice(0, 30)
    assert B.trajectory_slice(a, "middle", n=3) == slice(30, 60)
    assert B.trajectory_slice(a, "last", n=3) == slice(70, 100)
    # the authors' "middle": centred at a quarter of the lifetime (episode 10 // 4 = 2, minus 3 // 2)
    assert B.trajectory_slice(a, "quarter", n=3) == slice(10, 40)
    assert B.trajectory_slice(a, "last", n=50) == slice(0, 100)  # fewer episodes than asked: all of them


def test_buffer_never_overwrites():
    b = B.ReplayBuffer(2, 1, 1)
    b.add([0], [0], 0, [0], False, False)
    b.add([0], [0], 0, [0], False, False)
    with pytest.raises(IndexError):
        b.add([0], [0], 0, [0], False, False)
    with pytest.raises(IndexError):
        b.extend(_rows(1))


def test_growing_buffer_keeps_every_row_in_order_and_its_prior_tag():
    a = _arrays(10)
    b = B.ReplayBuffer(0, 3, 1, grow=True)
    b.extend({k: v[:3] for k, v in a.items()}, prior=True)
    for t in range(3, 7):
        b.add(*(a[k][t] for k in B.ARRAYS))
    b.extend({k: v[7:] for k, v in a.items()}, prior=True)
    assert b.size == 10 and b.capacity >= 10
    for k in B.ARRAYS:
        np.testing.assert_array_equal(b.arrays()[k], a[k])
    assert b.prior_rows().tolist() == [0, 1, 2, 7, 8, 9]
    b.add(*(a[k][0] for k in B.ARRAYS), prior=True)
    assert b.prior_rows().tolist() == [0, 1, 2, 7, 8, 9, 10]
    b.clear()
    assert b.size == 0 and len(b.prior_rows()) == 0 and len(b.batch().obs) == 0


def test_saved_state_round_trips_and_from_arrays_does_not_copy():
    b = B.ReplayBuffer(0, 3, 1, grow=True)
    b.extend(_rows(6), prior=True)
    b.extend(_rows(4))
    state = b.tensors()  # what a checkpoint or model.pt holds
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    again = B.ReplayBuffer(0, 3, 1, grow=True)
    again.load_arrays(state)
    shared = B.ReplayBuffer.from_arrays(state)
    for buf in (again, shared):
        assert buf.size == 10 and buf.prior_rows().tolist() == list(range(6))
        for k, v in b.arrays().items():
            np.testing.assert_array_equal(buf.arrays()[k], v)
    state["reward"][0] = 99.0
    assert shared.arrays()["reward"][0] == 99.0 and again.arrays()["reward"][0] == 0.0
    shared.add(*(_rows(1)[k][0] for k in B.ARRAYS))  # growing leaves the saved state alone
    assert shared.size == 11 and len(state["reward"]) == 10
    collection = B.ReplayBuffer(20, 3, 1)  # no prior column: all False
    collection.load_arrays(_rows(5))
    assert collection.size == 5 and len(collection.prior_rows()) == 0


def test_batch_rows_and_tensors():
    b = B.ReplayBuffer(10, 3, 1)
    b.extend(_arrays())
    batch = b.batch(np.array([3, 0, 3]))
    assert batch._fields == ("obs", "action", "reward", "next_obs", "terminated")  # truncated: no update reads it
    assert batch.reward.tolist() == [3, 0, 3] and batch.terminated.tolist() == [True, False, True]
    t = batch.tensors()
    assert all(x.dtype == torch.float32 for x in t) and t.terminated.tolist() == [1.0, 0.0, 1.0]
    assert B.stack([batch, batch]).obs.shape == (2, 3, 3) and B.concat([t, t]).obs.shape == (6, 3)


def test_sample_draws_each_buffer_with_its_own_generator():
    bufs = []
    for n in (10, 7):
        b = B.ReplayBuffer(n, 3, 1)
        b.extend(_rows(n))
        bufs.append(b)
    got = B.sample(bufs, 5, [np.random.default_rng(1), np.random.default_rng(2)])
    assert got.obs.shape == (2, 5, 3) and got.reward.shape == (2, 5)
    for k, seed in enumerate((1, 2)):  # task k's draws depend on its generator only
        rows = np.random.default_rng(seed).integers(0, bufs[k].size, 5)
        np.testing.assert_array_equal(got.reward[k], bufs[k].arrays()["reward"][rows])
        alone = B.sample([bufs[k]], 5, [np.random.default_rng(seed)])
        np.testing.assert_array_equal(alone.obs[0], got.obs[k])
    rng, ref = np.random.default_rng(3), np.random.default_rng(3)  # one generator: buffer after buffer
    got = B.sample(bufs, 4, rng)
    for k in range(2):
        np.testing.assert_array_equal(got.reward[k], bufs[k].arrays()["reward"][ref.integers(0, bufs[k].size, 4)])


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.99, 1.0])
@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 5000, 70_001])
def test_monte_carlo_returns_match_the_loop(n, gamma):
    rng = np.random.default_rng(n)
    reward = rng.normal(size=n).astype(np.float32) * 10
    done = rng.random(n) < 0.005
    if n > 3:
        done[-1] = n % 2 == 0  # with and without a trailing unfinished episode
        done[:2] = True  # one-step episodes
    got = B.monte_carlo_returns(reward, done, gamma)
    want = B._monte_carlo_returns_loop(reward, done, gamma)
    assert got.dtype == np.float32 and got.shape == (n,)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3 if gamma == 1.0 else 1e-4)


def test_monte_carlo_returns_fast_on_long_buffers():
    n = 2_500_000
    reward = np.ones(n, np.float32)
    done = np.zeros(n, bool)
    done[999::1000] = True
    g = B.monte_carlo_returns(reward, done, 0.99)
    np.testing.assert_allclose(g[[0, 999, 1000, n - 1]], [(1 - 0.99**1000) / 0.01, 1, (1 - 0.99**1000) / 0.01, 1],
                               rtol=1e-5)


def test_warmup_returns_are_the_episodes_before_the_first_update(tmp_path):
    p = tmp_path / "b.npz"
    for learning_starts, expected in ((8, [6, 22]), (6, [6]), (3, [])):
        B.save_buffer(p, _arrays(), {}, {"learning_starts": learning_starts})
        assert B.warmup_returns(p).tolist() == expected  # episodes [0, 4), [4, 8), [8, 10); reward = step


def test_load_buffer_reads_only_the_keys_asked_for(tmp_path):
    p = tmp_path / "b.npz"
    B.save_buffer(p, _arrays(), {"velocity": 1.5}, {})
    out = B.load_buffer(p, keys=("reward", "task"))
    assert sorted(out) == ["reward", "task"] and out["task"] == {"velocity": 1.5}


# --- offline meta-RL data ---


def _offline_reference(buf, gamma):
    """One Python step per transition: G, s_T, disc_T, boot as MACAW's src/utils.py computes them."""
    n = len(buf["reward"])
    out = {k: [] for k in ("G", "s_T", "disc_T", "boot")}
    start = 0
    for t in range(n):
        if buf["terminated"][t] or buf["truncated"][t] or t == n - 1:
            end = t + 1
            for i in range(start, end):
                out["G"].append(sum(gamma ** (j - i) * float(buf["reward"][j]) for j in range(i, end)))
                out["s_T"].append(buf["next_obs"][end - 1])
                out["disc_T"].append(gamma ** (end - i))
                out["boot"].append(0.0 if buf["terminated"][end - 1] else 1.0)
            start = end
    return {k: np.array(v, np.float32) for k, v in out.items()}


def _episodes_buffer(lengths, terminated_last, rng):
    """A lifetime buffer of episodes of the given lengths; each ends terminated or truncated (the
    last one may be left unfinished with neither)."""
    n = sum(lengths)
    buf = {"obs": rng.normal(size=(n, 3)).astype(np.float32), "action": rng.normal(size=(n, 2)).astype(np.float32),
           "reward": rng.normal(size=n).astype(np.float32), "next_obs": rng.normal(size=(n, 3)).astype(np.float32),
           "terminated": np.zeros(n, bool), "truncated": np.zeros(n, bool)}
    end = 0
    for length, term in zip(lengths, terminated_last):
        end += length
        if term is not None:
            buf["terminated" if term else "truncated"][end - 1] = True
    return buf


def test_offline_arrays_match_a_loop_with_terminated_truncated_and_unfinished_episodes():
    rng = np.random.default_rng(0)
    buf = _episodes_buffer([5, 3, 7, 4, 6], [True, False, True, False, None], rng)
    got = B.offline_arrays(buf, 0.9)
    want = _offline_reference(buf, 0.9)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)
    np.testing.assert_array_equal(got["obs"], buf["obs"])
    # bootstrap only through time limits and the unfinished last episode
    assert got["boot"].tolist() == [0] * 5 + [1] * 3 + [0] * 7 + [1] * 4 + [1] * 6
    assert got["disc_T"][4] == np.float32(0.9) and got["disc_T"][0] == np.float32(0.9**5)
    # stride: every k-th row of the arrays computed on the raw buffer
    strided = B.offline_arrays(buf, 0.9, stride=7)
    for k in B.OFFLINE:
        np.testing.assert_array_equal(strided[k], got[k][::7], err_msg=k)


def test_offline_arrays_of_a_slice_are_those_episodes_alone():
    rng = np.random.default_rng(1)
    buf = _episodes_buffer([4] * 10, [False] * 10, rng)
    last = B.offline_arrays(buf, 0.99, which="last", n=3)
    whole = B.offline_arrays(buf, 0.99)
    for k in B.OFFLINE:
        np.testing.assert_array_equal(last[k], whole[k][28:], err_msg=k)


def test_sample_offline_windows_and_uniform_draws():
    rng = np.random.default_rng(2)
    tasks = [B.offline_arrays(_episodes_buffer([10] * m, [False] * m, rng), 0.99) for m in (3, 5)]
    for t in tasks:
        t["obs"][:, 0] = np.arange(len(t["obs"]))  # row ids
    draws = B.sample_offline(tasks, 8, [np.random.default_rng(s) for s in (0, 1)], contiguous=True)
    assert set(draws) == set(B.OFFLINE) and draws["obs"].shape == (2, 8, 3) and draws["G"].shape == (2, 8)
    for k, t in enumerate(tasks):
        ids = draws["obs"][k, :, 0].numpy()
        assert (np.diff(ids) == 1).all() and 0 <= ids[0] and ids[-1] < len(t["obs"])
    uniform = B.sample_offline(tasks, 30, [np.random.default_rng(s) for s in (0, 1)], contiguous=False)
    assert len(set(uniform["obs"][0, :, 0].tolist())) == 30  # without replacement: all 30 rows of task 0
    # task k's rows depend on its own generator only
    alone = B.sample_offline(tasks[1:], 8, [np.random.default_rng(1)], contiguous=True)
    torch.testing.assert_close(alone["obs"][0], draws["obs"][1])
    with pytest.raises(ValueError, match="task 0 holds 30 rows"):
        B.sample_offline(tasks, 31, [np.random.default_rng(0)] * 2, contiguous=False)
