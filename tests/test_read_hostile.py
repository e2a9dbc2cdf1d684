"""Hostile and malformed inputs: each raises its specific typed error, and no
payload ever runs (the canary file never appears)."""
from __future__ import annotations

import os
import pickle
import pickletools
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from sbexportd.errors import (
    ForbiddenPickleGlobal,
    MemberTooLarge,
    MissingMember,
    ModelFileError,
    NotAModelFile,
    ObjectArrayInParameters,
    SbExportError,
    TruncatedFile,
    UnsafeArchiveMember,
    VecNormalizeError,
    ZooConfigError,
)
from sbexportd.read import read_model, read_vecnormalize, read_zoo_config
from sbexportd.read.safe_pickle import resolve_global, safe_loads
from sbexportd.read.sb2zip import read_capped
from tests.hostile import make, samples

MiB = 2**20


@pytest.fixture
def canary(tmp_path: Path):
    path = tmp_path / "CANARY"
    yield path
    assert not path.exists(), "a payload from a model file was executed"
    assert make.CANARY_MODULE not in sys.modules, "the reader imported the canary module"


def write(tmp_path: Path, name: str, raw: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(raw)
    return path


def raises(exc: type, path: Path, **kw) -> SbExportError:
    with pytest.raises(exc) as info:
        read_model(path, **kw)
    err = info.value
    assert str(err).startswith(str(path)), f"error does not name the file: {err}"
    return err


# --- the corpus is well-formed (checked without executing anything) -----------
@pytest.mark.parametrize("name", sorted(make.PAYLOADS))
def test_payloads_are_valid_pickles(name, tmp_path):
    raw = make.model_pickle(make.PAYLOADS[name](tmp_path / "CANARY"))
    with open(os.devnull, "w") as null:
        pickletools.dis(raw, out=null)


# --- code-execution payloads -------------------------------------------------
@pytest.mark.parametrize("name", sorted(make.PAYLOADS))
def test_payload_in_pkl_model(name, tmp_path, canary):
    path = write(tmp_path, "model.pkl", make.model_pickle(make.PAYLOADS[name](canary)))
    err = raises(ForbiddenPickleGlobal, path)
    assert "refusing" in str(err)


@pytest.mark.parametrize("name", sorted(make.PAYLOADS))
def test_payload_in_zip_data_entry(name, tmp_path, canary):
    evil = make.pickle_of(make.PAYLOADS[name](canary))
    data = {"gamma": 0.99, "policy": make.serialized_entry(evil)}
    path = write(tmp_path, "model.zip", make.sb2_zip(data=data))
    err = raises(ForbiddenPickleGlobal, path)
    assert "data: policy" in str(err)


@pytest.mark.parametrize("name", sorted(make.PAYLOADS))
def test_payload_as_object_array_in_parameters(name, tmp_path, canary):
    evil = make.pickle_of(make.lst(make.PAYLOADS[name](canary)))
    params = dict(make.GOOD_PARAMS)
    npz = make.npz_bytes({**params, "model/evil:0": make.npy_object_array(evil)})
    path = write(tmp_path, "model.zip",
                 make.sb2_zip(npz=npz, plist=[*params, "model/evil:0"]))
    err = raises(ObjectArrayInParameters, path)
    assert "model/evil:0" in str(err)


def test_object_ndarray_inside_pickle(tmp_path, canary):
    path = write(tmp_path, "model.pkl", make.model_pickle(make.numpy_object_array(canary)))
    raises(ObjectArrayInParameters, path)


def test_os_system_message(tmp_path, canary):
    path = write(tmp_path, "model.pkl", make.model_pickle(make.os_system(canary)))
    err = raises(ForbiddenPickleGlobal, path)
    assert str(err) == (f"{path}: refusing pickle global os.system: model files may only contain "
                        "data (numpy arrays, gym spaces, SB2 classes by name)")
    assert err.code == "forbidden_pickle_global"


def test_unknown_class_call_names_the_class(tmp_path, canary):
    path = write(tmp_path, "model.pkl", make.model_pickle(make.unknown_class(canary)))
    err = raises(ForbiddenPickleGlobal, path)
    assert "tests.hostile.canary.Touch" in str(err)


@pytest.mark.parametrize("raw", [make.PERSID, make.BINPERSID, make.EXT1],
                         ids=["PERSID", "BINPERSID", "EXT1"])
def test_persistent_ids_and_extension_registry_refused(raw, tmp_path):
    with pytest.raises(ForbiddenPickleGlobal):
        safe_loads(raw, "x.pkl")


def test_build_on_known_class_only_stores_data(tmp_path, canary):
    obj = safe_loads(make.pickle_of(make.known_class_with_evil_state(canary)), "x.pkl")
    assert type(obj).sb_name == "MlpPolicy"          # not overwritten by the state
    assert obj.sb_state["sb_name"] == "evil"          # but kept in the raw state
    assert "__setstate__" not in obj.__dict__


def test_metaclass_refusal_holds_behind_the_c_unpickler(tmp_path, canary):
    """The allow-list alone, used by the stock C unpickler: calling an unknown
    stand-in class is refused by its metaclass."""
    import io

    class CUnpickler(pickle.Unpickler):
        def find_class(self, module, name):
            return resolve_global(module, name, "c.pkl")

    raw = make.pickle_of(make.unknown_class(canary))
    with pytest.raises(ForbiddenPickleGlobal, match=r"refusing to call tests\.hostile\.canary\.Touch"):
        CUnpickler(io.BytesIO(raw)).load()
    with pytest.raises(ForbiddenPickleGlobal):
        CUnpickler(io.BytesIO(make.pickle_of(make.os_system(canary)))).load()


def test_dangerous_globals_refused_by_name():
    for module, name in [("os", "system"), ("builtins", "getattr"), ("builtins", "open"),
                         ("builtins", "compile"), ("builtins", "__import__"),
                         ("importlib", "import_module"), ("subprocess", "run"),
                         ("operator", "attrgetter"), ("operator", "methodcaller"),
                         ("types", "FunctionType"), ("types", "CodeType"), ("sys", "modules"),
                         ("shutil", "rmtree"), ("socket", "socket"), ("ctypes", "CDLL"),
                         ("runpy", "run_path"), ("pty", "spawn"), ("webbrowser", "open"),
                         ("multiprocessing.util", "spawnv_passfds"), ("pickle", "loads"),
                         ("code", "InteractiveInterpreter"), ("nt", "system"),
                         ("copyreg", "add_extension"), ("cloudpickle.cloudpickle", "instance")]:
        with pytest.raises(ForbiddenPickleGlobal, match=f"{module}.{name}"):
            resolve_global(module, name, "f.pkl")


def test_memory_bombs_in_pickles():
    # an array whose declared size exceeds the budget
    arr = make.call(make.glob("numpy.core.multiarray", "_reconstruct"),
                    make.glob("numpy", "ndarray"), make.tup(make.i(10**9)), make.b(b"d"))
    with pytest.raises(MemberTooLarge):
        safe_loads(make.pickle_of(arr), "x.pkl", max_bytes=1 * MiB)
    # bytearray(n)
    with pytest.raises(MemberTooLarge):
        safe_loads(make.pickle_of(make.call(make.glob("builtins", "bytearray"),
                                            make.i(2**30))), "x.pkl", max_bytes=MiB)
    # the pickle itself
    with pytest.raises(MemberTooLarge):
        safe_loads(make.pickle_of(make.s("x" * 5000)), "x.pkl", max_bytes=1000)


def test_deep_nesting_is_refused():
    raw = make.PROTO2 + make.EMPTY_LIST * 5000 + make.STOP  # not nested: many lists
    assert safe_loads(raw, "x.pkl") == []
    nested = make.PROTO2 + (make.MARK) * 3000 + b"t" * 3000 + make.STOP
    with pytest.raises(ModelFileError, match="levels deep"):
        safe_loads(nested, "x.pkl")


# --- zip archive structure ---------------------------------------------------
@pytest.mark.parametrize("name", ["../../evil", "/abs/evil", "a\\..\\evil", "C:/evil",
                                  "ok/../../evil", "x\x00y"])
def test_unsafe_member_names(name, tmp_path):
    path = write(tmp_path, "model.zip", make.sb2_zip(extra=[(name, b"x")]))
    err = raises(UnsafeArchiveMember, path)
    assert repr(name)[1:-1].split("\\x00")[0] in str(err)


def test_unsafe_member_name_inside_parameters(tmp_path):
    npz = make.zip_bytes([("../evil.npy", make.npy_bytes(np.zeros(2)))])
    path = write(tmp_path, "model.zip", make.sb2_zip(npz=npz, plist=["../evil"]))
    raises(UnsafeArchiveMember, path)


def test_tf_names_at_root_are_not_drive_letters(tmp_path):
    params = {"b:0": np.ones(2, np.float32)}
    a = read_model(write(tmp_path, "m.zip", make.sb2_zip(params=params)))
    assert list(a.params) == ["b:0"]


def test_duplicate_member_names(tmp_path):
    path = write(tmp_path, "model.zip", make.sb2_zip(extra=[("data", b"{}")]))
    raises(UnsafeArchiveMember, path)


def test_zip_bomb_small_cap(tmp_path):
    path = make.zero_member_zip(tmp_path / "bomb.zip", "data", 64 * MiB, others=[
        ("parameters", make.npz_bytes(make.GOOD_PARAMS)),
        ("parameter_list", b'["model/pi_fc0/w:0", "model/pi_fc0/b:0"]')])
    assert path.stat().st_size < 200_000
    err = raises(MemberTooLarge, path, max_member_bytes=1 * MiB)
    assert "'data'" in str(err)


def test_zip_bomb_default_cap(tmp_path):
    """A ~300 MiB member is refused by the default 256 MiB cap, before inflating."""
    path = make.zero_member_zip(tmp_path / "bomb.zip", "data", 300 * MiB, others=[
        ("parameters", make.npz_bytes(make.GOOD_PARAMS)), ("parameter_list", b"[]")])
    assert path.stat().st_size < 1 * MiB
    raises(MemberTooLarge, path)


def test_total_cap(tmp_path):
    big = bytes(3 * MiB)
    npz = make.deflated_zip_bytes([("a.npy", make.npy_header("<f8", (len(big) // 8,)) + big),
                                   ("b.npy", make.npy_header("<f8", (len(big) // 8,)) + big)])
    path = write(tmp_path, "m.zip", make.sb2_zip(npz=npz, plist=["a", "b"]))
    assert read_model(path).params["a"].shape == (len(big) // 8,)
    err = raises(MemberTooLarge, path, max_member_bytes=4 * MiB, max_total_bytes=5 * MiB)
    assert "total" in str(err)


def test_nested_npz_bomb(tmp_path):
    bomb = make.npy_header("<f4", (16 * MiB,)) + bytes(64 * MiB)
    npz = make.deflated_zip_bytes([("w.npy", bomb)])
    path = write(tmp_path, "model.zip", make.sb2_zip(npz=npz, plist=["w"]))
    assert path.stat().st_size < 1 * MiB
    err = raises(MemberTooLarge, path, max_member_bytes=4 * MiB)
    assert "parameters/w.npy" in str(err)


def test_header_lies_small(tmp_path):
    """Headers declare 100 bytes for a member that inflates to 8 MiB: at most the
    declared size is ever inflated, and the CRC mismatch says the file is corrupt."""
    raw = make.deflated_zip_bytes([("data", bytes(8 * MiB)),
                                   ("parameters", make.npz_bytes(make.GOOD_PARAMS)),
                                   ("parameter_list", b"[]")])
    path = write(tmp_path, "liar.zip", make.patch_declared_size(raw, "data", 100))
    err = raises(ModelFileError, path)
    assert not isinstance(err, MemberTooLarge)
    assert "'data'" in str(err)


def test_header_lies_big(tmp_path):
    raw = make.sb2_zip()
    path = write(tmp_path, "liar.zip", make.patch_declared_size(raw, "parameters", 0xFFFFFFF0))
    raises(MemberTooLarge, path)


def test_capped_stream_stops_at_cap_plus_one():
    class Endless:
        served = 0

        def read(self, n):
            self.served += n
            return b"\0" * n

    src = Endless()
    assert len(read_capped(src, 1000)) == 1001
    assert src.served == 1001


# --- truncated, empty, random, not SB2 ----------------------------------------
def test_truncated_zip(tmp_path):
    raw = samples.PPO2_CUSTOM_ZIP
    raises(TruncatedFile, write(tmp_path, "half.zip", raw[: len(raw) // 2]))


def test_truncated_pickle(tmp_path):
    raw = samples.PPO2_CUSTOM_PKL
    raises(TruncatedFile, write(tmp_path, "half.pkl", raw[: len(raw) // 2]))


@pytest.mark.parametrize("cut", [1, 3, 10, 100, 1000, 2000])
def test_pickle_cut_anywhere(cut, tmp_path):
    raw = samples.PPO2_CUSTOM_PKL
    with pytest.raises(ModelFileError) as info:
        read_model(write(tmp_path, "cut.pkl", raw[:cut]))
    assert isinstance(info.value, (TruncatedFile, NotAModelFile)) or cut < 3


def test_empty_file(tmp_path):
    err = raises(NotAModelFile, write(tmp_path, "empty.zip", b""))
    assert "empty" in str(err)


def test_random_bytes(tmp_path):
    raw = b"\x00" + random.Random(0).randbytes(4095)
    raises(NotAModelFile, write(tmp_path, "random.pkl", raw))


def test_text_file(tmp_path):
    raises(NotAModelFile, write(tmp_path, "model.zip", b"hello, I am not a model\n"))


def test_zip_that_is_not_sb2(tmp_path):
    path = write(tmp_path, "other.zip", make.zip_bytes([("README.txt", b"hi")]))
    err = raises(NotAModelFile, path)
    assert "README.txt" in str(err)


def test_pickle_of_int(tmp_path):
    err = raises(NotAModelFile, write(tmp_path, "int.pkl", make.PICKLE_OF_INT))
    assert "int" in str(err)


def test_pickle_of_wrong_pair(tmp_path):
    raises(NotAModelFile, write(tmp_path, "pair.pkl", make.PICKLE_OF_PAIR_WITH_STR))


@pytest.mark.parametrize("member", ["data", "parameters", "parameter_list"])
def test_missing_member(member, tmp_path):
    err = raises(MissingMember, write(tmp_path, "m.zip", make.sb2_zip(drop=(member,))))
    assert repr(member) in str(err)


def test_parameter_listed_but_absent(tmp_path):
    path = write(tmp_path, "m.zip", make.sb2_zip(plist=[*make.GOOD_PARAMS, "model/ghost:0"]))
    err = raises(MissingMember, path)
    assert "model/ghost:0" in str(err)


@pytest.mark.parametrize("npy,what", [
    (make.npy_header("<f4", (4,)) + bytes(8), "holds 8 bytes"),               # short data
    (make.npy_header("<f4", (2,)) + bytes(80), "holds 80 bytes"),             # long data
    (b"\x93NUMPY\x01\x00" + b"\x10\x00" + b"{'descr': 1}   \n", "not a valid .npy"),
    (b"not an npy at all", "not a valid .npy"),
], ids=["short", "long", "bad-header", "no-magic"])
def test_corrupt_npy(npy, what, tmp_path):
    path = write(tmp_path, "m.zip", make.sb2_zip(npz=make.npz_bytes({"w": npy}), plist=["w"]))
    err = raises(ModelFileError, path)
    assert what in str(err)


def test_parameters_not_an_npz(tmp_path):
    path = write(tmp_path, "m.zip", make.sb2_zip(npz=b"garbage", plist=["w"]))
    raises(ModelFileError, path)


@pytest.mark.parametrize("data", [b"\xff\xfe not json", b"[1, 2]", b"{" * 100000],
                         ids=["not-utf8", "json-list", "deep"])
def test_bad_data_json(data, tmp_path):
    with pytest.raises(ModelFileError):
        read_model(write(tmp_path, "m.zip", make.sb2_zip(data=data)))


def test_bad_base64(tmp_path):
    data = {"policy": {":type:": "x", ":serialized:": "!!!not base64!!!"}}
    raises(ModelFileError, write(tmp_path, "m.zip", make.sb2_zip(data=data)))


def test_missing_and_directory_paths(tmp_path):
    with pytest.raises(ModelFileError, match="no such file"):
        read_model(tmp_path / "nope.zip")
    with pytest.raises(ModelFileError, match="directory"):
        read_model(tmp_path)


def test_fuzz_only_typed_errors(tmp_path):
    """Random corruptions of real files: nothing but ModelFileError escapes."""
    rng = random.Random(1234)
    for n, raw in enumerate([samples.PPO2_CUSTOM_PKL, samples.PPO2_CUSTOM_ZIP,
                             samples.PPO2_TANH_ZIP] * 40):
        buf = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        path = write(tmp_path, f"f{n}.bin", bytes(buf))
        try:
            read_model(path)
        except ModelFileError:
            pass


# --- VecNormalize and config --------------------------------------------------
def test_vecnormalize_hostile(tmp_path, canary):
    path = write(tmp_path, "vecnormalize.pkl", make.pickle_of(make.os_system(canary)))
    with pytest.raises(ForbiddenPickleGlobal):
        read_vecnormalize(path)
    with pytest.raises(VecNormalizeError):
        read_vecnormalize(write(tmp_path, "obs_rms.pkl", make.PICKLE_OF_INT))
    with pytest.raises(VecNormalizeError):
        read_vecnormalize(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VecNormalizeError, match="neither"):
        read_vecnormalize(tmp_path / "empty")


@pytest.mark.parametrize("text", [
    "!!python/object/apply:os.system ['touch {canary}']",
    "!!python/object/new:subprocess.Popen [['touch', '{canary}']]",
    "a: !!python/name:os.system\n",
    "a: &x [1, 2]\nb: *x\n",
    "- just\n- a list\n",
    "{{{{ not yaml",
], ids=["apply-os", "new-popen", "name", "alias", "list", "garbage"])
def test_zoo_config_hostile(text, tmp_path, canary):
    path = write(tmp_path, "config.yml", text.format(canary=canary).encode())
    with pytest.raises(ZooConfigError) as info:
        read_zoo_config(path)
    assert str(info.value).startswith(str(path))
