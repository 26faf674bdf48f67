# Two commands on a fresh machine: `make run` and `make test`; both install what is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run token demo test lint bench migrate clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)
	./tooling/ensure_postgres.sh

run: $(STAMP)
	$(PY) -m tooling.devrun

# `make token SCOPE="system/*.rs" [PRACTICE=<Organization id>|*] [USER=Practitioner/<id>]`:
# a token from the dev issuer `make run` started; the last line is the token alone.
SCOPE ?= system/*.rs
PRACTICE ?= *
token: $(STAMP)
	@$(PY) -m tooling.token --scope '$(SCOPE)' --practice '$(PRACTICE)' \
		$(if $(filter command line,$(origin USER)),--user '$(USER)')

# `make demo [PATIENTS=200] [SEED=7]` (with `make run` going): a seeded synthetic cohort loaded
# through the three services' APIs; a second run of one seed finds it loaded.
PATIENTS ?= 200
SEED ?= 7
demo: $(STAMP)
	$(PY) -m tooling.demo --patients $(PATIENTS) --seed $(SEED)

# Two workers halve the suite's time on two cores; each starts its own PostgreSQL and broker.
test: install
	$(PY) -m pytest -q -n auto --maxprocesses 4

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install
	$(PY) -m bench.run
	$(PY) -m bench.events
	$(PY) -m bench.scale_out
	$(PY) -m bench.sort_attack
	$(PY) -m bench.parse
	$(PY) -m bench.auth
	$(PY) -m bench.scheduling
	$(PY) -m bench.outcomes

migrate: $(STAMP)
	for s in intake scheduling outcomes; do $(PY) -m services.$$s migrate; done

clean:
	rm -rf var .pytest_cache bench/results
