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

.PHONY: venv run test horovod browser demo
venv: $(VENV)/.installed

# Horovod 0.28.1 does not build against TF 2.21 as published: the script patches and builds it,
# caching the wheel outside the clone (~/.cache/tfglow/horovod).
horovod: $(VENV)/.installed
	tools/build_horovod.sh $(PY)

run: $(VENV)/.installed
	$(PY) train.py --problem digits --logdir runs/digits --epochs 40 --restore_if_exists

test: $(VENV)/.installed horovod browser
	$(PY) -m pytest -q tests

# Headless Chromium for the demo's browser test (tests/test_demo_browser.py): Debian's package,
# driven by Playwright through executable_path (Playwright's own browser downloads are not used).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

# The interactive demo on the model `make run` trains: export it, compute its class directions,
# serve on http://127.0.0.1:8000 (tfglow/demo; DEMO_ARGS e.g. "--port 8001").
DEMO_RUN ?= runs/digits
DEMO_DIR ?= $(DEMO_RUN)/demo
demo: $(VENV)/.installed
	$(PY) evaluate.py --restore_path $(DEMO_RUN) --export $(DEMO_DIR)/exported
	$(PY) -m tfglow.demo.directions --model $(DEMO_DIR)/exported --data_dir digits \
		--out $(DEMO_DIR)/directions.npz
	$(PY) -m tfglow.demo --model $(DEMO_DIR)/exported --directions $(DEMO_DIR)/directions.npz $(DEMO_ARGS)
