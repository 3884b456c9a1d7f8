"""The workflow's config: scale merging and validation against the JSON schemas.

``config/config.yaml`` names the experiments; ``config/scales/<scale>.yaml``
holds the budgets. :func:`resolve` merges the two (keys given by the user win),
checks the result against ``workflow/schemas/config.schema.yaml`` (which may
``$ref`` sibling ``*.schema.yaml`` files by name), checks that every
experiment names a known family and protocol, and that the per-task agents'
keys are fields of the algorithm each is given to. Every error names the key, the bad
value and what is allowed, and is raised before any job starts.
"""

from __future__ import annotations

import copy
import dataclasses
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import yaml


class ConfigError(ValueError):
    """A bad workflow config; the message names the key, the value and what is allowed."""


def load_yaml(path: str | Path) -> Any:
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None


def deep_merge(base: Mapping, override: Mapping) -> dict:
    """``base`` updated by ``override``, recursively for nested mappings."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def from_dict(cls: type, values: Mapping[str, Any], where: str):
    """A frozen algorithm ``Config`` from the YAML keys that differ from its defaults.

    Unknown keys are rejected with the valid ones listed; lists become tuples.
    """
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"config key '{where}': unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def resolve(config: Mapping, root: str | Path) -> dict:
    """Merge the scale's budgets under ``config`` and validate the result."""
    root = Path(root)
    scale = config.get("scale")
    scales = sorted(p.name.removesuffix(".yaml") for p in (root / "config" / "scales").glob("*.yaml"))
    if scale not in scales:
        raise ConfigError(f"config key 'scale': {scale!r} is not a scale; allowed: {scales}")
    merged = coarse_test_grids(deep_merge(load_yaml(root / "config" / "scales" / f"{scale}.yaml"), config))
    validate(merged, root / "workflow" / "schemas")
    return merged


def coarse_test_grids(config: Mapping) -> dict:
    """``admrl.test_grid: coarse`` (the quick scale; AdMRL spec 5.3): every AdMRL experiment whose family
    has a coarse variant of its protocol, ``<protocol>-coarse`` (3×3 for the 2-D boxes, ant-3d's 2×2×2
    corners, 8 out-of-distribution boundary points), tests on it instead of the paper's grid."""
    from paper_repro import envs

    if config.get("admrl", {}).get("test_grid") != "coarse":
        return dict(config)
    experiments = {}
    for name, exp in config.get("experiments", {}).items():
        coarse = f"{exp.get('protocol')}-coarse"
        if exp.get("paper") == "AdMRL" and exp.get("family") in envs.FAMILIES and coarse in envs.protocols(exp["family"]):
            exp = {**exp, "protocol": coarse}
        experiments[name] = exp
    return {**config, "experiments": experiments}


def validate(config: Mapping, schema_dir: str | Path) -> None:
    """Check ``config`` against ``config.schema.yaml``, then against the task registry."""
    schema_dir = Path(schema_dir)
    registry = referencing.Registry().with_resources(
        (p.name, referencing.Resource.from_contents(load_yaml(p), referencing.jsonschema.DRAFT202012))
        for p in sorted(schema_dir.glob("*.schema.yaml"))
    )
    schema = load_yaml(schema_dir / "config.schema.yaml")
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("invalid config:\n" + "\n".join(f"  - {_describe(e)}" for e in errors))
    _check_experiments(config)
    _check_agents(config)


def _describe(error: jsonschema.ValidationError) -> str:
    """One line naming the key, the bad value and what is allowed."""
    key = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = f"in '{key}'" if error.absolute_path else "at the top level"
        return f"unknown key(s) {extra} {where}; allowed keys: {allowed}"
    if error.validator == "enum":
        return f"config key '{key}': {error.instance!r} is not allowed; allowed: {error.validator_value}"
    if error.validator == "type":
        return f"config key '{key}': {error.instance!r} has the wrong type; expected {error.validator_value}"
    if error.validator == "required":
        return f"config key '{key}': {error.message}"
    return f"config key '{key}': {error.instance!r}: {error.message}"


def _check_experiments(config: Mapping) -> None:
    from paper_repro import envs

    problems = []
    for name, exp in config.get("experiments", {}).items():
        family, protocol = exp.get("family"), exp.get("protocol")
        if family is None:  # a supervised experiment (Omniglot) names a dataset instead
            continue
        if family not in envs.FAMILIES:
            problems.append(f"config key 'experiments.{name}.family': {family!r} is not a family; allowed: {list(envs.FAMILIES)}")
        elif protocol not in envs.protocols(family):
            problems.append(
                f"config key 'experiments.{name}.protocol': {protocol!r} is not a protocol of {family}; "
                f"allowed: {list(envs.protocols(family))}"
            )
        for method in exp.get("adapt", {}):
            if method not in exp.get("methods", []):
                problems.append(f"config key 'experiments.{name}.adapt': {method!r} is not one of the experiment's "
                                f"methods; allowed: {exp.get('methods', [])}")
    experiments = set(config.get("experiments", {}))
    for exp in config.get("task_limit", {}).get("experiments", {}):
        if exp not in experiments:
            problems.append(f"config key 'task_limit.experiments': {exp!r} is not an experiment; allowed: {sorted(experiments)}")
    for fig, spec in config.get("figures", {}).items():
        for exp in spec["experiments"]:
            if exp not in experiments:
                problems.append(f"config key 'figures.{fig}.experiments': {exp!r} is not an experiment; allowed: {sorted(experiments)}")
    if problems:
        raise ConfigError("invalid config:\n" + "\n".join(f"  - {p}" for p in problems))


def agent_sections(config: Mapping) -> dict[str, dict[str, list[str]]]:
    """The sections whose keys go to a per-task SAC or TD3 agent's ``Config``: section -> {algorithm -> the
    families it collects}. ``collect.agent`` goes to every family's collecting algorithm (``collect.algo``),
    ``admrl.best.agent`` to SAC (AdMRL's reference agents)."""
    algos: dict[str, list[str]] = {}
    for family, algo in config.get("collect", {}).get("algo", {}).items():
        algos.setdefault(algo, []).append(family)
    return {"collect.agent": algos, "admrl.best.agent": {"sac": ["AdMRL's reference agents"]}}


AGENT_SET_ELSEWHERE = {"total_steps": "steps_per_task"}
"""Agent Config fields the workflow sets from another key of the section."""


def _check_agents(config: Mapping) -> None:
    """Every key of an agent section is a field of each algorithm's ``Config`` it is given to; the schema
    checks their types only, and a typo would otherwise start every collection job again (params changed)."""
    import importlib

    problems = []
    for section, algos in agent_sections(config).items():
        node: Any = config
        for part in section.split("."):
            node = node.get(part, {}) if isinstance(node, Mapping) else {}
        for algo, families in sorted(algos.items()):
            cls = importlib.import_module(f"paper_repro.algos.{algo}").Config
            allowed = sorted(f.name for f in dataclasses.fields(cls) if f.name not in AGENT_SET_ELSEWHERE)
            unknown = sorted(set(node) - set(allowed))
            if unknown:
                elsewhere = [f"{k} comes from {section.rsplit('.', 1)[0]}.{AGENT_SET_ELSEWHERE[k]}"
                             for k in unknown if k in AGENT_SET_ELSEWHERE]
                problems.append(f"unknown key(s) {unknown} in '{section}' (keys of paper_repro.algos.{algo}.Config, "
                                f"which it is given to for {', '.join(families)}"
                                f"{'; ' + '; '.join(elsewhere) if elsewhere else ''}); allowed keys: {allowed}")
    if problems:
        raise ConfigError("invalid config:\n" + "\n".join(f"  - {p}" for p in problems))


def resolve_device(name: str) -> str:
    """The config's ``device`` (cpu, cuda or auto) as a torch device name; auto is cuda where CUDA is present."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: 'cuda' asked for, but torch {torch.__version__} sees no CUDA device on "
                          "this machine; use 'cpu', or 'auto' to take CUDA only where there is one")
    return name


# --- bf16 only where the hardware has it --------------------------------------------------------
# bf16 autocast pays only with native bf16 matrix units: on a Xeon with AMX a batched 256x256
# matmul runs ~900 GFLOP/s in bf16 against 130-210 in fp32, on an AMD EPYC with AVX2 only ~1.3
# against ~125, a hundred times slower. So a run that asks for bf16 where it is not native stops.

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def _read_cpuinfo() -> str | None:
    """The text of /proc/cpuinfo, or None where there is none."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return None


def _cpuinfo_field(name: str) -> str | None:
    """The first value of ``name`` in /proc/cpuinfo."""
    for line in (_read_cpuinfo() or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def cpu_model() -> str:
    """The CPU's model name: /proc/cpuinfo's "model name", else ``platform.processor()``."""
    return _cpuinfo_field("model name") or platform.processor() or "unknown CPU"


def native_bf16(device: str) -> tuple[bool, str]:
    """Whether ``device`` multiplies bf16 matrices natively, and why (the CPU and its flags, or the GPU)."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return False, "torch sees no CUDA device"
        major, minor = torch.cuda.get_device_capability(dev)
        why = f"{torch.cuda.get_device_name(dev)}, compute capability {major}.{minor} (bf16 tensor cores from 8.0)"
        return (major, minor) >= (8, 0), why  # as torch.cuda.is_bf16_supported(including_emulation=False)
    if dev.type != "cpu":
        return False, f"no check for bf16 on {dev.type!r} devices"
    flags = _cpuinfo_field("flags")
    if flags is None:
        return False, f"{cpu_model()}: no CPU flags in /proc/cpuinfo to find bf16 units in"
    found = [f for f in BF16_CPU_FLAGS if f in flags.split()]
    if found:
        return True, f"{cpu_model()} has {' and '.join(found)}"
    return False, f"{cpu_model()} has neither {' nor '.join(BF16_CPU_FLAGS)}"


def check_bf16(amp_bf16: bool, device: str, key: str = "collect.agent.amp_bf16") -> None:
    """Refuse bf16 autocast (``amp_bf16``, config key ``key``) on a ``device`` without native bf16."""
    if not amp_bf16:
        return
    native, why = native_bf16(device)
    if not native:
        raise ConfigError(f"config key '{key}': bf16 autocast asked for on {device}, but {why}: without "
                          f"native bf16 units its matmuls run about 100x slower than fp32; set '{key}: "
                          "false' (fp32), or run on hardware with bf16 units (Intel AMX, recent GPUs)")
