# Quick start: `make demo` runs the main job, `make test` runs the linter and the whole test suite.
# Both create .venv on first use and install the package with the pinned torch (constraints.txt).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SYSDEPS := $(VENV)/.system-deps

.PHONY: demo test lint format bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,serve,tensorboard,mlflow,ray,postgres]'
	touch $(STAMP)

# Debian's PostgreSQL server and Chromium for the service's tests (tools/system-deps.sh installs what is missing)
$(SYSDEPS): tools/system-deps.sh | $(STAMP)
	./tools/system-deps.sh
	touch $(SYSDEPS)

demo: $(STAMP)
	$(BIN)/lifelong run

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: lint $(SYSDEPS)
	$(BIN)/python -m pytest

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) lifelong-runs .pytest_cache
