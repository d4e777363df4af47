# Set-up is automatic: every target below creates or refreshes .venv when it is
# missing or older than pyproject.toml.
VENV ?= .venv
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.marlbench-installed
export RAY_USAGE_STATS_ENABLED := 0

# Benchmark tables: `make table3 PROFILE=smoke SEEDS=0,1` (PROFILE and SEEDS replace the
# file's own); GRID_ARGS passes grid options (--max-concurrent, --address, --storage, ...).
PROFILE ?=
SEEDS ?=
GRID_ARGS ?=
BENCH_FLAGS = $(if $(PROFILE),--profile $(PROFILE)) $(if $(SEEDS),--seeds $(SEEDS))
# Behaviour-data generation for missing MaMuJoCo datasets: small under the smoke profile.
GEN_FLAGS = --generate-missing $(if $(filter smoke,$(PROFILE)),--generate-budget 3000 --generate-episodes 5)
ABLATIONS = ablation_alpha ablation_fdiv ablation_mixer

.PHONY: install test demo matrix lint table1 table2 table3 ablations

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e '.[dev,mamujoco,tune]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/marlbench demo

matrix: $(STAMP)
	$(BIN)/marlbench demo --file benchmarks/matrix.yaml $(BENCH_FLAGS)

# grid, then the report even when some trials could not run (the report shows them as missing);
# the exit status is the grid's.
table1 table2 table3 $(ABLATIONS): $(STAMP)
	status=0; $(BIN)/marlbench grid benchmarks/$@.yaml $(BENCH_FLAGS) $(GEN_FLAGS) $(GRID_ARGS) || status=$$?; \
	$(BIN)/marlbench report benchmarks/$@.yaml $(BENCH_FLAGS) && exit $$status

ablations: $(ABLATIONS)

lint: $(STAMP)
	$(BIN)/ruff check marlbench algorithms tests benchmarks
	$(BIN)/ruff format --check marlbench algorithms tests benchmarks
