"""clients/vscode: `npm test` compiles the extension with tsc --strict, unit-tests its
logic, runs that logic against a real `sbexportd serve --stdio` it starts with this
Python (lens routing, the export picker's params, Replace on an existing export, the
manifest's settings and targets being the server's), checks the manifest against the
code and packages it with vsce. VS Code itself cannot run here (clients/vscode/README.md)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTENSION = ROOT / "clients" / "vscode"


def test_vscode_extension():
    # a missing runtime is a failure, not a skip
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node / npm not found: install Node.js 20 (the README's fresh machine), then `make install`")
    if not (EXTENSION / "node_modules" / "vscode-languageclient").is_dir():
        pytest.fail("clients/vscode/node_modules missing: run `make install` (npm ci in clients/vscode)")
    env = {**os.environ, "SBEXPORTD_PYTHON": sys.executable}
    proc = subprocess.run(["npm", "test", "--silent"], cwd=EXTENSION, capture_output=True, text=True, env=env,
                          timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-8000:]
    passed = re.search(r"^# pass (\d+)", out, re.M)
    failed = re.search(r"^# fail (\d+)", out, re.M)
    skipped = re.search(r"^# skipped (\d+)", out, re.M)
    assert passed and int(passed.group(1)) >= 13, out[-4000:]
    assert failed and int(failed.group(1)) == 0, out[-4000:]
    assert skipped and int(skipped.group(1)) == 0, out[-4000:]
