"""Reference data for the Java client's tests (run by clients/java/build.sh test).

For each fixture (tests/fixtures/<case>/model.zip, a real SB2 2.10.2 model), into OUT/<case>/:

    portable/policy.sbx.msgpack   written by `sbexportd export --to portable`
    reference.msgpack             {"case", "runs": [{"inputs": {...}, "outputs": {...}}]}

Each run holds seeded inputs (obs; state and mask for recurrent policies) and the
NumPy reference outputs of `sbexportd.load(...).predict` under the export names
(action, probs | probs_<i>, mean, std, values, q_values, state). Arrays are
{"dtype", "shape", "data": little-endian bytes}, the portable format's convention.
Besides the fixtures, the synthetic specs of tests/synthetic.py (which together
use every op of spec.OPS) are written as synthetic_<name>/ the same way, through the
portable target's own writer, with NumpyPolicy's outputs (a goal dict observation is
stored concatenated in its key order, as a Java caller feeds it). OUT/index.json
lists the cases. A stamp of the inputs (this script, sbexportd's
sources, the fixtures) skips the work when nothing changed.

usage: python make_reference.py OUT_DIR [CASE ...]   (default: every fixture and synthetic case)
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import msgpack
import numpy as np

import sbexportd
from sbexportd.export.conventions import export_name, sample_inputs
from sbexportd.export.targets import portable

ROOT = Path(__file__).resolve().parents[5]          # clients/java/src/test/resources -> repo
FIXTURES = ROOT / "tests" / "fixtures"
RUNS = ((64, 1001), (1, 1002), (7, 1003))           # (batch, seed)
sys.path.insert(0, str(ROOT / "tests"))


def arr(a) -> dict:
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.name, "shape": list(a.shape), "data": a.astype(a.dtype.newbyteorder("<")).tobytes()}


def cases(names: list[str]) -> list[Path]:
    if names:
        return [FIXTURES / n for n in names if not n.startswith("synthetic_")]
    return [d for d in sorted(FIXTURES.iterdir()) if (d / "model.zip").is_file()]


def synthetic_cases(names: list[str]) -> list:
    import synthetic
    return [c for c in synthetic.cases() if not names or "synthetic_" + c.name in names]


def stamp(dirs: list[Path]) -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update((ROOT / "tests" / "synthetic.py").read_bytes())
    for p in sorted((ROOT / "sbexportd").rglob("*.py")):
        h.update(p.as_posix().encode()); h.update(p.read_bytes())
    for d in dirs:
        for f in sorted(d.iterdir()):
            if f.name in ("model.zip", "vecnormalize.pkl"):
                h.update(f.as_posix().encode()); h.update(f.read_bytes())
    return h.hexdigest()


def make(case: Path, out: Path) -> dict:
    vn = case / "vecnormalize.pkl"
    target = out / case.name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    cmd = [sys.executable, "-m", "sbexportd.cli", "export", str(case / "model.zip"), "--to", "portable",
           "--out", str(target)] + (["--vecnormalize", str(vn)] if vn.exists() else [])
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    model = sbexportd.load(case / "model.zip", str(vn) if vn.exists() else None)
    runs = []
    for n, seed in RUNS:
        feeds = sample_inputs(model.spec, n, seed)
        out_ = model.predict(feeds["obs"], feeds.get("state"), feeds.get("mask"))
        runs.append({"inputs": {k: arr(v) for k, v in feeds.items()},
                     "outputs": {export_name(k): arr(v) for k, v in out_.items()}})
    (target / "reference.msgpack").write_bytes(msgpack.packb({"case": case.name, "runs": runs}, use_bin_type=True))
    spec = model.spec
    return {"case": case.name, "algo": spec.algo, "policy": spec.policy,
            "observation": type(spec.observation_space).__name__, "action": type(spec.action_space).__name__,
            "input_dtype": spec.input_dtype, "recurrent": spec.stateful, "vecnormalize": spec.vecnormalize,
            "ops": sorted({n.op for n in spec.nodes})}


class _Model:  # what portable.write reads of a model
    def __init__(self, spec):
        self.spec = spec


def make_synthetic(case, out: Path) -> dict:
    import synthetic
    spec = case.spec
    target = out / ("synthetic_" + case.name)
    shutil.rmtree(target, ignore_errors=True)
    (target / "portable").mkdir(parents=True)
    portable.write(_Model(spec), target / "portable")
    runs = []
    for feeds, outputs in synthetic.reference_runs(case, RUNS):
        if isinstance(feeds["obs"], dict):   # concat_dict: the caller concatenates in the keys' order
            feeds["obs"] = np.concatenate([np.asarray(feeds["obs"][k], np.float32)
                                           for k, _ in spec.goal_observation.spaces], axis=-1)
        runs.append({"inputs": {k: arr(np.asarray(v)) for k, v in feeds.items()},
                     "outputs": {k: arr(v) for k, v in outputs.items()}})
    (target / "reference.msgpack").write_bytes(
        msgpack.packb({"case": target.name, "runs": runs}, use_bin_type=True))
    return {"case": target.name, "algo": spec.algo, "policy": "synthetic",
            "observation": type(spec.observation_space).__name__, "action": type(spec.action_space).__name__,
            "input_dtype": spec.input_dtype, "recurrent": spec.stateful, "vecnormalize": spec.vecnormalize,
            "ops": sorted({n.op for n in spec.nodes})}


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    dirs = cases(argv[1:])
    key = stamp(dirs)
    index = out / "index.json"
    if index.exists() and json.loads(index.read_text()).get("stamp") == key:
        print(f"make_reference: {out} is up to date ({len(json.loads(index.read_text())['cases'])} cases)")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    rows = [make(d, out) for d in dirs] + [make_synthetic(c, out) for c in synthetic_cases(argv[1:])]
    index.write_text(json.dumps({"stamp": key, "sbexportd": sbexportd.__version__, "cases": rows}, indent=1))
    covered = sorted({op for r in rows for op in r["ops"]})
    print(f"make_reference: {len(rows)} cases into {out} ({len(covered)} ops covered)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
