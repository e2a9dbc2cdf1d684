"""read_model: sniff the format (by magic bytes, not extension) and read it."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from sbexportd.errors import MemberTooLarge, ModelFileError, NotAModelFile, SbExportError, TruncatedFile, reason
from sbexportd.read.archive import Archive
from sbexportd.read.files import Confine, open_regular
from sbexportd.read.sb2pkl import read_pkl
from sbexportd.read.sb2zip import Limits, read_zip

__all__ = ["read_model", "sniff"]

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members / an empty zip
PICKLE_PROTO = 0x80


def sniff(head: bytes) -> str | None:
    """'zip', 'pkl' or None, from the first bytes of a file."""
    if head[:4] in ZIP_MAGIC:
        return "zip"
    if len(head) >= 2 and head[0] == PICKLE_PROTO and 2 <= head[1] <= 5:
        return "pkl"
    return None


def read_model(path: str | os.PathLike, *, limits: Limits | None = None,
               max_member_bytes: int | None = None, max_total_bytes: int | None = None,
               max_pickle_bytes: int | None = None, confine: Confine | None = None) -> Archive:
    """Read an SB2 save file (.zip or legacy cloudpickle .pkl) without importing or
    executing anything from it. Raises only sbexportd.errors.ModelFileError subclasses
    (and PathNotAllowed from `confine`, see sbexportd.read.files)."""
    path = Path(path)
    lim = limits or Limits()
    overrides = {k: v for k, v in (("max_member_bytes", max_member_bytes),
                                   ("max_total_bytes", max_total_bytes),
                                   ("max_pickle_bytes", max_pickle_bytes)) if v is not None}
    if overrides:
        lim = Limits(**{**lim.__dict__, **overrides})
    source = str(path)
    try:
        return _read(path, source, lim, confine)
    except SbExportError:
        raise
    except MemoryError as e:
        raise MemberTooLarge("reading the file needs more memory than is available",
                             source) from e
    except RecursionError as e:
        raise ModelFileError("the file nests data too deeply to read", source) from e
    except Exception as e:  # the contract: only typed errors escape
        raise ModelFileError(f"cannot read the file as an SB2 model: {reason(e)}", source) from e


def _sha256(fp) -> str:
    h = hashlib.sha256()
    fp.seek(0)
    for chunk in iter(lambda: fp.read(1 << 20), b""):
        h.update(chunk)
    fp.seek(0)
    return h.hexdigest()


def _read(path: Path, source: str, lim: Limits, confine: Confine | None) -> Archive:
    # a zip is read member by member (max_total_bytes inflated at most), a pickle whole
    fp, size = open_regular(path, max(lim.max_total_bytes, lim.max_pickle_bytes), confine=confine)
    with fp:
        head = fp.read(8)
        if not head:
            raise NotAModelFile("empty file (0 bytes); expected an SB2 .zip or .pkl model",
                                source)
        kind = sniff(head)
        if kind is None:
            if len(head) < 4 and (head.startswith(b"PK"[:len(head)]) or head[:1] == b"\x80"):
                raise TruncatedFile(f"only {len(head)} bytes; the file is truncated", source)
            # (what it does start with is the file's content: not for an error message)
            raise NotAModelFile(
                "neither a zip archive (PK\\x03\\x04, SB2 >= 2.6) nor a pickle (\\x80, legacy "
                "SB2 .pkl); expected an SB2 model file", source)
        if kind == "pkl" and size > lim.max_pickle_bytes:
            raise MemberTooLarge(f"pickle of {size} bytes is larger than the "
                                 f"{lim.max_pickle_bytes}-byte limit", source)
        sha = _sha256(fp)
        if kind == "zip":
            return read_zip(path, fp, sha, lim)
        raw = fp.read(lim.max_pickle_bytes + 1)
        return read_pkl(path, raw, sha, lim)
