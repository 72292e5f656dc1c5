# PaDiM Inspector: two-command setup.  `make run` opens the app, `make test` runs every test.
# Set-up steps are stamped inside .venv, so pip only runs again when its input file changed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8501
# 127.0.0.1: only this machine, no sign-in. Any other address (HOST=0.0.0.0) requires sign-in
# and an admin account in the workspace (padim users add NAME --role admin); see docs/access.md.
HOST   ?= 127.0.0.1
# On loopback nobody signs in, so only the loopback names may talk to the app: a web page
# that rebinds its own name to 127.0.0.1 is refused (DNS rebinding).
LOOPBACK_HOSTS = $(if $(filter 127.0.0.1 localhost ::1,$(HOST)),--server.allowedHosts localhost --server.allowedHosts 127.0.0.1 --server.allowedHosts ::1)
CHROMIUM ?= /usr/bin/chromium

STAMP_REQ := $(VENV)/.stamp-requirements
STAMP_DEV := $(VENV)/.stamp-requirements-dev
STAMP_PKG := $(VENV)/.stamp-editable

.DEFAULT_GOAL := help
.PHONY: help run test lint bench setup setup-runtime chromium postgresql clean-venv

help:
	@echo "make run    # set up .venv and open the app on http://localhost:$(PORT)"
	@echo "make run HOST=0.0.0.0  # serve it on the network (sign-in required, docs/access.md)"
	@echo "make test   # set up, then run the whole test suite (browser test included)"
	@echo "make setup  # only create .venv with runtime + dev requirements"
	@echo "make lint   # ruff check ."
	@echo "make bench  # speed / memory benchmark (python -m bench, bench.update, bench.line)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Runtime requirements (torch==2.14.1 / torchvision==0.29.1 are pinned there).
$(STAMP_REQ): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install -r requirements.txt
	touch $@

# Test and lint tools; re-run when either list changes.
$(STAMP_DEV): requirements.txt requirements-dev.txt $(STAMP_REQ)
	$(BIN)/python -m pip install -r requirements-dev.txt
	touch $@

# padim_core as an editable package (gives the `padim` command); deps come from the stamps above.
$(STAMP_PKG): pyproject.toml $(STAMP_REQ)
	$(BIN)/python -m pip install -e . --no-deps
	touch $@

setup-runtime: $(STAMP_REQ) $(STAMP_PKG)

setup: $(STAMP_REQ) $(STAMP_DEV) $(STAMP_PKG)

# glibc malloc keeps freed memory for reuse (padim_core.allocator.ENVIRONMENT): the CPU
# backbone runs about 2x faster without re-faulting its activations every batch.
MALLOC_ENV := MALLOC_ARENA_MAX=1 MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TRIM_THRESHOLD_=1073741824

run: setup-runtime
	@$(BIN)/python -m padim_core access check --host $(HOST)
	$(MALLOC_ENV) PADIM_DEMO_MODEL=$${PADIM_DEMO_MODEL:-1} $(BIN)/streamlit run app.py --server.address $(HOST) --server.port $(PORT) --server.headless true $(LOOPBACK_HOSTS)

# apt_install(shell test that says it is there, Debian package, who needs it): install the
# package as root (or with sudo) when the test fails; otherwise say how.
define apt_install
	@if $(1); then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(2); \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y $(2); \
	else \
		echo "$(3) need Debian's $(2) package." >&2; \
		echo "Install it as root:  apt-get update && apt-get install -y $(2)" >&2; \
		exit 1; \
	fi
endef

# Browser tests drive Debian's Chromium (Playwright's own browser download is not available).
chromium:
	$(call apt_install,[ -x $(CHROMIUM) ],chromium,The browser tests)

# The store tests start a throw-away cluster with Debian's PostgreSQL server binaries.
postgresql:
	$(call apt_install,ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1,postgresql,The store tests)

test: setup chromium postgresql
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .

# `make bench BENCH_DEVICES=cuda` measures on the GPU only (auto: the CPU, plus CUDA when present).
BENCH_DEVICES ?= auto

bench: setup
	$(BIN)/python -m bench --devices $(BENCH_DEVICES)
	$(BIN)/python -m bench --quick --cases speed --default-settings --devices $(BENCH_DEVICES)
	$(BIN)/python -m bench.decoding --devices $(BENCH_DEVICES)
	$(BIN)/python -m bench.update
	$(BIN)/python -m bench.update --preset reference
	$(BIN)/python -m bench.line
	$(BIN)/python -m bench.quality_timing

clean-venv:
	rm -rf $(VENV)
