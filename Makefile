# opskit: `make demo` (lab fleet + tour) and `make test` (whole suite) on a fresh
# Debian/Ubuntu machine as root. Each target installs what it needs first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Debian packages the lab and the tests need, as "command:package".
APT_NEEDS := sshd:openssh-server ssh:openssh-client ssh-keygen:openssh-client \
             unshare:util-linux nsenter:util-linux fsfreeze:util-linux \
             mkfs.xfs:xfsprogs pgrep:procps ip:iproute2 git:git \
             /usr/lib/postgresql/15/bin/postgres:postgresql-15 \
             /usr/lib/postgresql/15/bin/psql:postgresql-client-15 \
             /usr/lib/postgresql/15/bin/repmgr:postgresql-15-repmgr \
             pgbouncer:pgbouncer \
             redis-server:redis-server redis-cli:redis-tools vmtouch:vmtouch \
             tmux:tmux sudo:sudo openssl:openssl strace:strace \
             nginx:nginx
LAB_HOSTS ?= 13
# Tests run in a random order (pytest-randomly), seeded: every run prints its seed, and
# `make test SEED=N` repeats that order. (-q hides pytest's header, where randomly says it.)
SEED ?=
PYTEST = seed=$(SEED); seed=$${seed:-$$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}; \
	echo "test order: --randomly-seed=$$seed (repeat with: make $@ SEED=$$seed)"; \
	$(BIN)/pytest -q -p randomly --randomly-seed=$$seed

.PHONY: help demo test unit lab-test lint check-inventories bench apt-deps venv clean lab-down

help:
	@echo "make demo   start the lab fleet and run the tour"
	@echo "make test   run the whole test suite (unit + lab)"
	@echo "make bench  run the benchmarks (writes docs/benchmarks.md)"

apt-deps:
	@missing=""; \
	for pair in $(APT_NEEDS); do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  PATH="$$PATH:/usr/sbin:/sbin" command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  policy=""; \
	  if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d; \
	    policy=/usr/sbin/policy-rc.d; \
	  fi; \
	  rc=0; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } || rc=$$?; \
	  [ -z "$$policy" ] || rm -f "$$policy"; \
	  exit $$rc; \
	fi

$(STAMP): setup.cfg pyproject.toml
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: apt-deps $(STAMP)

lint: venv
	$(BIN)/ruff check opskit tests fabfile.py
	$(BIN)/lint-imports

# Every inventory in inventory/ validates: its settings against the schemas (docs/settings.md),
# without connecting anywhere (an EC2 source is parsed, not discovered).
check-inventories: venv
	@for inv in inventory/*.yml; do \
	  $(BIN)/opskit -i "$$inv" inventory check || { echo "inventory check failed: $$inv"; exit 1; }; \
	done

unit: venv
	@$(PYTEST) tests/unit || { echo "failed with seed $$seed: make $@ SEED=$$seed"; exit 1; }

lab-test: venv
	@$(PYTEST) -n $(LAB_WORKERS) --dist loadfile tests/lab || { echo "failed with seed $$seed: make $@ SEED=$$seed"; exit 1; }

# Unit tests on both cores (pytest-xdist; they share nothing), then the lab tests on both
# cores too: each worker runs its own lab (127.10.0.x, 127.11.0.x: tests/lab/worker.py) and
# takes whole files (a file's module fixtures are set up once); both in one seed's order.
LAB_WORKERS ?= 2
test: venv lint check-inventories
	@$(PYTEST) -n 2 tests/unit && $(BIN)/pytest -q -p randomly --randomly-seed=$$seed \
	  -n $(LAB_WORKERS) --dist loadfile tests/lab \
	  || { echo "failed with seed $$seed: make $@ SEED=$$seed"; exit 1; }

demo: venv
	@PATH="$(CURDIR)/$(BIN):$$PATH" LAB_HOSTS=$(LAB_HOSTS) bash scripts/demo.sh

bench: venv
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/deploy.py
	$(BIN)/python bench/snapshot.py
	$(BIN)/python bench/failover.py
	$(BIN)/python bench/cache.py
	$(BIN)/python bench/inventory_load.py

lab-down: venv
	$(BIN)/opskit lab down --yes

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
