"""The lint gate (`make lint`: ruff and mypy with pyproject.toml's settings) fails on
the faults it is there for. `make lint` itself checks the tree is clean; these prove
the other side, on small files written here."""
from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

CONFIG = str(ROOT / "pyproject.toml")


def _run(tool: str, *args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", tool, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_ruff_fails_on_an_unused_import_and_a_blind_except(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\n\ndef f():\n    try:\n        return 1\n    except Exception:\n        return 0\n")
    proc = _run("ruff", "check", "--no-cache", "--config", CONFIG, str(bad), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "F401" in proc.stdout and "BLE001" in proc.stdout
    good = tmp_path / "good.py"
    good.write_text("import os\n\n\ndef f() -> str:\n    return os.sep\n")
    proc = _run("ruff", "check", "--no-cache", "--config", CONFIG, str(good), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_fails_on_a_type_error_in_an_unannotated_function(tmp_path):
    # check_untyped_defs: the body of a function without annotations is checked too
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    n: int = 0\n    n = 'three'\n    return n\n")
    proc = _run("mypy", "--config-file", CONFIG, "--cache-dir", str(tmp_path / "cache"), str(bad), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "bad.py:3: error" in proc.stdout and "[assignment]" in proc.stdout
    good = tmp_path / "good.py"
    good.write_text("def f():\n    n: int = 0\n    n = 3\n    return n\n")
    proc = _run("mypy", "--config-file", CONFIG, "--cache-dir", str(tmp_path / "cache"), str(good), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
