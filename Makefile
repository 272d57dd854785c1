# partnergate: `make demo` runs the seed scenario, `make test` runs every test on SQLite and PostgreSQL.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-sqlite test-postgresql system-deps screenshots fuzz lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/partnergate demo

test: $(STAMP) system-deps
	$(MAKE) test-sqlite
	$(MAKE) test-postgresql

test-sqlite: $(STAMP) system-deps
	PARTNERGATE_TEST_STORE=sqlite $(BIN)/pytest -q

test-postgresql: $(STAMP) system-deps
	PARTNERGATE_TEST_STORE=postgresql $(BIN)/pytest -q

# nginx and Chromium for the proxy and browser tests: installed when missing and run as
# root with apt-get (as CI does); otherwise a message naming them, and a failure.
system-deps:
	@bash scripts/system-deps.sh

# docs/ui/*.png: the main pages at 1280x800 and 390x844, from a fresh server with sample data.
screenshots: $(STAMP) system-deps
	$(BIN)/python scripts/screenshots.py docs/ui

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
