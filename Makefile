# Two commands on a fresh machine: `make run` and `make test`; both install what is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench migrate clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)
	./tooling/ensure_postgres.sh

run: $(STAMP)
	$(PY) -m tooling.devrun

test: install
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install
	$(PY) -m bench.run
	$(PY) -m bench.events
	$(PY) -m bench.sort_attack
	$(PY) -m bench.parse

migrate: $(STAMP)
	for s in intake scheduling outcomes; do $(PY) -m services.$$s migrate; done

clean:
	rm -rf var .pytest_cache bench/results
