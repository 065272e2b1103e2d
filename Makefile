# slicebed: `make demo` runs the main job, `make test` runs the tests. Both set themselves up from a
# fresh clone: Debian packages they need (apt), a virtualenv in .venv/ and the Python packages (pip).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SPEC ?= experiments/demo-local.yaml
INVENTORY ?= inventory/local.yml
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo demo-slices demo-replay test lint bench verify-lab setup system-deps clean

# The main job: bring the local testbed up, run the closed loop on it until every traffic level holds, and
# always bring it down (keeping the loop's exit status: 1 if a level still fails when its rounds run out). The
# testbed needs root (network namespaces, Open vSwitch, cgroups). The slice model is small: one torch thread
# trains it fastest, and does not fight the testbed for the second core.
demo: setup
	$(SUDO) $(BIN)/slicebed testbed up --inventory $(INVENTORY)
	$(SUDO) env OMP_NUM_THREADS=1 $(BIN)/slicebed loop run $(SPEC) --testbed local; status=$$?; \
	  $(SUDO) $(BIN)/slicebed testbed down --inventory $(INVENTORY); exit $$status

# Three slices (eMBB, URLLC, mMTC) under shared CPU and bandwidth capacities on the same local testbed.
demo-slices:
	$(MAKE) demo SPEC=experiments/demo-local-3slices.yaml

# The same closed loop on the replay twin (no root, about 30 s).
demo-replay: setup
	OMP_NUM_THREADS=1 $(BIN)/slicebed loop run experiments/demo-replay.yaml

test: setup lint
	$(BIN)/python -m pytest -q

# ruff, ansible-lint (production profile, offline: .ansible-lint) over the playbooks and roles, with the
# playbooks' own modules (playbooks/library) on the module path.
lint: setup
	$(BIN)/ruff check core collectors analysis controller dataplane tests benchmarks playbooks .ci/verify-lab
	PATH="$(CURDIR)/$(BIN):$$PATH" ANSIBLE_LIBRARY=playbooks/library $(BIN)/ansible-lint --nocolor -q playbooks
	$(BIN)/mypy controller analysis collectors core dataplane

# Verification of the lab deployment without a lab: ansible-lint, syntax-check, role arguments, manifests vs Kubernetes
# 1.29, the srsRAN/OAI config keys against the pinned releases, and the lab in a box (site.yml for real over SSH
# against three network namespaces: root).
verify-lab: setup
	$(SUDO) $(BIN)/python .ci/verify-lab

bench: setup
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/bench_optimizer.py
	$(BIN)/python benchmarks/bench_shared_capacity.py
	$(BIN)/python benchmarks/bench_campaign.py
	$(BIN)/python benchmarks/bench_sharing.py
	$(BIN)/python benchmarks/bench_placement.py
	$(BIN)/python benchmarks/bench_loop.py --replay-seeds 5
	$(SUDO) $(BIN)/python benchmarks/bench_testbed.py --repeat 3 --dataplane
	$(SUDO) $(BIN)/python benchmarks/bench_host_ceiling.py --delay on off

setup: $(STAMP) build/slicebed-delay

# The local testbed's delay stage (a C program), built here from source; the netem role runs it.
build/slicebed-delay: dataplane/delay_stage.c | system-deps
	mkdir -p $(@D)
	$(CC) -O2 -Wall -Wextra -Werror -std=gnu11 -o $@ $< $$(pkg-config --libs libnetfilter_queue libnfnetlink)

# Debian packages: every program slicebed, its playbooks and its tests run (the table in controller/deploy/tools.py,
# which tests/test_tools.py holds this list to) and what the Python packages and the delay stage build against. Checked on every
# `make setup`, so a checkout that predates a package gets it.
APT_PACKAGES := python3-venv python3-pip python3-dev build-essential libnetfilter-queue-dev iproute2 iptables kmod \
	ethtool openvswitch-switch prometheus prometheus-node-exporter procps iperf3 git systemd openssh-server \
	openssh-client openssh-sftp-server
system-deps:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
	  { echo "slicebed needs Python >= 3.11 (found $$($(PYTHON) --version 2>&1)); set PYTHON=python3.11"; exit 1; }
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | \
	    grep -q 'ok installed' || echo $$p; done); \
	  if [ -n "$$missing" ]; then echo "installing Debian packages:" $$missing; \
	    $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; fi

$(STAMP): pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch pulls several GB of CUDA wheels.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
