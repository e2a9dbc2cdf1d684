# The README's commands: `make test` and `make demo` each install first what they need
# (and what changed since it was installed), so on a fresh machine either alone works;
# `make install` installs everything again.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

# Install stamps, each redone when the files it installs from are newer:
#   $(VENV)/.installed                      the Python env: requirements*.lock, pyproject.toml
#   clients/X/node_modules/.installed       npm ci of every clients/X/package-lock.json
#   $(VENV)/.installed-debian               clients/X/install-deps.sh (JDK and jars, ...)
PY_STAMP := $(VENV)/.installed
NODE_STAMPS := $(patsubst %/package-lock.json,%/node_modules/.installed,$(wildcard clients/*/package-lock.json))
DEBIAN_STAMP := $(VENV)/.installed-debian
DEBIAN_SCRIPTS := $(wildcard clients/*/install-deps.sh)
INSTALLED := $(PY_STAMP) $(NODE_STAMPS) $(DEBIAN_STAMP)

.PHONY: install lint test demo fixtures fixtures-eras parity-table

install:  ## everything the tests and the demo need, installed again (stamps or not)
	$(MAKE) --always-make $(INSTALLED)

$(PY_STAMP): requirements.lock requirements-nodeps.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# onnxruntime-node's install script downloads from a host that cannot be reached; its
# CPU binaries are in the package already
clients/%/node_modules/.installed: clients/%/package-lock.json clients/%/package.json
	cd clients/$* && npm ci --ignore-scripts --no-audit --no-fund
	touch $@

$(DEBIAN_STAMP): $(DEBIAN_SCRIPTS)
	set -e; for script in $(DEBIAN_SCRIPTS); do sh $$script; done
	mkdir -p $(VENV) && touch $@

lint: $(PY_STAMP)  ## ruff and mypy as configured in pyproject.toml: any finding fails
	$(BIN)/ruff check .
	$(BIN)/mypy

test: $(INSTALLED) lint  ## the gate, then the whole suite (what CI runs): Python, the C program, the clients, the editors
	$(BIN)/python -m pytest -q

demo: $(PY_STAMP) clients/node/node_modules/.installed  ## the main job on the bundled example agent (tfjs and onnx are checked in Node)
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
