"""Benchmark of `sbexportd serve` (a benchmark, not a test): prints Markdown tables.

    .venv/bin/python bench/bench_daemon.py [--agent PATH] [--calls 2000] [--targets onnx,savedmodel]
                                           [--legacy-python /tmp/sb2legacy/bin/python] [--no-exports]

Measures, in one run, on the zoo's PPO2 CartPole agent, each figure also as a ratio
against SB2 timed in the same run:
  - the baseline: SB2 2.10.2's own model.predict (and the session.run under it,
    act_model.step) at batch 1 and 1024, in-process, on its legacy stack (Python 3.7,
    TensorFlow 1.15), with the same observations;
  - sbexportd in-process: Model.predict with the default backend (the fast path),
    the NumPy reference, and the TensorFlow backend (its warm session);
  - predict round trip at batch 1 over TCP (loopback), JSON and msgpack: p50 / p99;
  - throughput at batch 1024 (one client, sequential requests), JSON lists, JSON
    base64 and msgpack;
  - 1, 4 and 16 concurrent clients (separate processes), batch 1 and batch 1024
    msgpack: aggregate throughput and errors;
  - the same export done twice in the daemon (the second is served by the export
    cache) against one cold `sbexportd export` process.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the daemon does: the in-process row compares alike
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from rpc_client import Daemon, b64, raw  # noqa: E402 - the tests' independent client

ZOO = Path(os.environ.get("SBEXPORTD_ZOO", ROOT.parent / "shared" / "zoo"))

LEGACY_SCRIPT = r'''
import json, sys, time, types, warnings
warnings.filterwarnings("ignore")
import numpy as np
try:
    from stable_baselines import PPO2
except ImportError:  # an install without mpi4py: give ddpg.memory a stand-in, PPO2 does not use it
    sys.modules["stable_baselines.ddpg.memory"] = types.ModuleType("stable_baselines.ddpg.memory")
    sys.modules["stable_baselines.ddpg.memory"].Memory = object
    from stable_baselines import PPO2
import tensorflow as tf, stable_baselines
agent, calls, with_batch = sys.argv[1], int(sys.argv[2]), sys.argv[4] == "1"
obs = np.load(sys.argv[3])
model = PPO2.load(agent)
for i in range(200):
    model.predict(obs[i % len(obs)], deterministic=True)
times = []
for i in range(calls):
    t = time.perf_counter()
    model.predict(obs[i % len(obs)], deterministic=True)
    times.append(time.perf_counter() - t)
step = []  # the session.run under predict: act_model.step (action, value, state, neglogp)
for i in range(calls):
    o = obs[i % len(obs)][None]
    t = time.perf_counter()
    model.act_model.step(o, deterministic=True)
    step.append(time.perf_counter() - t)
big = np.resize(obs, (1024, obs.shape[1]))
model.predict(big, deterministic=True)
t, n = time.perf_counter(), 0
while with_batch and time.perf_counter() - t < 3:
    model.predict(big, deterministic=True)
    n += 1
print(json.dumps({"times": times, "step": step, "batch1024_obs_per_s": 1024 * n / (time.perf_counter() - t),
                  "python": sys.version.split()[0], "tensorflow": tf.__version__,
                  "stable_baselines": stable_baselines.__version__}))
'''


def machine() -> dict:
    info = {"nproc": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor() or "?"
    try:
        with open("/proc/meminfo") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal"))
        info["ram"] = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        info["ram"] = "?"
    for pkg in ("numpy", "onnxruntime", "tensorflow", "torch", "pygls", "msgpack", "uvloop"):
        try:
            info[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            info[pkg] = "-"
    try:
        import uvloop  # noqa: F401
        info["event loop"] = "uvloop"
    except ImportError:
        info["event loop"] = "asyncio"
    return info


def pct(times, q) -> float:
    return float(np.percentile(np.asarray(times) * 1e6, q))


def floor(client, calls, encoding) -> list[float]:
    """Round trips of a request with no model work (sbexport/targets): transport,
    framing, dispatch and the client, nothing else."""
    for _ in range(200):
        client.request("sbexport/targets", {}, encoding)
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        client.request("sbexport/targets", {}, encoding)
        times.append(time.perf_counter() - t)
    return times


def latency(client, mid, obs, calls, encoding) -> list[float]:
    def params(i):
        o = obs[i % len(obs)][None]
        return {"modelId": mid, "obs": raw(o) if encoding == "msgpack" else o.tolist()}
    for i in range(200):
        client.request("sbexport/predict", params(i), encoding)
    times = []
    for i in range(calls):
        p = params(i)  # building the params is the client's business: not timed
        t = time.perf_counter()
        client.request("sbexport/predict", p, encoding)
        times.append(time.perf_counter() - t)
    return times


def throughput(client, mid, obs, mode, seconds=3.0) -> float:
    big = np.resize(obs, (1024, obs.shape[1])).astype(np.float32)
    params = {"modelId": mid}
    encoding = "msgpack" if mode == "msgpack" else "json"
    if mode == "msgpack":
        params["obs"] = raw(big)
    elif mode == "base64":
        params.update(obs=b64(big), encoding="base64")
    else:
        params["obs"] = big.tolist()
    client.request("sbexport/predict", params, encoding)
    t, n = time.perf_counter(), 0
    while time.perf_counter() - t < seconds:
        client.request("sbexport/predict", params, encoding)
        n += 1
    return 1024 * n / (time.perf_counter() - t)


def in_process(agent, obs, calls, backend: str | None) -> dict:
    """Model.predict in this process: batch-1 latencies and batch-1024 throughput."""
    import sbexportd
    model = sbexportd.load(agent)
    for i in range(200):
        model.predict(obs[i % len(obs)][None], backend=backend)
    times = []
    for i in range(calls):
        t = time.perf_counter()
        model.predict(obs[i % len(obs)][None], backend=backend)
        times.append(time.perf_counter() - t)
    big = np.resize(obs, (1024, obs.shape[1])).astype(np.float32)
    t, n = time.perf_counter(), 0
    while time.perf_counter() - t < 3:
        model.predict(big, backend=backend)
        n += 1
    return {"times": times, "batch1024_obs_per_s": 1024 * n / (time.perf_counter() - t),
            "backend": backend or model.default_backend}


CLIENT_SCRIPT = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from rpc_client import Client, raw
host, port, mid, batch, seconds = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), float(sys.argv[6])
c = Client.tcp(host, port)
c.initialize()
obs = np.random.default_rng(int(port) + batch).normal(size=(batch, 4)).astype(np.float32)
params = {"modelId": mid, "obs": raw(obs)}
c.request("sbexport/predict", params, "msgpack")
print("ready", flush=True)
sys.stdin.readline()  # every client is connected and warm: go
end = time.perf_counter() + seconds
ok = errors = 0
while time.perf_counter() < end:
    try:
        out = c.request("sbexport/predict", params, "msgpack")
        ok += out["outputs"]["actions"]["shape"] == [batch]
    except Exception:
        errors += 1
print(json.dumps({"ok": ok, "errors": errors}), flush=True)
"""


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def concurrent(daemon, mid, clients: int, batch: int, seconds: float = 4.0) -> dict:
    """`clients` processes, each sending predicts one after the other for `seconds`
    once all are connected and warm; and how many cores the daemon kept busy meanwhile."""
    procs = [subprocess.Popen([sys.executable, "-c", CLIENT_SCRIPT, str(ROOT / "tests"), daemon.host,
                               str(daemon.port), mid, str(batch), str(seconds)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(clients)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    cpu0 = cpu_seconds(daemon.proc.pid)
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    time.sleep(seconds)
    cores = (cpu_seconds(daemon.proc.pid) - cpu0) / seconds
    ok = errors = 0
    for p in procs:
        out, _ = p.communicate(timeout=120)
        got = json.loads(out.strip().splitlines()[-1]) if p.returncode == 0 else {"ok": 0, "errors": 1}
        ok += got["ok"]
        errors += got["errors"]
    return {"clients": clients, "batch": batch, "requests_per_s": ok / seconds, "obs_per_s": ok * batch / seconds,
            "errors": errors, "daemon_cores": cores}


def legacy(python, agent, obs_file, calls, with_batch=True) -> dict | None:
    if not Path(python).exists():
        print(f"legacy stack not found at {python}: no SB2 baseline", file=sys.stderr)
        return None
    # the legacy stack imports its own packages, and TF1 must not see TF2_BEHAVIOR, which
    # importing TensorFlow 2 (the TensorFlow backend's rows) sets in this process's environment
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF2_BEHAVIOR")}
    for attempt in (1, 2):
        proc = subprocess.run([python, "-c", LEGACY_SCRIPT, str(agent), str(calls), str(obs_file),
                               "1" if with_batch else "0"],
                              capture_output=True, text=True, timeout=600, env=env)
        if proc.returncode == 0:
            return json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"SB2 baseline failed (attempt {attempt}):\n" + proc.stderr[-1500:], file=sys.stderr)
    return None


def exports(daemon, client, mid, agent, targets, work: Path, cli: bool = True) -> dict:
    out = {}
    for run in ("first", "second"):
        t = time.perf_counter()
        r = client.request("sbexport/export", {"modelId": mid, "to": targets, "out": str(work / f"daemon-{run}")})
        out[run] = (time.perf_counter() - t, [x["cached"] for x in r["results"]])
    if not cli:
        return out
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sbexportd.cli", "export", str(agent), "--to", targets,
                           "--out", str(work / "cli")], capture_output=True, text=True, cwd=ROOT, timeout=900)
    out["cli"] = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError("CLI export failed: " + proc.stderr[-2000:])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agent", default=str(ZOO / "agents" / "ppo2" / "CartPole-v1.pkl"))
    ap.add_argument("--calls", type=int, default=2000, help="predict calls per round and row")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--targets", default="onnx,savedmodel")
    ap.add_argument("--legacy-python", default="/tmp/sb2legacy/bin/python")
    ap.add_argument("--no-exports", action="store_true", help="skip the export rows")
    args = ap.parse_args()
    agent = Path(args.agent)
    rng = np.random.default_rng(0)
    obs = (rng.normal(size=(args.calls, 4)) * [1.0, 1.0, 0.1, 1.0]).astype(np.float32)  # CartPole-like
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="sbexportd-bench-"))
    np.save(work / "obs.npy", obs)
    try:
        d = Daemon()
        try:
            c = d.client()
            opened = c.request("sbexport/open", {"path": str(agent)})
            mid = opened["modelId"]
            # interleaved rounds (SB2, in-process, JSON, msgpack, SB2, ...): this machine's speed
            # drifts by tens of percent from minute to minute, and drift must hit every row alike
            lat = {"json": [], "msgpack": []}
            empty = {"json": [], "msgpack": []}
            local = {"default": [], "numpy": [], "tensorflow": []}
            local_thr: dict[str, float] = {}
            base = None
            for r in range(args.rounds):
                got = legacy(args.legacy_python, agent, work / "obs.npy", args.calls, with_batch=r == 0)
                if got is not None:
                    base = got if base is None else {**base, "times": base["times"] + got["times"],
                                                     "step": base["step"] + got["step"]}
                for name in local:
                    res = in_process(agent, obs, args.calls, None if name == "default" else name)
                    local[name] += res["times"]
                    local_thr.setdefault(name, res["batch1024_obs_per_s"])
                    if name == "default":
                        default_backend = res["backend"]
                for enc in lat:
                    lat[enc] += latency(c, mid, obs, args.calls, enc)
                    empty[enc] += floor(c, args.calls // 2, enc)
            thr = {mode: throughput(c, mid, obs, mode) for mode in ("list", "base64", "msgpack")}
            conc = [concurrent(d, mid, n, batch) for batch in (1, 1024) for n in (1, 4, 16)]
            exp = None if args.no_exports else exports(d, c, mid, agent, args.targets, work)
            rss = c.request("sbexport/status")["rssBytes"]
        finally:
            d.stop()
        nocache = None
        if not args.no_exports:
            d = Daemon("--export-cache", "0")  # the same, with converters warm but no export cache
            try:
                c = d.client()
                mid = c.request("sbexport/open", {"path": str(agent)})["modelId"]
                nocache = exports(d, c, mid, agent, args.targets, work / "nocache", cli=False)
            finally:
                d.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    m = machine()
    print(f"machine: {m['nproc']} cpus ({m['cpu']}), {m['ram']} RAM, {m['platform']}")
    print(f"daemon:  Python {m['python']}, numpy {m['numpy']}, onnxruntime {m['onnxruntime']}, "
          f"TensorFlow {m['tensorflow']}, torch {m['torch']}, pygls {m['pygls']}, {m['event loop']}, "
          f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    if base:
        print(f"SB2:     Python {base['python']}, TensorFlow {base['tensorflow']}, "
              f"stable-baselines {base['stable_baselines']}")
    print(f"load:    {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after (1-minute load average; "
          "other work on the machine skews every row)")
    print(f"agent:   {agent} ({args.rounds} interleaved rounds of {args.calls} calls per latency row, "
          "loopback TCP); the daemon's fast path: " + json.dumps(opened.get("fastPath")) + "\n")
    sb2_p50 = pct(base["times"], 50) if base else None
    rows = [("batch 1", "p50 (us)", "p99 (us)", "p99/p50", "SB2 p50 / this p50")]

    def row(name, times):
        p50 = pct(times, 50)
        rows.append((name, f"{p50:.0f}", f"{pct(times, 99):.0f}", f"{pct(times, 99) / p50:.1f}",
                     f"{sb2_p50 / p50:.2f}x" if sb2_p50 else "-"))
    if base:
        row("SB2 2.10.2 model.predict, in-process (baseline)", base["times"])
        row("SB2 2.10.2 act_model.step (its session.run), in-process", base["step"])
    row(f"sbexportd Model.predict, in-process, default ({default_backend})", local["default"])
    row("sbexportd Model.predict, in-process, NumPy reference", local["numpy"])
    row("sbexportd Model.predict, in-process, TensorFlow backend", local["tensorflow"])
    row("daemon predict round trip, JSON (TCP)", lat["json"])
    row("daemon predict round trip, msgpack (TCP)", lat["msgpack"])
    row("daemon round trip without model work (sbexport/targets), JSON", empty["json"])
    row("daemon round trip without model work (sbexport/targets), msgpack", empty["msgpack"])
    print(table(rows))
    sb2_thr = base["batch1024_obs_per_s"] if base else None
    rows = [("batch 1024, one client", "obs/s", "this / SB2")]

    def trow(name, value):
        rows.append((name, f"{value:,.0f}", f"{value / sb2_thr:.2f}x" if sb2_thr else "-"))
    if base:
        trow("SB2 model.predict, in-process", sb2_thr)
    trow(f"sbexportd Model.predict, in-process, default ({default_backend})", local_thr["default"])
    trow("sbexportd Model.predict, in-process, NumPy reference", local_thr["numpy"])
    trow("sbexportd Model.predict, in-process, TensorFlow backend", local_thr["tensorflow"])
    for mode, label in (("list", "JSON lists"), ("base64", "JSON base64"), ("msgpack", "msgpack")):
        trow(f"daemon, {label}", thr[mode])
    print("\n" + table(rows))
    rows = [("concurrent clients (msgpack)", "batch", "requests/s", "obs/s", "vs 1 client", "errors",
             "daemon CPU (cores)")]
    for cc in conc:
        one = next(x for x in conc if x["batch"] == cc["batch"] and x["clients"] == 1)
        rows.append((f"{cc['clients']} client{'s' if cc['clients'] > 1 else ''}", str(cc["batch"]),
                     f"{cc['requests_per_s']:,.0f}", f"{cc['obs_per_s']:,.0f}",
                     f"{cc['obs_per_s'] / one['obs_per_s']:.2f}x", str(cc["errors"]), f"{cc['daemon_cores']:.2f}"))
    print("\n" + table(rows))
    if exp is not None:
        rows = [(f"export --to {args.targets}", "seconds", "vs cold CLI")]
        rows.append(("cold CLI process (`sbexportd export`)", f"{exp['cli']:.2f}", "1x"))
        for run, label in (("first", "daemon, first export (TF imported on the way)"),
                           ("second", "daemon, repeated: served by the export cache")):
            secs, cached = exp[run]
            assert all(cached) == (run == "second"), cached
            rows.append((label, f"{secs:.4f}", f"{exp['cli'] / secs:.0f}x"))
        secs, cached = nocache["second"]
        assert not any(cached)
        rows.append(("daemon --export-cache 0, repeated: converters warm, made again", f"{secs:.4f}",
                     f"{exp['cli'] / secs:.1f}x"))
        print("\n" + table(rows))
    print(f"\ndaemon RSS after all of it: {rss / 2**20:.0f} MiB")
    return 0


def table(rows) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
