"""Shared test plumbing: where the zoo and the fixtures are, and the parity rule."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from zoo import ROOT, ZOO, agents, missing_zoos

FIXTURES = ROOT / "tests" / "fixtures"
ZOO_REASON = f"../shared/zoo not found at {ZOO} (set SBEXPORTD_ZOO): zoo agents NOT tested"


def zoo_cases() -> list[tuple[str, Path, Path]]:
    """(id, agent file, golden npz) for every agent of ../shared/zoo and ../shared/zoo-more."""
    return [(a.id, a.path, a.golden) for a in agents()]


def fixture_cases() -> list[tuple[str, Path]]:
    """(case id, case folder) for every fixture made by tools/legacy/make_fixtures.py."""
    if not FIXTURES.is_dir():
        return []
    return [(d.name, d) for d in sorted(FIXTURES.iterdir()) if (d / "golden.npz").is_file()]


def load_meta(case_dir: Path) -> dict:
    return json.loads((case_dir / "meta.json").read_text())


def pytest_report_header(config):
    missing = missing_zoos()
    zoo = f"zoo: {len(agents())} agents"
    if missing:
        zoo += f"; NOT FOUND: {', '.join(missing)}: their tests skipped"
    return [zoo, f"fixtures: {len(fixture_cases())} cases in {FIXTURES}"]


@pytest.fixture(scope="session")
def zoo_dir() -> Path:
    if not (ZOO / "agents").is_dir():
        pytest.skip(ZOO_REASON)
    return ZOO


# --- the parity table (docs/parity.md), from what the parity tests measured -------------
_PARITY: list[tuple[str, str, list]] = []


def pytest_runtest_logreport(report):
    parity = ("::test_fixture_parity[", "::test_predict_matches_sb2[")
    if report.when == "call" and any(p in report.nodeid for p in parity):
        outcome = "xfailed" if hasattr(report, "wasxfail") else report.outcome  # a strict xfail "skips"
        _PARITY.append((report.nodeid, outcome, list(report.user_properties)))


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("SBEXPORTD_PARITY_TABLE")
    if path and _PARITY:
        Path(path).write_text(parity_table(_PARITY))


def parity_table(results) -> str:
    rows: dict[tuple, dict[str, str]] = {}
    for nodeid, outcome, props in results:
        param = nodeid.split("[", 1)[1].rstrip("]")
        subject, backend = param.rsplit("-", 1)
        errs: dict[str, float] = {}
        for key, err in props:
            errs[key] = max(errs.get(key, 0.0), err)
        if "::test_predict_matches_sb2[" in nodeid:
            zoo, algo, agent = subject.split("/", 2)
            meta = json.loads((ZOO.parent / zoo / "goldens" / algo / (agent.rsplit(".", 1)[0] + ".json")).read_text())
            key = (zoo, algo, agent.rsplit(".", 1)[0], meta["policy"], meta["observation_space"].split("(")[0],
                   meta["action_space"].split("(")[0] + " ." + agent.rsplit(".", 1)[1])
        else:
            case, fmt = subject.rsplit(".", 1)
            meta = load_meta(FIXTURES / case)
            key = ("fixture", meta["algo"] + (f" ({meta['inner_algo']})" if meta.get("inner_algo") else ""),
                   case, meta["policy"], meta["observation_space"]["type"] + ("-image" if len(
                       meta["observation_space"].get("shape") or []) == 3 else ""),
                   meta["action_space"]["type"] + f" .{fmt}")
        worst = max(errs.values(), default=0.0)
        mark = "ok" if outcome == "passed" else outcome.upper()
        rows.setdefault(key, {})[backend] = f"{mark} {worst:.1e}" if outcome == "passed" else mark
    backends = ("numpy", "tensorflow", "torch")
    lines = ["# Parity with Stable Baselines 2.10.2 (TensorFlow 1.15.5)", "",
             "Measured by `tests/test_parity_fixtures.py` and `tests/test_zoo.py` (predict on every backend)",
             "(regenerate: `make parity-table`). Each cell: the rule of tests/parity.py held",
             "(discrete actions equal; continuous actions within 1e-5; probabilities, means,",
             "stds, values and Q-values within 1e-5 relative to max(1, |SB2|)), and the largest",
             "absolute difference from SB2's own output over every output and observation.",
             "Fixtures named v<release>_* were saved by that older release and are compared with",
             "its answers (tools/legacy/README.md, \"On-disk format eras\"); XFAILED marks a strict",
             "expected failure listed in tests/test_parity_fixtures.py.", "",
             "| source | algorithm | case | policy | observation | action / format | "
             + " | ".join(backends) + " |",
             "|---|---|---|---|---|---|" + "---|" * len(backends)]
    for key in sorted(rows):
        cells = [rows[key].get(b, "-") for b in backends]
        lines.append("| " + " | ".join(key) + " | " + " | ".join(cells) + " |")
    passed = sum(1 for _, o, _ in results if o == "passed")
    lines += ["", f"{passed} of {len(results)} file x backend checks passed."]
    return "\n".join(lines) + "\n"
