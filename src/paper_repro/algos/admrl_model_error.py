"""AdMRL's Fig. 6 (AdMRL spec 4.2): each training snapshot's dynamics model scored on a fixed
out-of-distribution dataset, the real transitions of reference agents (SAC) on the test tasks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from paper_repro import envs, nets, rollout
from paper_repro.algos.admrl_envs import task_row
from paper_repro.algos.slbo import Normalizers, model_loss, predict
from paper_repro.buffers import ReplayBuffer


def sac_actor(state: dict) -> torch.nn.Module:
    """A reference agent's policy (``collect``'s ``task<id>.policy.pt``: one task's slice of SAC's actor)."""
    weights = [state[k] for k in sorted((k for k in state if k.endswith(".weight")), key=lambda k: int(k.split(".")[2]))]
    sizes = [weights[0].shape[0], *(w.shape[1] for w in weights)]
    actor = nets.TanhGaussianActor([torch.Generator()], sizes[0], sizes[-1] // 2, sizes[1:-1], state["act_scale"],
                                   state["act_bias"])
    actor.load_state_dict({k: v if k in ("act_scale", "act_bias") else v[None] for k, v in state.items()})
    return actor


def ood_dataset(family: str, psis: torch.Tensor, actors: Sequence[torch.nn.Module], steps: int,
                seeds: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``steps`` real transitions of each task under its reference policy, stochastic, from fixed seeds
    (AdMRL spec 4.2, Fig. 6: one dataset shared by every model)."""
    out = []
    for psi, actor, seed in zip(psis, actors, seeds):
        env = envs.make(family, task_row(family, psi))
        gens = [torch.Generator().manual_seed(seed)]
        obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
        buf = ReplayBuffer(steps, obs_dim, act_dim)

        def policy(obs, actor=actor, gens=gens):
            with torch.no_grad():
                return actor(torch.as_tensor(obs)[None], gens)[0][0].numpy()
        rollout.transitions([env], policy, steps, [seed], [buf])
        rows = buf.arrays()
        out.append(tuple(torch.as_tensor(rows[k]) for k in ("obs", "action", "next_obs")))
    return out


def model_errors(run: dict, data: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> list[dict]:
    """Per snapshot of a run: the training criterion (per-sample RMS of the diff-normalised one-step error,
    under the model's own normaliser) and the MSE of the predicted state change divided by the dataset's
    own variance of s' - s (independent of any model's normaliser), each averaged over tasks."""
    rows = []
    for snap in run["snapshots"]:
        nz = Normalizers(**snap["nz"])
        rms, mse = [], []
        with torch.no_grad():
            for s, a, s2 in data:
                rms.append(float(model_loss(snap["phi"], nz, s, a, s2)))
                var = (s2 - s).var(0).clamp_min(1e-12)
                mse.append(float(((predict(snap["phi"], nz, s, a) - s2).square() / var).mean()))
        rows.append({"task": snap["task"], "model_rms": float(np.mean(rms)), "model_mse_normalised": float(np.mean(mse))})
    return rows
