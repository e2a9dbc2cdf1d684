"""`python -m sbexportd` is the command line."""
from __future__ import annotations

import subprocess
import sys

from conftest import FIXTURES, ROOT


def test_python_m_sbexportd_runs_the_cli():
    model = FIXTURES / "ppo2_mlp_vec_box" / "model.zip"
    proc = subprocess.run([sys.executable, "-m", "sbexportd", "inspect", str(model), "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '"algorithm": "ppo2"' in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "sbexportd", "inspect", str(ROOT / "README.md")],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 3 and bad.stderr.startswith("sbexportd: error:")  # an input file it cannot read
