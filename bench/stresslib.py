"""What the stress scenarios (bench/stress_*.py) share: memory of a process, and a
probe client measuring how long another client waits while a scenario runs."""
from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

from rpc_client import Daemon  # the tests' independent client (bench/stress.py puts tests/ on the path)

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "fixtures" / "ppo2_mlp_vec_discrete" / "model.zip"
OBS = [[0.1, -0.2, 0.03, 0.4]]


def rss_mib(pid: int) -> float:
    """Resident memory now (VmRSS), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def hwm_mib(pid: int) -> float:
    """Peak resident memory so far (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Probe:
    """Another client: a batch-1 predict every `interval` seconds on its own
    connection, timing each round trip, until stop()."""

    def __init__(self, daemon: Daemon, interval: float = 0.05):
        self.client = daemon.client()
        self.model = self.client.request("sbexport/open", {"path": str(MODEL)})["modelId"]
        self.interval, self.times, self.errors = interval, [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            try:
                self.client.request("sbexport/predict", {"modelId": self.model, "obs": OBS})
                self.times.append(time.perf_counter() - t)
            except Exception:  # noqa: BLE001 - counted: the probe must always be served
                self.errors += 1
            self._stop.wait(self.interval)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(60)
        self.client.close()
        times = sorted(self.times) or [float("nan")]
        return {"probe requests": len(self.times), "probe errors": self.errors,
                "probe p50 ms": round(statistics.median(times) * 1e3, 2),
                "probe max ms": round(times[-1] * 1e3, 1)}
