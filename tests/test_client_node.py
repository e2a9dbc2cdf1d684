"""clients/node: `npm test` runs the Node client's suite (node --test) against real
`sbexportd serve` daemons it starts with this Python: open/inspect/predict over JSON
and msgpack, errors, progress, AbortSignal cancellation; exports made by the daemon
(tfjs, onnx, portable) run in Node with @tensorflow/tfjs, onnxruntime-node and the
JavaScript portable evaluator, held to the parity rule against the daemon's predict;
the portable evaluator on every fixture and synthetic spec, and on the portable export of
every zoo agent (../shared/zoo and zoo-more, 54 at their real sizes, data from
tests/zoo_reference.py) against SB2's goldens under parity.judge's rule and float32 bound,
with a nudged export rejected; the type declarations, the example program and a short
bench run. And the package as another
project gets it: `npm pack`'s tarball installed into a fresh project, its declarations
compiled there with tsc --strict, a script run there against a real daemon."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import zoo_reference
from zoo import KNOWN_FAILURES, agents

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
    # every zoo agent ran, and every auto export (a missing zoo fails zoo_reference.py, and so zoo.test.mjs)
    checked = re.search(r"zoo agents checked against SB2: (\d+); their auto exports against the reference: (\d+)", out)
    expected = zoo_reference.checks()
    exported = [a for a in agents() if (a.id, "portable") not in KNOWN_FAILURES]
    assert checked and int(checked.group(1)) == len(exported), out[-4000:]
    assert int(checked.group(1)) + int(checked.group(2)) == len(expected), out[-4000:]

def test_npm_pack_installs_into_a_fresh_project(tmp_path):
    """`npm pack` gives a tarball with the JS and its declarations (and no tests); `npm
    install ./sbexportd-client-*.tgz` installs it into a fresh project offline. (This
    machine has no registry metadata in npm's cache, only tarballs, so `--offline`
    resolves the dependencies against a node_modules seeded with the repo's installed
    ones; npm removes every package the tarball does not ask for, typescript among them,
    so a dependency missing from package.json fails the script.) There tsc --strict
    compiles a consumer against the installed declarations, and test/package/
    use-package.mjs starts a real daemon, exports the bundled agent to tfjs, onnx and
    portable and runs each with the installed loadExport against the daemon's NumPy
    reference. The daemon's own Node check runs through that installed package too
    (SBEXPORTD_NODE_CLIENT)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node / npm not found: the Node package is NOT tested")
    if not (CLIENT / "node_modules" / "vscode-jsonrpc").is_dir():
        pytest.skip("clients/node/node_modules missing (make install): the Node package is NOT tested")
    version = json.loads((CLIENT / "package.json").read_text())["version"]
    project = tmp_path / "project"
    project.mkdir()
    try:
        _install_and_use(project, version, tmp_path / "exported")
    finally:  # pytest keeps the last runs' tmp_path: not 600 MB of node_modules each
        shutil.rmtree(project / "node_modules", ignore_errors=True)


def _install_and_use(project: Path, version: str, out: Path) -> None:
    proc = subprocess.run(["npm", "pack", "--json", "--pack-destination", str(project)], cwd=CLIENT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (packed,) = json.loads(proc.stdout)
    tarball = project / packed["filename"]
    assert tarball.name == f"sbexportd-client-{version}.tgz" and tarball.is_file()
    files = {f["path"] for f in packed["files"]}
    assert {"package.json", "README.md", "src/index.js", "src/index.d.ts", "src/portable.js",
            "src/portable.d.ts", "src/exports.js", "src/client.js"} <= files, files
    assert not any(f.startswith(("test/", "bench/", "node_modules/")) for f in files), files

    (project / "package.json").write_text(json.dumps(
        {"name": "uses-sbexportd", "version": "1.0.0", "private": True, "type": "module"}))
    (project / "node_modules").mkdir()
    subprocess.run(["cp", "-a", "--reflink=auto", f"{CLIENT / 'node_modules'}/.", str(project / "node_modules")],
                   check=True, timeout=600)
    (project / "node_modules" / ".package-lock.json").unlink(missing_ok=True)
    assert (project / "node_modules" / "typescript").is_dir()
    proc = subprocess.run(["npm", "install", "--offline", "--ignore-scripts", "--no-audit", "--no-fund",
                           f"./{tarball.name}"], cwd=project, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed = project / "node_modules" / "sbexportd-client"
    assert json.loads((project / "package.json").read_text())["dependencies"]["sbexportd-client"].endswith(".tgz")
    assert not installed.is_symlink() and (installed / "src" / "index.d.ts").is_file()
    assert not (installed / "test").exists()
    assert not (project / "node_modules" / "typescript").exists(), "npm kept packages nobody asked for"

    for name in ("consumer.ts", "tsconfig.json", "use-package.mjs"):
        shutil.copy(CLIENT / "test" / "package" / name, project / name)
    tsc = CLIENT / "node_modules" / "typescript" / "bin" / "tsc"
    proc = subprocess.run(["node", str(tsc), "-p", "tsconfig.json"], cwd=project, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    env = {**os.environ, "SBEXPORTD_NODE_CLIENT": str(installed)}
    proc = subprocess.run(["node", "use-package.mjs", sys.executable, str(ROOT),
                           str(ROOT / "examples" / "ppo2_CartPole-v1.pkl"), str(out)],
                          cwd=project, capture_output=True, text=True, timeout=1200, env=env)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0, said[-6000:]
    lines = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines[0] == {"package": version, "from": str(installed / "src" / "index.js")}
    runs = {ln["target"]: ln for ln in lines if "target" in ln}
    assert set(runs) == {"tfjs", "onnx", "portable"}
    assert runs["tfjs"]["runtime"].startswith("@tensorflow/tfjs 4.22.0 (cpu backend")
    assert runs["onnx"]["runtime"].startswith("onnxruntime-node 1.30.0")
    for run in runs.values():
        assert set(run["worst"]) == {"action", "probs", "values"}, run
    assert "use-package: every export agrees with the daemon" in proc.stdout
    # the daemon checked tfjs and onnx with the installed client's loadExport
    tfjs = json.loads((out / "tfjs" / "manifest.json").read_text())["parity"]["runtime"]
    onnx = json.loads((out / "onnx" / "manifest.json").read_text())["parity"]["runtime"]
    assert "in Node" in tfjs and "loadExport" in tfjs and "not verified" not in tfjs, tfjs
    assert "in Node agrees" in onnx, onnx
