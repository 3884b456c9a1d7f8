"""The figures' tables and drawings: one module per paper (``mier``, ``admrl``, ``macaw``), their shared
parts (``common``), and the registry the workflow's scripts look a figure up in (``FIGURES``, ``figure``).

Each figure in two steps: ``<what>_table`` turns the results into the numbers the figure draws (each
seed's value and the mean over seeds with its bootstrap interval), ``<what>`` draws that table into a
matplotlib Figure and computes nothing. No file I/O here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from paper_repro.plots import common  # noqa: F401  (first: it chooses matplotlib's backend before pyplot loads)
from paper_repro.plots import admrl, macaw, mier

if TYPE_CHECKING:
    import matplotlib.pyplot as plt
    import pandas as pd


@dataclass(frozen=True)
class Figure:
    """One figure of the config's ``figures:``: ``table`` turns its results into the numbers it draws (its
    arguments depend on the paper: see the workflow's ``table_*.py`` scripts), ``plot(table, style, title)``
    draws them."""

    table: Callable[..., pd.DataFrame]
    plot: Callable[..., plt.Figure]


FIGURES: dict[str, Figure] = {  # the keys of config/config.yaml's figures:, in its order
    # MIER
    "fig2_sample_efficiency": Figure(table=mier.sample_efficiency_table, plot=mier.sample_efficiency),
    "fig3_reward_extrapolation": Figure(table=mier.reward_extrapolation_table, plot=mier.reward_extrapolation),
    "fig4_dynamics_extrapolation": Figure(table=mier.dynamics_extrapolation_table, plot=mier.dynamics_extrapolation),
    # AdMRL
    "fig1_pearl_gap_heatmap": Figure(table=admrl.pearl_gap_heatmap_table, plot=admrl.pearl_gap_heatmap),
    "fig2_adaptation_returns": Figure(table=admrl.adaptation_returns_table, plot=admrl.adaptation_returns),
    "fig3_worst_case_gap": Figure(table=admrl.worst_case_gap_table, plot=admrl.worst_case_gap),
    "fig4_adversarial_tasks": Figure(table=admrl.adversarial_tasks_table, plot=admrl.adversarial_tasks),
    "fig5_ood_gap": Figure(table=admrl.ood_gap_table, plot=admrl.ood_gap),
    "fig6_model_error": Figure(table=admrl.model_error_table, plot=admrl.model_error),
    # MACAW
    "fig3_offline_meta_rl": Figure(table=macaw.offline_meta_rl_table, plot=macaw.offline_meta_rl),
    "fig4_macaw_ablations": Figure(table=macaw.macaw_ablations_table, plot=macaw.macaw_ablations),
    "fig5_weight_transform_ablation": Figure(table=macaw.weight_transform_ablation_table,
                                             plot=macaw.weight_transform_ablation),
    "fig6_weight_transform_omniglot": Figure(table=macaw.weight_transform_omniglot_table,
                                             plot=macaw.weight_transform_omniglot),
    "fig7_metaworld_ml45": Figure(table=macaw.metaworld_ml45_table, plot=macaw.metaworld_ml45),
    "fig8_offline_policy_curves": Figure(table=macaw.offline_policy_curves_table, plot=macaw.offline_policy_curves),
    "table1_online_finetuning": Figure(table=macaw.online_finetuning_table, plot=macaw.online_finetuning),
}


def figure(name: str) -> Figure:
    """The registered figure ``name`` (a key of the config's ``figures:``)."""
    if name not in FIGURES:
        raise ValueError(f"figure {name!r} is not registered in paper_repro.plots.FIGURES; "
                         f"registered: {', '.join(FIGURES)}")
    return FIGURES[name]
