"""MAML on N-way K-shot classification with and without weight transform: MACAW's Fig 6 (App. C.1).

MACAW's appendix asks whether weight-transform layers, which make one inner gradient step more
expressive, also help plain MAML: 20-way 1-shot Omniglot with three MLPs of 4 hidden layers,
- weight transform (``weight_transform``): every layer's weights generated as W = A z (nets' ``hyper``
  layer), 128 hidden units, latent 32; the paper's 4,866,048 parameters are exactly the A's;
- no weight transform, equal width: plain linear layers of 128 units (152,596 parameters);
- no weight transform, equal parameters (``equal_params``): plain linear layers of 1150 units (4,896,720).

The paper says nothing else about the run; the rest is torchmeta's MAML example, which the paper cites for
the data ([ours], each field says so): one inner SGD step of 0.4 on every parameter, cross-entropy,
meta-batch 16, 15 query drawings per class, Adam 1e-3, second order. The inner loop is functional and
``vmap``ped over the tasks of the meta-batch (:func:`paper_repro.meta.inner_loop_tasks`).

Meta-training (MAML, Finn et al. 2017, Alg. 2), per step:
    sample a meta-batch of tasks from the training classes
    for every task (vmapped): θ'_i = θ − α ∇_θ L_support_i(θ)
    θ ← Adam(θ, ∇_θ mean_i L_query_i(θ'_i))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import grad, vmap
from torch.nn import functional as F

from paper_repro import io, meta, nets, omniglot

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Config:
    # --- tasks (App. C.1) ---
    ways: int = 20
    """Classes per task (App. C.1: 20-way)."""
    shots: int = 1
    """Support drawings per class (App. C.1: 1-shot)."""
    query: int = 15
    """Query drawings per class ([ours]: torchmeta's MAML example, num_shots_test 15)."""
    # --- networks (App. C.1) ---
    width: int = 128
    """Hidden units of the weight-transform and equal-width MLPs (App. C.1)."""
    depth: int = 4
    """Hidden layers (App. C.1)."""
    weight_transform: bool = True
    """Weight-transform layers (App. C.1); False: plain linear layers."""
    latent: int = 32
    """Size of each layer's z (App. C.1: "latent 32")."""
    equal_params: bool = False
    """Without weight transform, widen the MLP to about the weight-transform MLP's parameter count."""
    wide_width: int | None = 1150
    """The equal-parameter width: App. C.1's 1150 units (4,896,720 parameters). None: the smallest width
    with at least the weight-transform MLP's count, computed (1147 at the paper's sizes)."""
    # --- MAML ([ours]: torchmeta's examples/maml/train.py) ---
    inner_lr: float = 0.4
    """Inner SGD step size (torchmeta's example: step_size 0.4)."""
    inner_steps: int = 1
    """Inner SGD steps (torchmeta's example: 1)."""
    theta_space: bool = True
    """With weight transform and one inner step, compute the step on the generated weights (exact, as
    ``macaw.Config.theta_space``): no per-task copy of each A. False: the generic path."""
    meta_batch: int = 16
    """Tasks per meta-step (torchmeta's example: batch_size 16)."""
    outer_lr: float = 1e-3
    """Adam step size of the meta-update (torchmeta's example)."""
    # --- budget ---
    train_steps: int = 10_000
    """Meta-steps (not in the paper; MACAW spec 4.1: 10k)."""
    eval_tasks: int = 100
    """Validation tasks per evaluation, the same tasks every time (MACAW spec 3.4)."""


# --- networks ----------------------------------------------------------------------------


def kind(cfg: Config) -> str:
    return "hyper" if cfg.weight_transform else "linear"


def layers(cfg: Config, width: int | None = None) -> list[tuple[str, int, int]]:
    """(name, d_in, d_out) of every layer: 784 → width × depth → ways."""
    width = hidden_width(cfg) if width is None else width
    sizes = [omniglot.SIDE**2, *[width] * cfg.depth, cfg.ways]
    return [(f"l{i}", a, b) for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]


def hidden_width(cfg: Config) -> int:
    """``cfg.width``, or without weight transform at equal parameters ``wide_width`` (or the computed width)."""
    if cfg.weight_transform or not cfg.equal_params:
        return cfg.width
    if cfg.wide_width is not None:
        return cfg.wide_width
    return nets.equal_param_width(lambda w: [(i, o) for _, i, o in layers(cfg, w)], "linear", "hyper",
                                  cfg.width, cfg.latent)


def init_params(cfg: Config, seed: int, device: str | torch.device = "cpu") -> Params:
    """Every layer's parameters (the same draws on every device), requiring gradients."""
    gen = torch.Generator().manual_seed(seed)
    params: Params = {}
    for name, d_in, d_out in layers(cfg):
        params.update(nets.init_layer(kind(cfg), name, d_in, d_out, gen, cfg.latent))
    return {k: v.to(device).requires_grad_() for k, v in params.items()}


def logits(params: Params, x: torch.Tensor, cfg: Config, layer_kind: str | None = None) -> torch.Tensor:
    """The MLP's output; ``layer_kind="linear"``: from every layer's weights and bias alone (``l<i>.W``, ``l<i>.b``)."""
    for i in range(cfg.depth + 1):
        x = nets.apply_layer(params, layer_kind or kind(cfg), f"l{i}", x if i == 0 else F.relu(x))
    return x


def weights(params: Params, cfg: Config) -> Params:
    """Every layer's weights and bias (``l<i>.W`` [d_in, d_out], ``l<i>.b``), generated where they are."""
    out: Params = {}
    for name, d_in, _ in layers(cfg):
        out[f"{name}.W"], out[f"{name}.b"] = nets.layer_weights(params, kind(cfg), name, d_in)
    return out


# --- losses ------------------------------------------------------------------------------


def support_loss(_slow: Params, fast: Params, task: Mapping[str, torch.Tensor], cfg: Config) -> torch.Tensor:
    """The inner loss: cross-entropy on the task's support set."""
    return F.cross_entropy(logits(fast, task["support_x"], cfg), task["support_y"])


def adapt_theta(params: Params, task: Mapping[str, torch.Tensor], cfg: Config) -> Params:
    """One inner SGD step of size α on every A, z and b of the weight-transform MLP, as the adapted weights:
    with g = ∂L/∂vec(W), A' = A − α g zᵀ and z' = z − α Aᵀg, so
        W' = A' z' = W − α A(Aᵀg) − α (zᵀz) g + α² (zᵀAᵀg) g,   b' = b − α ∂L/∂b,
    exact, with no per-task copy of A (the same trick as MACAW's θ-space step, spec §6.3)."""
    w, a = weights(params, cfg), cfg.inner_lr
    g = grad(lambda p: F.cross_entropy(logits(p, task["support_x"], cfg, "linear"), task["support_y"]))(w)
    adapted: Params = {}
    for name, d_in, d_out in layers(cfg):
        A, z, gw = params[f"{name}.A"], params[f"{name}.z"], g[f"{name}.W"].reshape(-1)
        gz = A.T @ gw
        new = w[f"{name}.W"].reshape(-1) - a * (A @ gz) - a * (z @ z) * gw + a**2 * (z @ gz) * gw
        adapted[f"{name}.W"], adapted[f"{name}.b"] = new.view(d_in, d_out), w[f"{name}.b"] - a * g[f"{name}.b"]
    return adapted


def task_metrics(params: Params, task: Mapping[str, torch.Tensor], cfg: Config) -> dict[str, torch.Tensor]:
    """One task: adapt on its support set, then the query loss and accuracy before and after."""
    if cfg.weight_transform and cfg.theta_space and cfg.inner_steps == 1:
        out = logits(adapt_theta(params, task, cfg), task["query_x"], cfg, "linear")
    else:
        adapted = meta.inner_loop(lambda s, f, d: support_loss(s, f, d, cfg), {}, params, task, cfg.inner_steps,
                                  cfg.inner_lr)
        out = logits(adapted, task["query_x"], cfg)
    with torch.no_grad():
        prior = logits(params, task["query_x"], cfg).argmax(-1)
    return {"loss": F.cross_entropy(out, task["query_y"]),
            "accuracy": (out.argmax(-1) == task["query_y"]).float().mean(),
            "prior_accuracy": (prior == task["query_y"]).float().mean()}


def per_task_metrics(params: Params, tasks: Mapping[str, torch.Tensor], cfg: Config) -> dict[str, torch.Tensor]:
    """:func:`task_metrics` of every task at once (vmap over the leading task dimension): ``[T]`` each."""
    return vmap(lambda task: task_metrics(params, task, cfg))(dict(tasks))


def meta_metrics(params: Params, tasks: Mapping[str, torch.Tensor], cfg: Config) -> dict[str, torch.Tensor]:
    """:func:`per_task_metrics` averaged over the tasks (the meta-objective is ``loss``)."""
    return {k: v.mean() for k, v in per_task_metrics(params, tasks, cfg).items()}


def meta_metrics_loop(params: Params, tasks: Mapping[str, torch.Tensor], cfg: Config) -> dict[str, torch.Tensor]:
    """The same as :func:`meta_metrics` by a loop over tasks (the test's reference)."""
    rows = [task_metrics(params, {k: v[t] for k, v in tasks.items()}, cfg) for t in range(len(tasks["query_y"]))]
    return {k: torch.stack([r[k] for r in rows]).mean() for k in rows[0]}


# --- update and evaluation -------------------------------------------------------------------


def update(params: Params, opt: torch.optim.Optimizer, tasks: Mapping[str, torch.Tensor], cfg: Config,
           step: int) -> dict[str, float]:
    """One meta-step: the query loss after adaptation, averaged over tasks, differentiated through the
    inner step (second order), one Adam step."""
    m = meta_metrics(params, tasks, cfg)
    if not torch.isfinite(m["loss"]):
        raise FloatingPointError(f"MAML classifier: the query loss is {m['loss'].item()} at meta-step {step}")
    opt.zero_grad(set_to_none=True)
    m["loss"].backward()
    opt.step()
    return {k: float(v.detach()) for k, v in m.items()}


def evaluate(params: Params, tasks: Mapping[str, torch.Tensor], cfg: Config) -> dict[str, np.ndarray]:
    """Each task's query loss and accuracies after adaptation, ``meta_batch`` tasks at a time."""
    n, parts = len(tasks["query_y"]), []
    with torch.no_grad():  # the inner step's gradient is a function transform: computed all the same
        for i in range(0, n, cfg.meta_batch):
            parts.append(per_task_metrics(params, {k: v[i:i + cfg.meta_batch] for k, v in tasks.items()}, cfg))
    return {k: torch.cat([p[k] for p in parts]).cpu().numpy() for k in parts[0]}


# --- the loop ------------------------------------------------------------------------------


def train(images: np.ndarray, split: Mapping[str, np.ndarray], cfg: Config, *, seed: int,
          log: Callable[[dict], None] = lambda m: None, checkpoint: str | None = None, checkpoint_every: int = 0,
          on_eval: Callable[[dict, int], None] | None = None, eval_every: int = 0,
          device: str | torch.device = "cpu") -> dict:
    """Meta-train on tasks over ``split["train"]``'s characters of ``images`` (:func:`omniglot.load`);
    every ``eval_every`` steps and at the end, ``on_eval`` gets each of ``eval_tasks`` fixed validation
    tasks' metrics (:func:`evaluate`), over ``split["val"]``'s characters. Resumes from ``checkpoint``. Returns the final parameters (CPU)."""
    params = init_params(cfg, seed, device)
    opt = torch.optim.Adam(params.values(), lr=cfg.outer_lr)
    rng = np.random.default_rng([seed, 0])
    val_tasks = omniglot.sample_tasks(images, split["val"], cfg.ways, cfg.shots, cfg.query, cfg.eval_tasks,
                                      np.random.default_rng([seed, 1]), device)
    start = 0
    ck = io.load_checkpoint(checkpoint) if checkpoint else None
    if ck is not None:
        with torch.no_grad():
            for k, v in params.items():
                v.copy_(ck["params"][k])
        opt.load_state_dict(ck["opt"])
        rng.bit_generator.state, start = ck["rng"], ck["step"]

    def export() -> dict:
        return {"config": dataclasses.asdict(cfg), "params": io.to_cpu({k: v.detach() for k, v in params.items()})}

    for step in range(start, cfg.train_steps):
        if checkpoint and checkpoint_every and step > start and step % checkpoint_every == 0:
            io.save_checkpoint(checkpoint, {"params": {k: v.detach() for k, v in params.items()},
                                            "opt": opt.state_dict(), "rng": rng.bit_generator.state, "step": step})
        # evaluate
        if on_eval and eval_every and step % eval_every == 0:
            on_eval(evaluate(params, val_tasks, cfg), step)
        # update
        tasks = omniglot.sample_tasks(images, split["train"], cfg.ways, cfg.shots, cfg.query, cfg.meta_batch, rng,
                                      device)
        metrics = update(params, opt, tasks, cfg, step)
        log({"iteration": step, "train_steps": step + 1, **{f"train/{k}": v for k, v in metrics.items()}})
    if on_eval:
        on_eval(evaluate(params, val_tasks, cfg), cfg.train_steps)
    return export()
