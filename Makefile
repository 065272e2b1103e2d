# slicebed: `make demo` runs the main job, `make test` runs the tests. Both set themselves up from a
# fresh clone: Debian packages they need (apt), a virtualenv in .venv/ and the Python packages (pip).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SPEC ?= experiments/demo-replay.yaml
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint bench setup system-deps clean

demo: setup
	$(BIN)/slicebed loop run $(SPEC)

test: setup lint
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check collectors analysis controller tests benchmarks

bench: setup
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/bench_optimizer.py
	$(BIN)/python benchmarks/bench_shared_capacity.py

setup: $(STAMP)

# python3-venv is a separate package on Debian and Ubuntu; install it only when venv cannot be made.
system-deps:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
	  { echo "slicebed needs Python >= 3.11 (found $$($(PYTHON) --version 2>&1)); set PYTHON=python3.11"; exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || \
	  { $(SUDO) apt-get update && $(SUDO) apt-get install -y python3-venv python3-pip; }

$(STAMP): pyproject.toml
	$(MAKE) system-deps
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch pulls several GB of CUDA wheels.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
