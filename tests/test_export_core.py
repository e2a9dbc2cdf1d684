"""The export framework itself (sbexportd.export.core and the CLI's `export`), with the
light targets portable and params: staged atomic writes, --force, the manifest,
verification and its failures, --no-verify, cancellation, the summary table, target
names; and the portable format's NumPy reader on corrupted files."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import msgpack
import numpy as np
import pytest

import sbexportd
from conftest import FIXTURES
from sbexportd import cli
from sbexportd.errors import (
    Cancelled,
    ExportError,
    InvalidSpec,
    ModelFileError,
    OutputExists,
    ParityFailed,
    TargetUnavailable,
)
from sbexportd.export import export, resolve_targets
from sbexportd.export.conventions import io
from sbexportd.export.targets import TARGETS, Target, portable

MLP = FIXTURES / "ppo2_mlp_vec_discrete" / "model.zip"
LSTM = FIXTURES / "ppo2_mlplstm_vec_box" / "model.zip"
VECNORM = (FIXTURES / "ppo2_mlp_vecnormalize" / "model.zip", FIXTURES / "ppo2_mlp_vecnormalize" / "vecnormalize.pkl")
HER = FIXTURES / "her_sac_bitflip" / "model.zip"
SBEXPORTD = Path(sys.executable).with_name("sbexportd")


@pytest.fixture(scope="module")
def mlp():
    return sbexportd.load(MLP)


def leftovers(out: Path) -> list[str]:
    """Hidden staging folders (the export transaction's .sbexportd-*.txn, and the
    .<target>.partial-* / .old-* of earlier versions) left in out."""
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".sbexportd-") or ".partial-" in p.name
                  or ".old-" in p.name) if out.exists() else []


@dataclasses.dataclass(frozen=True)
class FakeTarget(Target):
    """A target whose module is given, not imported."""
    impl: object = None

    def load_module(self):
        return self.impl


def fake_target(monkeypatch, name: str, write=None, load=None) -> None:
    def default_write(model, folder):
        (folder / "data.bin").write_bytes(b"x" * 10)

    def default_load(folder, spec):
        raise AssertionError("not reached in these tests")
    impl = SimpleNamespace(write=write or default_write, load=load or default_load)
    monkeypatch.setitem(TARGETS, name, FakeTarget(name, name, "a test target", impl))


# --- atomicity ---------------------------------------------------------------------------
def test_failing_write_leaves_nothing(mlp, tmp_path, monkeypatch):
    def write(model, folder):
        (folder / "half.bin").write_bytes(b"partial")
        raise RuntimeError("disk on fire")
    fake_target(monkeypatch, "broken", write=write)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="disk on fire") as info:
        export(mlp, "broken", out)
    assert isinstance(info.value.__cause__, RuntimeError) and info.value.path == str(out / "broken")
    assert not out.exists()  # made by the export, and left empty: removed
    assert leftovers(out) == []


def test_all_or_nothing_keeps_no_target_when_one_fails(mlp, tmp_path, monkeypatch):
    """all_or_nothing (--all-or-nothing): a target that fails after others were
    written and verified leaves none of them, and no out folder the export itself created."""
    def write(model, folder):
        raise RuntimeError("no")
    fake_target(monkeypatch, "broken", write=write)
    out = tmp_path / "out"
    with pytest.raises(ExportError):
        export(mlp, ["portable", "params", "broken"], out, all_or_nothing=True)
    assert not out.exists()
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(ExportError):
        export(mlp, ["portable", "broken"], out, all_or_nothing=True)
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"] and leftovers(out) == []


def test_by_default_each_target_that_verified_is_kept(mlp, tmp_path, monkeypatch):
    """Issue 8: `--to all` keeps what verified. The failed target is reported with its
    reason and leaves nothing under its name; the others are complete."""
    def write(model, folder):
        (folder / "half.bin").write_bytes(b"partial")
        raise RuntimeError("converter crashed")
    fake_target(monkeypatch, "broken", write=write)
    out = tmp_path / "out"
    results = export(mlp, ["portable", "broken", "params"], out)
    assert [(r.target, r.ok) for r in results] == [("portable", True), ("broken", False), ("params", True)]
    assert "converter crashed" in str(results[1].error) and results[1].files == []
    assert sorted(p.name for p in out.iterdir()) == ["params", "portable"] and leftovers(out) == []
    assert (out / "portable" / "manifest.json").is_file() and (out / "params" / "manifest.json").is_file()


def test_existing_output_is_kept_without_force_and_replaced_with_it(mlp, tmp_path):
    out = tmp_path / "out"
    export(mlp, "portable", out)
    marker = out / "portable" / "mine.txt"
    marker.write_text("keep me")
    before = (out / "portable" / "manifest.json").read_bytes()
    with pytest.raises(OutputExists, match="--force"):
        export(mlp, "portable,params", out)
    assert marker.read_text() == "keep me" and (out / "portable" / "manifest.json").read_bytes() == before
    assert not (out / "params").exists()  # refused before anything was written
    results = export(mlp, "portable", out, force=True)
    assert not marker.exists()
    assert sorted(p.name for p in (out / "portable").iterdir()) == ["manifest.json", "policy.sbx.msgpack"]
    assert results[0].path == out / "portable"
    assert leftovers(out) == []


def test_failed_replacement_keeps_the_old_export(mlp, tmp_path, monkeypatch):
    out = tmp_path / "out"
    export(mlp, "portable", out)
    before = (out / "portable" / "policy.sbx.msgpack").read_bytes()

    def wrong(folder, spec):
        def run(feeds):
            raise ParityFailed("portable: made up", folder)
        return run, "test"
    monkeypatch.setattr(portable, "load", wrong)
    with pytest.raises(ParityFailed):
        export(mlp, "portable", out, force=True)
    assert (out / "portable" / "policy.sbx.msgpack").read_bytes() == before
    assert leftovers(out) == []


def test_cancelled_export_leaves_nothing(mlp, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(Cancelled):
        export(mlp, "portable", out, cancelled=lambda: True)
    assert not (out / "portable").exists() and leftovers(out) == []


def test_export_folder_is_an_ordinary_folder(mlp, tmp_path):
    """Staging uses mkdtemp (0700); the final folder gets the umask's permissions."""
    out = tmp_path / "out"
    export(mlp, "portable", out)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((out / "portable").stat().st_mode) == 0o777 & ~umask


# --- the manifest ---------------------------------------------------------------------------
def test_manifest_contents(mlp, tmp_path):
    out = tmp_path / "out"
    results = export(mlp, "portable,params", out)
    assert [r.target for r in results] == ["portable", "params"]
    for r in results:
        folder = out / r.target
        m = json.loads((folder / "manifest.json").read_text())
        assert m["format"] == "sbexportd-export" and m["format_version"] == 1
        assert m["sbexportd_version"] == sbexportd.__version__
        assert m["target"] == r.target
        assert m["inputs"] == [{"name": "obs", "dtype": "float32", "shape": [None, 4]}]
        assert m["outputs"] == [{"name": "action", "dtype": "int64", "shape": [None]},
                                {"name": "probs", "dtype": "float32", "shape": [None, 3]},
                                {"name": "values", "dtype": "float32", "shape": [None]}]
        assert (m["inputs"], m["outputs"]) == io(mlp.spec)
        src = m["source"]
        assert src["file"] == "model.zip" and src["sha256"] == hashlib.sha256(MLP.read_bytes()).hexdigest()
        assert src["algorithm"] == "ppo2" and src["policy"] == mlp.spec.policy
        assert m["observation_space"] == mlp.spec.observation_space.describe()
        assert m["action_space"] == {"type": "Discrete", "n": 3}
        assert m["vecnormalize"] == {"applied": False} and m["goal_observation"] is None
        listed = {f["path"]: f for f in m["files"]}
        on_disk = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        assert sorted([*listed, "manifest.json"]) == on_disk
        for path, f in listed.items():
            data = (folder / path).read_bytes()
            assert f["bytes"] == len(data) and f["sha256"] == hashlib.sha256(data).hexdigest()
        assert r.files == m["files"] and r.size == sum(f["bytes"] for f in m["files"])
        p = m["parity"]
        assert p["verified"] is True and p["passed"] is True and p["reference"] == "numpy"
        assert p["observations"] == 64 and p["seed"] == 0 and p["runtime"]
        assert set(p["max_abs_error"]) == {"action", "probs", "values"}
        assert all(isinstance(v, float) and 0.0 <= v < 1e-5 for v in p["max_abs_error"].values())
        assert p == r.parity


def test_manifest_recurrent_vecnormalize_and_goal(tmp_path):
    m = sbexportd.load(LSTM)
    export(m, "portable", tmp_path / "lstm")
    doc = json.loads((tmp_path / "lstm" / "portable" / "manifest.json").read_text())
    assert [d["name"] for d in doc["inputs"]] == ["obs", "state", "mask"]
    assert doc["inputs"][1] == {"name": "state", "dtype": "float32", "shape": [None, m.spec.state_size]}
    assert doc["inputs"][2] == {"name": "mask", "dtype": "float32", "shape": [None]}
    assert [d["name"] for d in doc["outputs"]] == ["action", "mean", "std", "values", "state"]
    assert set(doc["parity"]["max_abs_error"]) == {"action", "mean", "std", "values", "state"}

    m = sbexportd.load(*VECNORM)
    export(m, "params", tmp_path / "vn")
    doc = json.loads((tmp_path / "vn" / "params" / "manifest.json").read_text())
    assert doc["vecnormalize"] == {"applied": True, "source": str(VECNORM[1]), "epsilon": 1e-8, "clip_obs": 10.0}

    m = sbexportd.load(HER)
    export(m, "portable", tmp_path / "her")
    doc = json.loads((tmp_path / "her" / "portable" / "manifest.json").read_text())
    assert doc["goal_observation"]["keys"] == ["observation", "achieved_goal", "desired_goal"]
    assert doc["inputs"][0]["shape"] == [None, 12]


# --- verification -------------------------------------------------------------------------
def _perturbed_portable(monkeypatch, name: str, how):
    real = portable.load

    def load(folder, spec):
        run, runtime = real(folder, spec)

        def wrong(feeds):
            got = run(feeds)
            got[name] = how(got[name])
            return got
        return wrong, runtime
    monkeypatch.setattr(portable, "load", load)


@pytest.mark.parametrize("name,how,message", [
    ("action", lambda a: 1 - a, "action: 64 entries differ"),
    ("values", lambda v: v + 1e-3, "values: max abs error 0.001"),
    ("probs", lambda p: p[:, :1], "probs"),                 # wrong shape
])
def test_parity_failed_when_the_runner_is_wrong(mlp, tmp_path, monkeypatch, name, how, message):
    _perturbed_portable(monkeypatch, name, how)
    with pytest.raises(ParityFailed, match=message) as info:
        export(mlp, "portable", tmp_path / "out")
    assert "--no-verify" in str(info.value) and info.value.code == "parity_failed"
    assert not (tmp_path / "out" / "portable").exists() and leftovers(tmp_path / "out") == []


def test_parity_failed_when_an_output_is_missing(mlp, tmp_path, monkeypatch):
    real = portable.load

    def load(folder, spec):
        run, runtime = real(folder, spec)
        return (lambda feeds: {k: v for k, v in run(feeds).items() if k != "values"}), runtime
    monkeypatch.setattr(portable, "load", load)
    with pytest.raises(ParityFailed, match="'values' missing"):
        export(mlp, "portable", tmp_path / "out")


def test_tolerance_is_the_parity_rule(mlp, tmp_path, monkeypatch):
    """Below 1e-5 (times max(1, |ref|)) an export passes and the error is recorded."""
    _perturbed_portable(monkeypatch, "values", lambda v: v + 4e-6)
    (r,) = export(mlp, "portable", tmp_path / "out")
    assert r.parity["passed"] and 3e-6 < r.parity["max_abs_error"]["values"] < 5e-6


def test_no_verify_keeps_a_wrong_export(mlp, tmp_path, monkeypatch):
    _perturbed_portable(monkeypatch, "action", lambda a: 1 - a)
    (r,) = export(mlp, "portable", tmp_path / "out", verify=False)
    doc = json.loads((tmp_path / "out" / "portable" / "manifest.json").read_text())
    assert doc["parity"] == {"verified": False} == r.parity


def test_progress_reports_every_stage(mlp, tmp_path):
    seen = []
    export(mlp, "portable,params", tmp_path / "out", progress=lambda t, s, f: seen.append((t, s, f)))
    assert seen == [("portable", "writing", 0.0), ("portable", "verifying", 0.5), ("portable", "done", 1.0),
                    ("params", "writing", 0.0), ("params", "verifying", 0.5), ("params", "done", 1.0)]


# --- target names ----------------------------------------------------------------------------
def test_to_all_resolves_every_target():
    everything = ["pytorch", "onnx", "savedmodel", "graphdef", "tfjs", "tflite", "portable", "params", "tfserving",
                  "triton"]
    in_all = [n for n, t in TARGETS.items() if t.in_all]
    assert sorted(resolve_targets("all")) == sorted(everything) == sorted(in_all)
    assert resolve_targets(["all"]) == in_all
    assert sorted(set(TARGETS) - set(in_all)) == ["rl-zoo3", "sb3"]  # asked for by name
    assert resolve_targets("portable, params") == ["portable", "params"]
    assert resolve_targets(["params"]) == ["params"]
    with pytest.raises(TargetUnavailable, match=r"unknown target bogus.*choose from"):
        resolve_targets("portable,bogus")
    for t in TARGETS.values():
        assert t.name and t.summary and (Path(portable.__file__).parent / f"{t.module}.py").is_file()


# --- the command line ----------------------------------------------------------------------
def test_cli_export_summary_table(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["export", str(MLP), "--to", "portable,params", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["target", "files", "size", "parity", "(max", "abs", "error)", "seconds"]
    assert set(lines[1]) == {"-", " "}
    rows = {line.split()[0]: line for line in lines[2:4]}
    assert set(rows) == {"portable", "params"}
    assert rows["portable"].split()[1] == "2" and rows["params"].split()[1] == "5"  # files, manifest included
    for line in rows.values():
        assert re.search(r" ok \d\.\de[+-]\d\d \(numpy", line), line
    assert lines[4] == f"written under {out}/ (each with manifest.json)"
    assert (out / "portable" / "manifest.json").is_file() and (out / "params" / "params.npz").is_file()

    # again: refused without --force, one line on stderr, exit 2
    assert cli.main(["export", str(MLP), "--to", "portable", "--out", str(out)]) == 5  # the export failed
    err = capsys.readouterr().err
    assert err.startswith("sbexportd: error: ") and "--force" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["export", str(MLP), "--to", "portable", "--out", str(out), "--force"]) == 0


def test_cli_no_verify_and_unknown_target(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["export", str(MLP), "--to", "portable", "--out", str(out), "--no-verify"]) == 0
    assert "not verified" in capsys.readouterr().out
    assert json.loads((out / "portable" / "manifest.json").read_text())["parity"] == {"verified": False}
    assert cli.main(["export", str(MLP), "--to", "bogus", "--out", str(out)]) == 5  # the export failed
    err = capsys.readouterr().err
    assert "unknown target bogus" in err and "all" in err


@pytest.mark.skipif(not SBEXPORTD.is_file(), reason="the sbexportd console script is not installed")
def test_cli_console_script(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([str(SBEXPORTD), "export", str(MLP), "--to", "portable,params", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("target") and "written under" in proc.stdout
    assert proc.stderr == ""  # no progress bar on a pipe


# --- the portable format's reader on corrupted files ---------------------------------------
@pytest.fixture()
def portable_doc(mlp, tmp_path):
    export(mlp, "portable", tmp_path / "out")
    path = tmp_path / "out" / "portable" / portable.FILE
    return path, msgpack.unpackb(path.read_bytes(), raw=False)


def _write(path: Path, doc) -> Path:
    bad = path.with_name("bad.sbx.msgpack")
    bad.write_bytes(msgpack.packb(doc, use_bin_type=True))
    return bad


def test_portable_reader_reads_the_export(portable_doc, mlp):
    path, _ = portable_doc
    spec = portable.read(path)
    assert [n.op for n in spec.nodes] == [n.op for n in mlp.spec.nodes]
    for k in mlp.spec.used_tensors():
        assert np.array_equal(spec.tensors[k], mlp.spec.tensors[k])
        assert spec.tensors[k].dtype == mlp.spec.tensors[k].dtype


@pytest.mark.parametrize("dtype", ["complex64", "object", "str", "<U4"])
def test_portable_reader_rejects_a_bad_dtype(portable_doc, dtype):
    path, doc = portable_doc
    name = next(iter(doc["tensors"]))
    doc["tensors"][name]["dtype"] = dtype
    with pytest.raises(ModelFileError, match=f"tensor {name}"):
        portable.read(_write(path, doc))


def test_portable_reader_rejects_an_unknown_dtype_name(portable_doc):
    path, doc = portable_doc
    name = next(iter(doc["tensors"]))
    doc["tensors"][name]["dtype"] = "float33"
    with pytest.raises(ModelFileError, match=f"tensor {name} has an unknown dtype 'float33'"):
        portable.read(_write(path, doc))


@pytest.mark.parametrize("change", ["short", "long", "shape"])
def test_portable_reader_rejects_a_wrong_byte_count(portable_doc, change):
    path, doc = portable_doc
    name = next(k for k, t in doc["tensors"].items() if len(t["shape"]) == 2)
    t = doc["tensors"][name]
    if change == "short":
        t["data"] = t["data"][:-4]
    elif change == "long":
        t["data"] = t["data"] + b"\0\0\0\0"
    else:
        t["shape"] = [t["shape"][0] + 1, t["shape"][1]]
    with pytest.raises(ModelFileError, match=f"tensor {name} has .* bytes for shape"):
        portable.read(_write(path, doc))


def test_portable_reader_rejects_an_unknown_op(portable_doc):
    path, doc = portable_doc
    doc["nodes"][1]["op"] = "launch_missiles"
    with pytest.raises(InvalidSpec, match="unknown op 'launch_missiles'; the ops are cast_float"):
        portable.read(_write(path, doc))


def test_portable_reader_rejects_other_files(portable_doc):
    path, doc = portable_doc
    with pytest.raises(ModelFileError, match="not an sbexportd-portable v1 file"):
        portable.read(_write(path, {**doc, "format_version": 2}))
    with pytest.raises(ModelFileError, match="not an sbexportd-portable v1 file"):
        portable.read(_write(path, {**doc, "format": "something-else"}))
    with pytest.raises(ModelFileError, match="not an sbexportd-portable v1 file"):
        portable.read(_write(path, [1, 2, 3]))
    with pytest.raises(ModelFileError, match=r"not a well-formed .* document .*field 'nodes'"):
        portable.read(_write(path, {k: v for k, v in doc.items() if k != "nodes"}))
    with pytest.raises(ModelFileError, match="not msgpack"):
        (path.parent / "junk.msgpack").write_bytes(b"\xc1\xc1")
        portable.read(path.parent / "junk.msgpack")


def test_portable_reader_rejects_a_dangling_tensor_name(portable_doc):
    path, doc = portable_doc
    doc["nodes"][2]["inputs"] = ["nowhere:99"]
    with pytest.raises(InvalidSpec, match="reads 'nowhere:99' before it is written"):
        portable.read(_write(path, doc))
    path2, doc2 = portable_doc
    doc2 = msgpack.unpackb(path2.read_bytes(), raw=False)
    del doc2["tensors"][doc2["nodes"][1]["params"]["w"]]
    with pytest.raises(InvalidSpec, match="missing"):
        portable.read(_write(path2, doc2))


def test_cli_to_all_asks_for_every_target(tmp_path, capsys, monkeypatch):
    """`--to all` reaches export() and resolves to every target (export itself stubbed:
    the TF-family targets are tested in test_export_tf.py)."""
    import sbexportd.export as export_pkg
    seen = []

    def fake_export(model, to, out, **kw):
        seen.append(resolve_targets(to))
        return []
    monkeypatch.setattr(export_pkg, "export", fake_export)
    assert cli.main(["export", str(MLP), "--to", "all", "--out", str(tmp_path / "out")]) == 0
    assert seen == [[n for n, t in TARGETS.items() if t.in_all]]
    assert capsys.readouterr().out.startswith("target")


def test_model_export_method(mlp, tmp_path):
    results = mlp.export("portable,params", tmp_path / "out")
    assert [r.target for r in results] == ["portable", "params"]
    assert all(r.parity["passed"] for r in results)
    assert (tmp_path / "out" / "portable" / "manifest.json").is_file()
