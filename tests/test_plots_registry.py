"""The figure registry the workflow's scripts look figures up in: it holds exactly the figures of
config/config.yaml, each with its table and its drawing, and an unknown name is an error that names it."""

from pathlib import Path

import pytest

from paper_repro import config as prconfig
from paper_repro import plots

ROOT = Path(__file__).resolve().parents[1]


def test_every_configured_figure_is_registered_and_nothing_else():
    configured = set(prconfig.load_yaml(ROOT / "config" / "config.yaml")["figures"])
    assert not configured - set(plots.FIGURES), "configured but not registered"
    assert not set(plots.FIGURES) - configured, "registered but not configured"


@pytest.mark.parametrize("name", list(plots.FIGURES))
def test_each_figure_is_its_papers_what_table_and_what(name):
    """<figN>_<what> -> <paper module>.<what>_table and .<what>, both from the same paper's module."""
    what = name.split("_", 1)[1]
    entry = plots.figure(name)
    assert (entry.table.__name__, entry.plot.__name__) == (f"{what}_table", what)
    assert entry.table.__module__ == entry.plot.__module__
    assert entry.plot.__module__ in {"paper_repro.plots.mier", "paper_repro.plots.admrl", "paper_repro.plots.macaw"}


def test_an_unknown_figure_is_an_error_naming_it_and_the_registered_ones():
    with pytest.raises(ValueError, match="'fig9_no_such_figure' is not registered") as error:
        plots.figure("fig9_no_such_figure")
    assert all(name in str(error.value) for name in plots.FIGURES)
