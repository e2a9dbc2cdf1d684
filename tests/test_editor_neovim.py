"""A real editor nobody here wrote: headless Neovim (Debian's neovim package, installed
by `make install`) with its built-in LSP client and clients/neovim's config, pointed at
`sbexportd serve --stdio`. clients/neovim/test/editor_test.lua opens a Python file that
loads a fixture model and records what the user sees; this checks it: the hover
window, the code lenses, the diagnostic on a missing file, that running the Export
lens exports (with $/progress), and the Predict and Inspect lenses' answers."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sbexportd

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "ppo2_mlp_vec_discrete" / "model.zip"
SCRIPT = ROOT / "clients" / "neovim" / "test" / "editor_test.lua"


def test_neovim_hover_lenses_diagnostics_and_export(tmp_path):
    nvim = shutil.which("nvim")
    if nvim is None:  # a missing editor is a failure, not a skip: this is the acceptance test
        pytest.fail("nvim not found: run `make install` (clients/neovim/install-deps.sh installs Debian's neovim)")
    ws = tmp_path / "project"
    model = ws / "models" / "agent.zip"
    model.parent.mkdir(parents=True)
    shutil.copy(FIXTURE, model)
    (ws / ".git").mkdir()  # the root marker: the workspace folder
    source = ws / "scripts" / "train.py"
    source.parent.mkdir()
    source.write_text("from stable_baselines import PPO2\n"
                      'model = PPO2.load("models/agent.zip")\n'
                      'other = PPO2.load("models/missing.zip")\n')
    result, out = tmp_path / "result.json", tmp_path / "exports"
    env = {**os.environ, "SBEXPORTD_ROOT": str(ROOT), "SBEXPORTD_PYTHON": sys.executable,
           "SBEXPORTD_NVIM_FILE": str(source), "SBEXPORTD_NVIM_RESULT": str(result),
           "SBEXPORTD_NVIM_OUT": str(out), "SBEXPORTD_NVIM_MODEL": str(model),
           "XDG_STATE_HOME": str(tmp_path / "state"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    proc = subprocess.run([nvim, "--headless", "--clean", "-u", "NONE", "-i", "NONE", "-n",
                           "-c", f"luafile {SCRIPT}"], cwd=ws, env=env, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)
    assert result.is_file(), \
        f"nvim wrote no result (exit {proc.returncode}): {proc.stdout[-3000:]} {proc.stderr[-3000:]}"
    seen = json.loads(result.read_text())
    assert seen.get("error") is None, seen.get("error")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert seen["steps"][-1] == "stopped"
    assert seen["filetype"] == "python" and seen["client"] == "sbexportd"

    # the missing file: one warning on line 3, at the path, with the typed error's kind
    (d,) = seen["diagnostics"]
    assert (d["lnum"], d["col"]) == (2, source.read_text().splitlines()[2].index("models/missing.zip"))
    assert d["severity"] == 2 and d["source"] == "sbexportd" and d["code"] == "file_not_found"
    assert str(ws / "models" / "missing.zip") in d["message"]

    # the hover window shows the inspect summary (expected values from sbexportd's own inspect)
    info = sbexportd.load(model).inspect()
    hover = "\n".join(seen["hover"])
    for expected in (info["algorithm"].upper(), info["policy"]["class"], info["action_space"]["type"],
                     *[layer["name"] for layer in info["layers"]], ", ".join(info["outputs"])):
        assert expected in hover, (expected, hover)

    # three lenses on line 2, shown as virtual text
    assert [(lens["line"], lens["title"], lens["command"]) for lens in seen["lenses"]] == [
        (1, "Inspect", "sbexport.inspect"), (1, "Export...", "sbexport.export"),
        (1, "Predict sample", "sbexport.predict")]
    assert seen["lens_text"] == [{"line": 1, "text": "Inspect | Export... | Predict sample"}]

    # the Export lens exported, into the configured folder, with server-created progress
    export = seen["export"]
    assert export.get("err") is None, export
    assert export["result"]["out"] == str(out / "agent")
    manifest = json.loads((out / "agent" / "portable" / "manifest.json").read_text())
    assert manifest["target"] == "portable"
    kinds = [p["value"]["kind"] for p in seen["progress"]]
    assert kinds[0] == "begin" and "report" in kinds and kinds[-1] == "end"
    assert any(n["msg"].startswith(f"sbexportd: exported to {out / 'agent'}: portable") for n in seen["notifications"])

    # Predict sample: the daemon's answer on the lens's observation, told to the user
    predict = seen["predict"]["result"]
    obs = np.asarray(seen["lenses"][2]["arguments"][0]["obs"], np.float32)
    want = sbexportd.load(model).predict(obs)
    assert predict["outputs"]["actions"] == int(want["actions"])
    np.testing.assert_allclose(predict["outputs"]["probs"], want["probs"], rtol=1e-6)
    assert any(n["msg"].startswith("sbexportd: predict on the sample observation") for n in seen["notifications"])

    # Inspect: a floating window with the inspect result
    window = "\n".join(seen["inspect_window"])
    assert f"algorithm: {info['algorithm']}" in window and info["policy"]["class"] in window
