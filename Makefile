# Set-up is automatic: every target below creates or refreshes .venv when it is
# missing or older than pyproject.toml.
VENV ?= .venv
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.marlbench-installed
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: install test demo lint

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e '.[dev,mamujoco]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/marlbench demo

lint: $(STAMP)
	$(BIN)/ruff check marlbench algorithms tests benchmarks
	$(BIN)/ruff format --check marlbench algorithms tests benchmarks
