"""clients/node: `npm test` runs the Node client's suite (node --test) against real
`sbexportd serve` daemons it starts with this Python: open/inspect/predict over JSON
and msgpack, errors, progress, AbortSignal cancellation; exports made by the daemon
(tfjs, onnx, portable) run in Node with @tensorflow/tfjs, onnxruntime-node and the
JavaScript portable evaluator, held to the parity rule against the daemon's predict;
the portable evaluator on every fixture, zoo agent and synthetic spec; the type
declarations, the example program and a short bench run."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "clients" / "node"


def test_node_client():
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node / npm not found: the Node client is NOT tested")
    if not (CLIENT / "node_modules" / "vscode-jsonrpc").is_dir():
        pytest.skip("clients/node/node_modules missing (make install runs npm ci --ignore-scripts): "
                    "the Node client is NOT tested")
    env = {**os.environ, "SBEXPORTD_PYTHON": sys.executable}
    proc = subprocess.run(["npm", "test", "--silent"], cwd=CLIENT, capture_output=True, text=True, env=env,
                          timeout=1200)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-8000:]
    passed = re.search(r"^# pass (\d+)", out, re.M)
    failed = re.search(r"^# fail (\d+)", out, re.M)
    assert passed and int(passed.group(1)) >= 60, out[-4000:]
    assert failed and int(failed.group(1)) == 0, out[-4000:]
