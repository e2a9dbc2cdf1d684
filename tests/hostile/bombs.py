"""Pickles that cost no code execution but unbounded work or memory: built opcode
by opcode (nothing here unpickles), each a few hundred bytes.

A memo reference (GET) pushes an object already built, so a list that holds its
predecessor twice, 40 times over, is 40 objects in the file but 2**40 visits for
anything that walks it without remembering what it saw: repr(), ==, hash() of a
tuple, json.dumps."""
from __future__ import annotations

import struct

from tests.hostile.make import (
    APPENDS,
    EMPTY_DICT,
    EMPTY_LIST,
    MARK,
    PROTO2,
    REDUCE,
    SETITEM,
    STOP,
    TUPLE,
    TUPLE2,
    b,
    glob,
    i,
    model_pickle,
    s,
)

POP = b"0"
APPEND = b"a"
BUILD = b"b"


def put(n: int) -> bytes:
    return b"q" + bytes([n]) if n < 256 else b"r" + struct.pack("<I", n)


def get(n: int) -> bytes:
    return b"h" + bytes([n]) if n < 256 else b"j" + struct.pack("<I", n)


def shared_lists(depth: int) -> bytes:
    """[[x, x], [x, x]]... `depth` levels, each level one list holding the previous one twice."""
    out = b"K\x00" + put(0) + POP
    for k in range(1, depth + 1):
        out += EMPTY_LIST + MARK + get(k - 1) + get(k - 1) + APPENDS + put(k) + POP
    return out + get(depth)


def shared_tuples(depth: int) -> bytes:
    """The same with tuples (hashable: a dict key that costs 2**depth to hash)."""
    out = b"K\x00" + put(0) + POP
    for k in range(1, depth + 1):
        out += get(k - 1) + get(k - 1) + TUPLE2 + put(k) + POP
    return out + get(depth)


def reconstruct(shape_expr: bytes) -> bytes:
    """numpy's _reconstruct(ndarray, <shape>, b'b'), as every pickled ndarray starts."""
    return (glob("numpy.core.multiarray", "_reconstruct") + MARK + glob("numpy", "ndarray") + shape_expr
            + b(b"b") + TUPLE + REDUCE)


def dtype_with_state(state_expr: bytes) -> bytes:
    """numpy.dtype('f4') given `state` by BUILD (numpy pickles dtypes so)."""
    return glob("numpy", "dtype") + MARK + s("f4") + i(0) + i(1) + TUPLE + REDUCE + state_expr + BUILD


def dict_keyed_by(key_expr: bytes) -> bytes:
    return EMPTY_DICT + key_expr + i(1) + SETITEM


def nested_lists(depth: int) -> bytes:
    """[[[...]]] `depth` deep, no sharing."""
    return EMPTY_LIST * depth + APPEND * (depth - 1)


def many_objects(n: int) -> bytes:
    """n empty lists made and dropped, then None."""
    return (EMPTY_LIST + POP) * n + b"N"


def long_list(n: int) -> bytes:
    """One list of n references to one object."""
    return b"K\x07" + put(0) + POP + EMPTY_LIST + MARK + get(0) * n + APPENDS


def in_model(expr: bytes) -> bytes:
    """A legacy SB2 .pkl holding `expr` as data['policy']."""
    return model_pickle(expr)


def alone(expr: bytes) -> bytes:
    return PROTO2 + expr + STOP


__all__ = ["shared_lists", "shared_tuples", "reconstruct", "dtype_with_state", "dict_keyed_by", "nested_lists",
           "many_objects", "long_list", "in_model", "alone", "TUPLE2"]
