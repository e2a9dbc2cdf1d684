"""Many agents at once: `sbexportd export FILE|FOLDER ... --workers N` as a user runs it
(a process), a broken file among good agents, the serving targets gathered into one
repository each, and the summary as a table and as JSON."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT
from sbexportd.errors import OutputExists
from sbexportd.export.many import Job, _gather, _run_pool, find_agents
from zoo import ZOO, ZOO_MORE, missing_zoos

EXAMPLE = ROOT / "examples" / "ppo2_CartPole-v1.pkl"


def _cli(*args, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "sbexportd.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


@pytest.fixture
def agents_folder(tmp_path):
    """in/ppo2_CartPole-v1.pkl, in/sub/lstm.zip and in/sub/broken.zip (not an SB2 file),
    with VecNormalize statistics that are not agents."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(EXAMPLE, folder / EXAMPLE.name)
    shutil.copy(FIXTURES / "ppo2_mlplstm_vec_box" / "model.zip", folder / "sub" / "lstm.zip")
    (folder / "sub" / "broken.zip").write_bytes(b"not an agent at all")
    shutil.copy(FIXTURES / "ppo2_mlp_vecnormalize" / "vecnormalize.pkl", folder / "sub" / "vecnormalize.pkl")
    return folder


def test_find_agents(agents_folder):
    jobs = find_agents([agents_folder, FIXTURES / "a2c_mlp_dobs_discrete" / "model.zip"])
    assert [(j.id, j.name) for j in jobs] == [
        ("in/ppo2_CartPole-v1", "ppo2_CartPole-v1"), ("in/sub/broken", "broken"), ("in/sub/lstm", "lstm"),
        ("a2c_mlp_dobs_discrete/model", "a2c_mlp_dobs_discrete")]
    with pytest.raises(FileNotFoundError):
        find_agents([agents_folder / "missing"])


def test_find_agents_in_both_zoos():
    if missing_zoos():
        pytest.skip("zoo not found: " + ", ".join(missing_zoos()))
    jobs = find_agents([ZOO, ZOO_MORE])
    assert len(jobs) == 54  # obs_rms.pkl / ret_rms.pkl beside agents are not agents
    assert len({j.id for j in jobs}) == len({j.name for j in jobs}) == 54
    by_id = {j.id: j.name for j in jobs}
    assert by_id["zoo/agents/ppo2/CartPole-v1"] == "ppo2_CartPole-v1"
    assert by_id["zoo-more/agents/acktr/MountainCarContinuous-v0"] == "acktr_MountainCarContinuous-v0"


def test_many_agents_with_a_pool(agents_folder, tmp_path):
    pytest.importorskip("tensorflow_serving")
    pytest.importorskip("tritonclient")
    out = tmp_path / "out"
    proc = _cli("export", agents_folder, FIXTURES / "a2c_mlp_dobs_discrete" / "model.zip",
                "--to", "portable,tfserving,triton", "--out", out, "--workers", "2")
    assert proc.returncode == 5, proc.stderr  # one agent failed: the others are exported all the same
    summary = json.loads((out / "summary.json").read_text())
    assert summary["agents"] == 4 and summary["exports"] == 12 and summary["failed"] == 3
    assert summary["executor"] == "2 worker processes"
    rows = {(r["agent"], r["target"]): r for r in summary["rows"]}
    for target in ("portable", "tfserving", "triton"):
        broken = rows[("in/sub/broken", target)]
        assert not broken["ok"] and broken["error"]["code"] == "not_a_model_file", broken
        for agent in ("in/ppo2_CartPole-v1", "in/sub/lstm", "a2c_mlp_dobs_discrete/model"):
            row = rows[(agent, target)]
            assert row["ok"] and row["parity"]["passed"] and row["max_abs_error"] < 1e-4, row
            manifest = json.loads((Path(row["path"]) / "manifest.json").read_text())
            assert manifest["parity"] == row["parity"] and manifest["target"] == target

    # the table: one line per agent and target, the failure said
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["agent", "target", "parity", "(max", "abs", "error)", "seconds"]
    assert sum("FAILED" in ln and "not an agent" not in ln and "in/sub/broken" in ln for ln in lines) == 3
    assert "4 agents x 3 targets: 9 exported, 3 failed" in proc.stdout

    # ordinary targets per agent; serving targets in one repository each
    assert (out / "in" / "ppo2_CartPole-v1" / "portable" / "policy.sbx.msgpack").is_file()
    assert not (out / "in" / "ppo2_CartPole-v1" / "tfserving").exists()
    names = ["a2c_mlp_dobs_discrete", "lstm", "ppo2_CartPole-v1"]
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((out / "tfserving" / "models.config").read_text(), config)
    assert sorted((c.name, c.base_path) for c in config.model_config_list.config) == [
        (n, f"/models/{n}") for n in names]
    assert summary["repositories"] == {"tfserving": str(out / "tfserving" / "models.config"),
                                       "triton": str(out / "triton")}
    for name in names:
        assert (out / "tfserving" / name / "1" / "saved_model.pb").is_file()
        assert json.loads((out / "tfserving" / name / "manifest.json").read_text())["target"] == "tfserving"
        assert (out / "triton" / name / "config.pbtxt").is_file()
        assert (out / "triton" / name / "1" / "model.onnx").is_file()
        assert (out / "triton" / name / "manifest.json").is_file()
    assert sorted(p.name for p in (out / "triton").iterdir()) == names
    assert not list(out.rglob(".*")), "staging folders left behind"

    # again, without --force: every target is taken, nothing is replaced
    before = (out / "in" / "ppo2_CartPole-v1" / "portable" / "manifest.json").read_bytes()
    again = _cli("export", agents_folder, FIXTURES / "a2c_mlp_dobs_discrete" / "model.zip",
                 "--to", "portable", "--out", out, "--workers", "1")
    assert again.returncode == 5
    taken = json.loads((out / "summary.json").read_text())["rows"]
    assert [r["error"]["code"] for r in taken] == ["output_exists", "not_a_model_file", "output_exists",
                                                   "output_exists"]
    assert (out / "in" / "ppo2_CartPole-v1" / "portable" / "manifest.json").read_bytes() == before


def test_gather_refuses_a_taken_repository_entry(tmp_path):
    """An agent's triton export whose NAME is already in the repository: refused
    without force (the existing one kept, the new one removed), replaced with it."""
    out = tmp_path
    for content in ("old", "new"):
        single = out / "a" / "triton"
        (single / "x").mkdir(parents=True)
        (single / "x" / "config.pbtxt").write_text(content)
        (single / "manifest.json").write_text("{}")
        row = {"agent": "a", "target": "triton", "name": "x", "ok": True, "path": str(single)}
        (got,) = _gather([row], out, force=False)
        if content == "old":
            assert got["ok"] and got["path"] == str(out / "triton" / "x")
        else:
            assert not got["ok"] and got["error"]["code"] == OutputExists.code
        assert (out / "triton" / "x" / "config.pbtxt").read_text() == "old"
        assert not (out / "a" / "triton").exists()
    single = out / "a" / "triton"
    (single / "x").mkdir(parents=True)
    (single / "x" / "config.pbtxt").write_text("newer")
    (single / "manifest.json").write_text("{}")
    (got,) = _gather([{"agent": "a", "target": "triton", "name": "x", "ok": True, "path": str(single)}], out,
                     force=True)
    assert got["ok"] and (out / "triton" / "x" / "config.pbtxt").read_text() == "newer"
    assert (out / "triton" / "x" / "manifest.json").is_file() and not (out / "a" / "triton").exists()


def _crashy(job, options):
    """A worker's work that kills its process for the agent named 'crash'."""
    if job["name"] == "crash":
        os._exit(3)
    return [{"agent": job["id"], "target": t, "ok": True, "attempts": job["attempts"]} for t in options["to"]]


def test_a_dying_worker_stops_only_its_agent():
    """The agent whose worker dies comes first: every agent queued behind it breaks with
    the pool, and still only that agent is lost (tried alone once more, then a failed
    row); the others are done once, or once more alone if they had begun beside it."""
    jobs = [Job(f"a{i}", f"/x/a{i}.zip", "crash" if i == 0 else f"a{i}") for i in range(6)]
    got: list[list[dict]] = []
    _run_pool(jobs, {"to": ["portable", "params"], "out": "/nonexistent"}, 2, got.append, work=_crashy)
    rows = {(r["agent"], r["target"]): r for agent_rows in got for r in agent_rows}
    assert len(got) == 6 and len(rows) == 12
    assert [r["ok"] for k, r in rows.items() if k[0] == "a0"] == [False, False]
    assert "died (2 times" in rows[("a0", "portable")]["error"]["message"]
    assert all(r["ok"] for k, r in rows.items() if k[0] != "a0")
    assert all(r["attempts"] <= 1 for k, r in rows.items() if k[0] != "a0")


def _kills_a_neighbour(job, options):
    """In a worker: 'culprit' waits until 'victim' (in the other worker) has installed
    its portable export and written its params (staged), then exports and kills its own
    process once its own params are written (staged; its portable installed), every
    time it is tried; the victim's first attempt never finishes params (the pool's end
    kills it)."""
    import time

    from sbexportd.export import many
    stalled = Path(options["out"]).parent / "victim-stalled"  # made once the victim's params are written, staged
    from sbexportd.export.targets import TARGETS
    module = TARGETS["params"].load_module()
    write = module.write
    if job["id"] == "culprit":
        deadline = time.monotonic() + 300
        while job["attempts"] == 0 and not stalled.exists() and time.monotonic() < deadline:
            time.sleep(0.02)

        def write_then_die(*args, **kwargs):
            write(*args, **kwargs)
            os._exit(3)
        module.write = write_then_die
    if job["id"] == "victim" and job["attempts"] == 0:
        def write_then_stall(*args, **kwargs):
            write(*args, **kwargs)
            stalled.touch()
            time.sleep(600)
        module.write = write_then_stall
    return many.export_agent(job, options)


def test_a_worker_killed_mid_export_costs_only_its_agent(tmp_path, monkeypatch):
    """Real exports on a pool of 2: one agent kills its worker while another is half
    exported beside it (one target installed, one staged). The pool breaks; the agents
    not begun are exported in a fresh pool, the half-exported one again alone
    (replacing what its first attempt installed), the culprit is tried alone once more
    and is the only agent lost: nothing of it is left (its installed portable export is
    taken out again; its staging swept). No staging folder is left behind."""
    from sbexportd.export import many
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b", "culprit", "victim"):
        shutil.copy(EXAMPLE, folder / f"{name}.pkl")
    out = tmp_path / "out"
    monkeypatch.setattr(many, "export_agent", _kills_a_neighbour)
    summary = many.export_many([folder], ["portable", "params"], out, workers=2)
    rows = {(r["agent"], r["target"]): r for r in summary.rows}
    assert len(rows) == 8 and [r["agent"] for r in summary.failed] == ["culprit", "culprit"]
    assert "died (2 times" in rows[("culprit", "params")]["error"]["message"]
    for agent in ("a", "b", "victim"):
        for target in ("portable", "params"):
            row = rows[(agent, target)]
            assert row["ok"] and row["parity"]["verified"] and row["max_abs_error"] is not None, row
            manifest = json.loads((out / agent / target / "manifest.json").read_text())
            assert manifest["parity"]["verified"]
            assert row.get("attempt") == (2 if agent == "victim" else None), row
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", many.SUMMARY, "victim"]
    assert sorted(p.name for p in (out / "victim").iterdir()) == ["params", "portable"]  # no staging left
    assert (tmp_path / "victim-stalled").exists()  # the victim was caught half exported
    assert json.loads((out / many.SUMMARY).read_text())["failed"] == 2
