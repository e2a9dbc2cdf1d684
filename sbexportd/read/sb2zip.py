"""SB2's .zip save format (stable_baselines >= 2.6): members

    data            JSON of the class attributes; values that JSON cannot hold are
                    {":type:": ..., ":serialized:": base64(cloudpickle), <side fields>}
    parameters      an .npz (itself a zip) of "<variable name>.npy" arrays
    parameter_list  JSON list of the variable names, in SB2's order

Nothing is ever extracted to disk, but every member name is still checked; every
member is size-capped before and while it is read (zip bombs, lying headers);
.npy arrays are parsed with allow_pickle=False semantics (object dtypes refused).
"""
from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from sbexportd.errors import (
    MemberTooLarge,
    MissingMember,
    ModelFileError,
    NotAModelFile,
    ObjectArrayInParameters,
    TruncatedFile,
    UnsafeArchiveMember,
)
from sbexportd.read.archive import Archive
from sbexportd.read.safe_pickle import DEFAULT_MAX_PICKLE_BYTES, safe_loads

__all__ = ["Limits", "read_zip", "check_member_name", "read_capped", "read_npy"]

MiB = 2**20
SB2_MEMBERS = ("data", "parameters", "parameter_list")
MAX_MEMBERS = 65536
_CHUNK = MiB


@dataclass(frozen=True)
class Limits:
    """Reading limits. Every zip member (and every array inside `parameters`) is
    refused above max_member_bytes; all inflated bytes together above
    max_total_bytes; any pickle above max_pickle_bytes."""

    max_member_bytes: int = 256 * MiB
    max_total_bytes: int = 1024 * MiB
    max_pickle_bytes: int = DEFAULT_MAX_PICKLE_BYTES


_DRIVE = re.compile(r"^[A-Za-z]:")
_TF_NAME_AT_ROOT = re.compile(r"^[A-Za-z]:\d+\.npy$")  # e.g. "b:0.npy" is a TF name, not a drive


def check_member_name(name: str, source: str | Path, where: str = "zip archive") -> None:
    """Refuse member names that would escape a destination folder if extracted."""
    reason = None
    if not name:
        reason = "an empty name"
    elif "\x00" in name:
        reason = "a NUL byte"
    elif "\\" in name:
        reason = "a backslash"
    elif name.startswith("/"):
        reason = "an absolute path"
    elif _DRIVE.match(name) and not _TF_NAME_AT_ROOT.match(name):
        reason = "a drive letter"
    elif ".." in name.split("/"):
        reason = "a '..' component"
    if reason:
        raise UnsafeArchiveMember(
            f"{where} member {name!r} has {reason}; expected plain relative names such as "
            "'data', 'parameters', 'parameter_list'", source)


def read_capped(fp: IO[bytes], cap: int) -> bytes:
    """Read at most cap + 1 bytes: a caller seeing more than `cap` knows the stream
    lied about its size, and never held more than cap + 1 bytes of it."""
    chunks = []
    got = 0
    while got <= cap:
        chunk = fp.read(min(_CHUNK, cap + 1 - got))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


class _Budget:
    def __init__(self, limits: Limits, source: str):
        self.limits = limits
        self.source = source
        self.used = 0

    def read_member(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, label: str) -> bytes:
        cap = self.limits.max_member_bytes
        if info.file_size > cap:
            raise MemberTooLarge(
                f"{label} inflates to {info.file_size} bytes, more than the {cap}-byte limit "
                "per member (a zip bomb, or raise max_member_bytes)", self.source)
        total_cap = self.limits.max_total_bytes
        if self.used + info.file_size > total_cap:
            raise MemberTooLarge(
                f"{label} would bring the inflated total to {self.used + info.file_size} "
                f"bytes, more than the {total_cap}-byte limit for the whole file", self.source)
        try:
            with zf.open(info) as fp:
                raw = read_capped(fp, min(cap, info.file_size))
        except zipfile.BadZipFile as e:
            raise ModelFileError(f"{label} is corrupt: {e}", self.source) from e
        except (NotImplementedError, RuntimeError) as e:  # unknown compression, encryption
            raise ModelFileError(f"{label} cannot be read: {e}", self.source) from e
        except (EOFError, OSError, ValueError) as e:
            raise TruncatedFile(f"{label} ends early: {e}", self.source) from e
        if len(raw) > info.file_size:
            raise MemberTooLarge(f"{label} inflates to more than the {info.file_size} bytes "
                                 "its header declares", self.source)
        if len(raw) < info.file_size:
            raise TruncatedFile(f"{label} holds {len(raw)} bytes, its header declares "
                                f"{info.file_size}", self.source)
        self.used += len(raw)
        return raw


def _open_zip(fileobj: IO[bytes], source: str, what: str, truncated_hint: bool
              ) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(fileobj)
    except zipfile.BadZipFile as e:
        if truncated_hint:
            raise TruncatedFile(
                f"{what} starts like a zip archive but its central directory cannot be read "
                f"({e}): the file is truncated or corrupt", source) from e
        raise ModelFileError(f"{what} is not a readable zip archive: {e}", source) from e
    except (EOFError, OSError, ValueError, OverflowError) as e:
        raise TruncatedFile(f"{what} is not a complete zip archive: {e}", source) from e


def _infos(zf: zipfile.ZipFile, source: str, where: str) -> dict[str, zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ModelFileError(f"{where} has {len(infos)} members, more than {MAX_MEMBERS}",
                             source)
    out: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.orig_filename
        check_member_name(name, source, where)
        if name in out:
            raise UnsafeArchiveMember(f"{where} has two members named {name!r}; expected "
                                      "unique names", source)
        out[name] = info
    return out


def read_npy(raw: bytes, source: str, label: str) -> np.ndarray:
    """Parse one .npy file held in memory; object dtypes are refused."""
    bio = io.BytesIO(raw)
    fmt = np.lib.format
    try:
        version = fmt.read_magic(bio)
        if version == (1, 0):
            # max_header_size (numpy >= 1.24) is missing from numpy's stubs
            shape, fortran, dtype = fmt.read_array_header_1_0(bio, max_header_size=10000)  # type: ignore[call-arg]
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(bio, max_header_size=10000)  # type: ignore[call-arg]
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except ModelFileError:
        raise
    except Exception as e:  # numpy raises ValueError/SyntaxError/...
        raise ModelFileError(f"{label} is not a valid .npy array: {e}", source) from e
    if dtype.hasobject:
        raise ObjectArrayInParameters(
            f"{label} is a numpy object array (dtype {dtype}); parameters must be plain "
            "numeric arrays, object arrays carry pickled objects", source)
    if not isinstance(shape, tuple) or len(shape) > 32 or not all(
            isinstance(d, int) and d >= 0 for d in shape):
        raise ModelFileError(f"{label} declares an invalid shape {shape!r}", source)
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    offset = bio.tell()
    if len(raw) - offset != nbytes:
        raise ModelFileError(f"{label} holds {len(raw) - offset} bytes of data but its header "
                             f"declares shape {shape} of {dtype} ({nbytes} bytes)", source)
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
    return arr.reshape(shape, order="F" if fortran else "C").copy(order="K")


def _json(raw: bytes, source: str, label: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ModelFileError(f"{label} is not valid UTF-8 JSON: {e}", source) from e


def _decode_data(obj: Any, source: str, limits: Limits) -> tuple[dict, dict]:
    if not isinstance(obj, dict):
        raise NotAModelFile(f"member 'data' holds a JSON {type(obj).__name__}, expected SB2's "
                            "JSON object of class attributes", source)
    data: dict[str, Any] = {}
    side: dict[str, Any] = {}
    for key, item in obj.items():
        if isinstance(item, dict) and ":serialized:" in item:
            blob = item[":serialized:"]
            if not isinstance(blob, str):
                raise ModelFileError(f"data[{key!r}][':serialized:'] is not a base64 string",
                                     source)
            try:
                pickled = base64.b64decode(blob.encode("ascii"), validate=True)
            except (binascii.Error, ValueError, UnicodeEncodeError) as e:
                raise ModelFileError(f"data[{key!r}][':serialized:'] is not valid base64: {e}",
                                     source) from e
            data[key] = safe_loads(pickled, f"{source} [data: {key}]", limits.max_pickle_bytes)
            side[key] = {k: v for k, v in item.items() if k != ":serialized:"}
        else:
            data[key] = item
            side[key] = item
    return data, side


def read_zip(path: Path, fileobj: IO[bytes], sha256: str, limits: Limits) -> Archive:
    source = str(path)
    zf = _open_zip(fileobj, source, "the file", truncated_hint=True)
    with zf:
        infos = _infos(zf, source, "zip archive")
        present = [m for m in SB2_MEMBERS if m in infos]
        if not present:
            shown = ", ".join(sorted(infos)[:8]) or "nothing"
            raise NotAModelFile(
                "zip archive is not a Stable Baselines 2 model: expected members "
                f"data, parameters and parameter_list, found {shown}", source)
        for m in SB2_MEMBERS:
            if m not in infos:
                raise MissingMember(f"zip archive has no {m!r} member; an SB2 model has "
                                    "data, parameters and parameter_list", source)
        budget = _Budget(limits, source)
        data_raw = budget.read_member(zf, infos["data"], "member 'data'")
        data, side = _decode_data(_json(data_raw, source, "member 'data'"), source, limits)

        plist = _json(budget.read_member(zf, infos["parameter_list"], "member 'parameter_list'"),
                      source, "member 'parameter_list'")
        if not isinstance(plist, list) or not all(isinstance(n, str) for n in plist):
            raise ModelFileError("member 'parameter_list' is not a JSON list of variable names",
                                 source)
        if len(set(plist)) != len(plist):
            raise ModelFileError("member 'parameter_list' names a variable twice", source)

        npz_raw = budget.read_member(zf, infos["parameters"], "member 'parameters'")
        inner = _open_zip(io.BytesIO(npz_raw), source, "member 'parameters' (an .npz)",
                          truncated_hint=False)
        with inner:
            inner_infos = _infos(inner, source, "member 'parameters' (an .npz)")
            params: dict[str, np.ndarray] = {}
            for name in plist:
                member = f"{name}.npy"
                info = inner_infos.get(member)
                if info is None:
                    raise MissingMember(
                        f"member 'parameters' has no array {member!r} for variable {name!r} "
                        "listed in parameter_list", source)
                label = f"parameters/{member}"
                params[name] = read_npy(budget.read_member(inner, info, label), source, label)
        members = {name: info.file_size for name, info in infos.items()}
    return Archive(path=path, format="zip", sha256=sha256, data=data, params=params,
                   members=members, data_json=side)
