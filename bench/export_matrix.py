"""Export every fixture model (and zoo agent) to every target and print the matrix
of measured parity (max abs error against the NumPy reference, from each export's
manifest) and export seconds, by algorithm. A measurement, not a test:

    .venv/bin/python bench/export_matrix.py [--targets all] [--out /tmp/sbx-matrix] [--no-zoo]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import sbexportd  # noqa: E402
from conftest import fixture_cases, zoo_cases  # noqa: E402
from sbexportd.cli import quiet_native_stderr  # noqa: E402
from sbexportd.export import export, resolve_targets  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", default="all")
    ap.add_argument("--out", default="/tmp/sbx-matrix")
    ap.add_argument("--no-zoo", action="store_true")
    args = ap.parse_args()
    targets = resolve_targets(args.targets)
    # every fixture with a zip (pre-2.8 releases' fixtures are a .pkl only: test_parity_fixtures.py has them)
    models = [(json.loads((d / "meta.json").read_text())["algo"], d / "model.zip",
               d / "vecnormalize.pkl" if (d / "vecnormalize.pkl").is_file() else None)
              for _, d in fixture_cases() if (d / "model.zip").is_file()]
    if not args.no_zoo:
        models += [("zoo " + agent.parent.name, agent, None) for _, agent, _ in zoo_cases()]
    err: dict = defaultdict(float)
    secs: dict = defaultdict(list)
    count: dict = defaultdict(int)
    failed = []
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    with quiet_native_stderr():
        for i, (algo, path, vn) in enumerate(models):
            model = sbexportd.load(path, vn)
            for target in targets:
                start = time.perf_counter()
                try:
                    res = export(model, target, out / f"{i}", force=True)[0]
                except Exception as exc:  # noqa: BLE001 - a measurement: record and go on
                    failed.append((str(path), target, f"{type(exc).__name__}: {exc}"[:200]))
                    continue
                secs[(algo, target)].append(time.perf_counter() - start)
                e = max(res.parity["max_abs_error"].values(), default=0.0)
                err[(algo, target)] = max(err[(algo, target)], e)
                count[(algo, target)] += 1
            shutil.rmtree(out / f"{i}", ignore_errors=True)
    algos = sorted({a for a, _, _ in models}, key=lambda a: (a.startswith("zoo"), a))
    print("max abs error vs the NumPy reference (each export verified in its own runtime)")
    print(f"{'':<10}" + "".join(f"{t:>12}" for t in targets))
    for a in algos:
        print(f"{a:<10}" + "".join(f"{err[(a, t)]:>12.1e}" if count[(a, t)] else f"{'-':>12}" for t in targets))
    print("\nmedian export seconds (write + verify; the first export of a runtime includes its import)")
    print(f"{'':<10}" + "".join(f"{t:>12}" for t in targets))
    for a in algos:
        print(f"{a:<10}" + "".join(f"{statistics.median(secs[(a, t)]):>12.2f}" if secs[(a, t)] else f"{'-':>12}"
                                   for t in targets))
    total = sum(count.values())
    print(f"\n{total} exports passed, {len(failed)} failed, {len(models)} models x {len(targets)} targets")
    for f in failed:
        print("FAILED", *f)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
