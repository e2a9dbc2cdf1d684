# The three commands the README promises.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test demo fixtures

install:  ## everything the tests need, on a fresh machine
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .

test:
	$(BIN)/python -m pytest -q

demo:  ## the main job on the bundled example agent
	$(BIN)/sbexportd inspect examples/ppo2-cartpole.zip

fixtures:  ## regenerate tests/fixtures from the authentic SB2 stack (Python 3.7, TF 1.15)
	sh tools/legacy/setup_env.sh /tmp/sb2legacy
	/tmp/sb2legacy/bin/python tools/legacy/make_fixtures.py tests/fixtures
