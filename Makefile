# kcont: the two README commands.  Each does its own set-up on a fresh
# Debian 12 machine (as root): packages, venv, kernel build (cached).
SHELL := /bin/bash
VENV := .venv
KCONT_VM := $(VENV)/bin/kcont-vm
# `setup` runs on Debian's interpreter before the venv exists.
BOOTSTRAP := PYTHONPATH=vm /usr/bin/python3 -m kcont_vm

.PHONY: all setup demo check lint bench clean-results

all: check

setup:
	@$(BOOTSTRAP) setup

demo: setup
	$(KCONT_VM) demo

lint: setup
	$(VENV)/bin/ruff check .

check: lint
	$(KCONT_VM) test

bench: setup
	$(VENV)/bin/python bench/harness.py

clean-results:
	rm -rf test-results
