"""The figures of docs/deploy.md, measured on this machine (a measurement, not a test):

    .venv/bin/python bench/deploy.py serve  [--seconds 20] [--clients 8] [--agent examples/ppo2_CartPole-v1.pkl]
                                            [--replicas 1 2] [--backend fast numpy] [--rows 1]
    .venv/bin/python bench/deploy.py zoo    [--workers 1 2] [--to all] [--out /tmp/sbx-zoo-export]

serve: a local Ray instance, one agent on Ray Serve with each replica count and
backend (build_app's `backend`: "fast", the agent's verified fast path, or "numpy",
the reference), `clients` threads POSTing `rows` observations each to
/agents/NAME/predict for `seconds`: answered requests (and observations) per second and
latency percentiles (an answer checked against the reference for each setting).

zoo: `sbexportd export ../shared/zoo ../shared/zoo-more --vecnormalize auto
--frame-stack auto --to TARGETS --workers N` as a process, timed (wall clock), for each N.

Prints one JSON object per measurement."""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "load_1min": os.getloadavg()[0]}


def serve_bench(agent: Path, seconds: float, clients: int, replica_counts: list[int], backends: list[str],
                rows: int) -> list[dict]:
    import numpy as np
    import ray
    from ray import serve

    import sbexportd
    from sbexportd.deploy.ray import build_app, runtime_env, wait_healthy
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports from a test machine
    temp = tempfile.mkdtemp(prefix="sbx-ray-", dir="/tmp")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, _temp_dir=temp,
             runtime_env=runtime_env(), logging_level="ERROR", log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    reference = sbexportd.load(agent)
    from sbexportd.export.conventions import sample_observations
    obs = sample_observations(reference.spec, rows, 0)
    body = json.dumps({"obs": obs.tolist()}).encode()
    results = []
    try:
        for replicas, backend in [(r, b) for r in replica_counts for b in backends]:
            serve.run(build_app({"agents": [str(agent)], "replicas": replicas, "backend": backend}), name="bench",
                      route_prefix="/")
            wait_healthy("bench")
            name = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/agents").read())["agents"][0]["name"]
            served = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/agents/{name}").read())["serving"]
            url = f"http://127.0.0.1:{port}/agents/{name}/predict"

            for _ in range(20):  # warm, and right
                answer = _post(url, body)
            assert np.array_equal(answer["outputs"]["actions"], reference.predict(obs, backend="numpy")["actions"])
            latencies, errors, wall = _drive(url, body, clients, seconds)
            lat = sorted(latencies)
            results.append({"measure": "ray_serve", "agent": str(agent), "replicas": replicas, "backend": backend,
                            "answered_by": answer["backend"], "fast_path_verified": (served["fast_path"] or {}).get(
                                "verified"), "rows": rows, "clients": clients,
                            "seconds": round(wall, 2), "requests": len(lat), "errors": errors,
                            "requests_per_s": round(len(lat) / wall, 1),
                            "observations_per_s": round(rows * len(lat) / wall, 1),
                            "p50_ms": round(1000 * lat[len(lat) // 2], 2),
                            "p99_ms": round(1000 * lat[int(len(lat) * 0.99)], 2), **machine()})
            print(json.dumps(results[-1]), flush=True)
            serve.delete("bench")
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    return results


def _post(url: str, body: bytes) -> dict:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _drive(url: str, body: bytes, clients: int, seconds: float) -> tuple[list[float], int, float]:
    """`clients` threads POSTing `body` for `seconds`: (latencies, errors, wall time)."""
    latencies: list[float] = []
    errors = [0]
    stop = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < stop:
            t = time.perf_counter()
            try:
                _post(url, body)
            except OSError:
                errors[0] += 1
                continue
            latencies.append(time.perf_counter() - t)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors[0], time.monotonic() - began


def zoo_bench(workers: list[int], to: str, out: Path) -> list[dict]:
    from zoo import ZOO, ZOO_MORE
    results = []
    for n in workers:
        folder = out / f"workers-{n}"
        shutil.rmtree(folder, ignore_errors=True)
        began = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "sbexportd.cli", "export", str(ZOO), str(ZOO_MORE),
                               "--vecnormalize", "auto", "--frame-stack", "auto", "--to", to, "--out", str(folder),
                               "--workers", str(n)], capture_output=True, text=True, cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
        wall = time.monotonic() - began
        summary = json.loads((folder / "summary.json").read_text())
        results.append({"measure": "zoo_export", "workers": n, "targets": summary["targets"],
                        "agents": summary["agents"], "exports": summary["exports"], "failed": summary["failed"],
                        "wall_s": round(wall, 1), "exit": proc.returncode, **machine()})
        print(json.dumps(results[-1]), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("serve")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--agent", type=Path, default=ROOT / "examples" / "ppo2_CartPole-v1.pkl")
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    p.add_argument("--backend", nargs="+", default=["fast", "numpy"], choices=("fast", "numpy"))
    p.add_argument("--rows", type=int, default=1, help="observations per request")
    p = sub.add_parser("zoo")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--to", default="all")
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "sbx-zoo-export")
    args = parser.parse_args()
    if args.what == "serve":
        serve_bench(args.agent, args.seconds, args.clients, args.replicas, args.backend, args.rows)
    else:
        zoo_bench(args.workers, args.to, args.out)


if __name__ == "__main__":
    main()
