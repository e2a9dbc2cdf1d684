"""The export transaction (sbexportd/export/transaction.py), the one mechanism the CLI,
the Python API and the daemon install exports with: crashes at every step (real
processes killed, or cut short with os._exit mid-install), recovery by the next
transaction on the same folder, checked outputs, and the CLI's per-target results
(issue 8: `--to all` keeps what verified; --all-or-nothing)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sbexportd
from conftest import FIXTURES, ROOT
from sbexportd.errors import ExportError, OutputExists
from sbexportd.export import export
from sbexportd.export.transaction import Transaction, sweep

MLP = FIXTURES / "ppo2_mlp_vec_discrete" / "model.zip"
FAKES = ROOT / "tests" / "fakes"


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def tree(folder: Path) -> dict[str, str]:
    """{relative path: content} of every file, and '->target' for symlinks."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_symlink():
            out[rel] = "->" + os.readlink(p)
        elif p.is_file():
            out[rel] = p.read_text()
    return out


# A child process that stages targets a and b (each a folder with one file) and
# dies (os._exit, as kill -9 would) right after the Nth rename of its install.
CRASH = """
import os, sys
from pathlib import Path
from sbexportd.export.transaction import Transaction
out, after, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
txn = Transaction(out, ["a", "b"], force=True, all_or_nothing=mode == "all")
txn.open()
for name in ("a", "b"):
    (txn.stage(name) / "file.txt").write_text("new " + name)
    txn.ready(name)
renames, real = [0], os.rename
def rename(src, dst):
    real(src, dst)
    renames[0] += 1
    if renames[0] == after:
        os._exit(9)
os.rename = rename
txn.commit()
txn.close()
"""


def crash(out: Path, after: int, mode: str) -> None:
    r = subprocess.run([sys.executable, "-c", CRASH, str(out), str(after), mode], cwd=ROOT, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert r.returncode == 9, r.stderr


def old_out(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    for name in ("a", "b"):
        (out / name).mkdir(parents=True)
        (out / name / "file.txt").write_text("old " + name)
    (out / "mine.txt").write_text("not ours")
    return out


@pytest.mark.parametrize("after", [1, 2, 3, 4])
def test_a_crash_while_installing_all_or_nothing_is_rolled_back(tmp_path, after):
    out = old_out(tmp_path)
    before = tree(out)
    crash(out, after, "all")
    assert len(hidden(out)) == 1  # the dead process' staging folder
    swept = sweep(out)
    assert len(swept) == 1 and hidden(out) == []
    assert tree(out) == before  # every target as it was before the transaction


@pytest.mark.parametrize("after, kept", [(1, {}), (2, {"a"}), (3, {"a"}), (4, {"a", "b"})])
def test_a_crash_while_installing_keeps_each_target_whole(tmp_path, after, kept):
    out = old_out(tmp_path)
    crash(out, after, "each")
    sweep(out)
    assert hidden(out) == []
    for name in ("a", "b"):
        assert (out / name / "file.txt").read_text() == ("new " if name in kept else "old ") + name


def test_a_transaction_of_a_live_process_is_left_alone(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    child = subprocess.Popen([sys.executable, "-c", """
import sys, time
from sbexportd.export.transaction import Transaction
t = Transaction(sys.argv[1], ["a"]); t.open(); print("open", flush=True); time.sleep(60)
""", str(out)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "open"
        assert sweep(out) == [] and len(hidden(out)) == 1
        child.kill()
        child.wait()
        assert len(sweep(out)) == 1 and hidden(out) == []
    finally:
        child.kill()


def test_the_cli_killed_mid_export_leaves_nothing_visible_and_the_next_export_sweeps(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FAKES), str(ROOT)]),
           "SBEXPORTD_TEST_FAULTS": "slow-write=60"}
    cli = subprocess.Popen([sys.executable, "-m", "sbexportd.cli", "export", str(MLP), "--to", "params,portable",
                            "--out", str(out)], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 60
        while not (out.exists() and any((out / h / "new" / "params").exists() for h in hidden(out))):
            assert time.monotonic() < deadline and cli.poll() is None
            time.sleep(0.05)
        cli.send_signal(signal.SIGKILL)
        cli.wait(20)
    finally:
        cli.kill()
    assert visible(out) == [] and len(hidden(out)) == 1
    r = subprocess.run([sys.executable, "-m", "sbexportd.cli", "export", str(MLP), "--to", "params,portable",
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert visible(out) == ["params", "portable"] and hidden(out) == []


def test_outputs_are_checked_before_anything_is_written(tmp_path):
    model = sbexportd.load(MLP)
    for out in ("", "  "):
        with pytest.raises(ExportError, match="empty"):
            export(model, "params", out)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="not a folder"):
        export(model, "params", tmp_path / "file")
    with pytest.raises(ExportError, match="export cache"):
        Transaction(tmp_path / "cache" / "sub", ["params"], forbidden=[tmp_path / "cache"])
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "cache")
    with pytest.raises(ExportError, match="export cache"):  # through a symlink too
        Transaction(link / "x", ["params"], forbidden=[tmp_path / "cache"])


def test_force_replaces_files_and_symlinks_and_leaves_nothing_behind(tmp_path):
    model = sbexportd.load(MLP)
    out = tmp_path / "out"
    out.mkdir()
    (out / "portable").write_text("a file")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "keep.txt").write_text("keep")
    (out / "params").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputExists):
        export(model, "portable,params", out)
    results = export(model, ["portable", "params", "portable"], out, force=True)
    assert [r.target for r in results] == ["portable", "params"]  # each once
    assert (out / "portable").is_dir() and (out / "params").is_dir() and not (out / "params").is_symlink()
    assert (tmp_path / "elsewhere" / "keep.txt").read_text() == "keep"
    assert visible(out) == ["params", "portable"] and hidden(out) == []


def test_the_cli_keeps_what_verified_and_exits_5(tmp_path):
    """Issue 8: a failed target is in the summary table with its reason, its folder
    is not written, the exit status is 5 (the operation failed); --all-or-nothing
    writes nothing, exits 5 as well."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FAKES), str(ROOT)]),
           "SBEXPORTD_TEST_FAULTS": "portable-parity"}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "sbexportd.cli", "export", str(MLP), *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=300)
    r = cli("--to", "params,portable", "--out", str(tmp_path / "a"))
    assert r.returncode == 5, r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines() if line.split()}
    assert "FAILED (parity_failed)" in rows["portable"] and " ok " in rows["params"]
    assert "1 of 2 targets failed" in r.stdout and "1 of 2 targets failed: portable" in r.stderr
    assert "  portable: the export does not reproduce the policy" in r.stdout  # the reason, with the table
    assert visible(tmp_path / "a") == ["params"] and hidden(tmp_path / "a") == []
    r = cli("--to", "params,portable", "--out", str(tmp_path / "b"), "--all-or-nothing")
    assert r.returncode == 5 and "does not reproduce the policy" in r.stderr
    assert not (tmp_path / "b").exists()
    manifest = json.loads((tmp_path / "a" / "params" / "manifest.json").read_text())
    assert manifest["parity"]["passed"] is True
