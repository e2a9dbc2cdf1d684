# The three commands the README promises.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test demo fixtures fixtures-eras parity-table

install:  ## everything the tests need, on a fresh machine
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.lock
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

# One release per older on-disk format era (tools/legacy/README.md, "On-disk format eras").
ERA_RELEASES ?= 2.3.0 2.4.1 2.5.1 2.6.0 2.8.0

fixtures:  ## regenerate tests/fixtures from the authentic SB2 stacks (Python 3.7, TF 1.15): 2.10.2, then the older eras
	sh tools/legacy/setup_env.sh /tmp/sb2legacy
	/tmp/sb2legacy/bin/python tools/legacy/make_fixtures.py tests/fixtures
	$(MAKE) fixtures-eras

fixtures-eras:  ## only the older releases' fixtures (a venv per release in /tmp/sb2-RELEASE), then what 2.10.2 answers on them
	set -e; for r in $(ERA_RELEASES); do \
	    sh tools/legacy/setup_env.sh /tmp/sb2-$$r $$r; \
	    /tmp/sb2-$$r/bin/python tools/legacy/make_era_fixtures.py tests/fixtures; \
	done
	sh tools/legacy/setup_env.sh /tmp/sb2legacy
	/tmp/sb2legacy/bin/python tools/legacy/check_current.py tests/fixtures

parity-table:  ## docs/parity.md from the parity tests' measurements
	SBEXPORTD_PARITY_TABLE=docs/parity.md $(BIN)/python -m pytest -q tests/test_parity_fixtures.py tests/test_zoo.py -k "test_fixture_parity or test_predict_matches_sb2"
