# vnstitch — two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: demo serve test test-fast system-deps bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU build of torch first, so nothing later pulls a CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[forecast,plots,api,linux,etcd,anomaly,sites,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/vnstitch demo

# the dashboard (http://127.0.0.1:8470/ui/) on the store `make demo` left; --dev prints a token the first time
serve: $(STAMP)
	$(VENV)/bin/vnstitch --store sqlite://$(abspath out/demo/state.db) serve --dev

system-deps:
	@if [ -x scripts/system-deps.sh ]; then scripts/system-deps.sh; fi

test: $(STAMP) system-deps
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q tests/unit tests/contract

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
