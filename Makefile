# Two commands do all the set-up on a fresh machine:
#   make run    - embedded broker + worker + demo traffic, live view (CPU backend)
#   make test   - the test suite (unit + integration against the real embedded broker)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The CPU wheel of torch; a looser spec pulls a multi-GB CUDA build. On a laptop without a local
# wheel cache: make run TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup model run test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

model: setup  ## fetch pinned data + train the heads (cached in ~/.cache/riskstream)
	$(PY) -m models build

run: model
	$(PY) -m stream run $(ARGS)

test: model
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check stream models tests bench
	$(VENV)/bin/ruff format --check stream models tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache
