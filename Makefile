# The README's two commands are `make demo` and `make test`. Each creates .venv with the
# Python it finds (PYTHON=python3 by default; `make test PYTHON=python3.11` picks another), installs the local CPU wheel
# torch==2.13.0 first, then this package with the extras it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN := torch==2.13.0
OUT ?= demo_output

.PHONY: demo test bench docs lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH_PIN)
	touch $@

$(VENV)/.demo: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install --quiet -e ".[demo]"
	touch $@

$(VENV)/.tests: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install --quiet -e ".[tests]"
	touch $@

demo: $(VENV)/.demo
	$(BIN)/python -m protolearn.demo --output-dir $(OUT)

test: $(VENV)/.tests
	$(BIN)/python -m pytest -n 2 --durations=20

lint: $(VENV)/.tests
	$(BIN)/python -m pip install --quiet ruff
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks

# Peers need torchvision, which does not import beside the CPU torch 2.13.0 wheel: they run
# in a separate environment (see ../shared/BENCHMARKS.md), never in CI.
BENCH_VENV ?= .venv-bench
$(BENCH_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BENCH_VENV)/bin/python -m pip install --quiet -e ".[bench]"
	$(BENCH_VENV)/bin/python -m pip install --quiet "setuptools<81"
	touch $@

bench: $(BENCH_VENV)/.installed
	for f in benchmarks/*.py; do $(BENCH_VENV)/bin/python $$f || exit 1; done

docs: $(VENV)/.torch
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	$(BIN)/python -m sphinx -b html doc doc/_build/html

clean:
	rm -rf $(VENV) $(OUT) doc/_build build *.egg-info
