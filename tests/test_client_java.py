"""clients/java: `clients/java/build.sh test` compiles the Java client with javac against
Debian's jars (gson, msgpack-core; `clients/java/install-deps.sh`), makes the reference
data (every fixture and synthetic spec exported to `portable`, with the NumPy
reference's outputs) and runs the JUnit 5 suite: PortablePolicy parity on 83 cases,
and SbExportClient against a real `sbexportd serve --tcp` daemon (JSON and msgpack,
errors, concurrency, the Example program)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_SH = ROOT / "clients" / "java" / "build.sh"


def test_java_client():
    if shutil.which("javac") is None or shutil.which("java") is None:
        pytest.skip("javac not found (OpenJDK 17): the Java client is NOT tested")
    env = {**os.environ, "SBEXPORTD_PYTHON": sys.executable}
    proc = subprocess.run(["sh", str(BUILD_SH), "test"], capture_output=True, text=True, env=env, timeout=1200)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-8000:]
    found = re.search(r"\[\s*(\d+) tests successful\s*\]", out)
    failed = re.search(r"\[\s*(\d+) tests failed\s*\]", out)
    assert found and int(found.group(1)) > 90, out[-4000:]
    assert failed and int(failed.group(1)) == 0, out[-4000:]
