"""Config validation: bad configs stop with a message naming the key, the value and what is allowed."""

from __future__ import annotations

import copy
import re

import pytest

from paper_repro import config as prconfig
from paper_repro import envs

from conftest import ROOT


@pytest.fixture(scope="module")
def base() -> dict:
    return prconfig.load_yaml(ROOT / "config" / "config.yaml")


def resolve(cfg: dict) -> dict:
    return prconfig.resolve(cfg, ROOT)


@pytest.mark.parametrize("scale", ["smoke", "quick", "paper"])
def test_every_scale_resolves(base, scale):
    cfg = resolve({**base, "scale": scale})
    assert cfg["scale"] == scale
    assert set(cfg["seeds"]) == {"MIER", "AdMRL", "MACAW"}


def test_user_keys_override_the_scale(base):
    cfg = resolve({**base, "scale": "paper", "seeds": {"MIER": 1}})
    assert cfg["seeds"] == {"MIER": 1, "AdMRL": 3, "MACAW": 4}


def test_coarse_test_grids_replace_the_protocols_of_admrl_experiments_only(base):
    paper = resolve({**base, "scale": "paper"})["experiments"]
    quick = resolve({**base, "scale": "quick"})["experiments"]
    coarse = resolve({**base, "scale": "paper", "admrl": {**base["admrl"], "test_grid": "coarse"}})["experiments"]
    # the quick scale's experiments differ from the paper's by their coarse grids and their budgets only
    assert {n: {k: v for k, v in e.items() if k != "budget"} for n, e in quick.items()} == coarse
    changed = {name for name in paper if paper[name] != coarse[name]}
    assert changed == {"admrl-ant-2d", "admrl-ant-3d", "admrl-walker-2d", "admrl-hopper-2d", "admrl-ant-2d-ood"}
    assert {coarse[n]["protocol"] for n in changed} == {"admrl-coarse", "admrl-ood-coarse"}
    assert coarse["admrl-cheetah-highdim"] == paper["admrl-cheetah-highdim"]  # 5 of its 20 by task_limit instead
    with pytest.raises(prconfig.ConfigError, match=r"admrl.test_grid.*'fine'.*allowed"):
        resolve({**base, "scale": "quick", "admrl": {**base["admrl"], "test_grid": "fine"}})


def test_every_figure_has_a_report_caption_and_every_caption_a_figure(base):
    """workflow/report/<figure>.rst captions each configured figure, names it and opens with its paper."""
    overview = re.search(r'^report:\s*"([^"]+)"', (ROOT / "Snakefile").read_text(), flags=re.M)
    assert overview and (ROOT / overview.group(1)).exists(), "the Snakefile's report: names no existing caption"
    shared = {ROOT / overview.group(1), ROOT / "workflow" / "report" / "claims.rst"}  # every claims file's caption
    captions = {p.stem: p.read_text() for p in (ROOT / "workflow" / "report").glob("*.rst") if p not in shared}
    assert set(captions) == set(base["figures"])
    for name, text in captions.items():
        assert text.startswith(f'{{%- set name = "{name}" -%}}'), f"{name}.rst: sets another name"
        assert f"**{base['figures'][name]['paper']}, " in text, f"{name}.rst: does not open with its paper"


def test_every_family_is_used(base):
    used = {e["family"] for e in base["experiments"].values() if "family" in e}
    assert used == set(envs.FAMILIES)


def mutate(base: dict, path: str, value) -> dict:
    cfg = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = cfg
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return cfg


BAD = [
    # (key path, bad value, words the message must contain)
    ("scale", "quik", ["'scale'", "'quik'", "smoke", "quick", "paper"]),
    ("device", "gpu", ["'device'", "'gpu'", "cpu", "cuda", "auto"]),
    ("task_seed", "zero", ["'task_seed'", "'zero'", "integer"]),
    ("seeds.MIER", 0, ["'seeds.MIER'", "0", "minimum"]),
    ("plot.context", "slides", ["'plot.context'", "'slides'", "paper", "talk"]),
    ("plot.dpi", "high", ["'plot.dpi'", "'high'", "integer"]),
    ("experiments.mier-negated-joints.methods", ["mier", "peral"], ["'experiments.mier-negated-joints.methods.1'", "'peral'", "pearl"]),
    ("experiments.mier-negated-joints.family", "cheetah-negated", ["'experiments.mier-negated-joints.family'", "'cheetah-negated'", "cheetah-negated-joints"]),
    ("experiments.mier-negated-joints.protocol", "mire", ["'experiments.mier-negated-joints.protocol'", "'mire'", "allowed"]),
    ("figures.fig4_dynamics_extrapolation.experiments", ["mier-negatedjoints"], ["'figures.fig4_dynamics_extrapolation.experiments'", "'mier-negatedjoints'", "mier-negated-joints"]),
    ("experiments.admrl-hopper-2d.adapt", {"mier": {"test_model_steps": 0}}, ["'experiments.admrl-hopper-2d.adapt'", "'mier'", "admrl"]),
    ("experiments.mier-negated-joints.adapt.mier.model_step", 0, ["'experiments.mier-negated-joints.adapt.mier'", "model_step"]),
    ("task_limit.experiments", {"mier-negatedjoints": {"test": None}}, ["'task_limit.experiments'", "'mier-negatedjoints'", "mier-negated-joints"]),
]


@pytest.mark.parametrize("path,value,words", BAD, ids=[b[0] for b in BAD])
def test_bad_value_names_key_value_and_allowed(base, path, value, words):
    with pytest.raises(prconfig.ConfigError) as err:
        resolve(mutate(base, path, value))
    for w in words:
        assert w in str(err.value), f"{w!r} missing from: {err.value}"


@pytest.mark.parametrize("where", ["", "plot", "task_limit"])
def test_typo_in_a_key_is_rejected(base, where):
    cfg = copy.deepcopy(base)
    node = cfg.setdefault(where, {}) if where else cfg
    node["sedds"] = 3
    with pytest.raises(prconfig.ConfigError, match=r"unknown key\(s\) \['sedds'\]") as err:
        resolve(cfg)
    assert "allowed keys" in str(err.value)


# Every section of the config, each with its own allowed keys: a typo anywhere stops the workflow at start-up
# (config.validate, from workflow/rules/common.smk) with the section, the key and the allowed keys, before a
# job sees it. collect.agent and admrl.best.agent go to SAC's or TD3's Config (config.agent_sections).
SECTIONS = ["", "seeds", "task_limit", "plot", "collect", "collect.agent", "collect.run", "maml", "mier", "pearl",
            "macaw", "mt_awr", "offline_pearl", "maml_classifier", "omniglot", "omniglot.fixture", "finetune",
            "finetune.macaw", "finetune.offline_pearl", "metatrain", "evaluate", "admrl", "admrl.learner",
            "admrl.baselines", "admrl.baselines.step", "admrl.baselines.maml", "admrl.baselines.pearl", "admrl.best",
            "admrl.best.agent", "admrl.runtime", "experiments.mier-cheetah-vel", "experiments.mier-cheetah-vel.hyper",
            "experiments.mier-cheetah-vel.hyper.mier", "experiments.mier-negated-joints.adapt.mier",
            "figures.fig2_sample_efficiency"]


@pytest.mark.parametrize("section", SECTIONS, ids=[s or "<top level>" for s in SECTIONS])
def test_an_unknown_key_in_any_section_is_refused_naming_the_section(base, section):
    cfg = mutate(base, f"{section}.batch_sise" if section else "batch_sise", 48)
    if section == "omniglot.fixture":
        cfg["omniglot"]["fixture"] = {"alphabets": 2, "characters": 2, "drawings": 2, "batch_sise": 48}
    with pytest.raises(prconfig.ConfigError) as err:
        resolve(cfg)
    where = f"in '{section}'" if section else "at the top level"
    assert f"unknown key(s) ['batch_sise'] {where}" in str(err.value)
    assert "allowed keys: [" in str(err.value)


def test_agent_keys_must_be_fields_of_every_algorithm_they_are_given_to(base):
    """collect.agent goes to each family's collecting algorithm (collect.algo: TD3 on cheetah-vel, SAC elsewhere)."""
    from paper_repro.algos import sac, td3

    assert prconfig.agent_sections(resolve({**base, "scale": "paper"}))["collect.agent"] == {
        "td3": ["cheetah-vel"], "sac": ["cheetah-dir", "walker-params", "ant-dir", "metaworld-ml45-env"]}
    ok = resolve(mutate(base, "collect.agent", {"batch_size": 48, "tau": 0.01, "amp_bf16": False}))
    assert ok["collect"]["agent"]["batch_size"] == 48
    with pytest.raises(prconfig.ConfigError) as err:  # TD3's, not SAC's: the SAC families' jobs would fail
        resolve(mutate(base, "collect.agent.exploration_noise", 0.2))
    assert "unknown key(s) ['exploration_noise'] in 'collect.agent' (keys of paper_repro.algos.sac.Config" in str(err.value)
    assert "for cheetah-dir, walker-params, ant-dir, metaworld-ml45-env" in str(err.value)
    assert f"allowed keys: {sorted(f for f in sac.Config.__dataclass_fields__ if f != 'total_steps')}" in str(err.value)
    every_td3 = {f: "td3" for f in prconfig.agent_sections(ok)["collect.agent"]["sac"] + ["cheetah-vel"]}
    td3_only = resolve(mutate(mutate(base, "collect.algo", every_td3), "collect.agent.exploration_noise", 0.2))
    assert td3_only["collect"]["agent"]["exploration_noise"] == td3.Config(exploration_noise=0.2).exploration_noise
    with pytest.raises(prconfig.ConfigError, match=r"\['total_steps'\] in 'admrl.best.agent'.*total_steps comes from "
                                                   r"admrl.best.steps_per_task"):
        resolve(mutate(base, "admrl.best.agent.total_steps", 10))


def test_missing_key_is_named(base):
    cfg = copy.deepcopy(base)
    del cfg["plot"]["dpi"]
    with pytest.raises(prconfig.ConfigError, match="'dpi' is a required property"):
        resolve(cfg)


def test_broken_yaml_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("scale: [smoke\n")
    with pytest.raises(prconfig.ConfigError, match="bad.yaml: not valid YAML"):
        prconfig.load_yaml(bad)


def test_from_dict_builds_an_algorithm_config_and_names_unknown_keys():
    from paper_repro.algos import maml

    cfg = prconfig.from_dict(maml.Config, {"meta_batch": 4, "hidden": [8, 8]}, "maml")
    assert cfg.meta_batch == 4 and cfg.hidden == (8, 8) and cfg.inner_lr == maml.Config().inner_lr
    with pytest.raises(prconfig.ConfigError, match=r"'maml': unknown key\(s\) \['inner_rl'\]; valid keys: .*inner_lr"):
        prconfig.from_dict(maml.Config, {"inner_rl": 0.1}, "maml")


@pytest.mark.parametrize("algo", ["maml", "mier", "pearl", "macaw", "mt_awr", "offline_pearl", "maml_classifier"])
def test_algorithm_schema_lists_exactly_the_config_fields(algo):
    """workflow/schemas/<algo>.schema.yaml checks the YAML before any job; its keys are the Config's."""
    import dataclasses
    import importlib

    module = importlib.import_module(f"paper_repro.algos.{algo}")
    schema = prconfig.load_yaml(ROOT / "workflow" / "schemas" / f"{algo}.schema.yaml")
    assert set(schema["properties"]) == {f.name for f in dataclasses.fields(module.Config)}


def test_device_auto_takes_cuda_only_where_there_is_one(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert prconfig.resolve_device("auto") == "cpu"
    assert prconfig.resolve_device("cpu") == "cpu"
    with pytest.raises(prconfig.ConfigError, match="'cuda'.*no CUDA device"):
        prconfig.resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert prconfig.resolve_device("auto") == "cuda"


CPUINFO = """processor\t: 0
model name\t: {model}
flags\t\t: fpu sse2 avx2 avx512f {flags}

processor\t: 1
model name\t: {model}
flags\t\t: fpu sse2 avx2 avx512f {flags}
"""


def fake_cpu(monkeypatch, model: str, flags: str) -> None:
    monkeypatch.setattr(prconfig, "_read_cpuinfo", lambda: CPUINFO.format(model=model, flags=flags))


@pytest.mark.parametrize("flags,native", [("amx_bf16 amx_tile", True), ("avx512_bf16", True),
                                          ("avx512_vnni", False), ("", False)])
def test_native_bf16_reads_the_cpu_flags(monkeypatch, flags, native):
    fake_cpu(monkeypatch, "Intel(R) Xeon(R) Platinum 8480+", flags)
    assert prconfig.cpu_model() == "Intel(R) Xeon(R) Platinum 8480+"
    found, why = prconfig.native_bf16("cpu")
    assert found is native
    assert "Intel(R) Xeon(R) Platinum 8480+" in why and ("amx_bf16" in why or "avx512_bf16" in why)


def test_without_cpuinfo_bf16_is_not_native_and_the_model_comes_from_platform(monkeypatch):
    import platform

    monkeypatch.setattr(prconfig, "_read_cpuinfo", lambda: None)
    monkeypatch.setattr(platform, "processor", lambda: "arm")
    assert prconfig.cpu_model() == "arm"
    found, why = prconfig.native_bf16("cpu")
    assert not found and "/proc/cpuinfo" in why


@pytest.mark.parametrize("capability,native", [((9, 0), True), ((8, 0), True), ((7, 5), False)])
def test_native_bf16_on_cuda_follows_the_compute_capability(monkeypatch, capability, native):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA Test GPU")
    found, why = prconfig.native_bf16("cuda:1")
    assert found is native and "NVIDIA Test GPU" in why and f"{capability[0]}.{capability[1]}" in why
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert prconfig.native_bf16("cuda") == (False, "torch sees no CUDA device")


def test_bf16_without_native_units_is_refused_naming_the_key_and_the_cpu(monkeypatch):
    fake_cpu(monkeypatch, "AMD EPYC 7B13 64-Core Processor", "")
    with pytest.raises(prconfig.ConfigError) as err:
        prconfig.check_bf16(True, "cpu")
    for words in ("'collect.agent.amp_bf16'", "AMD EPYC 7B13 64-Core Processor", "100x slower", "false"):
        assert words in str(err.value), f"{words!r} missing from: {err.value}"
    prconfig.check_bf16(False, "cpu")  # fp32 is never refused
    fake_cpu(monkeypatch, "Intel(R) Xeon(R) Platinum 8480+", "amx_bf16")
    prconfig.check_bf16(True, "cpu")


def test_the_collection_refuses_bf16_before_building_any_env(monkeypatch, tmp_path):
    from paper_repro import collect
    from paper_repro.algos import sac

    def env_fn():
        raise AssertionError("an env was built before the bf16 check")

    fake_cpu(monkeypatch, "AMD EPYC 7B13 64-Core Processor", "")
    with pytest.raises(prconfig.ConfigError, match="collect.agent.amp_bf16.*AMD EPYC"):
        collect.train([env_fn], sac, sac.Config(amp_bf16=True), tmp_path, seeds=[0])
