# The front door of the course.  `make help` lists the targets.
#
#   make lab     create the environment if missing, then start JupyterLab on the course
#   make test    every test: course_lib, every notebook at SIZE=small, grading, repository rules

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Extra pip arguments for torch, e.g. PyTorch's CPU-only index on a machine where
# plain `pip install torch==2.13.0` would fetch a CUDA build (see README).
PIP_TORCH_ARGS ?=
JOBS ?= 2
SIZE ?= small
SEED ?= 0
NB ?=
PARAMS ?=
OUT ?= runs/latest
PYTEST_ARGS ?=

.PHONY: help venv system-deps lab test test-fast run exercises grade bench data lock clean distclean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: SIZE=small|full NB=path PARAMS='K=V ...' OUT=runs/latest JOBS=$(JOBS)"

$(STAMP): pyproject.toml requirements.lock
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 is needed (python3.11 or python3 on PATH)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "error: $(PYTHON) is not Python 3.11; run with PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet $(PIP_TORCH_ARGS) torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m course_lib.warmup
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ML systems course)" >/dev/null
	touch $(STAMP)

venv: $(STAMP) ## create .venv with the pinned dependencies (done by lab and test when missing)

# System packages the lessons use, from Debian/Ubuntu's apt (Binder reads apt.txt):
# redis-server for chapter 07's feature cache.  Installed only when missing.
APT_PACKAGES := $(shell cat apt.txt 2>/dev/null)
system-deps: ## install the system packages in apt.txt (redis-server) when missing
	@missing=""; for p in $(APT_PACKAGES); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else \
	  echo "error: needs$$missing; install it with your package manager (Debian/Ubuntu: apt-get install$$missing)"; exit 1; fi; \
	echo "installing$$missing with apt-get"; \
	$$SUDO apt-get install -y -q $$missing >/dev/null || { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q $$missing >/dev/null; }

lab: $(STAMP) system-deps ## start JupyterLab on the course (creates the environment first if missing)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=. $(if $(filter 0,$(shell id -u)),--allow-root) README.md

test: $(STAMP) system-deps ## run every test (unit, notebooks at SIZE=small, grading, repository rules)
	$(PY) -m pytest -n $(JOBS) --durations=15 $(PYTEST_ARGS)

test-fast: $(STAMP) ## the tests that execute no notebook
	$(PY) -m pytest -m "not notebook" $(PYTEST_ARGS)

run: $(STAMP) ## papermill batch: NB=notebook|chapter folder (default all), SIZE, PARAMS='K=V ...', OUT
	$(PY) -m course_lib.run $(NB) --size $(SIZE) --seed $(SEED) --out $(OUT) $(foreach kv,$(PARAMS),-p $(subst =, ,$(kv)))

exercises: $(STAMP) ## regenerate exercises/ from solutions/
	$(PY) -m course_lib.grade.exercises

grade: $(STAMP) ## grade a learner notebook: make grade NB=exercises/02_vector_search/01_similarity_and_recall.ipynb
	@test -n "$(NB)" || { echo "usage: make grade NB=path/to/notebook.ipynb"; exit 2; }
	$(PY) -m course_lib.grade "$(NB)" --json runs/grades/$(basename $(notdir $(NB))).json

bench: $(STAMP) ## speed/memory benchmarks against the references (JSON in runs/bench)
	$(PY) -m course_lib.bench exact --out runs/bench
	$(PY) -m course_lib.bench ann --size $(SIZE) --out runs/bench
	$(PY) -m course_lib.bench retrieval --out runs/bench

data: $(STAMP) ## rebuild the frozen corpus, its MiniLM embeddings and checksums
	$(PY) -m course_lib.data all

lock: $(STAMP) ## re-freeze requirements.lock from the current environment
	$(PY) -m pip freeze --exclude-editable | grep -v '^course' | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' > requirements.lock.new
	{ head -3 requirements.lock; cat requirements.lock.new; } > requirements.lock.tmp && rm requirements.lock.new && mv requirements.lock.tmp requirements.lock

clean: ## remove run outputs and caches (keeps .venv)
	rm -rf runs .pytest_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
	find . -name .ipynb_checkpoints -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +

distclean: clean ## also remove .venv
	rm -rf $(VENV)
