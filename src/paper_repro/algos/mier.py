"""MIER: Meta-Reinforcement Learning Robust to Distributional Shift via Model Identification and
Experience Relabeling (Mendonca et al., 2020; ICLR 2020 submission, Sec. 4, Algorithms 1-2, App. A).

- Model identification (Sec. 4.1): a Gaussian reward(/dynamics) model p(s', r | s, a; θ, φ) whose
  context φ alone is adapted by MAML-style gradient steps (Ξ_MAML); θ and the prior context are
  meta-trained on the post-adaptation NLL. Every per-task computation of a meta-batch is one
  ``torch.func.vmap`` (:mod:`paper_repro.meta`).
- Policy (Sec. 4.2): one SAC agent (:mod:`paper_repro.algos.sac` with K=1) whose policy sees (s, φ_T)
  and whose critics see (s, a, φ_T); φ_T is adapted on an adaptation batch of the same task and
  detached, so no policy gradient reaches θ or φ.
- Algorithm 1 (:func:`train`): per epoch, collect data for a few tasks with the prior context and then
  with the adapted context, then interleave model meta-updates and SAC updates.
- Algorithm 2 (:func:`adapt_and_evaluate`): adapt the context on the test task's data, keep training θ
  on it, then train the policy on transitions of the meta-training tasks relabelled by the adapted
  model (Sec. 4.3), or, for the ablation of Sec. 5.2.2, on the test task's own data only.

Values the paper does not state come from the authors' public code (github.com/russellmendonca/
mier_public, ``configs/``, ``mier.py``); every Config field says where its default comes from.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from paper_repro import io, meta, rollout
from paper_repro.algos import sac
from paper_repro.buffers import Batch, ReplayBuffer, concat, stack

Params = dict[str, torch.Tensor]

@dataclass(frozen=True)
class Config:
    # --- model (App. A items 1-6) ---
    context_dim: int = 5
    """Size of the latent context φ (App. A, item 5; the authors' negated-joints config uses 10)."""
    model_hidden: tuple[int, ...] = (200, 200, 200, 200)
    """Hidden layers of the reward/dynamics model (App. A, item 4)."""
    inner_steps: int = 2
    """Gradient steps of context adaptation (App. A, item 1)."""
    inner_lr: float = 0.1
    """Context adaptation step size α (App. A, item 2). The authors' code uses 0.01
    (``configs/default.py`` fast_adapt_lr, which no env or experiment config overrides): with it and
    their ``per_head_mean`` loss the clip binds on every inner step by mid-training, each step moves
    the context by at most 0.1, and at the quick scale the meta-trained policy barely uses the
    context (see the README: the authors' training settings measured there)."""
    inner_grad_clip: float | None = 10.0
    """Max L2 norm of the context gradient per inner step (authors' code, clip_val_inner_grad = 10;
    None disables). How often it binds is logged (train/inner_clip_rate)."""
    adapt_batch: int = 256
    """Transitions per task in the adaptation batch, and in the disjoint evaluation batch (App. A,
    item 3; the authors' code samples num_sample_steps_for_adaptation = 200/400 instead)."""
    context_reg: float = 0.01
    """Weight of the L2 penalty on post-update contexts in the meta-loss (App. A, item 6)."""
    logvar_reg: float = 0.01
    """Weight of the penalty on the learned log-variance bounds (authors' code,
    ``models/bnn_contextual.py`` _compile_log_likelihood; the MBPO convention)."""
    model_loss: str = "sum"
    """How the Gaussian NLL is reduced over the model's outputs (the paper does not say). ``sum``:
    0.5·NLL summed over all outputs (the textbook Gaussian NLL; the reward is 1/18 of it on
    half-cheetah). ``per_head_mean`` (authors' code, ``models/bnn_contextual.py`` _compile_losses):
    the reward's NLL plus the next-state NLL averaged over state dimensions, each Σ (err²/σ² + log σ²)
    averaged, so the reward carries half the loss. ``sum`` stays the default until a quick-scale run
    per switch says which of the authors' training settings costs Fig. 4 (README)."""
    meta_grad_clip: float | None = None
    """Max L2 norm of each meta-gradient tensor (θ's and the prior context's) before the Adam step;
    None: no clipping (the paper does not say). The authors' code clips at 10 (clip_val_outer_grad,
    tf.clip_by_norm per variable)."""
    predict_dynamics: bool = True
    """Predict next-state deltas as well as reward (App. A: only for families whose dynamics vary).
    False: a reward-only model; relabelling then keeps the buffer's action and next state (see
    :func:`relabel_batch`)."""
    model_lr: float = 1e-3
    """Adam step size of the model and prior context, meta-training and test time (authors' code,
    ``models/bnn_contextual.py``; not listed in App. A)."""
    meta_batch: int = 10
    """Tasks per model meta-update and per SAC update (authors' code, model_hyperparams.meta_batch_size)."""
    # --- policy (App. A items 9-11) ---
    sac_hidden: tuple[int, ...] = (256, 256)
    """Hidden layers of the SAC actor and critics (App. A, item 11; the authors' default is
    300-300-300, their negated-joints config 256-256)."""
    sac_lr: float = 3e-4
    """Adam step size of actor, critics and temperature (App. A, item 10; authors' code for actor/alpha)."""
    gamma: float = 0.99
    """Discount (authors' code, sac_hyperparams.discount_factor)."""
    tau: float = 0.005
    """Polyak rate of the target critics (authors' code, target_update_rate)."""
    init_alpha: float = math.exp(-1.0)
    """Initial SAC temperature e⁻¹, the value of the authors' ``configs/default.py`` log_alpha_init = -1,
    which their SAC never reads: it starts at α = 1 (``softlearning_sac.py``: log_alpha initializer
    0.0; ``init_alpha: 1`` reproduces it)."""
    target_entropy: float = -1.0
    """SAC target entropy (authors' code, sac_hyperparams.target_entropy = -1.0, not -|A|)."""
    # --- Algorithm 1 ---
    epochs: int = 400
    """Meta-training epochs (authors' code: 400 for cheetah-vel and cheetah-negated-joints, 200 for
    humanoid-dir; set per family)."""
    tasks_per_epoch: int = 5
    """Tasks whose data is collected per epoch (App. A, item 7)."""
    steps_prior: int = 400
    """Env steps per sampled task and epoch with the prior context (authors' code,
    num_sample_steps_prior); the adaptation data of that task's context for the next part."""
    steps_adapted: int = 600
    """Env steps per sampled task and epoch with the adapted context (authors' code,
    num_sample_steps_updated_context; with steps_prior the 1000 points of App. A, item 8)."""
    initial_repeats: int = 5
    """Initial data: every training task gets initial_repeats × steps_prior steps with the prior
    context before the first epoch (authors' code, initial_exploration_repeats = 5 for cheetah-vel and
    negated joints, 1 for humanoid-dir)."""
    train_steps: int = 1000
    """Training steps per epoch, each one model meta-update (N_model) and one SAC update (N_policy) on
    the same meta-batch, interleaved as in the authors' code (num_training_steps_per_epoch = 1000 in
    every config; App. A, item 9: 1000 SAC steps). The SAC batch is the meta-update's evaluation
    batches, meta_batch × adapt_batch transitions, with their tasks' adapted contexts (authors' code)."""
    # --- Algorithm 2 ---
    test_model_steps: int = 100
    """N_model of Alg. 2: Adam steps on θ with the adapted context on the test task's data (authors'
    code: num_extra_fast_adapt_steps_for_model = 100 by default, 0 in their negated-joints config,
    configs/envs/ood/cheetah-negated-joints.json). A test-time value (see :data:`TEST_TIME`):
    ``adapt_and_evaluate`` overrides it per experiment (config experiments.<name>.adapt.mier) without
    retraining. Skipped when no relabelling step is evaluated, as nothing else reads the model."""
    test_context_steps: int = 10
    """Context adaptation steps on the test task (authors' code, num_fast_adapt_steps_for_context =
    10 in ``mier.py`` fast_adapt_model: the first ``inner_steps`` at ``inner_lr``, the rest at
    ``inner_lr``/10). Alg. 2 of the paper adapts as in meta-training: ``inner_steps``."""
    test_batch: int = 256
    """SAC batch at test time (authors' code, batch_size)."""
    real_ratio: float = 0.05
    """Fraction of each test-time SAC batch drawn from the test task's own data when relabelling
    (authors' code, model_real_ratio); the rest is relabelled meta-training data."""
    relabel_schedule: str = "buffer"
    """How relabelled data reaches the test-time SAC updates. ``buffer`` (authors' code, ``mier.py``
    extrapolate): every ``relabel_every`` loop steps, ``relabel_states`` states of the meta-training
    data are relabelled with the current policy and model into a FIFO model buffer of
    ``model_buffer_size`` transitions, and each loop step makes ``sac_repeats`` SAC updates sampling
    from it; relabelled actions are up to a few thousand updates old. ``per_update`` (Alg. 2 as
    written): a fresh batch relabelled with the current policy for every SAC update."""
    relabel_every: int = 250
    """Loop steps between relabellings (authors' code, relabelling_interval)."""
    relabel_states: int = 100_000
    """States relabelled each time (authors' code, rollout_batch_size), drawn from ``relabel_tasks``
    meta-training tasks taken with replacement, the same number from each (num_cross_tasks_for_relabelling)."""
    relabel_tasks: int = 20
    """Meta-training tasks each relabelling draws its states from (authors' code, num_cross_tasks_for_relabelling)."""
    model_buffer_size: int = 1_000_000
    """Capacity of the FIFO model buffer (authors' code, replay_buffer_max_sample_size); a multiple of
    ``relabel_states``."""
    sac_repeats: int = 2
    """SAC updates per test-time loop step (authors' code, num_sac_repeat_steps_for_extrapol); the
    evaluation schedule counts SAC updates."""


TEST_TIME = ("test_model_steps", "test_context_steps", "test_batch", "real_ratio", "relabel_schedule",
             "relabel_every", "relabel_states", "relabel_tasks", "model_buffer_size", "sac_repeats")
"""Config fields only Algorithm 2 reads: :func:`adapt_and_evaluate` takes them as keyword overrides,
so an experiment can set them (config ``experiments.<name>.adapt.mier``) without retraining."""


def check(cfg: Config) -> Config:
    """``cfg`` if its choices are valid; otherwise a ValueError naming the field."""
    choices = {"model_loss": ("per_head_mean", "sum"), "relabel_schedule": ("buffer", "per_update")}
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise ValueError(f"mier.{name}: {getattr(cfg, name)!r} is not one of {allowed}")
    if cfg.model_buffer_size % cfg.relabel_states or cfg.relabel_states % cfg.relabel_tasks:
        raise ValueError(f"mier: model_buffer_size ({cfg.model_buffer_size}) must be a multiple of relabel_states "
                         f"({cfg.relabel_states}), itself a multiple of relabel_tasks ({cfg.relabel_tasks})")
    return cfg


# --- model --------------------------------------------------------------------------


class ContextModel(nn.Module):
    """Gaussian p(Δs, r | s, a; θ, φ): a leaky-ReLU MLP with learned soft log-variance bounds
    initialised at [-10, 0.5] (authors' code).

    The context φ is an input, appended to state and action (App. A); it is not a module parameter,
    so it can be adapted functionally while θ stays fixed.
    """

    def __init__(self, obs_dim: int, act_dim: int, cfg: Config):
        super().__init__()
        self.out_dim = (obs_dim + 1) if cfg.predict_dynamics else 1
        layers, d = [], obs_dim + act_dim + cfg.context_dim
        for h in cfg.model_hidden:
            layers += [nn.Linear(d, h), nn.LeakyReLU()]
            d = h
        layers.append(nn.Linear(d, 2 * self.out_dim))
        self.net = nn.Sequential(*layers)
        self.max_logvar = nn.Parameter(torch.full((self.out_dim,), 0.5))
        self.min_logvar = nn.Parameter(torch.full((self.out_dim,), -10.0))

    def forward(self, obs, act, ctx):
        ctx = ctx.expand(*obs.shape[:-1], ctx.shape[-1])
        out = self.net(torch.cat([obs, act, ctx], -1))
        mean, logvar = out.split(self.out_dim, -1)
        logvar = self.max_logvar - nn.functional.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + nn.functional.softplus(logvar - self.min_logvar)
        return mean, logvar


def targets(batch: Batch, cfg: Config) -> torch.Tensor:
    """What the model predicts: (Δs, r), or r alone; ``[..., out_dim]``."""
    if cfg.predict_dynamics:
        return torch.cat([batch.next_obs - batch.obs, batch.reward[..., None]], -1)
    return batch.reward[..., None]


# --- losses -------------------------------------------------------------------------


def nll(model: ContextModel, theta: Params, ctx: torch.Tensor, batch: Batch, cfg: Config) -> torch.Tensor:
    """Gaussian negative log-likelihood of the batch (constants dropped), reduced over the outputs
    as ``cfg.model_loss`` says: per head (reward, next state) averaged, or 0.5·sum over outputs."""
    mean, logvar = functional_call(model, theta, (batch.obs, batch.action, ctx))
    per_output = (mean - targets(batch, cfg)) ** 2 * torch.exp(-logvar) + logvar
    if cfg.model_loss == "sum":
        return 0.5 * per_output.sum(-1).mean()
    if cfg.predict_dynamics:  # the reward is the last output
        return per_output[..., -1].mean() + per_output[..., :-1].mean()
    return per_output.mean()


def adapt_context(model: ContextModel, theta: Params, ctx: torch.Tensor, batch: Batch, cfg: Config,
                  steps: int | None = None, lr: float | None = None, with_norms: bool = False):
    """Ξ_MAML(θ, φ, D_adapt): gradient steps on the NLL w.r.t. the context only (cfg.inner_steps at
    cfg.inner_lr unless told otherwise); ``with_norms`` also returns each step's gradient norm."""
    def loss(slow, fast, data):
        return nll(model, slow, fast["ctx"], data, cfg)
    out = meta.inner_loop(loss, theta, {"ctx": ctx}, batch, cfg.inner_steps if steps is None else steps,
                          cfg.inner_lr if lr is None else lr, cfg.inner_grad_clip, with_norms)
    return (out[0]["ctx"], out[1]) if with_norms else out["ctx"]


def adapt_contexts(model: ContextModel, theta: Params, ctx: torch.Tensor, batches: Batch, cfg: Config,
                   with_norms: bool = False):
    """``adapt_context`` for every task of a meta-batch at once (batches have a leading task dim)."""
    return vmap(lambda b: adapt_context(model, theta, ctx, b, cfg, with_norms=with_norms))(batches)


def model_meta_loss(model: ContextModel, params: Params, adapt: Batch, evaluate: Batch, cfg: Config
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """J_p(θ, φ, D_adapt, D_eval), averaged over a meta-batch of tasks (leading dim of the batches).

    ``params`` holds the model parameters θ and the prior context under key "context". Returns the
    loss, metrics and the adapted contexts (tasks, context_dim), still attached to the graph.
    """
    theta = {k: v for k, v in params.items() if k != "context"}
    ctx = params["context"]
    post, norms = adapt_contexts(model, theta, ctx, adapt, cfg, with_norms=True)  # (tasks, context_dim)
    post_nll = vmap(lambda c, b: nll(model, theta, c, b, cfg))(post, evaluate)  # (tasks,)
    ctx_pen = (post**2).sum(-1).mean()
    bound_pen = (theta["max_logvar"].sum() - theta["min_logvar"].sum())
    loss = post_nll.mean() + cfg.context_reg * ctx_pen + cfg.logvar_reg * bound_pen
    with torch.no_grad():
        pre_nll = vmap(lambda b: nll(model, theta, ctx, b, cfg))(evaluate).mean()
    return loss, {"train/model_loss": loss.detach(), "train/model_nll_post": post_nll.mean().detach(),
                  "train/model_nll_pre": pre_nll, "train/context_norm": post.norm(dim=-1).mean().detach(),
                  "train/inner_grad_norm": norms.mean(),
                  "train/inner_clip_rate": (norms > (cfg.inner_grad_clip or math.inf)).float().mean()}, post


def model_meta_loss_loop(model: ContextModel, params: Params, adapt: Batch, evaluate: Batch, cfg: Config
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference for ``model_meta_loss``: the same maths with a plain Python loop over tasks; returns
    the loss and the adapted contexts."""
    theta = {k: v for k, v in params.items() if k != "context"}
    losses, posts = [], []
    for i in range(adapt.obs.shape[0]):
        a = Batch(*(x[i] for x in adapt))
        e = Batch(*(x[i] for x in evaluate))
        post = adapt_context(model, theta, params["context"], a, cfg)
        losses.append(nll(model, theta, post, e, cfg) + cfg.context_reg * (post**2).sum())
        posts.append(post)
    bound_pen = (theta["max_logvar"].sum() - theta["min_logvar"].sum())
    return torch.stack(losses).mean() + cfg.logvar_reg * bound_pen, torch.stack(posts)


def init_params(model: ContextModel, cfg: Config) -> Params:
    """θ from the module (detached leaves, on its device) plus a zero prior context φ."""
    p = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    p["context"] = torch.zeros(cfg.context_dim, device=p["max_logvar"].device, requires_grad=True)
    return p


# --- model update -------------------------------------------------------------------


def model_update(model: ContextModel, params: Params, opt: torch.optim.Optimizer, adapt: Batch, evaluate: Batch,
                 cfg: Config, step: int = 0, epoch: int = 0) -> tuple[dict[str, float], torch.Tensor]:
    """One Adam step of θ and the prior context on the model meta-loss; raises on NaN/inf.

    Returns the metrics and the tasks' adapted contexts (computed before the step, detached).
    """
    loss, metrics, post = model_meta_loss(model, params, adapt, evaluate, cfg)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"MIER model meta-loss is {loss.item()} at epoch {epoch}, step {step}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.meta_grad_clip is not None:  # per tensor, as tf.clip_by_norm in the authors' code
        norms = torch.stack([torch.nn.utils.clip_grad_norm_(p, cfg.meta_grad_clip) for p in params.values()])
        metrics["train/meta_grad_clip_rate"] = (norms > cfg.meta_grad_clip).float().mean()
    opt.step()
    return {k: float(v) for k, v in metrics.items()}, post.detach()


def finetune_model(model: ContextModel, theta: Params, ctx: torch.Tensor, data: Batch, cfg: Config, steps: int,
                   rng: np.random.Generator) -> Params:
    """Alg. 2's inner model loop: ``steps`` Adam steps on θ (context fixed at φ_T) on the test task's data."""
    theta = {k: v.detach().clone().requires_grad_(True) for k, v in theta.items()}
    opt = torch.optim.Adam(theta.values(), lr=cfg.model_lr)
    n = data.obs.shape[0]
    for step in range(steps):
        idx = torch.as_tensor(rng.integers(0, n, cfg.adapt_batch))
        loss = nll(model, theta, ctx, Batch(*(x[idx] for x in data)), cfg)
        loss = loss + cfg.logvar_reg * (theta["max_logvar"].sum() - theta["min_logvar"].sum())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"MIER test-time model loss is {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return {k: v.detach() for k, v in theta.items()}


# --- context-conditioned SAC (Sec. 4.2) ---------------------------------------------


def sac_config(cfg: Config) -> sac.Config:
    return sac.Config(lr=cfg.sac_lr, gamma=cfg.gamma, tau=cfg.tau, hidden=cfg.sac_hidden, init_alpha=cfg.init_alpha)


def init_agent(cfg: Config, gen: torch.Generator, obs_dim: int, act_dim: int, low, high, device="cpu") -> dict:
    """One SAC agent (K=1) on observations (s, φ), on ``device`` (its initial weights drawn on the CPU)."""
    agent = sac.init(sac_config(cfg), [gen], obs_dim + cfg.context_dim, act_dim, low, high, device)
    agent["target_entropy"] = cfg.target_entropy
    return agent


def policy_batch(b: Batch, ctx: torch.Tensor) -> Batch:
    """A K=1 SAC batch [1, N, ...] from N transitions and their contexts [N, context_dim]."""
    return Batch(torch.cat([b.obs, ctx], -1)[None], b.action[None], b.reward.reshape(1, -1),
                 torch.cat([b.next_obs, ctx], -1)[None], b.terminated.reshape(1, -1))


def sac_update(agent: dict, b: Batch, gen: torch.Generator, cfg: Config, where: str) -> dict[str, float]:
    def check(name, per_task):
        if not torch.isfinite(per_task).all():
            raise FloatingPointError(f"MIER SAC {name} is {per_task.tolist()} at {where}")
    metrics = sac.update(agent, b, [gen], 0, sac_config(cfg), check)
    return {k: float(v.mean()) for k, v in metrics.items()}


def policy(agent: dict, gen: torch.Generator, ctx: torch.Tensor, deterministic: bool) -> rollout.Policy:
    """The policy with context ``ctx`` ([context_dim], or one per env [n, context_dim]) as a
    rollout callable: actions [n, A] for observations [n, O], one forward."""
    @torch.no_grad()
    def act(obs: np.ndarray) -> np.ndarray:
        x = torch.cat([torch.as_tensor(obs, dtype=torch.float32, device=ctx.device), ctx.expand(len(obs), -1)], -1)
        return agent["actor"](x[None], [gen], deterministic)[0][0].cpu().numpy()
    return act


# --- data ---------------------------------------------------------------------------


def collect(agent: dict, gen: torch.Generator, envs: Sequence[gym.Env], ctx: torch.Tensor, steps: int,
            seeds: Sequence[int]) -> list[ReplayBuffer]:
    """``steps`` env steps in each env (reset with ``seeds``, episodes restart as they end), all envs
    stepped together with one policy forward; ctx [context_dim] or [n, context_dim]. One buffer per env."""
    obs_dim, act_dim = envs[0].observation_space.shape[0], envs[0].action_space.shape[0]
    out = [ReplayBuffer(steps, obs_dim, act_dim) for _ in envs]
    rollout.transitions(envs, policy(agent, gen, ctx, deterministic=False), steps, seeds, out)
    return out


def disjoint_rows(rng: np.random.Generator, size: int, taken: np.ndarray, n: int) -> np.ndarray:
    """n uniform row indices in [0, size) outside ``taken``."""
    gaps = np.unique(taken)
    gaps = gaps - np.arange(len(gaps))
    raw = rng.integers(0, size - len(np.unique(taken)), n)
    return raw + np.searchsorted(gaps, raw, side="right")


def sample_meta_batch(data: Sequence[ReplayBuffer], tasks, n: int, rng: np.random.Generator, device="cpu"
                      ) -> tuple[Batch, Batch]:
    """Disjoint adaptation and evaluation batches for every task, tensors [tasks, n, ...]. Adaptation rows are
    those tagged ``prior``, collected with the prior context, as the test task's adaptation data is
    (authors' code: pre_adapt_replay_buffer)."""
    adapt, evaluate = [], []
    for t in tasks:
        prior_rows = data[t].prior_rows()
        rows = prior_rows[rng.integers(0, len(prior_rows), n)]
        adapt.append(data[t].batch(rows))
        evaluate.append(data[t].batch(disjoint_rows(rng, data[t].size, rows, n)))
    return stack(adapt).tensors(device), stack(evaluate).tensors(device)


# --- Algorithm 1: meta-training -----------------------------------------------------


def _build(cfg: Config, obs_dim: int, act_dim: int, low, high, seed: int, device="cpu"):
    """Model, parameters and agent on ``device``, initialised on the CPU (the same on every device);
    the generator stays on the CPU."""
    torch.manual_seed(seed)
    model = ContextModel(obs_dim, act_dim, cfg).to(device)
    params = init_params(model, cfg)
    gen = torch.Generator().manual_seed(seed)
    agent = init_agent(cfg, gen, obs_dim, act_dim, low, high, device)
    return model, params, gen, agent


def _snapshot(tree):
    """A CPU copy of ``tree`` (weights, optimizer states) that later updates leave alone."""
    return copy.deepcopy(io.to_cpu(tree))


def _agent_state(agent: dict, optimizers: bool) -> dict:
    keys = ["actor", "critic", "critic_target"] + (["actor_opt", "critic_opt", "alpha_opt"] if optimizers else [])
    out = {k: _snapshot(agent[k].state_dict()) for k in keys}
    out["log_alpha"] = _snapshot(agent["log_alpha"].detach())
    return out


def _load_agent(agent: dict, st: dict) -> None:
    for k, v in st.items():
        if k == "log_alpha":
            with torch.no_grad():
                agent["log_alpha"].copy_(v)
        else:
            agent[k].load_state_dict(v)


def train(make_env: Callable[[dict], gym.Env], train_tasks: Sequence[dict], horizon: int, cfg: Config, *,
          seed: int, log: Callable[[dict], None] = lambda m: None, checkpoint: str | None = None,
          checkpoint_every: int = 0, on_eval: Callable[[dict, int], None] | None = None,
          eval_every: int = 0, device: str = "cpu") -> dict:
    """Algorithm 1 on ``train_tasks``; returns the state :func:`adapt_and_evaluate` needs (see the
    shared interface in the project docs), its tensors on the CPU. ``horizon`` is enforced by
    ``make_env``'s TimeLimit. Networks and updates run on ``device``; environments, buffers and
    random draws on the CPU.

    Logged per epoch: the epoch's mean training losses, and collect/reward_prior and
    collect/reward_adapted, the mean reward per env step of the data collected that epoch with the
    prior and with the adapted context."""
    check(cfg)
    envs = [make_env(t) for t in train_tasks]
    space = envs[0].action_space
    obs_dim, act_dim = envs[0].observation_space.shape[0], space.shape[0]
    model, params, gen, agent = _build(cfg, obs_dim, act_dim, space.low, space.high, seed, device)
    model_opt = torch.optim.Adam(params.values(), lr=cfg.model_lr)
    rng = np.random.default_rng(seed)
    data = [ReplayBuffer(0, obs_dim, act_dim, grow=True) for _ in train_tasks]  # every task's transitions
    start, env_steps, eval_mark, evaluated_at = 0, 0, 0, -1

    def export() -> dict:  # tensors, numbers, strings, lists and dicts only (see io.load_checkpoint)
        return {"config": dataclasses.asdict(cfg), "obs_dim": obs_dim, "act_dim": act_dim,
                "act_low": space.low.tolist(), "act_high": space.high.tolist(),
                "model": _snapshot({k: v.detach() for k, v in params.items()}), **_agent_state(agent, False),
                "buffers": [d.tensors() for d in data],
                "train_tasks": [{k: v.item() if isinstance(v, np.generic) else v for k, v in t.items()}
                                for t in train_tasks]}

    ck = io.load_checkpoint(checkpoint) if checkpoint else None
    if ck is not None:
        with torch.no_grad():
            for k, v in ck["model"].items():
                params[k].copy_(v)
        model_opt.load_state_dict(ck["model_opt"])
        _load_agent(agent, ck["agent"])
        for d, arrays in zip(data, ck["buffers"]):
            d.load_arrays(arrays)
        rng.bit_generator.state, start = ck["numpy_rng"], ck["epoch"]
        gen.set_state(ck["torch_gen"])
        torch.set_rng_state(ck["torch_rng"])
        env_steps, eval_mark = ck["env_steps"], ck["eval_mark"]
    else:  # initial data with the prior context (authors' code: initial exploration)
        for _ in range(cfg.initial_repeats):
            for d, b in zip(data, collect(agent, gen, envs, params["context"].detach(), cfg.steps_prior,
                                          rng.integers(2**31, size=len(envs)))):
                d.extend(b.arrays(), prior=True)
            env_steps += len(envs) * cfg.steps_prior

    theta_keys = [k for k in params if k != "context"]
    for epoch in range(start, cfg.epochs):
        if checkpoint and checkpoint_every and epoch > start and epoch % checkpoint_every == 0:
            io.save_checkpoint(checkpoint, {
                "model": _snapshot({k: v.detach() for k, v in params.items()}),
                "model_opt": _snapshot(model_opt.state_dict()),
                "agent": _agent_state(agent, True), "buffers": [d.tensors() for d in data],
                "numpy_rng": rng.bit_generator.state, "torch_gen": gen.get_state(),
                "torch_rng": torch.get_rng_state(), "epoch": epoch, "env_steps": env_steps, "eval_mark": eval_mark})
        # collect: prior context, then the context adapted on that data, for each sampled task
        tasks = rng.choice(len(train_tasks), cfg.tasks_per_epoch, replace=len(train_tasks) < cfg.tasks_per_epoch)
        task_envs = [make_env(train_tasks[t]) for t in tasks]
        prior = params["context"].detach()
        pre = collect(agent, gen, task_envs, prior, cfg.steps_prior, rng.integers(2**31, size=len(tasks)))
        theta = {k: params[k].detach() for k in theta_keys}
        adapted = adapt_contexts(model, theta, prior, stack([p.batch() for p in pre]).tensors(device), cfg).detach()
        post = collect(agent, gen, task_envs, adapted, cfg.steps_adapted, rng.integers(2**31, size=len(tasks)))
        for t, p, q in zip(tasks, pre, post):
            data[t].extend(p.arrays(), prior=True)
            data[t].extend(q.arrays())
        env_steps += len(tasks) * (cfg.steps_prior + cfg.steps_adapted)
        # update: N_model model meta-updates and N_policy SAC updates, interleaved on the same meta-batches
        sums: dict[str, float] = {}
        for step in range(cfg.train_steps):
            batch_tasks = rng.choice(len(train_tasks), cfg.meta_batch, replace=len(train_tasks) < cfg.meta_batch)
            a, e = sample_meta_batch(data, batch_tasks, cfg.adapt_batch, rng, device)
            m, ctx = model_update(model, params, model_opt, a, e, cfg, step=step, epoch=epoch)
            ctx = ctx[:, None].expand(-1, cfg.adapt_batch, -1).reshape(-1, cfg.context_dim)
            flat = Batch(*(x.flatten(0, 1) for x in e))  # the SAC batch: every task's evaluation batch
            m.update(sac_update(agent, policy_batch(flat, ctx), gen, cfg, f"epoch {epoch}, step {step}"))
            for k, v in m.items():
                sums[k] = sums.get(k, 0.0) + v
        log({"iteration": epoch, "env_steps": env_steps,
             "collect/reward_prior": float(np.mean([p.arrays()["reward"].mean() for p in pre])),
             "collect/reward_adapted": float(np.mean([q.arrays()["reward"].mean() for q in post])),
             **{k: v / max(cfg.train_steps, 1) for k, v in sums.items()}})
        # evaluate: adaptation on the test tasks, whenever the env steps cross a multiple of eval_every
        if on_eval and eval_every and env_steps // eval_every > eval_mark:
            eval_mark, evaluated_at = env_steps // eval_every, env_steps
            on_eval(export(), env_steps)
    state = export()
    if on_eval and evaluated_at != env_steps:
        on_eval(state, env_steps)
    return state


# --- Algorithm 2: test-time adaptation ----------------------------------------------


@torch.no_grad()
def relabel_batch(model: ContextModel, theta: Params, ctx: torch.Tensor, agent: dict, gen: torch.Generator,
                  batch: Batch, cfg: Config) -> Batch:
    """Relabel(D, θ, φ_T) (Sec. 4.3): actions resampled from the current policy, next state and
    reward sampled from the adapted model; model transitions are non-terminal (the families with
    a dynamics model never terminate).

    A reward-only model (``predict_dynamics`` False) cannot predict the next state of a new action,
    so there the buffer's action and next state are kept and only the reward is sampled from the
    model. For reward-only families the dynamics are shared across tasks, so these are real
    transitions of the test task (the authors' ``off_policy_relabelling`` path)."""
    obs, act_ = batch.obs, batch.action
    c = ctx.expand(obs.shape[0], -1)
    if cfg.predict_dynamics:
        act_, _ = agent["actor"](torch.cat([obs, c], -1)[None], [gen])
        act_ = act_[0]
    mean, logvar = functional_call(model, theta, (obs, act_, c))
    noise = torch.randn(mean.shape, generator=gen).to(mean.device)
    sample = mean + (0.5 * logvar).exp() * noise  # the reward last
    if cfg.predict_dynamics:
        return Batch(obs, act_, sample[:, -1], obs + sample[:, :-1], torch.zeros_like(batch.terminated))
    return batch._replace(reward=sample[:, -1])


def sample_training_data(data: Sequence[ReplayBuffer], n: int, rng: np.random.Generator, device="cpu",
                         tasks: int | None = None) -> Batch:
    """n transitions of the meta-training tasks: each from a task drawn uniformly, or (``tasks``
    given, the authors' relabelling) n/tasks from each of ``tasks`` tasks drawn with replacement;
    uniformly within the task."""
    if tasks is not None:
        return concat([data[t].batch(rng.integers(0, data[t].size, n // tasks))
                       for t in rng.integers(0, len(data), tasks)]).tensors(device)
    picks = rng.integers(0, len(data), n)
    rows = (rng.random(n) * np.array([d.size for d in data])[picks]).astype(np.int64)
    return concat([data[t].batch(rows[picks == t]) for t in np.unique(picks)]).tensors(device)


class ModelBuffer:
    """The authors' test-time model buffer: a FIFO of the last ``capacity`` relabelled transitions,
    added ``chunk`` at a time (so it holds the last capacity/chunk relabellings); uniform draws."""

    def __init__(self, capacity: int, chunk: int):
        self.chunks: deque[Batch] = deque(maxlen=capacity // chunk)
        self.chunk = chunk

    def add(self, batch: Batch) -> None:
        self.chunks.append(batch)

    def sample(self, n: int, rng: np.random.Generator) -> Batch:
        which, rows = rng.integers(0, len(self.chunks), n), rng.integers(0, self.chunk, n)
        return concat([Batch(*(x[torch.as_tensor(rows[which == c], device=x.device)] for x in self.chunks[c]))
                       for c in np.unique(which)])


@torch.no_grad()
def diagnostics(model: ContextModel, thetas: dict[str, Params], ctx: torch.Tensor, agent: dict,
                episodes: Sequence[ReplayBuffer], cfg: Config) -> dict[str, float]:
    """What tells a policy exploiting an inaccurate model from a bug, on the evaluation episodes of the
    adapted policy (one buffer each): the model's reward and state-change RMSE on those transitions, per
    model in ``thetas`` (e.g. before and after test-time fine-tuning), their mean real reward, and the
    critic's Q(s₀, π(s₀)) (min of the twin critics) against the realised discounted return."""
    b = concat([e.batch() for e in episodes]).tensors(ctx.device)
    c = ctx.expand(len(b.obs), -1)
    out = {"diag/eval_reward_mean": float(b.reward.mean())}
    for name, theta in thetas.items():
        mean, _ = functional_call(model, theta, (b.obs, b.action, c))
        out[f"diag/model_reward_rmse_{name}"] = float((mean[:, -1] - b.reward).pow(2).mean().sqrt())
        if cfg.predict_dynamics:
            out[f"diag/model_state_rmse_{name}"] = float((mean[:, :-1] - (b.next_obs - b.obs)).pow(2).mean().sqrt())
    s0 = torch.cat([torch.as_tensor(np.stack([e.data["obs"][0] for e in episodes]), device=ctx.device),
                    ctx.expand(len(episodes), -1)], -1)
    a0, _ = agent["actor"](s0[None], None, True)
    out["diag/q_s0"] = float(agent["critic"](s0[None], a0).min(1).values.mean())
    out["diag/discounted_return"] = float(np.mean([
        (e.arrays()["reward"].astype(np.float64) * cfg.gamma ** np.arange(e.size)).sum() for e in episodes]))
    return out


def adapt_and_evaluate(state: dict, make_env: Callable[[], gym.Env], horizon: int, *, adapt_trajectories: int,
                       eval_episodes: int, seed: int, relabel: bool = True, relabel_steps: Sequence[int] = (0,),
                       device: str = "cpu", **test_time) -> list[dict]:
    """Algorithm 2 on one test task; rows as in the shared interface ("adapted" rows at every entry of
    ``relabel_steps``, counted in SAC updates after adaptation; the default (0,) is context adaptation
    only, the in-distribution protocol of Fig. 2; the workflow passes Fig. 4's schedule).
    ``relabel=False`` is the ablation of Sec. 5.2.2: SAC on the test task's adaptation data only.
    ``test_time`` overrides Config fields named in :data:`TEST_TIME` (e.g. ``test_model_steps``, the
    model fine-tuning steps on the test task before relabelling), without retraining. ``state`` is
    not modified.

    The context is adapted ``test_context_steps`` times (the first ``inner_steps`` at ``inner_lr``,
    the rest at a tenth of it). Then, as the authors' code does it, each loop step makes
    ``sac_repeats`` SAC updates on batches of the test task's own data (``real_ratio`` of each batch)
    and relabelled meta-training data (the rest), relabelled into a FIFO model buffer every
    ``relabel_every`` loop steps (``relabel_schedule`` ``buffer``), or afresh for every update
    (``per_update``). Without relabelling every batch is the test task's own data.

    Where the policy is trained after adaptation (a relabelling step beyond 0), each adapted row also
    carries :func:`diagnostics` (model errors of the meta-trained and the fine-tuned model,
    ``diag/*``) and ``diag/relabelled_reward_mean``, the mean relabelled reward of the SAC batches since
    the previous evaluation (NaN without relabelling). They draw no random numbers: the returns are
    the same with or without them."""
    unknown = sorted(set(test_time) - set(TEST_TIME))
    if unknown:
        raise TypeError(f"mier.adapt_and_evaluate: {unknown} are not test-time options; these are: {TEST_TIME}")
    cfg = Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in state["config"].items()})
    cfg = check(dataclasses.replace(cfg, **test_time))
    model, params, gen, agent = _build(cfg, state["obs_dim"], state["act_dim"], np.float32(state["act_low"]),
                                       np.float32(state["act_high"]), seed, device)
    with torch.no_grad():
        for k, v in state["model"].items():
            params[k].copy_(v)
    _load_agent(agent, {k: state[k] for k in ("actor", "critic", "critic_target", "log_alpha")})
    rng = np.random.default_rng(seed)
    theta = {k: v.detach() for k, v in params.items() if k != "context"}
    prior = params["context"].detach()
    envs = [make_env() for _ in range(max(adapt_trajectories, eval_episodes))]
    eval_seeds = [seed * 1000 + 500 + i for i in range(eval_episodes)]

    def evaluate(ctx: torch.Tensor, models: dict[str, Params] | None = None) -> dict[str, float]:
        episodes = [ReplayBuffer(0, state["obs_dim"], state["act_dim"], grow=True) for _ in eval_seeds]
        returns = rollout.episodes(envs[:eval_episodes], policy(agent, gen, ctx, True), eval_seeds, horizon,
                                   into=episodes)
        return {"return": float(returns.mean()),
                **(diagnostics(model, models, ctx, agent, episodes, cfg) if models else {})}

    own = ReplayBuffer(0, state["obs_dim"], state["act_dim"], grow=True)  # the adaptation trajectories
    rollout.episodes(envs[:adapt_trajectories], policy(agent, gen, prior, False),
                     [seed * 1000 + i for i in range(adapt_trajectories)], horizon, into=own)
    own_batch = own.batch().tensors(device)
    rows = [{"stage": "prior", "steps": 0, **evaluate(prior)}]
    first = min(cfg.inner_steps, cfg.test_context_steps)
    ctx = adapt_context(model, theta, prior, own_batch, cfg, steps=first).detach()
    ctx = adapt_context(model, theta, ctx, own_batch, cfg, steps=cfg.test_context_steps - first,
                        lr=cfg.inner_lr / 10).detach()
    schedule = sorted(set(relabel_steps))
    models = {"meta": theta} if schedule[-1] > 0 else None  # diagnostics where the policy trains on
    if relabel and schedule[-1] > 0:  # only relabelling reads the fine-tuned model
        theta = finetune_model(model, theta, ctx, own_batch, cfg, cfg.test_model_steps, rng)
        models["finetuned"] = theta
    relabelled_rewards: list[torch.Tensor] = []
    n_own = max(1, round(cfg.real_ratio * cfg.test_batch)) if relabel else cfg.test_batch
    training = [ReplayBuffer.from_arrays(b) for b in state["buffers"]]  # no copy
    model_buffer = ModelBuffer(cfg.model_buffer_size, cfg.relabel_states)
    for update in range(schedule[-1] + 1):
        if update in schedule:
            row = {"stage": "adapted", "steps": update, **evaluate(ctx, models)}
            if models:
                row["diag/relabelled_reward_mean"] = (float(torch.cat(relabelled_rewards).mean())
                                                      if relabelled_rewards else float("nan"))
                relabelled_rewards.clear()
            rows.append(row)
        if update == schedule[-1]:
            break
        idx = rng.integers(0, own.size, n_own)
        b = Batch(*(x[idx] for x in own_batch))
        if relabel and cfg.relabel_schedule == "per_update":
            relabelled = relabel_batch(model, theta, ctx, agent, gen,
                                       sample_training_data(training, cfg.test_batch - n_own, rng, device), cfg)
        elif relabel:  # the loop step's first update relabels, every relabel_every loop steps
            if update % (cfg.sac_repeats * cfg.relabel_every) == 0:
                model_buffer.add(relabel_batch(model, theta, ctx, agent, gen, sample_training_data(
                    training, cfg.relabel_states, rng, device, tasks=cfg.relabel_tasks), cfg))
            relabelled = model_buffer.sample(cfg.test_batch - n_own, rng)
        if relabel:
            b = concat([b, relabelled])
            relabelled_rewards.append(relabelled.reward)
        sac_update(agent, policy_batch(b, ctx.expand(b.obs.shape[0], -1)), gen, cfg, f"test-time step {update}")
    return rows
