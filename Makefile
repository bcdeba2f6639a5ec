# Two commands for a fresh machine:  `make run` (main job) and `make test` (test suite).
# Both create .venv with the pinned requirements on first use.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

.PHONY: venv run test horovod
venv: $(VENV)/.installed

# Horovod 0.28.1 does not build against TF 2.21 as published: the script patches and builds it,
# caching the wheel outside the clone (~/.cache/tfglow/horovod).
horovod: $(VENV)/.installed
	tools/build_horovod.sh $(PY)

run: $(VENV)/.installed
	$(PY) train.py --problem digits --logdir runs/digits --epochs 40 --restore_if_exists

test: $(VENV)/.installed horovod
	$(PY) -m pytest -q tests
