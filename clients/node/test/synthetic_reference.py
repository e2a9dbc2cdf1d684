"""Run by test/portable.test.mjs: the synthetic specs of tests/synthetic.py (which
together use every op of spec.OPS and every activation, some no SB2 fixture has:
concat_dict, the rarer activations, exact halves for round) as portable files, with
the NumPy reference's answers. The fixtures need no such help: the daemon exports
them and is the reference.

For each case, into OUT/<name>/: policy.sbx.msgpack (the portable target's own
writer) and reference.msgpack {"case", "ops", "runs": [{"inputs", "outputs"}]}.
Arrays are {"dtype", "shape", "data": little-endian bytes}; a goal-dict obs is kept
as a map of arrays (it is what concat_dict reads). OUT/index.json lists the cases and
the ops they cover.

usage: python synthetic_reference.py OUT
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import msgpack
import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests"))

import synthetic  # noqa: E402  (tests/synthetic.py)
from sbexportd.export.targets import portable  # noqa: E402
from sbexportd.understand.spec import ACTIVATIONS, OPS  # noqa: E402

RUNS = ((9, 2001), (1, 2002))  # (batch, seed)


def arr(a) -> dict:
    a = np.ascontiguousarray(np.asarray(a))
    return {"dtype": a.dtype.name, "shape": list(a.shape), "data": a.astype(a.dtype.newbyteorder("<")).tobytes()}


class _Model:  # what portable.write reads of a model
    def __init__(self, spec):
        self.spec = spec


def main(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for case in synthetic.cases():
        spec = case.spec
        folder = out / case.name
        folder.mkdir(parents=True, exist_ok=True)
        portable.write(_Model(spec), folder)
        runs = [{"inputs": {k: ({kk: arr(vv) for kk, vv in v.items()} if isinstance(v, dict) else arr(v))
                            for k, v in inputs.items()},
                 "outputs": {k: arr(v) for k, v in outputs.items()}}
                for inputs, outputs in synthetic.reference_runs(case, RUNS)]
        ops = sorted({node.op for node in spec.nodes})
        acts = sorted({node.attrs["fn"] for node in spec.nodes if node.op == "activation"})
        (folder / "reference.msgpack").write_bytes(msgpack.packb(
            {"case": case.name, "ops": ops, "action_space": spec.action_space.describe(), "runs": runs},
            use_bin_type=True))
        rows.append({"case": case.name, "ops": ops, "activations": acts})
    (out / "index.json").write_text(json.dumps(
        {"cases": rows, "all_ops": sorted(OPS), "all_activations": list(ACTIVATIONS)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
