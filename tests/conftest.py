"""Shared test plumbing: where the zoo and the fixtures are, and the parity rule."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
ZOO = Path(os.environ.get("SBEXPORTD_ZOO", ROOT.parent / "shared" / "zoo"))
ZOO_REASON = f"../shared/zoo not found at {ZOO} (set SBEXPORTD_ZOO): zoo agents NOT tested"


def zoo_cases() -> list[tuple[str, Path, Path]]:
    """(id, agent file, golden npz) for every zoo agent that has a golden."""
    if not (ZOO / "goldens").is_dir():
        return []
    cases = []
    for golden in sorted((ZOO / "goldens").glob("*/*.npz")):
        algo, env = golden.parent.name, golden.stem
        agents = [p for p in (ZOO / "agents" / algo).glob(env + ".*") if p.suffix in (".zip", ".pkl")]
        for agent in agents:
            cases.append((f"{algo}/{agent.name}", agent, golden))
    return cases


def fixture_cases() -> list[tuple[str, Path]]:
    """(case id, case folder) for every fixture made by tools/legacy/make_fixtures.py."""
    if not FIXTURES.is_dir():
        return []
    return [(d.name, d) for d in sorted(FIXTURES.iterdir()) if (d / "golden.npz").is_file()]


def load_meta(case_dir: Path) -> dict:
    return json.loads((case_dir / "meta.json").read_text())


def pytest_report_header(config):
    zoo = f"zoo: {ZOO}" if (ZOO / "goldens").is_dir() else f"zoo: NOT FOUND ({ZOO}): zoo parity tests skipped"
    return [zoo, f"fixtures: {len(fixture_cases())} cases in {FIXTURES}"]


@pytest.fixture(scope="session")
def zoo_dir() -> Path:
    if not (ZOO / "agents").is_dir():
        pytest.skip(ZOO_REASON)
    return ZOO
