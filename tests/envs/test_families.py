"""Every family against TASKS.md: rewards recomputed from the simulator's own state, terminations,
dynamics changes, splits and determinism."""

from __future__ import annotations

import json
import warnings

import mujoco
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from paper_repro import envs
from paper_repro.envs import cheetah

MUJOCO_FAMILIES = [f for f in envs.FAMILIES if not f.startswith("metaworld-ml45")]
STATS = {k: np.array(v) for k, v in json.loads(cheetah.STATS_FILE.read_text()).items() if k != "source"}
ADMRL_FAMILIES = [f for f in MUJOCO_FAMILIES if envs.get_family(f).model_reward is not None]


def snapshot(sim) -> dict:
    m, d = sim.model, sim.data
    com = (m.body_mass[:, None] * d.xipos).sum(0) / m.body_mass.sum()
    torso = d.body("torso").xpos.copy() if m.nbody > 1 else None
    return {"qpos": d.qpos.copy(), "qvel": d.qvel.copy(), "torso": torso, "com": com, "cfrc_ext": d.cfrc_ext.copy()}


def l2(a) -> float:
    return float(np.sum(np.square(a)))


def expected_reward(family: str, task: dict, a: np.ndarray, s0: dict, s1: dict, dt: float) -> float:
    """TASKS.md's reward of each family, written from the formula alone.

    AdMRL's families clip the action to [-1, 1]; its walker and hopper read v_x as clip(qvel[0], ±10).
    """
    vx = (s1["qpos"][0] - s0["qpos"][0]) / dt
    if family in ADMRL_FAMILIES:
        a = np.clip(a, -1, 1)
        if family in ("walker-2d", "hopper-2d"):
            vx = np.clip(s1["qvel"][0], -10, 10)
    if family == "cheetah-vel":
        return -abs(vx - task["velocity"]) - 0.05 * l2(a)
    if family == "cheetah-dir":
        return task["direction"] * vx - 0.05 * l2(a)
    if family == "cheetah-negated-joints":
        return vx - 0.1 * l2(a)
    if family == "cheetah-highdim":
        psi = np.array([task[f"psi_{i}"] for i in range(18)])
        s = np.concatenate([s1["qpos"][:9], s1["qvel"][:9]])
        return float(psi @ ((s - STATS["mean"]) / STATS["std"])) - 0.05 * l2(a)
    if family.startswith("ant"):
        v = (s1["torso"][:2] - s0["torso"][:2]) / dt
        if family == "ant-dir":
            th = task["theta"]
            return v @ [np.cos(th), np.sin(th)] - 0.5 * l2(a) - 0.5e-3 * l2(np.clip(s1["cfrc_ext"], -1, 1)) + 1.0
        r = -abs(v[0] - task["goal_vx"]) - abs(v[1] - task["goal_vy"]) - 0.005 * l2(a)
        if family == "ant-2d":
            return r + 5.05
        return r - 30 * abs(s1["qpos"][2] - task["goal_z"]) + 3.05
    if family == "humanoid-dir":
        a = 0.4 * np.clip(a, -1, 1)  # the unit box onto the motors' ctrlrange ±0.4 (the authors' NormalizedBoxEnv)
        v = (s1["com"][:2] - s0["com"][:2]) / dt
        th = task["theta"]
        return 1.25 * (v @ [np.cos(th), np.sin(th)]) - 0.1 * l2(a) - min(0.5e-6 * l2(s1["cfrc_ext"]), 10) + 5
    if family == "walker-params":
        return vx + 1 - 1e-3 * l2(a)
    if family in ("walker-2d", "hopper-2d"):
        return -abs(vx - task["goal_v"]) - 5 * abs(s1["qpos"][1] - task["goal_h"]) - 1e-3 * l2(a) + 10
    raise AssertionError(family)


def expected_terminated(family: str, s1: dict) -> bool:
    q = s1["qpos"]
    if family.startswith("cheetah"):
        return False
    if family.startswith("ant"):
        return not 0.2 <= q[2] <= 1.0
    if family == "humanoid-dir":
        return not 1.0 < q[2] < 2.0
    if family in ("walker-params", "walker-2d"):
        return not (0.8 < q[1] < 2.0 and -1 < q[2] < 1)
    if family == "hopper-2d":
        rest = np.concatenate([q[3:], np.clip(s1["qvel"], -10, 10)])
        return not ((np.abs(rest) < 100).all() and q[1] > 0.7 and abs(q[2]) < 0.2)
    raise AssertionError(family)


def first_task(family: str, split: str = "test") -> dict:
    protocol = envs.protocols(family)[0]
    return envs.task_table(family, protocol)[split].iloc[0].to_dict()


@pytest.mark.parametrize("family", MUJOCO_FAMILIES)
def test_reward_and_termination_match_tasks_md(family):
    task = first_task(family)
    env = envs.make(family, task, seed=1)
    sim = env.unwrapped
    steps = episode = 0
    while episode < 2 or steps < 20:  # walker-params' random policy falls within ~5 steps of 0.016 s
        assert episode < 10, f"{family}: {steps} steps in 10 episodes"
        env.reset(seed=episode)
        episode += 1
        done = False
        while not done:
            a = env.action_space.sample()
            s0 = snapshot(sim)
            _, r, term, trunc, _ = env.step(a)
            s1 = snapshot(sim)
            assert r == pytest.approx(expected_reward(family, task, a.astype(float), s0, s1, sim.dt), rel=1e-6, abs=1e-6)
            assert term == expected_terminated(family, s1)
            done = term or trunc
            steps += 1
        assert trunc == (not term)


@pytest.mark.parametrize("family", envs.FAMILIES)
def test_policies_act_in_the_unit_box(family):
    """Every family takes actions in [-1, 1]^A, as the authors' envs do (rllab's and rlkit's NormalizedBoxEnv):
    SAC's log-probabilities, and so its target entropy, are measured in the box the policy acts in."""
    env = envs.make(family, first_task(family), seed=0)
    assert (env.action_space.low == -1).all() and (env.action_space.high == 1).all()


def test_humanoid_maps_the_unit_box_onto_its_motors():
    env = envs.make("humanoid-dir", first_task("humanoid-dir"), seed=0)
    env.reset(seed=0)
    ctrl = env.unwrapped.model.actuator_ctrlrange
    assert np.allclose(ctrl, [-0.4, 0.4])
    a = np.linspace(-1.5, 1.5, 17)
    env.step(a)
    np.testing.assert_allclose(env.unwrapped.data.ctrl, 0.4 * np.clip(a, -1, 1), rtol=1e-6)


@pytest.mark.parametrize("family", ADMRL_FAMILIES)
def test_model_reward_and_done_match_the_env(family):
    """AdMRL's ``BaseModelBasedEnv.verify``: 2,000 random steps, actions up to twice the box, the
    torch twins against the env's reward and termination within 1e-4."""
    fam = envs.get_family(family)
    keys = list(fam.task_box)
    rng = np.random.default_rng(0)
    rows = []
    steps = 0
    while steps < 2000:
        task = {k: float(rng.uniform(*fam.task_box[k])) for k in keys}
        env = envs.make(family, task, seed=steps)
        obs, _ = env.reset(seed=steps)
        done = False
        while not done and steps < 2000:
            a = rng.uniform(-2, 2, size=env.action_space.shape)
            nxt, r, term, trunc, _ = env.step(a)
            rows.append((obs, a, nxt, [task[k] for k in keys], r, term))
            obs, done, steps = nxt, term or trunc, steps + 1
    o, a, n, psi, r, term = (torch.as_tensor(np.array(c), dtype=torch.float64) for c in zip(*rows))
    torch.testing.assert_close(fam.model_reward(o, a, n, psi), r, atol=1e-4, rtol=0)
    assert torch.equal(fam.model_done(n), term.bool())
    assert r.std() > 0.1  # the rewards vary, so agreement means something
    if family in ("walker-2d", "hopper-2d"):  # random ants seldom fall: test_termination_happens_where_stated
        assert term.any(), f"{family}: no termination in 2,000 random steps"


@pytest.mark.parametrize("family, dt, obs_dim", [("ant-2d", 0.01, 29), ("ant-3d", 0.01, 29), ("hopper-2d", 0.002, 11),
                                                 ("walker-2d", 0.002, 17), ("cheetah-highdim", 0.01, 18)])
def test_admrl_families_simulate_as_the_authors(family, dt, obs_dim):
    """Frame skip 1 (rllab's envs), the authors' observations, clipped actions, rllab's reset noise."""
    env = envs.make(family, first_task(family), seed=0)
    sim = env.unwrapped
    assert sim.frame_skip == 1 and sim.dt == pytest.approx(dt)
    assert env.observation_space.shape == (obs_dim,)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (obs_dim,)
    if family.startswith("ant"):
        assert (obs[27:] == 0).all()  # the appended velocity starts at 0, as the authors' comvel
        nxt, *_ = env.step(np.zeros(8))
        np.testing.assert_allclose(nxt[27:], sim.v_xy)
    # an action beyond the box acts as the clipped one
    twins = [envs.make(family, first_task(family), seed=0) for _ in range(2)]
    out = []
    for e, scale in zip(twins, (1.0, 3.0)):
        e.reset(seed=0)
        out.append(e.step(np.full(e.action_space.shape, scale))[:2])
    np.testing.assert_array_equal(out[0][0], out[1][0])
    assert out[0][1] == out[1][1]
    # reset noise: U(±0.1) on qpos and 0.1·N on qvel (v5's hopper and walker draw ±0.005)
    dq = []
    for seed in range(30):
        env.reset(seed=seed)
        dq.append(sim.data.qpos - sim.init_qpos)
    dq = np.abs(np.array(dq))
    assert 0.07 < dq.max() <= 0.1


def test_highdim_uses_the_authors_state_statistics():
    """AdMRL spec R5: μ, σ are the shipped HCstate-state.pkl numbers, not a recomputation."""
    stats = cheetah.load_highdim_stats()
    assert stats["mean"][0] == pytest.approx(-0.20322926342487335)
    assert stats["std"][12] == pytest.approx(4.192, abs=1e-3)


@pytest.mark.parametrize("family", MUJOCO_FAMILIES)
def test_horizon_truncates_at_exactly_the_family_horizon(family):
    env = envs.make(family, first_task(family), seed=0)
    env.reset(seed=0)
    sim = env.unwrapped
    for t in range(1, envs.get_family(family).horizon + 1):
        # hold the robot in its initial pose so only the time limit can end the episode
        sim.set_state(sim.init_qpos, sim.init_qvel)
        _, _, term, trunc, _ = env.step(np.zeros(env.action_space.shape))
        assert not term
        assert trunc == (t == 200)


TERMINAL_STATES = {
    # family: (qpos index, a value that violates the condition, one that does not)
    "ant-dir": (2, 1.6, 0.75),
    "ant-2d": (2, 1.6, 0.75),
    "ant-3d": (2, 1.6, 0.75),
    "humanoid-dir": (2, 2.4, 1.4),
    "walker-params": (2, 1.3, 0.0),
    "walker-2d": (1, 2.3, 1.25),
    "hopper-2d": (2, 0.5, 0.0),
}


@pytest.mark.parametrize("family", sorted(TERMINAL_STATES))
def test_termination_happens_where_stated(family):
    index, bad, good = TERMINAL_STATES[family]
    outcomes = []
    for value in (bad, good):
        env = envs.make(family, first_task(family), seed=0)
        env.reset(seed=0)
        sim = env.unwrapped
        qpos = sim.init_qpos.copy()
        qpos[index] = value
        sim.set_state(qpos, np.zeros(sim.model.nv))
        obs, _, term, _, _ = env.step(np.zeros(env.action_space.shape))
        outcomes.append(term)
        assert term == expected_terminated(family, snapshot(sim))
        if family in ADMRL_FAMILIES:  # the model-based twin agrees
            assert bool(envs.get_family(family).model_done(torch.as_tensor(obs))) == term
    assert outcomes == [True, False]


def test_negated_joints_mirror_actuator_forces():
    tables = envs.task_table("cheetah-negated-joints", "mier")
    plain = envs.make("cheetah-negated-joints", {f"mask_{i}": 1.0 for i in range(6)}, seed=0)
    rng = np.random.default_rng(0)
    for split, table in tables.items():
        for _, row in table.iterrows():
            mask = np.array([row[f"mask_{i}"] for i in range(6)])
            env = envs.make("cheetah-negated-joints", row.to_dict(), seed=0)
            for e in (env, plain):
                e.reset(seed=0)
            a = rng.uniform(-1, 1, 6)
            env.step(a)
            plain.step(a)
            forces, reference = env.unwrapped.data.actuator_force, plain.unwrapped.data.actuator_force
            np.testing.assert_allclose(forces, mask * reference, rtol=1e-12, atol=1e-12)
            assert (np.sign(forces[mask < 0]) == -np.sign(reference[mask < 0])).all()
            negated = set(np.flatnonzero(mask < 0))
            if split == "train":
                assert len(negated) == 3 and 5 not in negated
            else:
                assert len(negated) == 3 and 5 in negated


def test_negated_joint_splits_are_exact():
    tables = envs.task_table("cheetah-negated-joints", "mier")
    masks = {split: {tuple(r) for r in t.drop(columns="task_id").to_numpy()} for split, t in tables.items()}
    assert len(masks["train"]) == len(masks["test"]) == 10
    assert not masks["train"] & masks["test"]


def test_walker_params_scale_from_the_nominal_model_and_never_compound():
    table = envs.task_table("walker-params", "macaw")["train"]
    env = envs.make("walker-params", table.iloc[0].to_dict(), seed=0)
    sim = env.unwrapped
    nominal = {k: v.copy() for k, v in sim.nominal.items()}
    fresh = envs.get_family("walker-params").env_cls()
    for name in nominal:  # the copy is the untouched model
        np.testing.assert_array_equal(nominal[name], getattr(fresh.model, name))

    def fields():
        return {name: getattr(sim.model, name).copy() for name in nominal}

    def factors(row):
        return {n: np.array([row[f"{n}_{i}"] for i in range(v.size)]).reshape(v.shape) for n, v in nominal.items()}

    rows = [table.iloc[0].to_dict(), table.iloc[1].to_dict(), table.iloc[0].to_dict()]
    seen = []
    for row in rows:
        sim.set_task(row)
        got = fields()
        for name, f in factors(row).items():
            np.testing.assert_allclose(got[name], nominal[name] * f, rtol=1e-12)
        seen.append(got)
    for name in nominal:  # A, B, A: the second A equals the first
        np.testing.assert_array_equal(seen[0][name], seen[2][name])
        assert not np.array_equal(seen[0][name], seen[1][name]) or not nominal[name].any()
    # derived quantities were recomputed (mj_setConst): total mass follows body_mass
    assert sim.model.body_subtreemass[0] == pytest.approx(sim.model.body_mass.sum())
    f = factors(rows[0])
    for name, base in (("body_mass", 1.5), ("body_inertia", 1.5), ("dof_damping", 1.3), ("geom_friction", 1.5)):
        exponent = np.log(f[name]) / np.log(base)
        assert (np.abs(exponent) <= 3 + 1e-9).all()


def test_walker_params_change_the_dynamics():
    table = envs.task_table("walker-params", "macaw")["train"]
    finals = []
    for i in range(2):
        env = envs.make("walker-params", table.iloc[i].to_dict(), seed=0)
        env.reset(seed=0)
        for _ in range(20):
            env.step(np.full(6, 0.5))
        finals.append(env.unwrapped.data.qpos.copy())
    assert not np.allclose(finals[0], finals[1])


def feet_friction(model) -> tuple[np.ndarray, np.ndarray]:
    """(right, left) foot friction rows: sliding, torsional, rolling."""
    return model.geom("foot_geom").friction.copy(), model.geom("foot_left_geom").friction.copy()


def test_walker_params_simulate_as_rand_param_envs():
    """rand_param_envs' walker2d.xml: timestep 0.004, right foot 0.9, left 1.9; frame skip 4 (base.py)."""
    unscaled = {k: 1.0 for k in envs.get_family("walker-params").env_cls().task_keys}
    env = envs.make("walker-params", unscaled, seed=0)
    sim = env.unwrapped
    assert sim.model.opt.timestep == 0.004
    assert sim.frame_skip == 4
    assert sim.dt == pytest.approx(0.016, abs=1e-15)
    assert sim.metadata["render_fps"] == int(np.round(1 / sim.dt))
    right, left = feet_friction(sim.model)
    np.testing.assert_array_equal(right, [0.9, 0.1, 0.1])
    np.testing.assert_array_equal(left, [1.9, 0.1, 0.1])
    np.testing.assert_array_equal(sim.nominal["geom_friction"][[4, 7]], [right, left])  # the base tasks scale
    env.reset(seed=0)
    env.step(np.zeros(6))
    assert sim.data.time == pytest.approx(0.016)  # four substeps of 0.004 s


def test_walker_params_scaled_task_multiplies_the_authors_base_values():
    row = envs.task_table("walker-params", "macaw")["train"].iloc[0].to_dict()
    sim = envs.make("walker-params", row, seed=0).unwrapped
    ids = [sim.model.geom(name).id for name in ("foot_geom", "foot_left_geom")]
    factor = np.array([[row[f"geom_friction_{3 * i + j}"] for j in range(3)] for i in ids])
    np.testing.assert_allclose(np.array(feet_friction(sim.model)), [[0.9, 0.1, 0.1], [1.9, 0.1, 0.1]] * factor,
                               rtol=1e-12)
    assert not np.allclose(factor, 1.0)
    assert sim.model.opt.timestep == 0.004 and sim.dt == pytest.approx(0.016)  # tasks leave the period alone


def test_walker_2d_simulates_the_authors_gym_walker2d_xml():
    """AdMRL's walker is gym 0.17.1's walker2d.xml (right foot 0.9, left 1.9), which gymnasium still ships
    beside v5's (1.9 on both feet; otherwise the same model)."""
    import os

    from gymnasium.envs.mujoco import walker2d_v5

    sim = envs.make("walker-2d", first_task("walker-2d"), seed=0).unwrapped
    gym_xml = mujoco.MjModel.from_xml_path(os.path.join(os.path.dirname(walker2d_v5.__file__), "assets", "walker2d.xml"))
    v5 = walker2d_v5.Walker2dEnv().model
    assert sim.model.opt.timestep == gym_xml.opt.timestep == 0.002
    assert sim.frame_skip == 1  # AdMRL's frame skip (v5: 4)
    assert sim.metadata["render_fps"] == int(np.round(1 / sim.dt)) == 500
    right, left = feet_friction(sim.model)
    np.testing.assert_array_equal(right, [0.9, 0.1, 0.1])
    np.testing.assert_array_equal(left, [1.9, 0.1, 0.1])
    np.testing.assert_array_equal(sim.model.geom_friction, gym_xml.geom_friction)
    assert feet_friction(v5)[0][0] == 1.9  # what walker-2d ran on before
    for name in ("body_mass", "body_inertia", "dof_damping", "geom_size", "actuator_gear"):
        np.testing.assert_allclose(getattr(sim.model, name), getattr(gym_xml, name), rtol=1e-12, err_msg=name)


def test_mujoco_model_views_are_why_we_copy():
    model = envs.get_family("walker-params").env_cls().model
    view = model.body_mass
    view[1] *= 2
    assert model.body_mass[1] == view[1]  # a view: scaling it in place would compound
    assert isinstance(model, mujoco.MjModel)


# The checker's warnings that hold for gymnasium's own MuJoCo envs too, and why they are harmless.
EXPECTED_WARNINGS = (
    "observation space minimum value is -infinity",  # a simulator state has no bounds (HalfCheetah-v5 warns alike)
    "observation space maximum value is infinity",
    "observation space maximum and minimum values are equal",  # Meta-World: a few fixed dims (e.g. a goal box that is a point)
)

@pytest.mark.parametrize("family", envs.FAMILIES)
def test_gymnasium_env_checker_passes(family):
    env = envs.make(family, first_task(family))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=True)
    unexpected = [str(w.message) for w in caught if not any(e in str(w.message) for e in EXPECTED_WARNINGS)]
    assert unexpected == [], unexpected


def test_the_family_registry_does_not_import_torch():
    """The Snakefile imports the registry on every snakemake call (each test's DAG build): torch would
    double that cost, and the model rewards need only tensor methods."""
    import subprocess
    import sys

    code = "import sys; from paper_repro import envs, config; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_macaw_ml45_task_is_an_environment_with_fresh_visible_goals():
    """MACAW's ML45 (Fig 7, App. D.1): 45 training and 5 test environments; every reset draws new object
    and goal positions from the env's generator (the same seed, the same ones), and the goal is the
    observation's last 3 entries, inside the observation space."""
    tables = envs.task_table("metaworld-ml45-env", "macaw", seed=0)
    assert len(tables["train"]) == 45 and len(tables["test"]) == 5
    assert set(tables["train"].env_name).isdisjoint(tables["test"].env_name)
    test = tables["test"]
    task = test[test.env_name == "door-lock-v3"].iloc[0].to_dict()
    env = envs.make("metaworld-ml45-env", task)
    first, _ = env.reset(seed=1)
    second, _ = env.reset(seed=2)
    again, _ = env.reset(seed=1)
    inner = env.unwrapped.env
    np.testing.assert_allclose(first, again)
    assert not np.allclose(first[-3:], second[-3:]) and not np.allclose(first[4:7], second[4:7])
    np.testing.assert_allclose(again[-3:], inner._target_pos)  # the goal of the last reset
    assert env.observation_space.contains(second.astype(env.observation_space.dtype))
    unseeded = env.reset()[0]
    assert not np.allclose(unseeded[-3:], second[-3:])  # an unseeded reset continues the generator: a new goal
