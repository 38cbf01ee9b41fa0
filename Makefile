# kcont: the two README commands.  Each does its own set-up on a fresh
# Debian 12 machine (as root): packages, venv, kernel build (cached).
SHELL := /bin/bash
VENV := .venv
# `setup` runs on Debian's interpreter before the venv exists; the rest runs
# from the venv without needing the project installed (the build installs it,
# since the CFFI binding compiles against the kernel's uapi headers).  The
# checkout is on PYTHONPATH too: kcont-vm's parser is kcont.one_line_parser.
BOOTSTRAP := PYTHONPATH=$(CURDIR)/vm:$(CURDIR) /usr/bin/python3 -m kcont_vm
KCONT_VM := PYTHONPATH=$(CURDIR)/vm:$(CURDIR) $(VENV)/bin/python -m kcont_vm

.PHONY: all setup kernel demo check soak keyutils lint unit bench clean-results

all: check

setup:
	@$(BOOTSTRAP) setup

kernel: setup
	$(KCONT_VM) build

demo: kernel
	$(KCONT_VM) demo

# mypy --strict over kcont and request_key_daemon: [tool.mypy] in pyproject.toml
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The host tests that need no kernel and no compiled binding (tests/unit):
# seconds, from a fresh clone, before any kernel is built.
unit: setup
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/unit

# `kcont-vm test` builds the kernel itself, after the pure host tests (`make unit`).
check: lint
	$(KCONT_VM) test

# The reliability suites round after round for HOURS (default 1) in one
# debug boot; the report is soak-results/report.md.
HOURS ?= 1
soak: lint kernel
	$(KCONT_VM) soak --hours $(HOURS)

# keyutils' own suite alone (`make check` runs it too, in the same boot).
keyutils: kernel
	$(KCONT_VM) test --guest-only --keyutils only

bench: setup
	$(VENV)/bin/python bench/harness.py

clean-results:
	rm -rf test-results
