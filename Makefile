# The two commands a newcomer needs: `make demo` and `make test`. Each sets itself up.
# Every package comes from uv.lock, exactly what CI tested; `make upgrade` moves the lock on.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# uv itself, pinned, in a virtualenv of its own (.uv) so that nothing is installed system-wide.
UV_VERSION := 0.13.9
UV := .uv/bin/uv

.PHONY: install demo test docs lint bench dist upgrade kafka-up kafka-down postgres-up postgres-down clean

$(UV):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "streamfit needs Python 3.11+"'
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet uv==$(UV_VERSION)

# --frozen: install uv.lock as it is (hashes checked), never re-resolve. The dev group (pytest,
# ruff...) comes with it; streamfit itself is installed editable, its native decoder compiled.
# --compile-bytecode, as pip does: a service does not compile its dependencies again at every
# start where PYTHONDONTWRITEBYTECODE is set (recovery is clocked from a replacement's start).
$(BIN)/streamfit $(VENV)/.installed: pyproject.toml uv.lock setup.py src/streamfit/_native.c | $(UV)
	$(UV) sync --frozen --quiet --compile-bytecode --extra dask --python $(PYTHON)
	@touch $(VENV)/.installed

install: $(VENV)/.installed

demo: install
	$(BIN)/streamfit demo $(ARGS)

# Starts the real Kafka broker (scripts/kafka) and PostgreSQL (scripts/postgres) for the tests
# and stops them afterwards (only those it started).
test: install
	bash scripts/test $(ARGS)

# The documentation site, built strictly into site/ (a broken link or a missing page fails it); its
# reference pages and benchmark plots are generated from the code and benchmarks/results/ at build.
docs: install
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs build --strict --quiet

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

# An sdist and a wheel (the native decoder compiled in) in dist/.
dist: | $(UV)
	$(UV) build --python $(PYTHON) --out-dir dist

# Re-resolves uv.lock to the newest release of everything, installs it and runs the whole suite;
# the new uv.lock is left for review (git diff uv.lock), whether the suite passed or not.
upgrade: | $(UV)
	$(UV) lock --upgrade
	$(UV) sync --frozen --quiet --compile-bytecode --extra dask --python $(PYTHON)
	@touch $(VENV)/.installed
	bash scripts/test $(ARGS)

postgres-up:
	scripts/postgres up

postgres-down:
	scripts/postgres down

clean:
	rm -rf streamfit-data .pytest_cache dist site
