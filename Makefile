# Whalli: `make run` starts everything on embedded services; `make test` runs the gates and tests.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
# pip's notices about this machine's local package mirrors are noise for a first-time user
QUIET_PIP := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit integration migrate services-up services-down services-status \
        worker serve bench clean system-deps

$(BIN)/python:
	@echo "==> creating virtualenv $(VENV)"
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Whalli needs Python 3.11 or newer")'
	@$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	@echo "==> installing Whalli and its dependencies into $(VENV) (first time takes a minute)"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip $(QUIET_PIP)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]" $(QUIET_PIP)
	@touch $(STAMP)

install: $(STAMP) system-deps

# Tesseract is a system binary (OCR of images and scanned PDFs).
system-deps:
	@if ! command -v tesseract >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "==> installing tesseract-ocr (Debian package)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr >/dev/null) \
	      || echo "!! could not install tesseract-ocr; OCR will be unavailable"; \
	  else \
	    echo "!! tesseract is missing: install it with 'sudo apt-get install tesseract-ocr' (Debian/Ubuntu) or 'brew install tesseract' (macOS)"; \
	  fi; \
	fi

run: install
	@$(BIN)/whalli dev

test: install lint
	@echo "==> running the test suite (unit and integration on real services)"
	@$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	@echo "==> ruff"
	@$(BIN)/ruff check src tests bench
	@$(BIN)/ruff format --check src tests bench
	@echo "==> mypy (strict)"
	@$(BIN)/mypy
	@echo "==> import-linter"
	@$(BIN)/lint-imports

unit: $(STAMP)
	@$(BIN)/python -m pytest -q tests/unit

integration: install
	@$(BIN)/python -m pytest -q tests/integration

migrate: $(STAMP)
	@$(BIN)/whalli migrate

services-up: $(STAMP)
	@$(BIN)/whalli services up

services-down: $(STAMP)
	@$(BIN)/whalli services down

services-status: $(STAMP)
	@$(BIN)/whalli services status

serve: $(STAMP)
	@$(BIN)/whalli serve

worker: $(STAMP)
	@$(BIN)/whalli worker

# bench_peers measures the LiteLLM proxy beside Whalli: in a virtualenv of its own, so its many
# dependencies stay out of Whalli's. Without a package index the bench runs without it.
LITELLM := litellm[proxy]==1.108.7
PEERS := bench/.peers

$(PEERS)/litellm/.installed:
	@echo "==> installing $(LITELLM) into $(PEERS)/litellm for bench_peers (first time takes a minute)"
	@$(PYTHON) -m venv $(PEERS)/litellm \
	  && $(PEERS)/litellm/bin/python -m pip install --quiet --disable-pip-version-check "$(LITELLM)" $(QUIET_PIP) \
	  && touch $@ \
	  || echo "!! could not install $(LITELLM): bench_peers runs without it"

bench: install $(PEERS)/litellm/.installed
	@$(BIN)/python -m bench

clean:
	-@[ -x $(BIN)/whalli ] && $(BIN)/whalli services down >/dev/null 2>&1 || true
	rm -rf $(VENV) $(PEERS) .whalli logs .pytest_cache .mypy_cache .ruff_cache .hypothesis src/*.egg-info
