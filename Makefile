# partnergate: `make demo` runs the seed scenario, `make test` runs every test on SQLite and PostgreSQL.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-sqlite test-postgresql fuzz lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/partnergate demo

test: $(STAMP)
	$(MAKE) test-sqlite
	$(MAKE) test-postgresql

test-sqlite: $(STAMP)
	PARTNERGATE_TEST_STORE=sqlite $(BIN)/pytest -q

test-postgresql: $(STAMP)
	PARTNERGATE_TEST_STORE=postgresql $(BIN)/pytest -q

# The fuzz tests with many more examples, random each run, failures shrunk to their
# smallest form; PARTNERGATE_FUZZ_EXAMPLES sets how many per test (default 5000).
fuzz: $(STAMP)
	PARTNERGATE_FUZZ=long PARTNERGATE_TEST_STORE=sqlite $(BIN)/pytest -q tests/security -k fuzz
	PARTNERGATE_FUZZ=long PARTNERGATE_TEST_STORE=postgresql $(BIN)/pytest -q tests/security -k fuzz

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

bench: $(STAMP)
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) build *.egg-info
