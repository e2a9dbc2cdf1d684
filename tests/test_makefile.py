"""The Makefile's install stamps: `make test` and `make demo` install first what is not
installed yet or whose inputs changed (requirements*.lock and pyproject.toml for the
Python env, each clients/X/package-lock.json for its node_modules, the
install-deps.sh scripts for Debian's packages), and nothing when nothing changed.
Checked with `make -n` (print, do not run) on the real Makefile in a scratch tree."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ["requirements.lock", "requirements-nodeps.lock", "pyproject.toml",
          "clients/node/package-lock.json", "clients/node/package.json",
          "clients/vscode/package-lock.json", "clients/vscode/package.json",
          "clients/java/install-deps.sh", "clients/neovim/install-deps.sh"]
STAMPS = [".venv/.installed", ".venv/.installed-debian",
          "clients/node/node_modules/.installed", "clients/vscode/node_modules/.installed"]
PIP = ".venv/bin/pip install -q -r requirements.lock"
NPM_NODE = "cd clients/node && npm ci"
NPM_VSCODE = "cd clients/vscode && npm ci"
DEBIAN = "sh $script"
PYTEST = ".venv/bin/python -m pytest -q"
LINT = [".venv/bin/ruff check .", ".venv/bin/mypy"]


@pytest.fixture
def tree(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make not found: the Makefile is NOT tested")
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    past = time.time() - 3600
    for name in INPUTS:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        os.utime(path, (past, past))
    return tmp_path


# CI runs this suite from `make test`: a make inherited through MAKELEVEL/MAKEFLAGS prints
# "Entering directory" lines and would pass on its flags, so the scratch make starts clean.
MAKE_ENV = {k: v for k, v in os.environ.items() if k not in {"MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES"}}


def dry_run(tree: Path, goal: str) -> str:
    proc = subprocess.run(["make", "--no-print-directory", "-n", goal], cwd=tree, env=MAKE_ENV,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def stamp_all(tree: Path) -> None:
    for name in STAMPS:
        path = tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def touch_now(tree: Path, name: str) -> None:
    later = time.time() + 60
    os.utime(tree / name, (later, later))


def test_a_fresh_machine_installs_everything_first(tree):
    out = dry_run(tree, "test")
    for step in (PIP, NPM_NODE, NPM_VSCODE, "clients/java/install-deps.sh", "clients/neovim/install-deps.sh"):
        assert step in out, out
    # the lint gate and the suite run after the install
    assert out.rstrip().endswith("\n".join([*LINT, PYTEST])), out
    demo = dry_run(tree, "demo")
    assert PIP in demo and NPM_NODE in demo and "sbexportd export" in demo
    assert DEBIAN not in demo and NPM_VSCODE not in demo  # the demo needs neither the JDK nor the editor


def test_nothing_to_install_when_nothing_changed(tree):
    stamp_all(tree)
    assert dry_run(tree, "test").strip().splitlines() == [*LINT, PYTEST]
    demo = dry_run(tree, "demo")
    assert "pip install" not in demo and "npm ci" not in demo and "sbexportd inspect" in demo


@pytest.mark.parametrize("changed, redone, kept", [
    ("requirements.lock", [PIP], [NPM_NODE, NPM_VSCODE, DEBIAN]),
    ("requirements-nodeps.lock", [PIP], [NPM_NODE, DEBIAN]),
    ("pyproject.toml", [".venv/bin/pip install -q --no-deps -e ."], [NPM_NODE]),
    ("clients/node/package-lock.json", [NPM_NODE], [PIP, NPM_VSCODE, DEBIAN]),
    ("clients/vscode/package-lock.json", [NPM_VSCODE], [PIP, NPM_NODE]),
    ("clients/java/install-deps.sh", [DEBIAN], [PIP, NPM_NODE]),
])
def test_a_changed_input_redoes_its_part_only(tree, changed, redone, kept):
    stamp_all(tree)
    touch_now(tree, changed)
    out = dry_run(tree, "test")
    for step in redone:
        assert step in out, out
    for step in kept:
        assert step not in out, out
    assert out.rstrip().endswith(PYTEST)


def test_make_install_installs_again(tree):
    stamp_all(tree)
    out = dry_run(tree, "install")
    assert PIP in out and NPM_NODE in out and NPM_VSCODE in out and DEBIAN in out
    assert PYTEST not in out
