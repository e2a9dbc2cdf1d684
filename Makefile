# The three commands the README promises.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test demo fixtures parity-table

install:  ## everything the tests need, on a fresh machine
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	cd clients/node && npm ci --ignore-scripts
	cd clients/vscode && npm ci --ignore-scripts --no-audit --no-fund
	sh clients/java/install-deps.sh
	sh clients/neovim/install-deps.sh

test:
	$(BIN)/python -m pytest -q

demo:  ## the main job on the bundled example agent
	$(BIN)/sbexportd inspect examples/ppo2_CartPole-v1.pkl
	$(BIN)/python -c "import numpy as np; np.save('examples/obs.npy', np.array([[0.01, 0.2, -0.03, -0.3], [0.1, 1.0, 0.05, -1.2], [-0.2, -0.5, 0.1, 0.8], [0, 0, 0, 0]], np.float32))"
	$(BIN)/sbexportd predict examples/ppo2_CartPole-v1.pkl --obs examples/obs.npy
	$(BIN)/sbexportd export examples/ppo2_CartPole-v1.pkl --to all --out examples/exported --force

fixtures:  ## regenerate tests/fixtures from the authentic SB2 stack (Python 3.7, TF 1.15)
	sh tools/legacy/setup_env.sh /tmp/sb2legacy
	/tmp/sb2legacy/bin/python tools/legacy/make_fixtures.py tests/fixtures

parity-table:  ## docs/parity.md from the parity tests' measurements
	SBEXPORTD_PARITY_TABLE=docs/parity.md $(BIN)/python -m pytest -q tests/test_parity_fixtures.py tests/test_parity_zoo.py
