# Two commands on a fresh machine with Python >= 3.11: `make dev` and `make test`.
# Each creates .venv if missing and re-installs the project when pyproject.toml changes.

VENV ?= .venv
STAMP := $(VENV)/.installed
# The first interpreter on PATH that is Python >= 3.11 (override: make PYTHON=/path/to/python3.12).
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	2>/dev/null && { echo $$p; break; }; done)

# litellm fetches its model price map from the network at import unless told to use its own copy.
export LITELLM_LOCAL_MODEL_COST_MAP ?= True

.PHONY: venv dev test test-e2e test-faults bench lint clean

venv: $(STAMP)

$(VENV)/bin/python:
	@test -n "$(PYTHON)" || { echo "make: Python >= 3.11 is required (python3 on PATH)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	@touch $@

dev: venv
	$(VENV)/bin/mkt-x dev

# The end-to-end tests of `mkt-x dev` (the dev stack, the Postman collection run by newman) and
# the fault matrix each start whole stacks of their own: they run in their own targets (.ci/run
# runs all three), so that `make test` stays well under ten minutes on two cores.
test: venv
	$(VENV)/bin/python -m pytest -q -m "not devstack"

test-e2e: venv
	$(VENV)/bin/python -m pytest -q -m devstack

# The fault matrix (tests/faults/, left out of `make test`): each test starts its own PostgreSQL,
# Temporal, worker and API processes and kills or restarts one of them under load.
test-faults: venv
	$(VENV)/bin/python -m pytest -q -m faults tests/faults

bench: venv
	$(VENV)/bin/python -m bench

# Every check runs even when an earlier one fails; lint fails if any did. lint-imports checks the
# import contracts of pyproject.toml (the layers of docs/architecture.md).
lint: venv
	@status=0; \
	echo "ruff check ."; $(VENV)/bin/ruff check . || status=1; \
	echo "ruff format --check ."; $(VENV)/bin/ruff format --check . || status=1; \
	echo "lint-imports"; $(VENV)/bin/lint-imports --no-cache --no-logo || status=1; \
	exit $$status

# Removes the virtualenv and build/cache files; dev data in .mkt-x/ stays (rm -rf .mkt-x to reset).
clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -path ./.mkt-x -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# Schemathesis over the whole OpenAPI document for longer than `make test` does (every phase,
# stateful included, more examples): FUZZ_SECONDS=600 make fuzz for a deeper run.
FUZZ_SECONDS ?= 300
.PHONY: fuzz
fuzz: venv
	MKTX_FUZZ_SECONDS=$(FUZZ_SECONDS) $(VENV)/bin/python -m pytest -q -s \
		tests/api/test_openapi_conformance.py -k schemathesis
