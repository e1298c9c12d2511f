# Two commands do all the set-up on a fresh machine:
#   make run    - embedded broker + worker + demo traffic, live view (CPU backend)
#   make test   - the test suite (unit + integration against the real embedded broker)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Every dependency pinned with its hashes (requirements/*.lock, for Linux x86_64 and Python
# 3.11): setup installs test.lock; the images install worker.lock, simulator.lock and train.lock.
# After a change to pyproject.toml's dependencies, `make lock` re-resolves them (uv; keeps the
# pins it can, `make lock LOCK_ARGS=--upgrade` moves them) and tests/test_lock.py fails until then.
LOCK := requirements/test.lock
UV_VERSION ?= 0.13.8
UV := $(VENV)/bin/uv
# torch is the CPU wheel 2.13.0+cpu (requirements/torch-cpu.txt); a looser spec pulls a multi-GB
# CUDA build. Where it is not in a local wheel folder: make run TORCH_PIP_ARGS="--extra-index-url
# https://download.pytorch.org/whl/cpu", make lock LOCK_ARGS="--index https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=
LOCK_ARGS ?= --find-links /opt/wheels
LOCK_COMPILE = $(UV) pip compile pyproject.toml --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" $(LOCK_ARGS)
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup model run test lint lock clean

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes $(TORCH_PIP_ARGS) -r $(LOCK)
	$(PY) -m pip install -q --no-deps -e .
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

$(UV):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "uv==$(UV_VERSION)"

lock: $(UV)  ## re-resolve requirements/*.lock from pyproject.toml (the subsets within test.lock)
	$(LOCK_COMPILE) --extra test --override requirements/torch-cpu.txt -o requirements/test.lock
	$(LOCK_COMPILE) -c requirements/test.lock -o requirements/worker.lock
	$(LOCK_COMPILE) --extra data -c requirements/test.lock -o requirements/simulator.lock
	$(LOCK_COMPILE) --extra train --override requirements/torch-cpu.txt -c requirements/test.lock \
		-o requirements/train.lock

clean:
	rm -rf $(VENV) runs .pytest_cache
