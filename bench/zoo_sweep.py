"""Every real agent of ../shared/zoo and ../shared/zoo-more through everything a user
does with it: inspect, params, predict on the three backends against SB2's own
answers, and an export to every target (with `--vecnormalize auto`, each target
verified in its own runtime). Writes docs/zoo-sweep.md: one row per agent, each
cell the result and its largest error. A measurement, not a test (tests/test_zoo.py
asserts the same on every agent):

    .venv/bin/python bench/zoo_sweep.py [--out /tmp/sbx-zoo-sweep] [--doc docs/zoo-sweep.md] [--only SUBSTRING]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import sbexportd  # noqa: E402
from sbexportd.cli import quiet_native_stderr  # noqa: E402
from sbexportd.export.targets import TARGETS  # noqa: E402
from zoo import BACKENDS, KNOWN_FAILURES, Outcome, agents, backend_parity, export_all, missing_zoos  # noqa: E402


def cell(o: Outcome) -> str:
    return f"ok {o.max_error:.1e}" if o.passed else "FAIL"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/sbx-zoo-sweep")
    ap.add_argument("--doc", default=str(ROOT / "docs" / "zoo-sweep.md"))
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    if missing_zoos():
        print("zoo not found:", ", ".join(missing_zoos()), file=sys.stderr)
        return 2
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    rows, failures = [], []
    worst: dict[tuple[str, str], float] = defaultdict(float)
    started = time.perf_counter()
    with quiet_native_stderr():
        for agent in agents():
            if args.only not in agent.id:
                continue
            t0 = time.perf_counter()
            cells: dict[str, Outcome] = {}
            try:
                model = sbexportd.load(agent.path)
                model.inspect()
                len(model.archive.params)
                for backend in BACKENDS:
                    cells[backend] = backend_parity(model, agent, backend)
                exported = sbexportd.load(agent.path, "auto", frame_stack="auto")
                cells.update(export_all(exported, out / agent.id.replace("/", "_")))
            except Exception as exc:  # noqa: BLE001 - a sweep records and goes on
                cells = {k: Outcome(False, detail=f"load: {type(exc).__name__}: {exc}"[:300])
                         for k in (*BACKENDS, *TARGETS)}
            for name, o in cells.items():
                if not o.passed:
                    failures.append((agent.id, name, o.detail))
                elif o.max_error != float("inf"):
                    worst[(agent.algo, name)] = max(worst[(agent.algo, name)], o.max_error)
            rows.append((agent, cells, time.perf_counter() - t0))
            print(f"{agent.id:58s} {sum(o.passed for o in cells.values())}/{len(cells)} "
                  f"{time.perf_counter() - t0:5.1f}s", flush=True)
    total = time.perf_counter() - started
    Path(args.doc).write_text(render(rows, failures, worst, total))
    print(f"wrote {args.doc}: {len(rows)} agents, {len(failures)} failures, {total:.0f} s")
    return 1 if failures else 0


def render(rows, failures, worst, total) -> str:
    cols = (*BACKENDS, *TARGETS)
    passed = sum(o.passed for _, cells, _ in rows for o in cells.values())
    lines = ["# Zoo sweep: every shared agent, every backend, every target", "",
             ("`.venv/bin/python bench/zoo_sweep.py` (tests/test_zoo.py asserts the same). Backends: "
              "`predict` on SB2's 64 golden observations against SB2 2.10.2's own answers (the parity "
              "rule of sbexportd/parity.py, no VecNormalize, as the goldens were recorded). Targets: "
              "`export --to <target> --vecnormalize auto --frame-stack auto`, each export verified in its own runtime "
              "against the reference on 64 seeded observations (the rule plus the float32 bound, "
              "docs/export.md). Each cell: the result and the largest absolute difference over "
              "every output (critic values and Q-values included, whose rule is relative). `portable` and "
              "`params` are read back by sbexportd's own NumPy reader of those files, hence 0; the Java "
              "and Node evaluators of the portable format run every zoo agent's portable export "
              "against SB2's goldens in their own suites (clients/java `ZooParityTest`, clients/node "
              "`test/zoo.test.mjs`, data from tests/zoo_reference.py)."), "",
             (f"{passed} of {len(rows) * len(cols)} agent x (backend | target) checks passed; "
              f"{len(rows)} agents in {total:.0f} s on {platform.machine()} with {os.cpu_count()} CPUs "
              f"(Python {platform.python_version()})."), "",
             "| agent | " + " | ".join(cols) + " | s |", "|---|" + "---|" * (len(cols) + 1)]
    for agent, cells, seconds in rows:
        lines.append(f"| {agent.id} | " + " | ".join(cell(cells[c]) for c in cols) + f" | {seconds:.0f} |")
    lines += ["", "## Largest error by algorithm", "",
              "| algorithm | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for algo in sorted({a for a, _ in worst}):
        lines.append(f"| {algo} | " + " | ".join(f"{worst.get((algo, c), 0.0):.1e}" for c in cols) + " |")
    lines += ["", "## Failures", ""]
    lines += [f"- {a} / {c}: {d}" for a, c, d in failures] or ["None."]
    lines += ["", "## Known failures (strict expected failures in tests/test_zoo.py)", ""]
    lines += [f"- {a} / {c}: {why}" for (a, c), why in sorted(KNOWN_FAILURES.items())] or ["None."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
