# The two commands a newcomer needs: `make demo` and `make test`. Each sets itself up.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint bench kafka-up kafka-down postgres-up postgres-down clean

$(BIN)/streamfit $(VENV)/.installed: pyproject.toml setup.py src/streamfit/_native.c
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "streamfit needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(VENV)/.installed

install: $(VENV)/.installed

demo: install
	$(BIN)/streamfit demo $(ARGS)

# Starts the real Kafka broker (scripts/kafka) and PostgreSQL (scripts/postgres) for the tests
# and stops them afterwards (only those it started).
test: install
	bash scripts/test $(ARGS)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: install
	$(BIN)/python benchmarks/predictor.py --quick
	$(BIN)/python benchmarks/training.py --quick
	$(BIN)/python benchmarks/drift.py --quick

kafka-up:
	scripts/kafka up

kafka-down:
	scripts/kafka down

postgres-up:
	scripts/postgres up

postgres-down:
	scripts/postgres down

clean:
	rm -rf streamfit-data .pytest_cache
