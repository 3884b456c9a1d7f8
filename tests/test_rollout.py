"""Stepping environments: no auto-reset transition ever enters a buffer, episodic returns are the sums
of the rewards, the policy is called once per step for every env, MAML's padded layout."""

import gymnasium as gym
import numpy as np

from paper_repro import rollout
from paper_repro.buffers import ReplayBuffer


class Walk(gym.Env):
    """obs = (position, episode count); the action moves the position; reward = new position.
    Episodes start at a random position (from the env's generator) and terminate at 5 or above.
    Positions are multiples of 1/8 for the actions used here: float32 holds every reward exactly."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def __init__(self):
        self.episodes = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episodes += 1
        self.x = float(self.np_random.integers(0, 8)) / 8
        return self._obs(), {}

    def _obs(self):
        return np.array([self.x, self.episodes], np.float32)

    def step(self, action):
        self.x += float(action[0])
        return self._obs(), self.x, self.x >= 5, False, {}


def walk(limit):
    return gym.wrappers.TimeLimit(Walk(), limit)


def test_continuous_collection_holds_true_final_observations():
    envs = [walk(4), walk(6)]
    bufs = [ReplayBuffer(20, 2, 1) for _ in envs]
    calls = []

    def policy(obs):
        calls.append(obs.shape)
        return np.full((len(obs), 1), 0.5, np.float32)

    rollout.transitions(envs, policy, 20, [0, 1], bufs)
    assert calls == [(2, 2)] * 20  # one call per step for all envs
    for b, limit in zip(bufs, (4, 6)):
        a = b.arrays()
        done = a["terminated"] | a["truncated"]
        assert b.size == 20 and np.flatnonzero(a["truncated"]).tolist() == list(range(limit - 1, 20, limit))
        assert not a["terminated"].any()
        # within an episode next_obs[t] == obs[t+1]; at an episode's end next_obs is that episode's last
        # observation (same episode count), and the next row starts a new episode
        same_episode = ~done[:-1]
        np.testing.assert_array_equal(a["next_obs"][:-1][same_episode], a["obs"][1:][same_episode])
        ends = np.flatnonzero(done[:-1])
        assert (a["next_obs"][ends, 1] == a["obs"][ends, 1]).all()
        assert (a["obs"][ends + 1, 1] == a["obs"][ends, 1] + 1).all()


def test_step_resets_by_hand_and_reports_episode_ends():
    envs = [walk(2)]
    obs = rollout.reset(envs, [0])
    buf = ReplayBuffer(2, 2, 1)
    rewards, done = rollout.step(envs, obs, np.ones((1, 1), np.float32), [buf])
    assert not done[0] and rewards[0] == buf.arrays()["reward"][0]
    rewards, done = rollout.step(envs, obs, np.ones((1, 1), np.float32), [buf])
    assert done[0] and obs[0, 1] == 2  # a fresh episode's first observation
    assert buf.arrays()["next_obs"][1, 1] == 1  # the buffer holds the true final observation


def test_episode_returns_are_the_sums_of_the_rewards():
    envs = [walk(50), walk(3), walk(50)]
    calls = []

    def policy(obs):
        calls.append(len(obs))
        return np.array([[1.0], [0.125], [2.0]], np.float32)  # reaches 5 in ~5 steps, never, ~3 steps

    bufs = [ReplayBuffer(50, 2, 1) for _ in envs]
    returns = rollout.episodes(envs, policy, [7, 8, 9], into=bufs)
    lengths = [b.size for b in bufs]
    assert lengths[1] == 3 and bufs[0].arrays()["terminated"][-1] and bufs[2].arrays()["terminated"][-1]
    assert calls == [3] * max(lengths)  # every env's observation at every step, finished ones included
    for b, ret in zip(bufs, returns):
        assert ret == b.arrays()["reward"].sum()
        assert (b.arrays()["terminated"] | b.arrays()["truncated"]).tolist() == [False] * (b.size - 1) + [True]
    # the same seeds give the same episodes; a horizon cuts them short
    again = rollout.episodes([walk(50), walk(3), walk(50)], policy, [7, 8, 9])
    np.testing.assert_array_equal(again, returns)
    one = ReplayBuffer(2, 2, 1)
    short = rollout.episodes([walk(50)], lambda o: np.ones((1, 1), np.float32), [7], horizon=2, into=one)
    assert one.size == 2 and short[0] == one.arrays()["reward"].sum()


def test_one_buffer_for_all_envs_and_the_env_action():
    envs = [walk(2), walk(3)]
    buf = ReplayBuffer(10, 2, 1)
    rollout.episodes(envs, lambda o: np.full((2, 1), 4.0, np.float32), [0, 1], into=buf,
                     env_action=lambda a: np.clip(a, -1, 1))
    a = buf.arrays()
    assert buf.size == 5 and (a["action"] == 4.0).all()  # the buffer keeps the policy's action
    np.testing.assert_allclose(a["next_obs"][:, 0] - a["obs"][:, 0], 1.0, rtol=1e-6)  # the env got the clipped one
    assert np.flatnonzero(a["truncated"]).tolist() == [2, 4]  # in the order they happen: env 0 ends at its 2nd step


def test_padded_lays_episodes_out_to_the_horizon():
    bufs = [ReplayBuffer(5, 2, 1) for _ in range(2)]
    rollout.episodes([walk(5), walk(2)], lambda o: np.zeros((2, 1), np.float32), [0, 1], horizon=5, into=bufs)
    obs, action, reward, mask = rollout.padded(bufs, 5)
    assert obs.shape == (2, 5, 2) and action.shape == (2, 5, 1) and reward.shape == mask.shape == (2, 5)
    assert mask.tolist() == [[1] * 5, [1, 1, 0, 0, 0]]
    np.testing.assert_array_equal(reward[1, :2], bufs[1].arrays()["reward"])
    assert (obs[1, 2:] == 0).all() and (reward[1, 2:] == 0).all()


class Succeed(Walk):
    """Walk that reports Meta-World's ``info["success"]``: true at some step where the position passes 2."""

    def step(self, action):
        obs, r, term, trunc, _ = super().step(action)
        return obs, r, term, trunc, {"success": self.x > 2}


def test_success_is_any_step_of_an_episode_and_absent_where_the_env_reports_none():
    up, down = (lambda obs: np.ones((len(obs), 1), np.float32)), (lambda obs: -np.ones((len(obs), 1), np.float32))
    found = []
    rollout.episodes([gym.wrappers.TimeLimit(Succeed(), 4) for _ in range(2)], up, [0, 1], successes=found)
    assert found == [1.0, 1.0]
    row = rollout.evaluate([gym.wrappers.TimeLimit(Succeed(), 4) for _ in range(2)], down, [0, 1], 4)
    assert row["success"] == 0.0 and row["return"] < 0
    assert set(rollout.evaluate([walk(4)], up, [0], 4)) == {"return"}  # no success reported: no column
