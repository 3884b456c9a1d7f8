"""MACAW: Offline Meta-Reinforcement Learning with Advantage Weighting (Mitchell et al.; the ICLR 2021
submission's Sec. 3-4, Algorithms 1-2, App. B and E), meta-trained from fixed per-task buffers.

- Networks (App. B): policy and value MLPs whose every layer is a weight transform (θ = A z + a,
  all of z, A, a adapted); the policy carries an advantage-regression head on its last hidden layer.
  Layers are pure functions of parameter dicts (:mod:`paper_repro.nets`), so the inner loop is a
  functional step and one meta-step is a ``torch.func.vmap`` over the tasks of the meta-batch.
- Inner loop (Alg. 1, Eq. 2-4): one step on D_tr for the value function, by Monte-Carlo regression,
  then one step for the policy on the advantage-weighted loss enriched by the head's regression onto
  the advantages (weight λ), with one learned step size per parameter tensor and a learned λ.
- Outer loop (Eq. 5-6): the adapted value function regressed onto bootstrapped targets from a soft
  target, the adapted policy on plain AWR, on D_ts; second order through the inner step.
- Test (Alg. 2): the same inner step on a batch of the test task's offline data, then deterministic
  episodes.

Where the paper is silent, values come from the authors' code (github.com/eric-mitchell/macaw,
``config/alg/standard.json``, ``src/macaw.py``, ``src/nn.py``); every Config field says which. The
ablations (no advantage head = MAML+AWR, no weight transform at equal width or at equal parameter
count, Meta-BC) are Config switches, not copies.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch.func import vmap
from torch.nn import functional as F

from paper_repro import buffers, io, meta, nets, rollout

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Config:
    # --- networks (App. B, Tab. 4) ---
    width: int = 100
    """Hidden width of policy and value function (Tab. 4; ``standard.json`` net_width)."""
    depth: int = 3
    """Hidden layers (Tab. 4; net_depth)."""
    weight_transform: bool = True
    """Weight-transform layers (App. B; ``standard.json`` wlinear). False: the ablation's layers."""
    no_wt_layer: str = "bias"
    """Layer kind without weight transform: ``bias`` (the authors' BiasLinear, their default
    ``bias_linear``) or ``linear``."""
    equal_params: bool = False
    """Without weight transform, widen the networks to the smallest width with at least the weight-
    transform policy's parameter count (the authors' ``no_wlinear_wide.json`` hard-codes 725 for their
    20-d cheetah observation; computed here for the family's sizes)."""
    latent: int = 100
    """Size of z in every weight-transform layer (``src/nn.py``: dim = 100)."""
    theta_space: bool = True
    """Compute the inner step of weight-transform layers in θ-space (exact for one SGD step; spec
    §6.3): the same adapted networks without a per-task copy of each A. False: the generic path."""
    adv_head: int = 32
    """Hidden width of the advantage head, [last hidden + action] → adv_head → 1 (``src/macaw.py``)."""
    adv_coef: float = 0.01
    """Initial λ of the head's loss, meta-learned (Tab. 4; ``src/macaw.py`` learns it). 0: no head
    (the MAML+AWR ablation)."""
    loss: str = "awr"
    """``awr`` (MACAW) or ``imitation`` (Meta-BC: Gaussian likelihood of the data's actions in both
    loops, no value function; ``overrides/imitation.json``)."""
    action_sigma: float = 0.2
    """Fixed standard deviation of the Gaussian policy (App. E: variance 0.04; ``src/args.py``)."""
    # --- optimisation (Tab. 4) ---
    inner_policy_lr: float = 1e-3
    """Initial learned inner step size of every policy tensor (Tab. 4)."""
    inner_value_lr: float = 1e-3
    """Initial learned inner step size of every value tensor (Tab. 4)."""
    lr_lr: float = 1e-3
    """Adam step size of the learned step sizes and λ (Tab. 4; lrlr)."""
    outer_policy_lr: float = 1e-4
    """Adam step size of the policy (Tab. 4)."""
    outer_value_lr: float = 1e-5
    """Adam step size of the value function (Tab. 4)."""
    meta_batch: int = 5
    """Training tasks per meta-step, without replacement (Tab. 4; all of them when fewer)."""
    inner_batch: int = 256
    """Transitions of D_tr: a contiguous window of the strided buffer (App. E; ``contiguous: true``)."""
    outer_batch: int = 256
    """Transitions of D_ts: uniform, without replacement (App. E)."""
    eval_batch: int = 256
    """Transitions of the test task's offline data adapted on: uniform (App. E; eval_batch_size)."""
    adv_clip: float = 20.0
    """Largest advantage weight: logits clamped at log 20 (Tab. 4; exp_advantage_clip)."""
    temperature: float = 1.0
    """AWR temperature T on the normalised advantages (Tab. 4; adaptation_temp)."""
    gamma: float = 0.99
    """Discount (``src/args.py``)."""
    target_alpha: float = 0.9
    """Outer value targets use 0.9·φ + 0.1·φ' (``src/args.py`` target_vf_alpha)."""
    bootstrap_at_termination: bool = False
    """False: bootstrap from the episode's final state only where it was truncated (TASKS.md's rule
    for value targets); True: always, as the authors' code (it never reads ``dones``)."""
    # --- data (App. E; ``standard.json``) ---
    data_stride: int = 7
    """Keep every 7th transition of each lifetime buffer (buffer_skip = inner_buffer_skip = 7)."""
    inner_slice: str | None = None
    """Data-quality ablation (App. D.3): D_tr and test-time data from the first, middle or last
    ``slice_episodes`` episodes, stride 1 (``overrides/{start,middle,end}.json``); None: all."""
    outer_data: str = "all"
    """D_ts from the whole strided buffer (``standard.json``), or ``last`` ``slice_episodes``
    episodes at stride 1 (App. E's "towards the end"; ``no_wlinear_wide.json``)."""
    slice_episodes: int = 500
    """Episodes of a slice: 500 × 200 steps = the authors' 100,000."""
    middle_mode: str = "paper"
    """The ``middle`` slice: the middle episodes of the lifetime (App. D.3, ``paper``), or those
    centred at a quarter of it, as the authors' code computes "middle" (``code``; ``src/utils.py``)."""
    # --- budget ---
    train_steps: int = 1_000_000
    """Meta-steps (``src/args.py``)."""


def check(cfg: Config) -> Config:
    choices = {"no_wt_layer": ("bias", "linear"), "loss": ("awr", "imitation"), "outer_data": ("all", "last"),
               "inner_slice": (None, "first", "middle", "last"), "middle_mode": ("paper", "code")}
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise ValueError(f"macaw.{name}: {getattr(cfg, name)!r} is not one of {allowed}")
    return cfg


# --- data ---------------------------------------------------------------------------


def task_data(buffer: Mapping[str, np.ndarray], cfg: Config) -> tuple[dict, dict]:
    """(inner, outer) arrays of one task's lifetime buffer (:func:`buffers.offline_arrays`): inner feeds
    D_tr and test-time adaptation, outer D_ts; the same arrays unless a slice is asked for."""
    whole = buffers.offline_arrays(buffer, cfg.gamma, cfg.data_stride)
    inner = whole if cfg.inner_slice is None else test_data(buffer, cfg)
    outer = whole if cfg.outer_data == "all" else buffers.offline_arrays(buffer, cfg.gamma, 1, "last", cfg.slice_episodes)
    return inner, outer


def test_data(buffer: Mapping[str, np.ndarray], cfg: Config) -> dict:
    """What a test task adapts on (:func:`adapt_and_evaluate`'s ``adapt_data``): the inner arrays of
    :func:`task_data` (the whole strided buffer, or the data-quality slice of the test task's own buffer,
    as the authors' test buffers use the inner size, stride and mode)."""
    if cfg.inner_slice is None:
        return buffers.offline_arrays(buffer, cfg.gamma, cfg.data_stride)
    which = "quarter" if cfg.inner_slice == "middle" and cfg.middle_mode == "code" else cfg.inner_slice
    return buffers.offline_arrays(buffer, cfg.gamma, 1, which, cfg.slice_episodes)


# --- networks -----------------------------------------------------------------------


def kind(cfg: Config) -> str:
    return "wt" if cfg.weight_transform else cfg.no_wt_layer


def has_head(cfg: Config) -> bool:
    return cfg.loss == "awr" and bool(cfg.adv_coef)


def policy_layers(obs_dim: int, act_dim: int, width: int, cfg: Config) -> list[tuple[str, int, int]]:
    sizes = [obs_dim, *[width] * cfg.depth, act_dim]
    layers = [(f"pi{i}", a, b) for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]
    if has_head(cfg):
        layers += [("head0", width + act_dim, cfg.adv_head), ("head1", cfg.adv_head, 1)]
    return layers


def value_layers(obs_dim: int, width: int, cfg: Config) -> list[tuple[str, int, int]]:
    sizes = [obs_dim, *[width] * cfg.depth, 1]
    return [(f"v{i}", a, b) for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]


def hidden_width(obs_dim: int, act_dim: int, cfg: Config) -> int:
    """``cfg.width``, or without weight transform at equal parameters the computed width."""
    if cfg.weight_transform or not cfg.equal_params:
        return cfg.width
    return nets.equal_param_width(lambda w: [(i, o) for _, i, o in policy_layers(obs_dim, act_dim, w, cfg)],
                                  kind(cfg), "wt", cfg.width, cfg.latent)


def init_net(layers, cfg: Config, gen: torch.Generator) -> Params:
    out: Params = {}
    for name, d_in, d_out in layers:
        out.update(nets.init_layer(kind(cfg), name, d_in, d_out, gen, cfg.latent))
    return out


def _layer(params: Params, name: str, x: torch.Tensor, cfg: Config) -> torch.Tensor:
    """One layer, from its parameters or, after a θ-space inner step, from its generated θ alone."""
    return nets.apply_layer(params, "theta" if f"{name}.theta" in params else kind(cfg), name, x)


def _trunk(params: Params, prefix: str, x: torch.Tensor, cfg: Config) -> torch.Tensor:
    """The last hidden layer's pre-activation."""
    for i in range(cfg.depth):
        x = _layer(params, f"{prefix}{i}", x if i == 0 else F.relu(x), cfg)
    return x


def policy_mean(P: Params, obs: torch.Tensor, cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """tanh mean of the Gaussian policy, and the last hidden pre-activation h the head reads."""
    h = _trunk(P, "pi", obs, cfg)
    return torch.tanh(_layer(P, f"pi{cfg.depth}", F.relu(h), cfg)), h


def advantage_head(P: Params, h: torch.Tensor, action: torch.Tensor, cfg: Config) -> torch.Tensor:
    """Â(s, a) = head1(relu(head0(relu([h, a])))) (``src/nn.py``: the ReLU also hits the action)."""
    x = _layer(P, "head0", F.relu(torch.cat([h, action], -1)), cfg)
    return _layer(P, "head1", F.relu(x), cfg).squeeze(-1)


def value(V: Params, obs: torch.Tensor, cfg: Config) -> torch.Tensor:
    return _layer(V, f"v{cfg.depth}", F.relu(_trunk(V, "v", obs, cfg)), cfg).squeeze(-1)


# --- losses (one task; data dicts of buffers.OFFLINE arrays) ------------------------


def log_prob(mean: torch.Tensor, action: torch.Tensor, cfg: Config) -> torch.Tensor:
    """log N(a; μ, σ²I), summed over action dimensions."""
    return (-0.5 * ((action - mean) / cfg.action_sigma) ** 2 - math.log(cfg.action_sigma)
            - 0.5 * math.log(2 * math.pi)).sum(-1)


def awr_weights(adv: torch.Tensor, cfg: Config) -> torch.Tensor:
    """exp(min((A − mean A) / (T · (std A + 1e-8)), log clip)) over the batch (unbiased std; ``src/macaw.py``,
    whose 0/0 on a constant-advantage batch the 1e-8 avoids)."""
    logits = (adv - adv.mean()) / (cfg.temperature * (adv.std() + 1e-8))
    return torch.exp(torch.clamp(logits, max=math.log(cfg.adv_clip)))


def bootstrapped_returns(V: Params, d: Mapping[str, torch.Tensor], cfg: Config) -> torch.Tensor:
    """G + γ^{e-t} V(s_T), the bootstrap cut at terminations unless ``bootstrap_at_termination``."""
    mask = 1.0 if cfg.bootstrap_at_termination else d["boot"]
    return d["G"] + d["disc_T"] * mask * value(V, d["s_T"], cfg)


def advantages(V: Params, d: Mapping[str, torch.Tensor], cfg: Config) -> torch.Tensor:
    """Q̂ − V(s) with Q̂ the bootstrapped return; no gradient."""
    return (bootstrapped_returns(V, d, cfg) - value(V, d["obs"], cfg)).detach()


def value_loss(V: Params, d: Mapping[str, torch.Tensor], target: torch.Tensor, cfg: Config) -> torch.Tensor:
    return (value(V, d["obs"], cfg) - target).pow(2).mean()


def policy_loss(P: Params, d: Mapping[str, torch.Tensor], adv: torch.Tensor | None, lam: torch.Tensor,
                cfg: Config, inner: bool) -> torch.Tensor:
    """AWR (Eq. 3/6), with the head's λ·(Â − A)² in the inner loop (Eq. 4); Meta-BC's −log π."""
    mean, h = policy_mean(P, d["obs"], cfg)
    logp = log_prob(mean, d["action"], cfg)
    if cfg.loss == "imitation":
        return -logp.mean()
    loss = -(logp * awr_weights(adv, cfg)).mean()
    if inner and has_head(cfg):
        loss = loss + lam * (advantage_head(P, h, d["action"], cfg) - adv).pow(2).mean()
    return loss


def _theta(params: Params) -> Params:
    """Every weight-transform layer as its generated θ = A z + a (``<name>.theta``)."""
    return {f"{n}.theta": nets.wt_theta(params, n) for n in sorted({k.rsplit(".", 1)[0] for k in params})}


def _theta_step(params: Params, theta: Params, g: Params, lr: Params, scale: float = 1.0) -> Params:
    """θ after one SGD step of every weight-transform layer's (z, A, a), in θ-space, exactly (spec §6.3):
    with g = ∂L/∂θ, (A − s·η_A g zᵀ)(z − s·η_z Aᵀg) + a − s·η_a g; ``scale`` s < 1 gives the soft target
    (1−s)·(z, A, a) + s·(z', A', a') the same way. Only products with the shared A: no per-task copy."""
    out = {}
    for key, th in theta.items():
        n = key[: -len(".theta")]
        z, A, gn = params[f"{n}.z"], params[f"{n}.A"], g[key]
        At_g = gn @ A                                                      # Aᵀg, [latent]
        eta_z, eta_A, eta_a = lr[f"{n}.z"], lr[f"{n}.A"], lr[f"{n}.a"]
        out[key] = (th - scale * (eta_a + eta_A * (z @ z)) * gn - scale * eta_z * (A @ At_g)
                    + scale**2 * eta_A * eta_z * (z @ At_g) * gn)
    return out


def adapt(P: Params, V: Params, lrs: Mapping[str, Params], lam: torch.Tensor, d: Mapping[str, torch.Tensor],
          cfg: Config) -> tuple[Params, Params, Params]:
    """The inner step on D (Alg. 1 lines 5-7, Alg. 2): V by Monte-Carlo regression, then π on the
    enriched AWR loss with advantages from the adapted V; one learned step size per tensor. Returns
    the adapted policy and value function and the soft value target (target_alpha·V + (1 −
    target_alpha)·V', detached). With weight transforms and ``theta_space`` the adapted networks
    are given by their layers' θ (the same functions, computed without copying A per task)."""
    if cfg.weight_transform and cfg.theta_space:
        return _adapt_theta(P, V, lrs, lam, d, cfg)
    V1, target, adv = V, V, None
    if cfg.loss == "awr":
        V1 = meta.inner_loop(lambda _, v, b: value_loss(v, b, b["G"], cfg), None, V, d, 1, lrs["V"])
        target = {k: (cfg.target_alpha * V[k] + (1 - cfg.target_alpha) * V1[k]).detach() for k in V}
        adv = advantages(V1, d, cfg)
    P1 = meta.inner_loop(lambda _, p, b: policy_loss(p, b, adv, lam, cfg, inner=True), None, P, d, 1, lrs["P"])
    return P1, V1, target


def _adapt_theta(P, V, lrs, lam, d, cfg: Config):
    V1, target, adv = V, V, None
    if cfg.loss == "awr":
        tv = _theta(V)
        gv = torch.func.grad(lambda t: value_loss(t, d, d["G"], cfg))(tv)
        V1 = _theta_step(V, tv, gv, lrs["V"])
        target = {k: v.detach() for k, v in _theta_step(V, tv, gv, lrs["V"], 1 - cfg.target_alpha).items()}
        adv = advantages(V1, d, cfg)
    tp = _theta(P)
    gp = torch.func.grad(lambda t: policy_loss(t, d, adv, lam, cfg, inner=True))(tp)
    return _theta_step(P, tp, gp, lrs["P"]), V1, target


def task_losses(P: Params, V: Params, lrs: Mapping[str, Params], lam: torch.Tensor, tr: Mapping, ts: Mapping,
                cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """One task's outer losses (value, policy) after adapting on D_tr, evaluated on D_ts."""
    P1, V1, target = adapt(P, V, lrs, lam, tr, cfg)
    if cfg.loss == "imitation":
        return torch.zeros(()), policy_loss(P1, ts, None, lam, cfg, inner=False)
    lv = value_loss(V1, ts, bootstrapped_returns(target, ts, cfg).detach(), cfg)
    return lv, policy_loss(P1, ts, advantages(V1, ts, cfg), lam, cfg, inner=False)


def step_sizes(rho: Mapping[str, Params]) -> tuple[dict[str, Params], torch.Tensor]:
    """softplus of the learned ρ: per-tensor inner step sizes and λ."""
    return {n: {k: F.softplus(v) for k, v in rho[n].items()} for n in ("P", "V")}, F.softplus(rho["lam"])


def meta_losses(params: Mapping[str, Params], tr: Mapping, ts: Mapping, cfg: Config, n_train: int,
                per_task: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Outer losses summed over the meta-batch (leading task dim of ``tr``, ``ts``) and divided by the
    number of training tasks (``src/macaw.py``), every task's inner step in one ``vmap``; ``per_task``:
    each task's term, ``[K]``, unsummed."""
    lrs, lam = step_sizes(params["rho"])
    lv, lp = vmap(task_losses, in_dims=(None, None, None, None, 0, 0, None))(
        params["P"], params["V"], lrs, lam, tr, ts, cfg)
    if per_task:
        return lv / n_train, lp / n_train
    return lv.sum() / n_train, lp.sum() / n_train


def meta_losses_loop(params, tr, ts, cfg: Config, n_train: int):
    """Reference for :func:`meta_losses`: a Python loop over tasks."""
    lrs, lam = step_sizes(params["rho"])
    out = [task_losses(params["P"], params["V"], lrs, lam, {k: v[i] for k, v in tr.items()},
                       {k: v[i] for k, v in ts.items()}, cfg) for i in range(len(tr["G"]))]
    return sum(o[0] for o in out) / n_train, sum(o[1] for o in out) / n_train


# --- state --------------------------------------------------------------------------


def init_params(obs_dim: int, act_dim: int, cfg: Config, seed: int, device="cpu") -> dict[str, Params]:
    """Policy P (with head), value V and the learned ρ (step sizes per tensor, λ), drawn on the CPU."""
    gen = torch.Generator().manual_seed(seed)
    width = hidden_width(obs_dim, act_dim, cfg)
    P = init_net(policy_layers(obs_dim, act_dim, width, cfg), cfg, gen)
    V = init_net(value_layers(obs_dim, width, cfg), cfg, gen) if cfg.loss == "awr" else {}
    rho = {"P": {k: torch.tensor(math.log(cfg.inner_policy_lr)) for k in P},
           "V": {k: torch.tensor(math.log(cfg.inner_value_lr)) for k in V},
           "lam": torch.tensor(math.log(cfg.adv_coef) if has_head(cfg) else -math.inf)}
    out = {"P": P, "V": V, "rho": rho}
    return nets.tree_map(lambda t: t.to(device).requires_grad_(bool(torch.isfinite(t).all())), out)


def optimizers(params: Mapping[str, Params], cfg: Config) -> dict[str, torch.optim.Optimizer]:
    out = {"P": torch.optim.Adam(nets.leaves(params["P"], trainable=True), lr=cfg.outer_policy_lr),
           "rho": torch.optim.Adam(nets.leaves(params["rho"], trainable=True), lr=cfg.lr_lr)}
    if params["V"]:
        out["V"] = torch.optim.Adam(nets.leaves(params["V"], trainable=True), lr=cfg.outer_value_lr)
    return out


def meta_step(params, opts, tr, ts, cfg: Config, n_train: int, step: int,
              task_ids: Sequence | None = None) -> dict[str, float]:
    """One meta-update of every network and learned rate; raises on NaN/inf naming the loss, the
    training task (``task_ids[k]`` for the k-th of the meta-batch) and the step."""
    lv, lp = meta_losses(params, tr, ts, cfg, n_train, per_task=True)
    for name, loss in (("value", lv), ("policy", lp)):
        bad = (~torch.isfinite(loss)).nonzero()
        if len(bad):
            k = int(bad[0])
            task = task_ids[k] if task_ids is not None else k
            raise FloatingPointError(f"MACAW outer {name} loss is {loss[k].item()} on training task {task} "
                                     f"at meta-step {step}")
    lv, lp = lv.sum(), lp.sum()
    for opt in opts.values():
        opt.zero_grad(set_to_none=True)
    (lv + lp).backward()
    for opt in opts.values():
        opt.step()
    with torch.no_grad():
        lrs, lam = step_sizes(params["rho"])
    return {"train/value_loss": float(lv.detach()), "train/policy_loss": float(lp.detach()), "train/lambda": float(lam),
            "train/inner_policy_lr": float(torch.stack(list(lrs["P"].values())).mean()),
            **({"train/inner_value_lr": float(torch.stack(list(lrs["V"].values())).mean())} if lrs["V"] else {})}


# --- Algorithm 1: meta-training -----------------------------------------------------


def train(make_env: Callable[[dict], gym.Env], train_tasks: Sequence[dict], horizon: int, cfg: Config, *,
          seed: int, data: Sequence[tuple[dict, dict]], log: Callable[[dict], None] = lambda m: None,
          checkpoint: str | None = None, checkpoint_every: int = 0,
          on_eval: Callable[[dict, int], None] | None = None, eval_every: int = 0, device: str = "cpu") -> dict:
    """Algorithm 1 on the training tasks' offline data (``data[i]`` = :func:`task_data` of task i; no
    environment interaction). Returns the state :func:`adapt_and_evaluate` needs, CPU tensors.
    ``on_eval(state, step)`` runs every ``eval_every`` meta-steps (and at the end)."""
    check(cfg)
    env = make_env(train_tasks[0])
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    params = init_params(obs_dim, act_dim, cfg, seed, device)
    opts = optimizers(params, cfg)
    rng = np.random.default_rng(seed)
    task_rngs = [np.random.default_rng([seed, i]) for i in range(len(data))]
    start = 0

    def export() -> dict:
        return {"config": dataclasses.asdict(cfg), "obs_dim": obs_dim, "act_dim": act_dim,
                "params": io.to_cpu(nets.tree_map(lambda t: t.detach().clone(), params))}

    ck = io.load_checkpoint(checkpoint) if checkpoint else None
    if ck is not None:
        with torch.no_grad():
            for mine, saved in zip(nets.leaves(params), nets.leaves(ck["params"])):
                mine.copy_(saved)
        for name, opt in opts.items():
            opt.load_state_dict(ck["opts"][name])
        rng.bit_generator.state = ck["rng"]
        for r, s in zip(task_rngs, ck["task_rngs"]):
            r.bit_generator.state = s
        start = ck["step"]
    k = min(cfg.meta_batch, len(data))
    for step in range(start, cfg.train_steps):
        if checkpoint and checkpoint_every and step > start and step % checkpoint_every == 0:
            io.save_checkpoint(checkpoint, {"params": nets.tree_map(lambda t: t.detach(), params),
                                            "opts": {n: o.state_dict() for n, o in opts.items()},
                                            "rng": rng.bit_generator.state, "step": step,
                                            "task_rngs": [r.bit_generator.state for r in task_rngs]})
        if on_eval and eval_every and step % eval_every == 0:
            on_eval(export(), step)
        tasks = rng.choice(len(data), k, replace=False)
        rngs = [task_rngs[t] for t in tasks]
        tr = buffers.sample_offline([data[t][0] for t in tasks], cfg.inner_batch, rngs, contiguous=True, device=device)
        ts = buffers.sample_offline([data[t][1] for t in tasks], cfg.outer_batch, rngs, contiguous=False, device=device)
        ids = [train_tasks[t].get("task_id", t) for t in tasks]
        log({"iteration": step, "train_steps": step + 1, **meta_step(params, opts, tr, ts, cfg, len(data), step, ids)})
    state = export()
    if on_eval:
        on_eval(state, cfg.train_steps)
    return state


# --- Algorithm 2: test-time adaptation ----------------------------------------------


def adapt_and_evaluate(state: dict, make_env: Callable[[], gym.Env], horizon: int, *,
                       adapt_data: Mapping[str, np.ndarray], eval_episodes: int, seed: int,
                       device: str = "cpu") -> list[dict]:
    """Algorithm 2 on one test task: one inner step on ``eval_batch`` uniform transitions of the
    task's offline data (``adapt_data``: the inner arrays of :func:`task_data`), then
    ``eval_episodes`` deterministic episodes (action = the clipped mean). Rows: "prior" (the
    un-adapted policy) and "adapted", steps 0. ``state`` is not modified."""
    cfg = check(Config(**state["config"]))
    params = nets.tree_map(lambda t: t.detach().to(device), state["params"])
    lrs, lam = step_sizes(params["rho"])
    d = buffers.sample_offline([adapt_data], cfg.eval_batch, [np.random.default_rng(seed)], contiguous=False,
                               device=device)
    with torch.enable_grad():
        P1, _, _ = adapt({k: v.requires_grad_(True) for k, v in params["P"].items()},
                      {k: v.requires_grad_(True) for k, v in params["V"].items()},
                      lrs, lam, {k: v[0] for k, v in d.items()}, cfg)
    envs = [make_env() for _ in range(eval_episodes)]
    low, high = envs[0].action_space.low, envs[0].action_space.high

    def policy(P):
        @torch.no_grad()
        def act(obs: np.ndarray) -> np.ndarray:
            mean, _ = policy_mean(P, torch.as_tensor(obs, dtype=torch.float32, device=device), cfg)
            return np.clip(mean.cpu().numpy(), low, high)
        return act

    seeds = [seed * 1000 + i for i in range(eval_episodes)]
    return [{"stage": stage, "steps": 0, **rollout.evaluate(envs, policy(p), seeds, horizon)}
            for stage, p in (("prior", params["P"]), ("adapted", {k: v.detach() for k, v in P1.items()}))]


# --- Table 1: online fine-tuning after the offline adaptation step --------------------------


@dataclass(frozen=True)
class FineTune:
    """MACAW+FT (Table 1; App. C.2 and the authors' ``src/macaw.py``, the ``ft == "online"`` branch):
    after the offline step, alternate one noisy trajectory with Adam steps on the aggregated data."""

    lr: float = 1e-5
    """Adam step size of V and π (hard-coded in ``src/macaw.py``: ft_v_opt, ft_p_opt)."""
    value_steps: int = 100
    """Value steps per trajectory, Monte-Carlo regression onto the discounted return-to-go G (App. C.2: "the
    MACAW losses", Eq. 2; ``steps_per_rollout``; ``value_function_loss_on_batch(..., inner=True)``, pure MC
    under every config's ``no_bootstrap: true``, ``src/macaw.py``: ``no_bootstrap and (inner or multitask)``)."""
    policy_steps: int = 200
    """Policy steps per trajectory, AWR with advantages bootstrapped from the current V, no head
    (``2 * steps_per_rollout``)."""
    burn_in: int = 25
    """Updates start after trajectory ``burn_in`` + 1 (``burn_in``; the code updates when eval_step > burn_in)."""
    keep_offline: bool = True
    """The aggregate data start with D_0, the offline batch adapted on (App. C.2: "aggregate"); False: the
    authors' code, which empties the buffer it builds from D_0 (``_stored_steps = 0``)."""


def finetune_value_target(b: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The fine-tuning value steps' regression target: the discounted return-to-go G of each row, to the end of
    its episode, with no bootstrap (Eq. 2, as the inner loop's value step)."""
    return b["G"]


def finetune(state: dict, make_env: Callable[[], gym.Env], horizon: int, ft: FineTune, *,
             adapt_data: Mapping[str, np.ndarray], trajectories: int, eval_at: Sequence[int], eval_episodes: int,
             seed: int, device: str = "cpu") -> list[dict]:
    """Table 1 on one test task: the offline inner step on ``eval_batch`` transitions of its data (D_0, as
    :func:`adapt_and_evaluate`), then ``trajectories`` times: one trajectory with the noisy policy μ + σε
    (``sample_mode=False``) appended to the aggregate data, then (after ``burn_in``) ``value_steps`` and
    ``policy_steps`` Adam steps on uniform batches of ``eval_batch`` from it: V on the Monte-Carlo
    targets of :func:`finetune_value_target`, π on AWR with the current V's bootstrapped advantages
    (:func:`advantages`), no head. Rows "finetuned" with
    ``steps`` = the online environment steps so far, after each count in ``eval_at`` of trajectories,
    the mean of ``eval_episodes`` deterministic episodes."""
    cfg = dataclasses.replace(check(Config(**state["config"])), theta_space=False)  # fine-tune z, A, a themselves
    params = nets.tree_map(lambda t: t.detach().to(device), state["params"])
    lrs, lam = step_sizes(params["rho"])
    rng = np.random.default_rng(seed)
    d0 = buffers.sample_offline([adapt_data], cfg.eval_batch, [rng], contiguous=False)
    with torch.enable_grad():
        P1, V1, _ = adapt({k: v.requires_grad_(True) for k, v in params["P"].items()},
                          {k: v.requires_grad_(True) for k, v in params["V"].items()},
                          lrs, lam, {k: v[0].to(device) for k, v in d0.items()}, cfg)
    P = {k: v.detach().clone().requires_grad_(True) for k, v in P1.items()}
    V = {k: v.detach().clone().requires_grad_(True) for k, v in V1.items()}
    opt_v, opt_p = torch.optim.Adam(V.values(), lr=ft.lr), torch.optim.Adam(P.values(), lr=ft.lr)
    obs_dim, act_dim, steps = len(adapt_data["obs"][0]), len(adapt_data["action"][0]), 0
    # the aggregate data, filled in place: D_0 (unless not ``keep_offline``), then every trajectory
    agg = {k: np.zeros((cfg.eval_batch + trajectories * horizon, *v.shape[2:]), np.float32) for k, v in d0.items()}
    size = 0

    def append(part: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        nonlocal size
        n = len(part["G"])
        for k, v in agg.items():
            v[size: size + n] = part[k]
        size += n
        return {k: v[:size] for k, v in agg.items()}  # views: nothing copied

    if ft.keep_offline:
        append({k: v[0].numpy() for k, v in d0.items()})
    env, eval_envs = make_env(), [make_env() for _ in range(eval_episodes)]
    low, high = env.action_space.low, env.action_space.high
    gen = torch.Generator().manual_seed(seed)

    def act(noisy: bool):
        @torch.no_grad()
        def policy(obs: np.ndarray) -> np.ndarray:
            mean, _ = policy_mean(P, torch.as_tensor(obs, dtype=torch.float32, device=device), cfg)
            if noisy:
                mean = mean + cfg.action_sigma * torch.randn(mean.shape, generator=gen).to(device)
            return np.clip(mean.cpu().numpy(), low, high)
        return policy

    rows = []
    for t in range(trajectories + 1):
        # evaluate
        if t in eval_at:
            seeds = [seed * 1000 + 100_000 * (t + 1) + i for i in range(eval_episodes)]
            rows.append({"stage": "finetuned", "steps": steps, "trajectories": t,
                         **rollout.evaluate(eval_envs, act(False), seeds, horizon)})
        if t == trajectories:
            break
        # collect
        trajectory = buffers.ReplayBuffer(horizon, obs_dim, act_dim)
        rollout.episodes([env], act(True), [seed * 1000 + 500 + t], horizon, trajectory)
        steps += trajectory.size
        data = append(buffers.offline_arrays(trajectory.arrays(), cfg.gamma))  # a whole episode: its own returns
        if t <= ft.burn_in or len(data["G"]) < cfg.eval_batch:  # ``eval_step > burn_in``, as the code
            continue
        # update: the value function by Monte-Carlo regression (Eq. 2), then π by AWR (Eq. 3)
        for opt, n_updates, loss in ((opt_v, ft.value_steps, "value"), (opt_p, ft.policy_steps, "policy")):
            for _ in range(n_updates):
                b = {k: v[0] for k, v in buffers.sample_offline([data], cfg.eval_batch, [rng], False, device).items()}
                if loss == "value":
                    out = value_loss(V, b, finetune_value_target(b), cfg)
                else:
                    out = policy_loss(P, b, advantages(V, b, cfg), lam, cfg, inner=False)
                if not torch.isfinite(out):
                    raise FloatingPointError(f"MACAW fine-tuning: the {loss} loss is {out.item()} after {t + 1} trajectories")
                opt.zero_grad(set_to_none=True)
                out.backward()
                opt.step()
    return rows
