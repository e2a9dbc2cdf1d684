"""Reference data of the 54 zoo agents for the Java and Node portable evaluators.

One script for both clients (clients/java/build.sh test and clients/node's
parity.test.mjs run it), so the agents are loaded and exported once per change: each
agent of tests/zoo.py `agents()`, at its real size, loaded as SB2 answered for it
(`sbexportd.load(path)`: the goldens' `obs` is the policy's own input, VecNormalize not
applied, the frame-stacked agent's observation stacked) and exported through the
portable target (`export(model, "portable")`, verified there as every export is). Into
OUT/<case>/:

    portable/policy.sbx.msgpack   the export
    reference.msgpack             {"case", "id", "runs": [{"inputs": {"obs"}, "outputs": {...},
                                   "bound": {...}}]}

The one run holds SB2 2.10.2's golden observations and answers under the export's
names (actions -> action; a Box policy's probs_0 / probs_1 -> mean / std), and, per
continuous output, the float32 bound 2E that `sbexportd.parity.judge` computes on those
observations (a float64 scalar; 0 for the discrete action). An evaluator passes where
every golden output holds the parity rule plus that bound, discrete actions equal, as
tests/zoo.py's `backend_parity` holds the fast backends. Arrays are {"dtype", "shape",
"data": little-endian bytes}, as make_reference.py writes them.

Where the agent's folder asks for more than the policy (config.yml's VecNormalize
statistics or `frame_stack`, as `load(path, "auto", frame_stack="auto")` reads them; 17
agents), that export too goes to OUT/<case>/auto/ the same way, judged as every export is
against the reference (parity.judge on the same observations: NumPy in TF1's arithmetic,
its float32 bounds, and `ties`: the discrete actions exact and TF1 arithmetic disagree on,
where any answer is accepted): SB2's goldens are of the policy's own input, so they cannot
judge the normalization in front of it. A frame-stacked agent is fed its golden stack a
frame at a time from a reset (four runs: obs, state, mask), the state chained through
the reference's.

OUT/index.json lists the agents (and KNOWN_FAILURES' expected portable failures and
CLIENT_KNOWN_FAILURES); a stamp of the inputs (this script, tests/zoo.py, sbexportd's
sources, the agent files and goldens) skips the work when nothing changed, and a lock
lets the Java and Node runs share one generation. A missing or partial zoo is an error.

usage: python tests/zoo_reference.py [OUT_DIR]
       (default: $SBEXPORTD_ZOO_REFERENCE, else build/zoo-reference)
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import msgpack
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import sbexportd  # noqa: E402
from sbexportd.export import export  # noqa: E402
from sbexportd.export.conventions import export_name  # noqa: E402
from sbexportd.parity import judge  # noqa: E402
from zoo import (  # noqa: E402
    CLIENT_KNOWN_FAILURES,
    EXPECTED,
    KNOWN_FAILURES,
    ROOTS,
    Agent,
    agents,
    golden_outputs,
    missing_zoos,
)

DEFAULT_OUT = Path(os.environ.get("SBEXPORTD_ZOO_REFERENCE", ROOT / "build" / "zoo-reference"))
AUTO = " [auto]"   # the clients' name of an agent's check of its "auto" export


def arr(a) -> dict:
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.name, "shape": list(a.shape), "data": a.astype(a.dtype.newbyteorder("<")).tobytes()}


def case_name(agent: Agent) -> str:
    return agent.id.replace("/", "_")


def stamp(found: list[Agent]) -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update((HERE / "zoo.py").read_bytes())
    for p in sorted((ROOT / "sbexportd").rglob("*.py")):
        h.update(p.relative_to(ROOT).as_posix().encode())
        h.update(p.read_bytes())
    for a in found:
        for f in (a.path, a.golden, a.meta):
            h.update(f"{a.id}:{f.name}".encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def check_zoos(found: list[Agent]) -> None:
    missing = missing_zoos()
    if missing:
        raise SystemExit("zoo_reference: zoo not found: " + ", ".join(missing))
    for root in ROOTS:
        n = sum(1 for a in found if a.id.startswith(root.name + "/"))
        if n != EXPECTED[root.name]:
            raise SystemExit(f"zoo_reference: {root} holds {n} agents with goldens, expected {EXPECTED[root.name]}")


def make(agent: Agent, out: Path) -> dict:
    """Export one agent to portable and write SB2's answers with the judge's bounds."""
    start = time.perf_counter()
    target = out / case_name(agent)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    model = sbexportd.load(agent.path)
    spec = model.spec
    row = {"case": target.name, "id": agent.id, "algo": agent.algo, "env": agent.env,
           "action": type(spec.action_space).__name__, "hidden": _hidden(spec)}
    expected = KNOWN_FAILURES.get((agent.id, "portable"))
    try:
        (res,) = export(model, "portable", target, force=True)
        exported = bool(res.parity.get("passed"))
        why = "" if exported else json.dumps(res.parity)[:300]
    except Exception as exc:  # noqa: BLE001 - compared with KNOWN_FAILURES below
        exported, why = False, f"{type(exc).__name__}: {exc}"[:300]
    if expected and exported:
        raise SystemExit(f"zoo_reference: {agent.id} exports to portable, but KNOWN_FAILURES expects: {expected}")
    if not exported:
        if not expected:
            raise SystemExit(f"zoo_reference: {agent.id} did not export to portable: {why}")
        return {**row, "expected_export_failure": expected, "seconds": time.perf_counter() - start}

    golden = agent.golden_arrays()
    obs = np.asarray(golden["obs"])
    names = golden_outputs(golden, spec.action_space)      # SB2's key -> spec output name
    j = judge(spec, {"obs": obs}, rename=export_name)
    outputs, bound = {}, {}
    for key, mine in names.items():
        name = export_name(mine)
        outputs[name] = arr(golden[key])
        bound[name] = float(np.max(j.bound[name])) if name in j.bound else 0.0
    run = {"inputs": {"obs": arr(obs.astype(spec.input_dtype))}, "outputs": outputs, "bound": bound}
    (target / "reference.msgpack").write_bytes(
        msgpack.packb({"case": target.name, "id": agent.id, "runs": [run]}, use_bin_type=True))
    row = {**row, "outputs": sorted(outputs), "bound": bound}
    auto = sbexportd.load(agent.path, "auto", frame_stack="auto")
    if auto.spec.vecnormalize or auto.spec.frame_stack:
        row["auto"] = make_auto(agent, auto, obs, target / "auto")
    return {**row, "seconds": round(time.perf_counter() - start, 2)}


def make_auto(agent: Agent, model, obs: np.ndarray, target: Path) -> dict:
    """The export a user deploys (the folder's VecNormalize and frame stack in front of the
    policy) against the reference's judgement on the golden observations."""
    spec = model.spec
    target.mkdir(parents=True)
    (res,) = export(model, "portable", target, force=True)
    if not res.parity.get("passed"):
        raise SystemExit(f"zoo_reference: {agent.id} (auto) did not export to portable: {res.parity}")
    if spec.frame_stack:      # the golden stack, a frame at a time from a reset, oldest first
        frames = obs.reshape(len(obs), spec.frame_stack, -1)
        steps = [frames[:, t] for t in range(spec.frame_stack)]
    else:
        steps = [obs]
    runs, state = [], None
    for t, step in enumerate(steps):
        feeds = {"obs": step.astype(spec.input_dtype)}
        if spec.stateful:
            feeds["state"] = np.zeros((len(step), spec.state_size), np.float32) if state is None else state
            feeds["mask"] = np.full(len(step), 1.0 if t == 0 else 0.0, np.float32)
        j = judge(spec, feeds, rename=export_name)
        state = j.reference.get("state")
        runs.append({"inputs": {k: arr(v) for k, v in feeds.items()},
                     "outputs": {k: arr(v) for k, v in j.reference.items()},
                     "bound": {k: float(np.max(v)) for k, v in j.bound.items()} | dict.fromkeys(j.ties, 0.0),
                     "ties": {k: arr(np.asarray(v, np.uint8)) for k, v in j.ties.items()}})
    (target / "reference.msgpack").write_bytes(
        msgpack.packb({"case": target.name, "id": agent.id, "runs": runs}, use_bin_type=True))
    return {"case": f"{target.parent.name}/auto", "vecnormalize": bool(spec.vecnormalize),
            "frame_stack": spec.frame_stack, "outputs": sorted(runs[-1]["outputs"])}


def _hidden(spec) -> int:
    """The largest dense layer's width: what 'real size' means here."""
    widths = [int(spec.tensors[n.params["w"]].shape[-1]) for n in spec.nodes if n.op == "dense" and "w" in n.params]
    return max(widths, default=0)


def checks(out: Path = DEFAULT_OUT) -> set[str]:
    """The names of the checks a client runs on OUT's data: each exported agent's id, and
    '<id> [auto]' for its auto export (what tests/test_client_*.py expect to see pass)."""
    rows = json.loads((out / "index.json").read_text())["agents"]
    return {r["id"] for r in rows if "expected_export_failure" not in r} | {r["id"] + AUTO for r in rows if "auto" in r}


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else DEFAULT_OUT
    found = agents()
    check_zoos(found)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)        # the Java and Node runs share one generation
        key = stamp(found)
        index = out / "index.json"
        if index.exists() and json.loads(index.read_text()).get("stamp") == key:
            print(f"zoo_reference: {out} is up to date ({len(found)} agents)")
            return 0
        index.unlink(missing_ok=True)
        start = time.perf_counter()
        rows = [make(a, out) for a in found]
        clients = [{"id": a, "client": c, "why": why} for (a, c), why in sorted(CLIENT_KNOWN_FAILURES.items())]
        index.write_text(json.dumps({"stamp": key, "sbexportd": sbexportd.__version__, "agents": rows,
                                     "client_known_failures": clients}, indent=1))
        print(f"zoo_reference: {len(rows)} zoo agents into {out} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
