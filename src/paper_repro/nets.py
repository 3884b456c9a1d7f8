"""Batched (per-task) networks: K independent MLPs evaluated as one computation.

A :class:`BatchedLinear` holds weights of shape ``[K, in, out]`` and maps
``[K, N, in] -> [K, N, out]`` with one ``torch.baddbmm``. Task ``k`` only ever
touches slice ``k``, so K stacked networks are K independent networks. Each
slice is initialised from its own ``torch.Generator`` (nn.Linear's default
uniform(+-1/sqrt(in)) init), so task k's weights do not depend on K.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class BatchedLinear(nn.Module):
    """K independent linear layers: ``y[k] = x[k] @ W[k] + b[k]``."""

    def __init__(self, gens: Sequence[torch.Generator], n_in: int, n_out: int, copies: int = 1):
        super().__init__()
        bound = 1.0 / math.sqrt(n_in)
        ws, bs = [], []
        for g in gens:  # ``copies`` networks per task (twin critics), drawn from that task's generator
            for _ in range(copies):
                ws.append((torch.rand(n_in, n_out, generator=g) * 2 - 1) * bound)
                bs.append((torch.rand(1, n_out, generator=g) * 2 - 1) * bound)
        self.weight = nn.Parameter(torch.stack(ws))
        self.bias = nn.Parameter(torch.stack(bs))

    def forward(self, x: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
        """``rows`` picks some of the stacked layers (``x`` then has one batch row per picked layer)."""
        return torch.baddbmm(self.bias[rows], x, self.weight[rows])


class BatchedMLP(nn.Module):
    """K (times ``copies``) independent ReLU MLPs; input ``[K*copies, N, in]``."""

    def __init__(self, gens, sizes: Sequence[int], copies: int = 1):
        super().__init__()
        self.layers = nn.ModuleList(BatchedLinear(gens, a, b, copies) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, rows)
            if i < last:
                x = torch.relu_(x)  # in place on a fresh layer output: one [K, N, hidden] allocation less
        return x


class TwinQ(nn.Module):
    """Two independent Q networks per task: ``(obs [K,N,O], act [K,N,A]) -> [K, 2, N]``."""

    def __init__(self, gens, obs_dim: int, act_dim: int, hidden: Sequence[int]):
        super().__init__()
        self.net = BatchedMLP(gens, [obs_dim + act_dim, *hidden, 1], copies=2)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, act], -1)
        k, n, d = x.shape
        x = x.unsqueeze(1).expand(k, 2, n, d).reshape(2 * k, n, d)  # row 2k+j = task k, critic j
        return self.net(x).float().reshape(k, 2, n)

    def q1(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """The first critic alone, ``[K, N]`` (TD3's actor loss): half the work of :meth:`forward`."""
        return self.net(torch.cat([obs, act], -1), rows=slice(0, None, 2)).float().squeeze(-1)


def task_noise(gens: Sequence[torch.Generator], shape: Sequence[int], device: torch.device | None = None) -> torch.Tensor:
    """Standard normal noise ``[K, *shape]``; slice k drawn from task k's own generator.

    Written straight into one preallocated tensor (no per-task tensors, no stack);
    task k's values are what ``torch.randn(*shape, generator=gens[k])`` gives. The
    generators are CPU ones on every device, so a task's noise, like its initial
    weights, is the same on CPU and GPU; the tensor is then copied to ``device``.
    """
    out = torch.empty(len(gens), *shape)
    for k, g in enumerate(gens):
        out[k].normal_(generator=g)
    return out if device is None else out.to(device, non_blocking=True)


def gaussian_log_prob(eps: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(mean + std·eps; mean, diag std²), summed over the last dim, from the standardised noise
    ``eps`` (for an action ``a``: ``eps = (a - mean) / std``)."""
    return (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def gaussian_kl(m0: torch.Tensor, s0: torch.Tensor, m1: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
    """KL(N(m0, e^{2 s0}) ‖ N(m1, e^{2 s1})) of diagonal Gaussians (log standard deviations s), summed over the last dim."""
    return (s1 - s0 + (torch.exp(2 * s0) + (m0 - m1).pow(2)) / (2 * torch.exp(2 * s1)) - 0.5).sum(-1)


def tanh_gaussian_log_prob(eps: torch.Tensor, log_std: torch.Tensor, y: torch.Tensor, scale=1.0) -> torch.Tensor:
    """Log-probability of the action ``scale·y + bias``, ``y = tanh(mean + std·eps)``: the Gaussian's
    minus the log-Jacobian of the squashing, with SAC's (and rlkit's) 1e-6 inside the log."""
    return gaussian_log_prob(eps, log_std) - torch.log(scale * (1 - y.pow(2)) + 1e-6).sum(-1)


class TanhGaussianActor(nn.Module):
    """SAC's squashed Gaussian policy, K tasks at once."""

    def __init__(self, gens, obs_dim, act_dim, hidden, act_scale, act_bias):
        super().__init__()
        self.net = BatchedMLP(gens, [obs_dim, *hidden, 2 * act_dim])
        self.register_buffer("act_scale", torch.as_tensor(act_scale, dtype=torch.float32))
        self.register_buffer("act_bias", torch.as_tensor(act_bias, dtype=torch.float32))

    def forward(self, obs, gens=None, deterministic: bool = False):
        """Action ``[K,N,A]`` and its log-probability ``[K,N]`` (None when deterministic)."""
        mean, log_std = self.net(obs).float().chunk(2, -1)
        if deterministic:
            return torch.tanh(mean) * self.act_scale + self.act_bias, None
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        std = log_std.exp()
        eps = task_noise(gens, mean.shape[1:], mean.device)
        y = torch.tanh(mean + std * eps)
        return y * self.act_scale + self.act_bias, tanh_gaussian_log_prob(eps, log_std, y, self.act_scale)


class DeterministicActor(nn.Module):
    """TD3's deterministic tanh policy, K tasks at once."""

    def __init__(self, gens, obs_dim, act_dim, hidden, act_scale, act_bias):
        super().__init__()
        self.net = BatchedMLP(gens, [obs_dim, *hidden, act_dim])
        self.register_buffer("act_scale", torch.as_tensor(act_scale, dtype=torch.float32))
        self.register_buffer("act_bias", torch.as_tensor(act_bias, dtype=torch.float32))

    def forward(self, obs):
        return torch.tanh(self.net(obs).float()) * self.act_scale + self.act_bias


def task_slice(module: nn.Module, k: int) -> dict[str, torch.Tensor]:
    """State dict of task ``k``'s own network: the [k] slice of every parameter, buffers whole."""
    params = dict(module.named_parameters())
    return {name: (t[k] if name in params else t).detach().cpu().clone() for name, t in module.state_dict().items()}


@torch.no_grad()
def polyak(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau source."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


# --- functional layers: parameters in dicts (MACAW's adaptable networks) --------------------
#
# A layer's parameters live in a dict under "<name>.<tensor>", so that an inner loop can adapt every
# tensor functionally (torch.func) and learn one step size per tensor. Three kinds, as MACAW's code
# (github.com/eric-mitchell/macaw, src/nn.py) builds them; weights are laid out (d_in, d_out):
#   linear: y = x W + b (nn.Linear's default init);
#   bias:   y = x W + b + b0 Wb, a bias transform (BiasLinear: b0 ~ N(0, (1/d_out)²), Wb xavier-normal);
#   wt:     a weight transform (WLinear): θ = A z + a, W = θ[:d_in·d_out] as (d_in, d_out), b = the rest;
#           z ~ N(0, (1/d_out)²) of size ``latent``, A and a nn.Linear(latent, d_in·d_out + d_out)'s init;
#   hyper:  a weight-only weight transform (MACAW App. C.1's Omniglot MLP, whose parameter count counts
#           only the A's): W = A z as (d_in, d_out), A (d_in·d_out, latent) as in wt, the bias b a plain
#           parameter; [ours], as App. C.1 gives no init: z ~ N(0, 1/d_in), so that W starts at
#           nn.Linear's scale (Var 1/(3 d_in)), b as nn.Linear's. (wt's z ~ N(0, (1/d_out)²) gives a
#           784-128-128-128-128-20 MLP outputs ~1e-4 of its input, which then learns nothing in 150 steps.)

LAYER_KINDS = ("linear", "bias", "wt", "hyper")


def _uniform(gen: torch.Generator, shape, bound: float) -> torch.Tensor:
    return (torch.rand(*shape, generator=gen) * 2 - 1) * bound


def init_layer(kind: str, name: str, d_in: int, d_out: int, gen: torch.Generator, latent: int = 100
               ) -> dict[str, torch.Tensor]:
    """One layer's parameters, drawn from ``gen`` on the CPU, keyed ``<name>.<tensor>``."""
    if kind == "wt":
        n = d_in * d_out + d_out
        return {f"{name}.z": torch.randn(latent, generator=gen) / d_out,
                f"{name}.A": _uniform(gen, (n, latent), 1 / math.sqrt(latent)),
                f"{name}.a": _uniform(gen, (n,), 1 / math.sqrt(latent))}
    if kind == "hyper":
        return {f"{name}.z": torch.randn(latent, generator=gen) / math.sqrt(d_in),
                f"{name}.A": _uniform(gen, (d_in * d_out, latent), 1 / math.sqrt(latent)),
                f"{name}.b": _uniform(gen, (d_out,), 1 / math.sqrt(d_in))}
    if kind not in ("linear", "bias"):
        raise ValueError(f"layer kind {kind!r}; expected one of {LAYER_KINDS}")
    out = {f"{name}.W": _uniform(gen, (d_in, d_out), 1 / math.sqrt(d_in)),
           f"{name}.b": _uniform(gen, (d_out,), 1 / math.sqrt(d_in))}
    if kind == "bias":
        out[f"{name}.b0"] = torch.randn(d_out, generator=gen) / d_out
        out[f"{name}.Wb"] = torch.randn(d_out, d_out, generator=gen) * math.sqrt(2 / (2 * d_out))  # xavier_normal
    return out


def wt_theta(params: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """A weight-transform layer's generated weights and bias, θ = A z + a."""
    return params[f"{name}.A"] @ params[f"{name}.z"] + params[f"{name}.a"]


def layer_weights(params: dict[str, torch.Tensor], kind: str, name: str, d_in: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's effective (W [d_in, d_out], b [d_out]). Kind ``theta``: a weight-transform layer
    given by its generated θ alone (``<name>.theta``)."""
    if kind in ("wt", "theta"):
        theta = params[f"{name}.theta"] if kind == "theta" else wt_theta(params, name)
        split = theta.shape[-1] // (d_in + 1) * d_in
        return theta[:split].view(d_in, -1), theta[split:]
    if kind == "hyper":
        return (params[f"{name}.A"] @ params[f"{name}.z"]).view(d_in, -1), params[f"{name}.b"]
    b = params[f"{name}.b"]
    if kind == "bias":
        b = b + params[f"{name}.b0"] @ params[f"{name}.Wb"]
    return params[f"{name}.W"], b


def apply_layer(params: dict[str, torch.Tensor], kind: str, name: str, x: torch.Tensor) -> torch.Tensor:
    w, b = layer_weights(params, kind, name, x.shape[-1])
    return x @ w + b


def layer_param_count(kind: str, d_in: int, d_out: int, latent: int = 100) -> int:
    n = d_in * d_out + d_out
    return {"linear": n, "bias": n + d_out + d_out * d_out, "wt": latent + n * (latent + 1),
            "hyper": latent + d_in * d_out * latent + d_out}[kind]


def equal_param_width(sizes, kind: str, like_kind: str, like_width: int, latent: int = 100) -> int:
    """The smallest hidden width at which a network of ``kind`` layers has at least as many parameters
    as the same network of ``like_kind`` layers at ``like_width`` (MACAW's "no weight transform, equal
    parameters" ablation). ``sizes(width)`` lists the network's layers as (d_in, d_out) pairs."""
    target = sum(layer_param_count(like_kind, i, o, latent) for i, o in sizes(like_width))
    width = like_width
    while sum(layer_param_count(kind, i, o, latent) for i, o in sizes(width)) < target:
        width += 1
    return width


# --- parameter trees (nested dicts of tensors, as the functional algorithms keep them) ---------------


def tree_map(fn, tree):
    """``fn`` applied to every tensor of a nested dict of tensors, the same nesting returned."""
    if torch.is_tensor(tree):
        return fn(tree)
    return {k: tree_map(fn, v) for k, v in tree.items()}


def leaves(tree, trainable: bool = False) -> list[torch.Tensor]:
    """Every tensor of a nested dict, in sorted-key order (the same order for a tree and its saved copy);
    ``trainable``: only those that require gradients."""
    if torch.is_tensor(tree):
        return [tree] if tree.requires_grad or not trainable else []
    return [t for key in sorted(tree) for t in leaves(tree[key], trainable)]
