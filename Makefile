PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench lint dist docs clean

# The tests that need no Ray, no other process and no browser: the everyday lane (tests/conftest.py
# refuses a test that uses the session's Ray without the `ray` marker).
FAST := not ray and not cluster and not subprocess and not browser and not slow and not faults

TORCH := torch==2.14.1 torchvision==0.29.1
EXTRAS := .[dev,cluster,notebook,tracking]

# torch through pip (it takes the wheels this machine keeps on disk); the rest through uv, which installs the same
# packages in about a third of pip's time (28 s against 82 s on 2 cores), torch pinned so uv keeps pip's. Without
# uv (no index reachable for it), pip installs the rest.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	($(BIN)/pip install --quiet uv && $(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode \
		-e '$(EXTRAS)' $(TORCH)) || $(BIN)/pip install --quiet -e '$(EXTRAS)'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/proselflc tune quickstart

# Two pytest-xdist workers, each with its own session Ray; a test file stays on one worker (its module fixtures,
# e.g. a cluster, are built once). WORKERS=0 runs the suite in one process.
WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=25 $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist loadfile)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "$(FAST)"

bench: $(STAMP)
	$(BIN)/python -m benchmarks all --quick

dist: $(STAMP)
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check dist/*

docs: $(STAMP)
	$(BIN)/python -m proselflc.reference docs/reference
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools

clean:
	rm -rf $(VENV) build dist *.egg-info src/*.egg-info
