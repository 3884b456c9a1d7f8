# Two entry points (see README): `make run` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORES  ?= 2
TARGET ?=
SNAKEMAKE_ARGS ?=

.PHONY: run test venv lock clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

## The main job at the default (quick) scale: every target of `rule all`.
run: $(STAMP)
	$(BIN)/snakemake --workflow-profile workflow/profiles/default --cores $(CORES) $(TARGET) $(SNAKEMAKE_ARGS)

## The test suite.
test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

## Re-pin requirements.lock from the current environment.
lock: $(STAMP)
	$(BIN)/pip freeze --exclude-editable | sed 's/+cpu$$//' > requirements.lock

clean:
	rm -rf $(VENV) .snakemake results
