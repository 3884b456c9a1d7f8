"""SLBO's parts as AdMRL runs them (AdMRL spec §2.1; the authors' ``slbo/``): networks as parameter dicts
stacked over K tasks, running normalisers, the dynamics model and its trainer, the Gaussian policy and value
function, virtual rollouts through the model, GAE, TRPO vmapped over tasks, and the Agent (K policies and
value functions) that ties them into one TRPO update. The algorithm that uses them: ``algos/admrl.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch.func import grad, jvp, vmap

from paper_repro import envs, nets
from paper_repro.meta import conjugate_gradient, flat, unflat

if TYPE_CHECKING:  # annotations only: the algorithm's file imports this one, never the other way at run time
    from paper_repro.algos.admrl import Config

Params = dict[str, torch.Tensor]


# --- networks as parameter dicts, stacked over K tasks ---------------------------------------------


def normc(gen: torch.Generator, n_in: int, n_out: int, std: float) -> torch.Tensor:
    """baselines' ``normc_initializer``: each output column of N(0, 1) draws scaled to norm ``std``."""
    w = torch.randn(n_in, n_out, generator=gen, dtype=torch.float64)
    return (w * std / w.square().sum(0, keepdim=True).sqrt()).float()


def init_mlp(gen: torch.Generator, sizes: Sequence[int], init: str, out_std: float = 1.0) -> Params:
    params = {}
    last = len(sizes) - 2
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        if init == "normc":
            params[f"{i}.w"] = normc(gen, a, b, out_std if i == last else 1.0)
        else:  # the model's TruncatedNormal(0, 1e-5): the initial model predicts s' = s + μ_diff
            params[f"{i}.w"] = torch.nn.init.trunc_normal_(torch.empty(a, b), 0.0, 1e-5, -2e-5, 2e-5, generator=gen)
        params[f"{i}.b"] = torch.zeros(b)
    return params


def mlp(params: Params, x: torch.Tensor, act: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """One network (weights ``[in, out]``, x ``[N, in]``) or K stacked ones (``[K, in, out]``, x ``[K, N, in]``)."""
    n = sum(k.endswith(".w") for k in params)
    for i in range(n):
        x = x @ params[f"{i}.w"] + params[f"{i}.b"].unsqueeze(-2)
        if i < n - 1:
            x = act(x)
    return x


def stack(trees: Sequence[Params]) -> Params:
    return {k: torch.stack([t[k] for t in trees]) for k in trees[0]}


def init_policy(gens: Sequence[torch.Generator], obs_dim: int, act_dim: int, cfg: Config) -> Params:
    def one(g):
        p = init_mlp(g, [obs_dim, *cfg.policy_hidden, act_dim], "normc", out_std=0.01)
        return {**p, "log_std": torch.zeros(act_dim)}
    return stack([one(g) for g in gens])


def init_value(gens: Sequence[torch.Generator], obs_dim: int, cfg: Config) -> Params:
    return stack([init_mlp(g, [obs_dim, *cfg.value_hidden, 1], "normc") for g in gens])


def init_model(gen: torch.Generator, obs_dim: int, act_dim: int, cfg: Config) -> Params:
    return init_mlp(gen, [obs_dim + act_dim, *cfg.model_hidden, obs_dim], "trunc")


# --- running normalisers (``slbo/utils/normalizer.py``) --------------------------------------------


class Normalizers(NamedTuple):
    """Running Gaussian normalisers of states and of state differences s' - s: mean, var, count
    (the code's action normaliser is updated but never read, so it is left out)."""

    s_mean: torch.Tensor
    s_var: torch.Tensor
    d_mean: torch.Tensor
    d_var: torch.Tensor
    n: torch.Tensor


def init_normalizers(obs_dim: int) -> Normalizers:
    z, o = torch.zeros(obs_dim), torch.ones(obs_dim)
    return Normalizers(z, o, z.clone(), o.clone(), torch.zeros(()))


def update_normalizers(nz: Normalizers, s: torch.Tensor, s2: torch.Tensor) -> Normalizers:
    """The exact merge of mean and variance over all data seen (``normalizer.py:32-43``)."""
    m = s.shape[0]
    total = nz.n + m

    def merge(mean, var, x):
        bm, bv = x.mean(0), x.var(0, unbiased=False)
        delta = bm - mean
        return mean + delta * m / total, (var * nz.n + bv * m + delta.square() * nz.n * m / total) / total

    s_mean, s_var = merge(nz.s_mean, nz.s_var, s)
    d_mean, d_var = merge(nz.d_mean, nz.d_var, s2 - s)
    return Normalizers(s_mean, s_var, d_mean, d_var, total)


def std(var: torch.Tensor) -> torch.Tensor:
    return var.sqrt().clamp_min(1e-8)


def normalize(nz: Normalizers, s: torch.Tensor) -> torch.Tensor:
    """States ``[N, d]`` with normalisers ``[d]``, or ``[K, N, d]`` with ``[K, d]``."""
    return (s - nz.s_mean.unsqueeze(-2)) / std(nz.s_var).unsqueeze(-2)


def expand(nz: Normalizers, K: int) -> Normalizers:
    return Normalizers(*(t.expand(K, *t.shape).clone() for t in nz))


def index(nz: Normalizers, k: int) -> Normalizers:
    return Normalizers(*(t[k] for t in nz))


# --- the dynamics model (``slbo/dynamics_model.py``, ``multi_step_loss.py``) ------------------------


def predict(phi: Params, nz: Normalizers, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """ŝ' = s + σ_diff ⊙ f([norm(s), clip(a)]) + μ_diff, clipped to ±100 normalised-state units."""
    out = mlp(phi, torch.cat([normalize(nz, s), a.clamp(-1, 1)], -1), torch.relu)
    s2 = s + out * std(nz.d_var).unsqueeze(-2) + nz.d_mean.unsqueeze(-2)
    mean, bound = nz.s_mean.unsqueeze(-2), 100 * std(nz.s_var).unsqueeze(-2)
    return torch.minimum(torch.maximum(s2, mean - bound), mean + bound)


def model_loss(phi: Params, nz: Normalizers, s: torch.Tensor, a: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """Single-step loss: the per-sample RMS over state dimensions of the diff-normalised error,
    averaged over the batch (``multi_step_loss.py:31-47``, multi_step = 1)."""
    err = (predict(phi, nz, s, a) - s2) / nz.d_var.sqrt().clamp_min(1e-6).unsqueeze(-2)
    return err.square().mean(-1).sqrt().mean(-1)


class ModelTrainer:
    """Adam on K stacked model copies, each with its own weight decay and gradient-norm clip, so
    that copy k trains exactly as it would alone."""

    def __init__(self, phi: Params, cfg: Config):
        self.phi = {k: v.detach().clone().requires_grad_(True) for k, v in phi.items()}
        self.cfg = cfg
        self.opt = torch.optim.Adam(self.phi.values(), lr=cfg.model_lr)

    def step(self, nz: Normalizers, s: torch.Tensor, a: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        """One step on batches ``[K, B, ...]``; returns each copy's loss ``[K]``."""
        losses = model_loss(self.phi, nz, s, a, s2)  # [K]: each copy's own loss
        decay = sum(v.square().flatten(1).sum(1) for v in self.phi.values()) * (self.cfg.model_weight_decay / 2)
        self.opt.zero_grad(set_to_none=True)
        (losses + decay).sum().backward()
        with torch.no_grad():
            norms = torch.sqrt(sum(v.grad.square().flatten(1).sum(1) for v in self.phi.values()))
            scale = self.cfg.model_grad_clip / norms.clamp_min(self.cfg.model_grad_clip)
            for v in self.phi.values():
                v.grad.mul_(scale.view(-1, *[1] * (v.dim() - 1)))
        self.opt.step()
        return losses.detach()


# --- the policy ---------------------------------------------------------------------------------


def policy_dist(pi: Params, nz: Normalizers, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = mlp({k: v for k, v in pi.items() if k != "log_std"}, normalize(nz, s), torch.tanh)
    return mean, pi["log_std"].unsqueeze(-2).expand_as(mean)


def log_prob(pi: Params, nz: Normalizers, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    mean, log_std = policy_dist(pi, nz, s)
    return nets.gaussian_log_prob((a - mean) / log_std.exp(), log_std)


def limited_entropy(mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """SLBO's ``LimitedEntNormal`` entropy, summed over action dimensions (``truncated_normal.py``)."""
    sigma = log_std.exp()
    lo, hi = (-2.0 - mean) / (sigma * math.sqrt(2)), (2.0 - mean) / (sigma * math.sqrt(2))
    h = 0.5 * (log_std + 0.5 * math.log(2 * math.pi)) * (torch.erf(hi) - torch.erf(lo)) \
        + 0.5 * (torch.exp(-hi * hi) * hi - torch.exp(-lo * lo) * lo)
    return h.sum(-1)


def value(vf: Params, nz: Normalizers, s: torch.Tensor) -> torch.Tensor:
    return mlp(vf, normalize(nz, s), torch.tanh).squeeze(-1)


# --- rollouts -------------------------------------------------------------------------------------


class Batch(NamedTuple):
    """Transitions of K tasks laid out ``[K, E, T, ...]``: E env rows of T steps, an episode that
    terminates mid-row followed by a fresh one (the authors' runner)."""

    obs: torch.Tensor
    act: torch.Tensor
    rew: torch.Tensor
    next_obs: torch.Tensor
    term: torch.Tensor


def virtual_rollout(family: str, pi: Params, nz: Normalizers, phi: Params, psi: torch.Tensor, starts: torch.Tensor,
                    gens: Sequence[torch.Generator], n_envs: int, horizon: int, nz_model: Normalizers | None = None) -> Batch:
    """E virtual episodes per task, stepped through the model under the family's model reward; a
    terminated episode restarts from a real reset state (``virtual_env.py:45-54``). ``starts``:
    ``[K, S, O]`` reset observations of the real env. The policy reads ``nz``, the model ``nz_model``
    (default the same; the task gradient rolls θ̂ with its own frozen copy through the later model)."""
    nz_model = nz if nz_model is None else nz_model
    fam = envs.get_family(family)
    dev = starts.device

    def draw():
        idx = torch.stack([torch.randint(starts.shape[1], (n_envs,), generator=g) for g in gens]).to(dev)
        return torch.gather(starts, 1, idx[..., None].expand(-1, -1, starts.shape[2]))

    s = draw()
    out = []
    with torch.no_grad():
        for _ in range(horizon):
            mean, log_std = policy_dist(pi, nz, s)  # K stacked networks: batched matmuls, no vmap per step
            eps = torch.stack([torch.randn(n_envs, mean.shape[-1], generator=g) for g in gens]).to(dev)
            a = mean + log_std.exp() * eps
            s2 = predict(phi, nz_model, s, a)
            r = fam.model_reward(s, a, s2, psi[:, None, :].to(s2))
            term = fam.model_done(s2)
            out.append((s, a, r, s2, term))
            s = torch.where(term[..., None], draw(), s2)
    return Batch(*(torch.stack(x, 2) for x in zip(*out)))


def gae(rew: torch.Tensor, term: torch.Tensor, v: torch.Tensor, v_next: torch.Tensor, gamma: float,
        lam: float, authors_td: bool = False) -> torch.Tensor:
    """GAE along the last axis. Bootstraps every step with V of its own next state, masked only where
    the episode terminated (the code used the next row's state, the reset state after a timeout, P18);
    an advantage never crosses an episode's end or a row's end. ``authors_td``: V(s_{t+1}) is also
    zeroed where step t+1 terminates, as the task gradient's ``td`` in the code (``runner.py:101-103``)."""
    if authors_td:
        v_next = torch.cat([v_next[..., :-1] * (~term[..., 1:]), v_next[..., -1:]], -1)
    delta = rew + gamma * (~term) * v_next - v
    adv, out = torch.zeros_like(delta[..., 0]), []
    for t in reversed(range(rew.shape[-1])):
        end = term[..., t] | (t == rew.shape[-1] - 1)
        adv = delta[..., t] + gamma * lam * (~end) * adv
        out.append(adv)
    return torch.stack(out[::-1], -1)


# --- TRPO (``slbo/algos/TRPO.py``), one task; vmapped over K -----------------------------------------


def trpo_step(pi: Params, nz: Normalizers, s: torch.Tensor, a: torch.Tensor, adv: torch.Tensor,
              cfg: Config, shrink: torch.Tensor) -> tuple[Params, torch.Tensor]:
    """One natural-gradient step on ``mean(ratio·Â) + ent_coef·mean(H)``, with the line search's
    step sizes ``shrink`` (halvings) all evaluated at once and the first acceptable one kept. Returns
    the new parameters and the accepted index (-1: none, the old parameters kept)."""
    theta0 = flat(pi)
    m0, ls0 = (x.detach() for x in policy_dist(pi, nz, s))
    lp0 = log_prob(pi, nz, s, a).detach()

    def surrogate(theta):
        p = unflat(theta, pi)
        mean, log_std = policy_dist(p, nz, s)
        ratio = (log_prob(p, nz, s, a) - lp0).exp()
        return (ratio * adv).mean() + cfg.ent_coef * limited_entropy(mean, log_std).mean()

    def kl(theta):
        mean, log_std = policy_dist(unflat(theta, pi), nz, s)
        return nets.gaussian_kl(m0, ls0, mean, log_std).mean()

    def fisher(v):
        return jvp(grad(kl), (theta0,), (v,))[1] + cfg.cg_damping * v

    g = grad(surrogate)(theta0)
    direction, _ = conjugate_gradient(fisher, g, cfg.cg_iters)
    step = torch.sqrt(2 * cfg.max_kl / (direction @ fisher(direction))) * direction
    candidates = theta0 + shrink.to(theta0)[:, None] * step
    loss, kls = vmap(surrogate)(candidates), vmap(kl)(candidates)
    ok = torch.isfinite(loss) & torch.isfinite(kls) & (kls <= 1.5 * cfg.max_kl) & (loss - surrogate(theta0) >= 0)
    first = torch.argmax(ok.int())
    accepted = ok.any()
    theta = torch.where(accepted, candidates[first], theta0)
    return unflat(theta, pi), torch.where(accepted, first, -1)


def trpo(pi: Params, nz: Normalizers, s: torch.Tensor, a: torch.Tensor, adv: torch.Tensor,
         cfg: Config) -> tuple[Params, torch.Tensor]:
    """``trpo_step`` of K stacked policies, vmapped. The full step first: where every task accepts it
    (nearly always) the other halvings cost nothing; otherwise the whole search, whose first acceptable
    step is the full one again for the tasks that accepted it."""
    step = vmap(trpo_step, in_dims=(0, 0, 0, 0, 0, None, None))
    halvings = 0.5 ** torch.arange(cfg.line_search_steps, dtype=torch.float64)
    new, accepted = step(pi, nz, s, a, adv, cfg, halvings[:1])
    if bool((accepted < 0).any()):
        new, accepted = step(pi, nz, s, a, adv, cfg, halvings)
    return new, accepted


class Agent:
    """K policies and value functions (stacked), the value functions' Adam, and the tasks' generators."""

    def __init__(self, gens: Sequence[torch.Generator], obs_dim: int, act_dim: int, cfg: Config, device):
        self.gens, self.cfg = list(gens), cfg
        self.pi = {k: v.to(device) for k, v in init_policy(gens, obs_dim, act_dim, cfg).items()}
        self.vf = {k: v.to(device).requires_grad_(True) for k, v in init_value(gens, obs_dim, cfg).items()}
        self.vf_opt = torch.optim.Adam(self.vf.values(), lr=cfg.vf_lr)


    def update(self, family: str, nz: Normalizers, phi: Params, psi: torch.Tensor, starts: torch.Tensor) -> dict:
        """One TRPO update of every task's policy on a fresh virtual batch, then its value fit."""
        cfg = self.cfg
        b = virtual_rollout(family, self.pi, nz, phi, psi, starts, self.gens, cfg.virtual_envs, cfg.horizon)
        K, E, T = b.rew.shape
        with torch.no_grad():
            v = value(self.vf, nz, b.obs.flatten(1, 2)).view(K, E, T)
            v_next = value(self.vf, nz, b.next_obs.flatten(1, 2)).view(K, E, T)
            adv_raw = gae(b.rew, b.term, v, v_next, cfg.gamma, cfg.lam)
        returns = (adv_raw + v).reshape(K, E * T)
        adv = adv_raw.reshape(K, -1)
        adv = (adv - adv.mean(1, keepdim=True)) / adv.std(1, keepdim=True).clamp_min(1e-8)
        obs, act = b.obs.reshape(K, E * T, -1), b.act.reshape(K, E * T, -1)
        pi = {k: v.detach() for k, v in self.pi.items()}
        self.pi, accepted = trpo(pi, nz, obs, act, adv, cfg)
        vf_loss = self.fit_value(nz, obs, returns)
        return {"virtual_return": (b.rew.sum((1, 2)) / max(1, E)).tolist(), "vf_loss": vf_loss.tolist(),
                "line_search": accepted.tolist()}

    def fit_value(self, nz: Normalizers, obs: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
        """``vf_epochs`` epochs of minibatches of 64 on each task's own shuffle, the last partial batch dropped."""
        K, N = returns.shape
        for _ in range(self.cfg.vf_epochs):
            perm = torch.stack([torch.randperm(N, generator=g) for g in self.gens]).to(obs.device)
            for i in range(N // self.cfg.vf_batch):
                idx = perm[:, i * self.cfg.vf_batch:(i + 1) * self.cfg.vf_batch]
                o = torch.gather(obs, 1, idx[..., None].expand(-1, -1, obs.shape[2]))
                ret = torch.gather(returns, 1, idx)
                loss = (value(self.vf, nz, o) - ret).square().mean(1)
                self.vf_opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                self.vf_opt.step()
        with torch.no_grad():
            return (value(self.vf, nz, obs) - returns).square().mean(1)


def act(pi: Params, nz: Normalizers, s: torch.Tensor, gens: Sequence[torch.Generator]) -> torch.Tensor:
    """Stochastic actions of K policies for observations ``[K, E, O]``, noise from each task's generator."""
    with torch.no_grad():
        mean, log_std = policy_dist(pi, nz, s)
    eps = torch.stack([torch.randn(mean.shape[1:], generator=g) for g in gens]).to(mean)
    return mean + log_std.exp() * eps
