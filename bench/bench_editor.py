"""Benchmark of the editor features (a benchmark, not a test): prints a Markdown table.

    .venv/bin/python bench/bench_editor.py [--hovers 300] [--legacy-python /tmp/sb2legacy/bin/python]

An editor's view, through pygls' LanguageClient over `sbexportd serve --stdio`: for
each agent (the zoo's PPO2 CartPole, the zoo's HER FetchReach, the CNN fixture), a
Python document naming it is opened; measured are the first diagnostics (the file read
and understood: the cold path), the first hover, then --hovers warm hovers (p50, p99),
code lenses, and whether the daemon loaded TensorFlow or torch. The baselines, timed in
the same run: a cold `sbexportd inspect` process, and what a user did before: SB2
2.10.2 on its legacy stack loading the agent to print its policy (when
--legacy-python exists).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from lsprotocol import types as T
from pygls.lsp.client import LanguageClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_daemon import machine  # noqa: E402

ZOO = Path(os.environ.get("SBEXPORTD_ZOO", ROOT.parent / "shared" / "zoo"))
AGENTS = [("zoo PPO2 CartPole-v1 (MLP 64x64)", ZOO / "agents" / "ppo2" / "CartPole-v1.pkl"),
          ("zoo HER FetchReach-v1 (SAC, MLP)", ZOO / "agents" / "her" / "FetchReach-v1.pkl"),
          ("fixture A2C CnnPolicy (image obs)", ROOT / "tests" / "fixtures" / "a2c_cnn_img_discrete" / "model.zip")]

LEGACY = r'''
import sys, time, warnings, types
t0 = time.perf_counter()
warnings.filterwarnings("ignore")
try:
    import stable_baselines
except ImportError:
    sys.modules["stable_baselines.ddpg.memory"] = types.ModuleType("stable_baselines.ddpg.memory")
    sys.modules["stable_baselines.ddpg.memory"].Memory = object
    import stable_baselines
from stable_baselines.common.base_class import BaseRLModel
data, params = BaseRLModel._load_from_file(sys.argv[1])
algo = getattr(stable_baselines, sys.argv[2].upper())
model = algo.load(sys.argv[1])
print(model.policy, model.observation_space, model.action_space, len(model.get_parameter_list()))
'''


def pct(times, q) -> float:
    return float(np.percentile(np.asarray(times) * 1e3, q))


async def measure(path: Path, hovers: int) -> dict:
    ws = Path(tempfile.mkdtemp(prefix="sbexportd-bench-editor-"))
    try:
        shutil.copy(path, ws / path.name)
        c = LanguageClient("bench", "1")
        got = asyncio.Event()

        @c.feature(T.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def _diag(ls, p):
            got.set()

        await c.start_io(sys.executable, "-m", "sbexportd.cli", "serve", "--stdio", cwd=str(ROOT))
        drain = asyncio.ensure_future(c._server.stderr.read())  # held: the loop keeps tasks weakly
        await c.initialize_async(T.InitializeParams(capabilities=T.ClientCapabilities(), root_uri=ws.as_uri()))
        c.initialized(T.InitializedParams())
        line = f'model = load("{path.name}")'
        doc = ws / "train.py"
        uri = doc.as_uri()
        pos = T.HoverParams(text_document=T.TextDocumentIdentifier(uri=uri),
                            position=T.Position(line=0, character=line.index(".") - 1))
        t = time.perf_counter()
        c.text_document_did_open(T.DidOpenTextDocumentParams(text_document=T.TextDocumentItem(
            uri=uri, language_id="python", version=1, text=line + "\n")))
        await got.wait()
        open_s = time.perf_counter() - t
        t = time.perf_counter()
        h = await c.text_document_hover_async(pos)
        first = time.perf_counter() - t
        assert h is not None and "###" in h.contents.value
        times = []
        for _ in range(hovers):
            t = time.perf_counter()
            await c.text_document_hover_async(pos)
            times.append(time.perf_counter() - t)
        lens_times = []
        for _ in range(50):
            t = time.perf_counter()
            lenses = await c.text_document_code_lens_async(T.CodeLensParams(
                text_document=T.TextDocumentIdentifier(uri=uri)))
            lens_times.append(time.perf_counter() - t)
        assert len(lenses) == 3
        maps = Path(f"/proc/{c._server.pid}/maps").read_text()  # noqa: ASYNC240 - once, after the timings
        heavy = [name for name in ("tensorflow", "libtorch") if name in maps]
        await c.shutdown_async(None)
        c.exit(None)
        await c.stop()
        await drain
        return {"open": open_s, "first": first, "times": times, "lens": lens_times, "heavy": heavy}
    finally:
        shutil.rmtree(ws, ignore_errors=True)


def cold_inspect(path: Path) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sbexportd.cli", "inspect", str(path)], check=True, cwd=ROOT,
                   capture_output=True)
    return time.perf_counter() - t


def legacy_load(python: str, path: Path) -> float | None:
    import sbexportd
    algo = sbexportd.load(path).spec.algo
    t = time.perf_counter()
    proc = subprocess.run([python, "-c", LEGACY, str(path), algo], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hovers", type=int, default=300)
    ap.add_argument("--legacy-python", default="/tmp/sb2legacy/bin/python")
    args = ap.parse_args()
    info = machine()
    print(f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['ram']}; Python {info['python']}, "
          f"pygls {info['pygls']}, {info['event loop']}; load average {os.getloadavg()[0]:.2f}\n")
    print("| agent | open -> diagnostics (ms) | first hover (ms) | warm hover p50 (ms) | warm hover p99 (ms) "
          "| code lenses p50 (ms) | TF / torch loaded | cold `sbexportd inspect` (s) | SB2 load + print (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, path in AGENTS:
        if not path.is_file():
            print(f"| {name} | not found: {path} | | | | | | | |")
            continue
        m = asyncio.run(measure(path, args.hovers))
        cold = cold_inspect(path)
        legacy = legacy_load(args.legacy_python, path) if os.path.exists(args.legacy_python) else None
        print(f"| {name} | {m['open'] * 1e3:.0f} | {m['first'] * 1e3:.1f} | {pct(m['times'], 50):.2f} | "
              f"{pct(m['times'], 99):.2f} | {pct(m['lens'], 50):.2f} | {', '.join(m['heavy']) or 'neither'} | "
              f"{cold:.2f} | {'-' if legacy is None else f'{legacy:.2f}'} |")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
