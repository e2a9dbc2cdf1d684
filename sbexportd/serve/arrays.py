"""Array encodings on the wire.

In (everywhere an array is accepted):
  - nested lists of numbers (JSON or msgpack);
  - {"dtype", "shape", "data"} with data a base64 string (JSON), raw bytes (msgpack)
    or a flat list; bytes are little-endian, C order.
Out: the method's `encoding` param, "list" (default) or "base64", on JSON
connections; raw bytes, always, on msgpack ones. Results carry `Out` wrappers that are
encoded only when the message is serialized, when the connection's encoding is known.
"""
from __future__ import annotations

import base64
import binascii
import math
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


def is_encoded(value: Any) -> bool:
    return isinstance(value, dict) and value.keys() == {"dtype", "shape", "data"}


def decode(value: Any, what: str = "array") -> np.ndarray:
    """A wire value -> ndarray (numbers only)."""
    if is_encoded(value):
        return _decode_binary(value, what)
    if isinstance(value, dict):
        raise ArrayError(f"{what}: expected a list of numbers or {{dtype, shape, data}}, got an object with keys "
                         f"{sorted(value)[:6]}")
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as e:  # ragged nesting
        raise ArrayError(f"{what}: not a rectangular array of numbers ({e})") from None
    if a.dtype.kind not in "biuf":
        raise ArrayError(f"{what}: expected numbers, got {_kind_name(a)}")
    return a


def _kind_name(a: np.ndarray) -> str:
    return {"U": "strings", "S": "bytes", "O": "ragged or mixed data (nulls, objects)"}.get(a.dtype.kind,
                                                                                               a.dtype.name)


def _decode_binary(value: dict, what: str) -> np.ndarray:
    dtype, shape, data = value["dtype"], value["shape"], value["data"]
    if dtype not in DTYPES:
        raise ArrayError(f"{what}: dtype {dtype!r} is not one of {', '.join(sorted(DTYPES))}")
    if (not isinstance(shape, list) or len(shape) > MAX_DIMS
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise ArrayError(f"{what}: shape must be a list of at most {MAX_DIMS} non-negative integers, got {shape!r:.80}")
    dt = np.dtype(dtype).newbyteorder("<")
    count = math.prod(shape)
    if isinstance(data, list):
        try:
            a = np.asarray(data, dtype=dt)
        except (ValueError, TypeError, OverflowError) as e:  # strings, nulls, 1000 as int8
            raise ArrayError(f"{what}: data must be numbers that fit {dtype} ({type(e).__name__})") from None
        if a.ndim != 1 or a.size != count:
            raise ArrayError(f"{what}: data has {a.size} values, shape {shape} needs {count}")
        return a.reshape(shape)
    if isinstance(data, str):
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


def _binary(a: np.ndarray) -> tuple[str, list, bytes]:
    a = np.ascontiguousarray(a).reshape(np.shape(a))  # ascontiguousarray makes 0-d arrays 1-d
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return a.dtype.name, list(a.shape), a.tobytes()


def _list(a: np.ndarray) -> Any:
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        # JSON has no NaN/Infinity: null (base64 keeps them)
        return np.where(np.isfinite(a), a, None).tolist() if a.ndim else None
    return a.tolist()


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
    raise TypeError(f"cannot encode {type(o).__name__} as msgpack")
