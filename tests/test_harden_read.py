"""Bounded work for every file (issue 10, findings 2, 4 and 8, the reader's side).

Each hostile file is built here, opcode by opcode (tests/hostile/bombs.py), and read
in a child process with a deadline, so a regression fails the test instead of
hanging the suite: the reader must refuse it with a typed error, in milliseconds,
with a short message that holds none of the file's bytes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from sbexportd.errors import ModelFileError, NotAModelFile, VecNormalizeError, ZooConfigError, shown
from sbexportd.read import read_model, read_vecnormalize, read_zoo_config
from sbexportd.read.safe_pickle import MAX_ITEMS, MAX_OBJECTS
from tests.hostile import bombs as B
from tests.hostile import make

ROOT = Path(__file__).resolve().parents[1]
DEADLINE = 30  # seconds a child may take before the test calls it a hang
CHILD = """
import json, sys, time
from sbexportd.read import read_model
t = time.perf_counter()
try:
    read_model(sys.argv[1])
    out = {"error": None}
except Exception as e:
    out = {"error": type(e).__name__, "code": getattr(e, "code", None), "message": str(e)}
out["seconds"] = time.perf_counter() - t
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
out["maxrss_mib"] = int(hwm.split()[1]) / 1024
print(json.dumps(out))
"""


def read_in_child(path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True,
                              timeout=DEADLINE, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading {path.name} ({path.stat().st_size} bytes) took more than {DEADLINE} s")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def pkl(tmp_path: Path, raw: bytes, name: str = "model.pkl") -> Path:
    path = tmp_path / name
    path.write_bytes(raw)
    return path


def zip_with_data(tmp_path: Path, expr: bytes) -> Path:
    """An SB2 .zip whose data['policy'] is the cloudpickled `expr` (as SB2 stores
    what JSON cannot hold): the same unpickler reads it."""
    path = tmp_path / "model.zip"
    path.write_bytes(make.sb2_zip(data={"gamma": 0.99, "policy": make.serialized_entry(B.alone(expr))}))
    return path


def refused_quickly(result: dict, error: str | tuple = ("ModelFileError", "MemberTooLarge")) -> None:
    errors = (error,) if isinstance(error, str) else error
    assert result["error"] in errors, result
    assert result["seconds"] < 2.0, result
    assert len(result["message"]) < 400, result["message"][:1000]


# -- finding 2: a 425-byte pickle froze the daemon --------------------------------------------
BOMBS = {
    # numpy _reconstruct's shape: the message used to hold its full repr (2**40 items)
    "shape-of-shared-lists": B.reconstruct(B.shared_lists(40)),
    # a dtype's BUILD state, the same way
    "dtype-state-of-shared-lists": B.dtype_with_state(B.shared_lists(40)),
    # a dict key of shared tuples: hashing it visits 2**40 tuples
    "dict-key-of-shared-tuples": B.dict_keyed_by(B.shared_tuples(40)),
    # no error while loading, but 2**40 visits for whoever walks, prints or JSON-dumps it next
    "data-of-shared-lists": B.shared_lists(40),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
@pytest.mark.parametrize("container", ["pkl", "zip"])
def test_shared_reference_bombs_are_refused_at_once(name, container, tmp_path):
    expr = BOMBS[name]
    path = pkl(tmp_path, B.in_model(expr)) if container == "pkl" else zip_with_data(tmp_path, expr)
    if container == "pkl":
        assert path.stat().st_size < 500  # the review's was 425 bytes
    result = read_in_child(path)
    refused_quickly(result)
    assert result["maxrss_mib"] < 300, result


def test_nesting_depth_is_bounded(tmp_path):
    result = read_in_child(pkl(tmp_path, B.in_model(B.nested_lists(100_000))))
    refused_quickly(result)
    assert "levels deep" in result["message"] or "nests" in result["message"]


def test_total_objects_are_bounded(tmp_path):
    result = read_in_child(pkl(tmp_path, B.in_model(B.many_objects(MAX_OBJECTS))))
    refused_quickly(result, "MemberTooLarge")
    assert f"more than {MAX_OBJECTS} objects" in result["message"]


def test_container_sizes_are_bounded(tmp_path):
    result = read_in_child(pkl(tmp_path, B.in_model(B.long_list(MAX_ITEMS + 1))))
    refused_quickly(result, "MemberTooLarge")
    assert f"more than {MAX_ITEMS} items" in result["message"]


def test_what_real_files_hold_stays_far_below_the_bounds(zoo_dir):
    """The zoo's largest pickles are ~2,300 opcodes: the bound leaves 100x headroom,
    and every real agent still reads (test_read_real reads them all)."""
    import pickletools
    biggest = 0
    for path in sorted(zoo_dir.glob("agents/*/*.pkl")):
        biggest = max(biggest, sum(1 for _ in pickletools.genops(path.read_bytes())))
    assert 0 < biggest * 100 < MAX_OBJECTS


def test_messages_of_file_data_are_bounded():
    nested = [0]
    for _ in range(60):
        nested = [nested, nested]
    assert len(shown(nested)) <= 80 and len(shown("x" * 10**6)) <= 80 and len(shown({i: i for i in range(10**5)})) <= 80


# -- finding 4: only regular files, size before hashing -----------------------------------------
def _read_with_deadline(fn, *args, seconds: float = 10.0):
    """fn(*args) in a thread; the result or exception, or a failure if it blocks
    (a FIFO blocked open() forever; the thread is a daemon, the test goes on)."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001
            box["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)}({args[0]}) blocked for more than {seconds} s")
    return box


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.zip"
    os.mkfifo(fifo)
    box = _read_with_deadline(read_model, fifo)
    assert isinstance(box.get("error"), ModelFileError) and "FIFO" in str(box["error"]), box


def test_fifos_as_vecnormalize_and_zoo_config_are_refused(tmp_path):
    os.mkfifo(tmp_path / "vecnormalize.pkl")
    box = _read_with_deadline(read_vecnormalize, tmp_path / "vecnormalize.pkl")
    assert isinstance(box.get("error"), VecNormalizeError) and "FIFO" in str(box["error"]), box
    os.mkfifo(tmp_path / "config.yml")
    box = _read_with_deadline(read_zoo_config, tmp_path / "config.yml")
    assert isinstance(box.get("error"), ZooConfigError) and "FIFO" in str(box["error"]), box


def test_devices_and_folders_are_refused():
    with pytest.raises(ModelFileError, match="character device"):
        read_model("/dev/zero")
    with pytest.raises(ModelFileError, match="directory"):
        read_model(ROOT)


def test_a_huge_sparse_file_is_refused_before_hashing(tmp_path):
    path = tmp_path / "big.zip"
    with open(path, "wb") as f:
        f.write(b"PK\x03\x04")
        f.truncate(4 << 30)  # 4 GiB, sparse: hashing it took minutes
    result = read_in_child(path)
    assert result["error"] == "MemberTooLarge" and result["seconds"] < 1.0, result


# -- finding 8: no file content in messages -----------------------------------------------------
SECRET = b"root:$6$saltsalt$0123456789abcdef:19000:0:99999:7:::\n"


def told(err: BaseException) -> str:
    """The message without the file name it starts with."""
    path = getattr(err, "path", None) or ""
    return str(err)[len(path):]


def test_a_file_that_is_not_a_model_is_not_quoted(tmp_path):
    path = pkl(tmp_path, SECRET, "shadow")
    with pytest.raises(NotAModelFile) as info:
        read_model(path)
    assert "root" not in told(info.value) and "$6$" not in told(info.value)


def test_zip_member_names_are_not_told(tmp_path):
    path = tmp_path / "private.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("salaries-2024.xlsx", b"x")
        zf.writestr("../../etc/cron.d/x", b"y")
    with pytest.raises(ModelFileError) as info:
        read_model(path)
    assert "salaries" not in told(info.value) and "cron" not in told(info.value)


def test_a_yaml_config_is_not_quoted(tmp_path):
    (tmp_path / "config.yml").write_bytes(b"password: hunter2\n  bad: [indent\n")
    with pytest.raises(ZooConfigError) as info:
        read_zoo_config(tmp_path / "config.yml")
    assert "hunter2" not in told(info.value) and "line 2" in told(info.value)


def test_a_pickle_parse_error_does_not_quote_the_bytes(tmp_path):
    path = pkl(tmp_path, b"\x80\x02" + b"Fhunter2\n.")  # FLOAT opcode with a non-number
    with pytest.raises(ModelFileError) as info:
        read_model(path)
    assert "hunter2" not in told(info.value)
