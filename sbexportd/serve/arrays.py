"""Array encodings on the wire.

In (everywhere an array is accepted):
  - nested lists of numbers (JSON or msgpack);
  - {"dtype", "shape", "data"} with data a base64 string (JSON), raw bytes (msgpack)
    or a flat list; bytes are little-endian, C order.
Out: the method's `encoding` param, "list" (default) or "base64", on JSON
connections; raw bytes, always, on msgpack ones. A method that knows the encoding of
its answer gives `wire(array, ...)`, the final form, so the answer is encoded once;
megabytes of arrays travel as `Out` wrappers, encoded on a worker thread when the
message is serialized (Bulky).

Decoding does not copy: a binary array is a read-only view of the message's bytes
(msgpack bin) or of its base64-decoded bytes.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
from typing import Any

import numpy as np

DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                    "float16", "float32", "float64"})
ENCODINGS = ("list", "base64", "msgpack")  # what capabilities advertise
JSON_ENCODINGS = ("list", "base64")
MAX_DIMS = 8


class ArrayError(ValueError):
    """An array param that cannot be decoded; the caller says which param."""


class Bulky(dict):
    """A result with megabytes of arrays: serialized on a worker thread, not the loop."""

    ELEMENTS = 1 << 18

    @classmethod
    def maybe(cls, result: dict, arrays) -> dict:
        return cls(result) if sum(int(np.size(a)) for a in arrays) > cls.ELEMENTS else result


class Out:
    """An output array and the encoding the request asked for (JSON connections)."""

    __slots__ = ("array", "encoding")

    def __init__(self, array: np.ndarray, encoding: str = "list"):
        self.array = np.asarray(array)
        self.encoding = encoding


_DTYPES = {name: np.dtype(name).newbyteorder("<") for name in DTYPES}
_NAMES = {np.dtype(name): name for name in DTYPES}  # dtype.name is slow (~3 us)
_KEYS = frozenset(("dtype", "shape", "data"))


def is_encoded(value: Any) -> bool:
    return type(value) is dict and len(value) == 3 and value.keys() == _KEYS


def decode(value: Any, what: str = "array") -> np.ndarray:
    """A wire value -> ndarray (numbers only)."""
    if type(value) is dict:
        if value.keys() == _KEYS:
            return _decode_binary(value, what)
        raise ArrayError(f"{what}: expected a list of numbers or {{dtype, shape, data}}, got an object with keys "
                         f"{sorted(value)[:6]}")
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as e:  # ragged nesting
        raise ArrayError(f"{what}: not a rectangular array of numbers ({e})") from None
    if a.dtype.kind not in "biuf":
        raise ArrayError(f"{what}: expected numbers, got {_kind_name(a)}")
    return a


def shape_of(value: dict) -> list[int] | None:
    """The valid shape of an encoded array, or None."""
    shape = value["shape"]
    if type(shape) is not list or len(shape) > MAX_DIMS:
        return None
    for d in shape:
        if type(d) is not int or d < 0:
            return None
    return shape


def _kind_name(a: np.ndarray) -> str:
    return {"U": "strings", "S": "bytes", "O": "ragged or mixed data (nulls, objects)"}.get(a.dtype.kind,
                                                                                               a.dtype.name)


def _decode_binary(value: dict, what: str) -> np.ndarray:
    dtype, data = value["dtype"], value["data"]
    dt = _DTYPES.get(dtype) if type(dtype) is str else None
    if dt is None:
        raise ArrayError(f"{what}: dtype {dtype!r:.40} is not one of {', '.join(sorted(DTYPES))}")
    shape = shape_of(value)
    if shape is None:
        raise ArrayError(f"{what}: shape must be a list of at most {MAX_DIMS} non-negative integers, "
                         f"got {value['shape']!r:.80}")
    count = math.prod(shape)
    if type(data) is list:
        a = np.asarray(data, dtype=dt)
        if a.ndim != 1 or a.size != count:
            raise ArrayError(f"{what}: data has {a.size} values, shape {shape} needs {count}")
        return a.reshape(shape)
    if type(data) is str:
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ArrayError(f"{what}: data is not valid base64") from None
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ArrayError(f"{what}: data must be base64 text, raw bytes or a flat list")
    if len(data) != count * dt.itemsize:
        raise ArrayError(f"{what}: {len(data)} bytes of data, {dtype} {shape} needs {count * dt.itemsize}")
    # a read-only view of the message buffer: no copy for large batches
    return np.frombuffer(data, dtype=dt).reshape(shape)


def _binary(a: np.ndarray) -> tuple[str, list, Any]:
    """dtype name, shape, and the little-endian C-order bytes (a view when it can be)."""
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a).reshape(a.shape)  # ascontiguousarray makes 0-d arrays 1-d
    data = a.tobytes() if a.nbytes < 1 << 12 or a.ndim == 0 else a.reshape(-1).view(np.uint8).data
    return _NAMES.get(a.dtype) or a.dtype.name, list(a.shape), data


def wire(a: np.ndarray, encoding: str, msgpack: bool) -> Any:
    """An output array in its final form for an answer: raw bytes on msgpack, else
    the JSON `encoding` ("list" or "base64")."""
    if msgpack:
        dtype, shape, data = _binary(a)
        return {"dtype": dtype, "shape": shape, "data": data}
    if encoding == "base64":
        dtype, shape, data = _binary(a)
        return {"dtype": dtype, "shape": shape, "data": base64.b64encode(data).decode("ascii")}
    return _list(a)


def _list(a: np.ndarray) -> Any:
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        # JSON has no NaN/Infinity: null (base64 keeps them)
        if not a.ndim:
            return None
        out = a.astype(object)
        out[~np.isfinite(a)] = None
        return out.tolist()
    return a.tolist()


LIST_CHUNK = 1 << 14  # values turned into Python numbers at a time when a big array goes out as JSON lists


def encode_json(message: dict) -> bytes | bytearray:
    """JSON of an answer. Arrays answered as lists that are large are written a chunk
    of rows at a time (their Python numbers, ~32 bytes each, exist for one chunk, not
    for the whole array): json.dumps writes a placeholder for each, replaced after."""
    big: list[np.ndarray] = []
    nonce = os.urandom(8).hex()  # no string of the message (a parameter name...) can look like a placeholder

    def default(o: Any) -> Any:
        if isinstance(o, Out) and o.encoding == "list" and o.array.size > LIST_CHUNK and o.array.ndim:
            big.append(o.array)
            return f"\x00{nonce}{len(big) - 1}\x00"
        return json_default(o)
    text = json.dumps(message, default=default, separators=(",", ":"), ensure_ascii=False)
    if not big:
        return text.encode("utf-8")
    parts = re.split(r'"\\u0000' + nonce + r'(\d+)\\u0000"', text)
    out = bytearray()
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out += part.encode("utf-8")
        else:
            _list_json(big[int(part)], out)
    return out  # megabytes: not copied into bytes


def _list_json(a: np.ndarray, out: bytearray) -> None:
    rows = max(1, LIST_CHUNK // max(1, a.size // max(1, a.shape[0])))
    out += b"["
    for lo in range(0, a.shape[0], rows):
        if lo:
            out += b","
        out += json.dumps(_list(a[lo:lo + rows]), separators=(",", ":")).encode()[1:-1]
    out += b"]"


def json_default(o: Any) -> Any:
    """json.dumps(default=...) for results."""
    if isinstance(o, Out):
        if o.encoding == "base64":
            dtype, shape, data = _binary(o.array)
            return {"dtype": dtype, "shape": shape, "data": base64.b64encode(data).decode("ascii")}
        return _list(o.array)
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return _list(o)
    if isinstance(o, (bytes, bytearray)):
        return base64.b64encode(o).decode("ascii")
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"cannot encode {type(o).__name__} as JSON")


def msgpack_default(o: Any) -> Any:
    """msgpack.packb(default=...) for results: arrays always as raw bytes."""
    if isinstance(o, Out):
        o = o.array
    if isinstance(o, np.ndarray):
        dtype, shape, data = _binary(o)
        return {"dtype": dtype, "shape": shape, "data": data}
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (set, frozenset)):
        return list(o)
    if isinstance(o, memoryview):
        return o.tobytes()
    raise TypeError(f"cannot encode {type(o).__name__} as msgpack")
