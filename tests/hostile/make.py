"""Build hostile and malformed SB2 model files, opcode by opcode.

Nothing here ever unpickles: pickles are written as raw opcodes (the opcode
letters of the `pickle` module's protocol), and the only check done on them is
`pickletools.dis`, which does not execute anything. Each "payload" pushes one
object that, if a real unpickler ran it, would create the canary file.
"""
from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

import numpy as np

CANARY_MODULE = "tests.hostile.canary"

# --- raw pickle opcodes ------------------------------------------------------
PROTO2 = b"\x80\x02"
PROTO4 = b"\x80\x04"
STOP = b"."
MARK = b"("
TUPLE = b"t"
REDUCE = b"R"
BUILD = b"b"
EMPTY_DICT = b"}"
EMPTY_LIST = b"]"
SETITEM = b"s"
APPENDS = b"e"
TUPLE2 = b"\x86"
NEWTRUE = b"\x88"
NEWFALSE = b"\x89"
NONE = b"N"
STACK_GLOBAL = b"\x93"
MEMOIZE = b"\x94"


def s(text: str) -> bytes:
    raw = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(raw)) + raw


def b(raw: bytes) -> bytes:
    return b"C" + bytes([len(raw)]) + raw if len(raw) < 256 else b"B" + struct.pack("<I", len(raw)) + raw


def i(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def glob(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def tup(*items: bytes) -> bytes:
    return MARK + b"".join(items) + TUPLE


def lst(*items: bytes) -> bytes:
    return EMPTY_LIST + (MARK + b"".join(items) + APPENDS if items else b"")


def call(func: bytes, *args: bytes) -> bytes:
    return func + tup(*args) + REDUCE


def pickle_of(expr: bytes, proto: bytes = PROTO2) -> bytes:
    return proto + expr + STOP


def model_pickle(expr: bytes, key: str = "policy") -> bytes:
    """A legacy SB2 .pkl: (data, params) with `expr` as data[key]."""
    return PROTO2 + EMPTY_DICT + s(key) + expr + SETITEM + EMPTY_LIST + TUPLE2 + STOP


# --- payloads: each would create `canary` if a real unpickler ran it -----------
def touch_cmd(canary: Path) -> str:
    return f"touch '{canary}'"


def os_system(canary: Path) -> bytes:
    return call(glob("os", "system"), s(touch_cmd(canary)))


def posix_system(canary: Path) -> bytes:
    return call(glob("posix", "system"), s(touch_cmd(canary)))


def subprocess_popen(canary: Path) -> bytes:
    return call(glob("subprocess", "Popen"), lst(s("touch"), s(str(canary))))


def builtins_eval(canary: Path) -> bytes:
    return call(glob("builtins", "eval"),
                s(f"__import__('pathlib').Path({str(canary)!r}).touch()"))


def py2_builtin_eval(canary: Path) -> bytes:  # Python 2 name, mapped by fix_imports
    return call(glob("__builtin__", "eval"),
                s(f"__import__('pathlib').Path({str(canary)!r}).touch()"))


def builtins_exec(canary: Path) -> bytes:
    return call(glob("builtins", "exec"), s(f"import os; os.system({touch_cmd(canary)!r})"))


def getattr_chain(canary: Path) -> bytes:
    """builtins.getattr(builtins.__import__('os'), 'system')('touch canary')"""
    system = call(glob("builtins", "getattr"), call(glob("builtins", "__import__"), s("os")),
                  s("system"))
    return system + tup(s(touch_cmd(canary))) + REDUCE


def unknown_class(canary: Path) -> bytes:
    """REDUCE on a class the reader does not know (it would import tests.hostile.canary)."""
    return call(glob(CANARY_MODULE, "Touch"), s(str(canary)))


def stack_global_system(canary: Path) -> bytes:  # protocol 4 STACK_GLOBAL
    return s("os") + s("system") + STACK_GLOBAL + tup(s(touch_cmd(canary))) + REDUCE


def inst_system(canary: Path) -> bytes:  # protocol 0 INST
    return MARK + s(touch_cmd(canary)) + b"i" + b"os\nsystem\n"


def obj_unknown(canary: Path) -> bytes:  # protocol 1 OBJ on an unknown class
    return MARK + glob(CANARY_MODULE, "Touch") + s(str(canary)) + b"o"


def reconstructor_unknown(canary: Path) -> bytes:
    """copyreg._reconstructor(Touch, Touch, path) runs Touch.__init__(path)."""
    touch = glob(CANARY_MODULE, "Touch")
    return call(glob("copyreg", "_reconstructor"), touch, touch, s(str(canary)))


def partial_system(canary: Path) -> bytes:
    return call(call(glob("functools", "partial"), glob("os", "system"), s(touch_cmd(canary))))


def cloudpickle_getobject(canary: Path) -> bytes:
    """cloudpickle's _getobject('os', 'system') imports a module attribute."""
    return call(call(glob("cloudpickle.cloudpickle", "_getobject"), s("os"), s("system")),
                s(touch_cmd(canary)))


def numpy_object_array(canary: Path) -> bytes:
    """An object ndarray whose item is built by an unknown class."""
    arr = call(glob("numpy.core.multiarray", "_reconstruct"), glob("numpy", "ndarray"),
               tup(i(0)), b(b"b"))
    dtype = call(glob("numpy", "dtype"), s("O8"), NEWFALSE, NEWTRUE)
    state = tup(i(1), tup(i(1)), dtype, NEWFALSE, lst(unknown_class(canary)))
    return arr + state + BUILD


def known_class_with_evil_state(canary: Path) -> bytes:
    """A known SB2 class instance whose state carries an __setstate__/__reduce__ key
    and an os.system call: BUILD must only store data, never look the keys up."""
    obj = glob("stable_baselines.common.policies", "MlpPolicy") + tup() + b"\x81"  # NEWOBJ
    state = EMPTY_DICT + MARK + s("__setstate__") + s("x") + s("sb_name") + s("evil") + b"u"
    return obj + state + BUILD


PAYLOADS = {
    "os.system": os_system,
    "posix.system": posix_system,
    "subprocess.Popen": subprocess_popen,
    "builtins.eval": builtins_eval,
    "__builtin__.eval": py2_builtin_eval,
    "builtins.exec": builtins_exec,
    "getattr-chain": getattr_chain,
    "unknown-class-reduce": unknown_class,
    "stack-global": stack_global_system,
    "inst-opcode": inst_system,
    "obj-opcode-unknown": obj_unknown,
    "copyreg-reconstructor": reconstructor_unknown,
    "functools.partial": partial_system,
    "cloudpickle._getobject": cloudpickle_getobject,
}

PERSID = PROTO2 + b"Pevil\n" + STOP          # persistent id
BINPERSID = PROTO2 + s("evil") + b"Q" + STOP
EXT1 = PROTO2 + b"\x82\x01" + STOP           # extension registry code 1
PICKLE_OF_INT = PROTO2 + i(42) + STOP
PICKLE_OF_PAIR_WITH_STR = PROTO2 + EMPTY_DICT + s("junk") + TUPLE2 + STOP


# --- .npy / .npz / SB2 zip ---------------------------------------------------
def npy_bytes(arr: np.ndarray) -> bytes:
    bio = io.BytesIO()
    np.lib.format.write_array(bio, np.asarray(arr), allow_pickle=False)
    return bio.getvalue()


def npy_header(descr: str, shape: tuple, fortran: bool = False) -> bytes:
    bio = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        bio, {"descr": descr, "fortran_order": fortran, "shape": shape})
    return bio.getvalue()


def npy_object_array(payload_pickle: bytes) -> bytes:
    """What np.save(allow_pickle=True) writes for an object array: header + pickle."""
    return npy_header("|O", (1,)) + payload_pickle


def zip_bytes(members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> bytes:
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", compression) as zf:
        for name, raw in members:
            info = zipfile.ZipInfo("placeholder")
            info.filename = name  # keep hostile names exactly as given
            info.compress_type = compression
            zf.writestr(info, raw)
    return bio.getvalue()


def npz_bytes(arrays: dict[str, np.ndarray | bytes]) -> bytes:
    return zip_bytes([(f"{k}.npy", v if isinstance(v, bytes) else npy_bytes(v))
                      for k, v in arrays.items()])


GOOD_PARAMS = {"model/pi_fc0/w:0": np.arange(6, dtype=np.float32).reshape(2, 3),
               "model/pi_fc0/b:0": np.zeros(3, np.float32)}


def sb2_zip(data: dict | bytes | None = None, params: dict | None = None,
            npz: bytes | None = None, plist: list | None = None,
            extra: list[tuple[str, bytes]] = (), drop: tuple[str, ...] = ()) -> bytes:
    """A well-formed SB2 zip unless told otherwise."""
    if data is None:
        data = {"gamma": 0.99, "n_envs": 1}
    params = GOOD_PARAMS if params is None else params
    members = [
        ("data", data if isinstance(data, bytes) else json.dumps(data).encode()),
        ("parameters", npz if npz is not None else npz_bytes(params)),
        ("parameter_list", json.dumps(plist if plist is not None else list(params)).encode()),
        *extra,
    ]
    return zip_bytes([(n, r) for n, r in members if n not in drop])


def serialized_entry(pickled: bytes) -> dict:
    import base64
    return {":type:": "<class 'function'>", ":serialized:": base64.b64encode(pickled).decode()}


def zero_member_zip(path: Path, name: str, size: int, others: list[tuple[str, bytes]] = ()
                    ) -> Path:
    """A zip whose member `name` inflates to `size` zero bytes, streamed (small file)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for n, raw in others:
            zf.writestr(n, raw)
        with zf.open(name, "w", force_zip64=size > 0x7FFFFFFF) as fp:
            chunk = bytes(1 << 20)
            left = size
            while left:
                fp.write(chunk[:min(left, len(chunk))])
                left -= min(left, len(chunk))
    return path


def deflated_zip_bytes(members: list[tuple[str, bytes]]) -> bytes:
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for n, raw in members:
            zf.writestr(n, raw)
    return bio.getvalue()


def patch_declared_size(raw: bytes, member: str, size: int) -> bytes:
    """Make the zip's headers (local and central) lie about `member`'s inflated size."""
    out = bytearray(raw)
    name = member.encode()
    pos = 0
    while (pos := out.find(b"PK\x01\x02", pos)) != -1:  # central directory entries
        n = struct.unpack_from("<H", out, pos + 28)[0]
        if bytes(out[pos + 46:pos + 46 + n]) == name:
            struct.pack_into("<I", out, pos + 24, size)
        pos += 4
    pos = 0
    while (pos := out.find(b"PK\x03\x04", pos)) != -1:  # local headers
        n = struct.unpack_from("<H", out, pos + 26)[0]
        if bytes(out[pos + 30:pos + 30 + n]) == name:
            struct.pack_into("<I", out, pos + 22, size)
        pos += 4
    return bytes(out)
