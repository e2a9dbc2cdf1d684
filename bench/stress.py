"""Stress scenarios against real `sbexportd serve` processes (a benchmark, not a test).

    .venv/bin/python bench/stress.py [SCENARIO ...] [--json FILE] [--quick]

Runs every bench/stress_<name>.py (or the ones named), each a module with
`run(quick: bool = False) -> dict` returning its figures, and prints them as one
Markdown table per scenario (docs/security.md quotes them), with the machine. The
scenarios start their own daemons; --quick runs each with fewer iterations.
"""
from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def scenarios() -> dict[str, Path]:
    return {p.stem[len("stress_"):]: p for p in sorted(HERE.glob("stress_*.py"))}


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(f"stress_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {os.cpu_count()} cpus, load {load1:.1f} at start; Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def table(figures: dict) -> str:
    rows = ["| figure | value |", "|---|---|"]
    for key, value in figures.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, (dict, list)):
            value = json.dumps(value)
        rows.append(f"| {key} | {value} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    available = scenarios()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="SCENARIO", help=f"of: {', '.join(available)} (default all)")
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in available]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; there are {', '.join(available)}")
    results: dict[str, dict] = {}
    print(f"machine: {machine()}\n")
    failed = False
    for name in args.names or list(available):
        mod = load(name, available[name])
        title = (inspect.getdoc(mod) or name).splitlines()[0]
        t = time.monotonic()
        try:
            figures = mod.run(quick=args.quick)
        except Exception as e:  # noqa: BLE001 - report the scenario as failed, run the others
            figures = {"error": f"{type(e).__name__}: {e}"}
            failed = True
        figures["scenario seconds"] = round(time.monotonic() - t, 1)
        results[name] = figures
        print(f"## {name}: {title}\n\n{table(figures)}\n", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "scenarios": results}, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
