# Two entry points (see README): `make run` and `make test`. Each sets itself up.
# `make test-fast` is the edit loop: the unit tests only.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORES  ?= 2
TARGET ?=
SNAKEMAKE_ARGS ?=
BROWSERS := chromium chromium-browser google-chrome
APT_CHROMIUM := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

.PHONY: run plan test test-fast browser venv lock clean publish results

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

## The main job at the default (quick) scale: every target of `rule all`. Its plan (jobs, requested time,
## estimated wall time on CORES) comes first.
run: plan
	$(BIN)/snakemake --workflow-profile workflow/profiles/default --cores $(CORES) $(TARGET) $(SNAKEMAKE_ARGS)

## What `make run` would run, and its estimated wall time on CORES: make plan TARGET=results/figures/... CORES=2
plan: $(STAMP)
	$(BIN)/python -m paper_repro.plan $(or $(TARGET),all) --cores $(CORES) $(SNAKEMAKE_ARGS)

## The test suite.
test: $(STAMP) browser
	$(BIN)/pytest $(PYTEST_ARGS)

## The unit tests: no snakemake runs, no slow learning tests, no Slurm, no browser (see pyproject's markers).
test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow and not workflow and not slurm and not browser" $(PYTEST_ARGS)

## Headless Chromium for the report's browser tests: Debian's package, installed when missing where
## we are root and have apt-get (refreshing the package index once if the install fails). Elsewhere
## a note, and those tests skip (in CI, CI=true, they fail).
browser:
	@for b in $(BROWSERS); do command -v $$b; done | grep -q . \
	|| { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	     && { $(APT_CHROMIUM) || { apt-get update -qq && $(APT_CHROMIUM); }; }; } \
	|| echo "make browser: no headless Chromium ($(BROWSERS)) and none installed; the report's browser tests will skip"

## Publish one built figure's seed (its small outputs and provenance) into evidence/:
##   make publish FIGURE=fig4_dynamics_extrapolation SEED=0 [WALL_TIME_S=...]
publish: $(STAMP)
	$(BIN)/python -m paper_repro.evidence publish --figure $(FIGURE) --seed $(SEED) $(if $(WALL_TIME_S),--wall-time-s $(WALL_TIME_S))

## docs/results.md and docs/results/ (claims, tables, figures) from evidence/ alone, no training.
results: $(STAMP)
	$(BIN)/python -m paper_repro.evidence render

## Re-pin requirements.lock from the current environment.
lock: $(STAMP)
	$(BIN)/pip freeze --exclude-editable | sed 's/+cpu$$//' > requirements.lock

clean:
	rm -rf $(VENV) .snakemake results
