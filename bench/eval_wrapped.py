"""Evaluate every zoo-more agent the zoo trained inside an env wrapper (config.yml
`env_wrapper`), 10 seeded episodes each on the ONNX Runtime fast path, against the
zoo's published mean +- std. Prints the Markdown table of docs/targets/sb3.md.

    .venv/bin/python bench/eval_wrapped.py
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import sbexportd
from sbexportd.errors import SbExportError
from sbexportd.evaluate import evaluate

ZOO_MORE = Path(os.environ.get("SBEXPORTD_ZOO_MORE", Path(__file__).resolve().parents[2] / "shared" / "zoo-more"))


def main() -> None:
    print("| agent | wrapper | 10 episodes, seed 0 | published | within its std | seconds |")
    print("|---|---|---|---|---|---|")
    for agent in sorted(p for p in (ZOO_MORE / "agents").glob("*/*") if p.is_file()):
        wrappers = sbexportd.load(agent).env_wrappers()
        if not wrappers:
            continue
        name = f"{agent.parent.name} {agent.stem}"
        start = time.perf_counter()
        try:
            r = evaluate(agent, episodes=10, seed=0, backend="onnxruntime")
        except SbExportError as e:
            print(f"| {name} | {wrappers[0].trained_with} | {type(e).__name__}: {str(e)[:150]} | | | |")
            continue
        pub = f"{r.published.mean:.1f} ± {r.published.std:.1f}" if r.published else "-"
        print(f"| {name} | {wrappers[0].trained_with.rsplit('.', 1)[-1]} | {r.mean:.1f} ± {r.std:.1f} | {pub} "
              f"| {'yes' if r.within_published() else 'no'} | {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
