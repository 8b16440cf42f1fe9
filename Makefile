# TreeSynth Studio: `make app` runs the app on the embedded defaults, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# llama-cpp-python compiles llama.cpp from source: use both cores.
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install install-test install-ray app share demo test test-fast lint format bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e .
	touch $@

install-test: $(VENV)/.installed-test

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

# The optional Ray extra (treesynth score --engine ray); CI installs it so the Ray tests run.
install-ray: $(VENV)/.installed-ray

$(VENV)/.installed-ray: $(VENV)/.installed-test
	$(BIN)/python -m pip install -q -e ".[ray]"
	touch $@

app: install
	$(BIN)/streamlit run app.py --server.address 127.0.0.1

# Serve the app to the network read-only: no import or opening by path, no settings edits, no jobs.
share: install
	TREESYNTH_READ_ONLY=1 $(BIN)/streamlit run app.py --server.address 0.0.0.0

demo: install
	$(BIN)/treesynth demo

test: install-test
	$(BIN)/python -m pytest

# The inner loop: everything but the real-component tests (embedded model, real server, browser).
test-fast: install-test
	$(BIN)/python -m pytest -m "not slow"

# The formatter wins: `make format` lays the code out, `make lint` checks layout, lint rules and types.
lint: install-test
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install-test
	$(BIN)/python benchmarks/llm_throughput.py
	$(BIN)/python benchmarks/tree_view.py
	$(BIN)/python benchmarks/decontam.py --samples 200000

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
