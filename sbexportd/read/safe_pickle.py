"""A restricted unpickler for SB2 save files.

`safe_loads(data, source)` reads a pickle without importing or executing
anything the pickle names:

- numpy arrays, dtypes and scalars, OrderedDict and a few builtin data types are
  rebuilt for real, through checked constructors (no object dtypes, bounded
  sizes);
- cloudpickle's reconstructors map to inert builders: functions become
  `InertFunction`, by-value classes become stand-in classes, modules
  `InertModule`; no code object is ever constructed;
- globals from dangerous modules (os, subprocess, builtins.eval, ...) are
  refused with ForbiddenPickleGlobal;
- every other global becomes an inert stand-in class (see `standins`), callable
  only when it is a known SB2 / gym / numpy.random name.

The opcode loop is the pure-Python one from the standard library with the
object-touching opcodes (REDUCE, NEWOBJ, INST/OBJ, BUILD, APPEND(S),
SETITEM(S), ADDITEMS, persistent ids, the extension registry) replaced by
checked versions, so nothing can reach a method of an object it did not create.
The stand-in metaclass refuses unknown calls on its own as well, so the
`resolve_global` allow-list stays safe even behind the C unpickler.
"""
from __future__ import annotations

import _compat_pickle
import builtins
import io
import math
import pickle
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from sbexportd.errors import (
    ForbiddenPickleGlobal,
    MemberTooLarge,
    ModelFileError,
    ObjectArrayInParameters,
    SbExportError,
    TruncatedFile,
)
from sbexportd.read import standins as S
from sbexportd.read.standins import (
    EMPTY_CELL,
    InertCell,
    InertCode,
    InertDescriptor,
    InertFunction,
    InertModule,
    InertObject,
    StandIn,
    StandInMeta,
    blank,
    by_value_class,
    standin_class,
    update_by_value_class,
)

try:  # numpy >= 2
    from numpy._core import multiarray as _np_multiarray
except ImportError:  # numpy 1.26
    from numpy.core import multiarray as _np_multiarray  # type: ignore[no-redef]

__all__ = ["safe_loads", "resolve_global", "SafeUnpickler", "DEFAULT_MAX_PICKLE_BYTES"]

DEFAULT_MAX_PICKLE_BYTES = 512 * 2**20
MAX_NDIM = 32
MAX_DEPTH = 400

_DATA_ONLY = "model files may only contain data (numpy arrays, gym spaces, SB2 classes by name)"

# Modules whose globals are refused outright (prefix match on dotted components).
_DENY_MODULES = frozenset("""
os posix nt posixpath ntpath genericpath subprocess _posixsubprocess sys importlib imp
zipimport pkgutil pickle _pickle pickletools cPickle copyreg shutil socket _socket
socketserver ssl ctypes _ctypes code codeop runpy multiprocessing _multiprocessing
concurrent threading _thread signal pty tty webbrowser types operator _operator
functools _functools io _io marshal tempfile pathlib glob fnmatch inspect gc
asyncio select selectors http urllib ftplib smtplib telnetlib poplib imaplib
xmlrpc platform sysconfig site ensurepip venv pip setuptools pkg_resources
distutils pydoc pdb bdb trace timeit cProfile profile doctest unittest commands
popen2 resource fcntl mmap _winapi msvcrt winreg _winreg sqlite3 shelve dbm
builtins __builtin__ __builtins__ dill joblib cloudpickle _codecs codecs
tarfile zipfile lzma bz2 gzip zlib ctypes.util numpy.ctypeslib numpy.f2py
numpy.distutils numpy.testing numpy.lib.npyio numpy.lib.format
numpy.lib.utils numpy.compat
""".split())


def _denied(module: str) -> bool:
    parts = module.split(".")
    return any(".".join(parts[:i]) in _DENY_MODULES for i in range(1, len(parts) + 1))


class SafeCallable:
    """A checked constructor a pickle is allowed to call."""

    __slots__ = ("fn", "label")

    def __init__(self, fn: Callable, label: str):
        self.fn = fn
        self.label = label

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def __repr__(self):
        return f"<checked {self.label}>"

    def __reduce_ex__(self, protocol):
        raise TypeError("not picklable")


# Real classes a pickle may reference and call (their constructors only build data).
_REAL_CALLABLE = (set, frozenset, complex, slice, object, OrderedDict)
# numpy scalar types, as references only (e.g. an old gym Box's dtype=np.float32).
_NUMPY_TYPES = {name: getattr(np, name) for name in (
    "bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "longdouble", "complex64", "complex128",
    "intc", "intp", "uintp", "short", "ushort", "longlong", "ulonglong", "half",
    "single", "double", "csingle", "cdouble", "str_", "bytes_", "void", "generic",
    "number", "integer", "floating", "signedinteger", "unsignedinteger", "inexact",
    "ndarray") if hasattr(np, name)}
_NUMPY_TYPES["bool8"] = np.bool_
_NUMPY_TYPES["float_"] = np.float64
_NUMPY_TYPES["int_"] = np.int_


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _check_shape(shape: Any, source: str | None) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or len(shape) > MAX_NDIM or not all(
            _is_int(d) and d >= 0 for d in shape):
        raise ModelFileError(f"array shape {shape!r} is not a tuple of at most {MAX_NDIM} "
                             "non-negative integers", source)
    return tuple(int(d) for d in shape)


def _nbytes(shape: tuple[int, ...], itemsize: int) -> int:
    return math.prod(shape) * itemsize


_DTYPE_SPEC_CHARS = set("<>|=?[]abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
# dtype flags that only object-like dtypes carry: ITEM_REFCOUNT, LIST_PICKLE,
# ITEM_IS_POINTER, NEEDS_PYAPI, USE_GETITEM, USE_SETITEM
_OBJECT_FLAGS = 0x01 | 0x02 | 0x04 | 0x10 | 0x20 | 0x40


class _Checks:
    """The checked data constructors, bound to one file and one memory budget."""

    def __init__(self, source: str | None, max_bytes: int):
        self.source = source
        self.remaining = max_bytes

    # -- helpers
    def charge(self, nbytes: int, what: str) -> None:
        if nbytes > self.remaining:
            raise MemberTooLarge(
                f"{what} declares {nbytes} bytes, more than the {self.remaining} bytes left "
                "of the reading budget", self.source)
        self.remaining -= nbytes

    def check_dtype(self, dt: Any, what: str = "array") -> np.dtype:
        if not isinstance(dt, np.dtype):
            raise ModelFileError(f"{what} has dtype {type(dt).__name__}, expected a numpy dtype",
                                 self.source)
        if dt.hasobject:
            raise ObjectArrayInParameters(
                f"refusing a numpy object {what} (dtype {dt}): object arrays carry pickled "
                f"objects; {_DATA_ONLY}", self.source)
        return dt

    # -- numpy.dtype(spec, align, copy)
    def dtype(self, spec: Any, align: Any = False, copy: Any = True, *rest: Any) -> np.dtype:
        if isinstance(spec, bytes):
            spec = spec.decode("ascii", "replace")
        if rest or not isinstance(spec, str) or not 0 < len(spec) <= 24 or not set(
                spec) <= _DTYPE_SPEC_CHARS:
            raise ModelFileError(f"unsupported numpy dtype spec {spec!r}: expected a simple "
                                 "type code such as 'f4'", self.source)
        # copy=True always: BUILD then edits a private copy, never numpy's singletons.
        dt = np.dtype(spec, bool(align), True)
        return self.check_dtype(dt, "dtype")

    def build_dtype(self, dt: np.dtype, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (8, 9):
            raise ModelFileError(f"unexpected numpy dtype state {state!r:.80}", self.source)
        version, endian, subarray, names, fields, elsize, alignment, flags = state[:8]
        metadata = state[8] if len(state) == 9 else None
        if (not _is_int(version) or endian not in ("<", ">", "|", "=")
                or subarray is not None or names is not None or fields is not None
                or not _is_int(elsize) or not _is_int(alignment) or not _is_int(flags)
                or flags & _OBJECT_FLAGS or not (metadata is None or isinstance(metadata, dict))):
            raise ModelFileError(
                "refusing a structured, sub-array or object numpy dtype state "
                f"{state!r:.120}: only plain numeric/string dtypes are expected", self.source)
        if dt.kind not in "VSU" and (elsize != -1 or alignment != -1):
            raise ModelFileError(f"numpy dtype state {state!r:.80} changes the item size of a "
                                 "fixed-size dtype", self.source)
        if not -1 <= elsize <= 2**20 or not -1 <= alignment <= 64:
            raise ModelFileError(f"numpy dtype state {state!r:.80} has an unreasonable item "
                                 "size", self.source)
        dt.__setstate__(state)  # type: ignore[attr-defined]  # numpy's stubs leave out dtype.__setstate__
        self.check_dtype(dt, "dtype")

    # -- numpy.core.multiarray._reconstruct(ndarray, shape, typecode)
    def reconstruct(self, subtype: Any, shape: Any, typecode: Any, *rest: Any) -> np.ndarray:
        if subtype is not np.ndarray or rest:
            raise ForbiddenPickleGlobal(
                f"refusing numpy _reconstruct of {subtype!r:.80}: only plain ndarrays are "
                "expected", self.source)
        shape = _check_shape(shape, self.source)
        if not isinstance(typecode, (bytes, str)) or len(typecode) > 4:
            raise ModelFileError(f"unexpected numpy type code {typecode!r:.40}", self.source)
        dt = self.check_dtype(np.dtype(typecode), "array")  # type: ignore[arg-type]  # bytes is a type code too
        self.charge(_nbytes(shape, dt.itemsize), "numpy array")
        return _np_multiarray._reconstruct(np.ndarray, shape, typecode)  # type: ignore[attr-defined]  # private

    def build_ndarray(self, arr: np.ndarray, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise ModelFileError(f"unexpected numpy array state of type {type(state).__name__}",
                                 self.source)
        if len(state) == 5:
            version, shape, dt, _is_fortran, raw = state
            if not _is_int(version):
                raise ModelFileError("unexpected numpy array state version", self.source)
        else:
            shape, dt, _is_fortran, raw = state
        shape = _check_shape(shape, self.source)
        self.check_dtype(dt, "array")
        if isinstance(raw, list):
            raise ObjectArrayInParameters(
                f"refusing a numpy object array: its items are pickled objects; {_DATA_ONLY}",
                self.source)
        if not isinstance(raw, (bytes, bytearray)):
            raise ModelFileError(f"numpy array data is {type(raw).__name__}, expected bytes",
                                 self.source)
        nbytes = _nbytes(shape, dt.itemsize)
        if len(raw) != nbytes:
            raise ModelFileError(f"numpy array of shape {shape} and dtype {dt} needs {nbytes} "
                                 f"bytes but the pickle holds {len(raw)}", self.source)
        self.charge(nbytes, "numpy array")
        arr.__setstate__(state)
        self.check_dtype(arr.dtype, "array")

    # -- numpy.core.multiarray.scalar(dtype, bytes)
    def scalar(self, dt: Any, raw: Any = None, *rest: Any) -> Any:
        self.check_dtype(dt, "scalar")
        if rest or not isinstance(raw, bytes) or len(raw) != dt.itemsize:
            raise ModelFileError(f"numpy scalar of dtype {dt} needs {dt.itemsize} bytes",
                                 self.source)
        return _np_multiarray.scalar(dt, raw)  # type: ignore[attr-defined]  # private

    # -- numpy.core.numeric._frombuffer(buf, dtype, shape, order) (pickle protocol 5)
    def frombuffer(self, buf: Any, dt: Any, shape: Any, order: Any = "C") -> np.ndarray:
        self.check_dtype(dt, "array")
        shape = _check_shape(shape, self.source)
        if not isinstance(buf, (bytes, bytearray)) or order not in ("C", "F", "A", "K"):
            raise ModelFileError("numpy _frombuffer expects a bytes buffer and an order",
                                 self.source)
        nbytes = _nbytes(shape, dt.itemsize)
        if len(buf) != nbytes:
            raise ModelFileError(f"numpy array of shape {shape} needs {nbytes} bytes but the "
                                 f"pickle holds {len(buf)}", self.source)
        self.charge(nbytes, "numpy array")
        return np.frombuffer(buf, dtype=dt).reshape(shape, order=order).copy()

    # -- builtins.bytearray / bytes
    def _sized(self, ctor: type, args: tuple) -> Any:
        if args and _is_int(args[0]):
            self.charge(int(args[0]), ctor.__name__)
        if args and not isinstance(args[0], (int, bytes, bytearray, str, list, tuple)):
            raise ModelFileError(f"unexpected {ctor.__name__} argument "
                                 f"{type(args[0]).__name__}", self.source)
        return ctor(*args)

    def bytearray(self, *args: Any) -> bytearray:
        return self._sized(bytearray, args)

    def bytes(self, *args: Any) -> bytes:
        return self._sized(bytes, args)

    # -- _codecs.encode(str, 'latin1'): how protocol <= 2 pickles store bytes
    def encode(self, obj: Any, encoding: Any = "utf-8", errors: Any = "strict") -> builtins.bytes:
        if not isinstance(obj, str) or encoding not in (
                "latin1", "latin-1", "iso-8859-1", "utf-8", "utf8", "ascii") or errors != "strict":
            raise ForbiddenPickleGlobal(f"refusing _codecs.encode({type(obj).__name__}, "
                                        f"{encoding!r:.20}): only str -> bytes is expected",
                                        self.source)
        return obj.encode(encoding)

    # -- copyreg._reconstructor / __newobj__ / __newobj_ex__
    def reconstructor(self, cls: Any, base: Any, state: Any = None) -> Any:
        if isinstance(cls, StandInMeta) and base is object:
            return blank(cls)
        if cls is object and base is object:
            return object()
        raise ForbiddenPickleGlobal(
            f"refusing copyreg._reconstructor({cls!r:.60}, {base!r:.60}): only stand-in "
            "classes with base object may be rebuilt", self.source)

    def newobj(self, cls: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(cls, StandInMeta):
            obj = blank(cls)
            if args:
                obj.__dict__["sb_args"] = tuple(args)
            if kwargs:
                obj.__dict__["sb_kwargs"] = dict(kwargs)
            return obj
        if any(cls is t for t in _REAL_CALLABLE):
            return cls.__new__(cls, *args, **kwargs)
        raise ForbiddenPickleGlobal(f"refusing to create an instance of {_describe(cls)}: "
                                    f"{_DATA_ONLY}", self.source)

    def newobj_ex(self, cls: Any, args: Any = (), kwargs: Any = None) -> Any:
        if not isinstance(args, tuple) or not isinstance(kwargs or {}, dict):
            raise ModelFileError("malformed __newobj_ex__ arguments", self.source)
        return self.newobj(cls, *args, **(kwargs or {}))


def _describe(obj: Any) -> str:
    if isinstance(obj, StandInMeta):
        return S.qualified_name(obj)
    if isinstance(obj, SafeCallable):
        return obj.label
    if isinstance(obj, type):
        return f"{obj.__module__}.{obj.__qualname__}"
    return f"an object of type {type(obj).__name__}"


# --- cloudpickle's reconstructors, inert -------------------------------------
def _cp_make_skel_func(code: Any, cell_count: Any = -1, base_globals: Any = None) -> InertFunction:
    f = InertFunction(code, cell_count if _is_int(cell_count) else -1)
    if isinstance(base_globals, dict):
        f.globals.update(base_globals)
    return f


def _cp_fill_function(*args: Any) -> InertFunction:
    if not args or not isinstance(args[0], InertFunction):
        raise TypeError("_fill_function expects a skeleton function")
    func = args[0]
    if len(args) == 2 and isinstance(args[1], dict):
        state = args[1]
    elif len(args) == 5:
        state = dict(zip(["globals", "defaults", "dict", "closure_values"], args[1:], strict=True))
    elif len(args) == 6:
        state = dict(zip(["globals", "defaults", "dict", "module", "closure_values"], args[1:], strict=True))
    else:
        raise TypeError(f"unexpected _fill_function arguments ({len(args)})")
    func.fill(state)
    return func


def _cp_function_setstate(obj: Any, state: Any) -> None:
    if not isinstance(obj, InertFunction) or not (isinstance(state, tuple) and len(state) == 2):
        raise TypeError("_function_setstate expects (function, (state, slotstate))")
    st, slotstate = state
    if isinstance(st, dict):
        obj.dict.update(st)
    if isinstance(slotstate, dict):
        obj.fill(slotstate)


def _cp_function_type(code: Any, globals: Any = None, name: Any = None, argdefs: Any = None,
                      closure: Any = None, *rest: Any) -> InertFunction:
    f = InertFunction(code)
    if isinstance(globals, dict):
        f.globals.update(globals)
    if isinstance(name, str):
        f.name = f.qualname = name
    if isinstance(argdefs, tuple):
        f.defaults = argdefs
    if isinstance(closure, tuple):
        f.closure_values = [c.contents if isinstance(c, InertCell) else c for c in closure]
    return f


def _cp_type_factory(*args: Any, **kwargs: Any) -> Any:
    """builtins.type / abc.ABCMeta as cloudpickle uses them."""
    if len(args) == 1 and not kwargs:
        for singleton in (None, Ellipsis, NotImplemented):
            if args[0] is singleton:
                return type(singleton)
        raise TypeError("type(x) is only expected for None, Ellipsis and NotImplemented")
    if len(args) == 3:
        name, bases, ns = args
        cls = by_value_class(name, bases, doc=ns.get("__doc__") if isinstance(ns, dict) else None)
        if isinstance(ns, dict):
            update_by_value_class(cls, ns)
        return cls
    raise TypeError(f"unexpected type() call with {len(args)} arguments")


def _cp_make_skeleton_class(type_constructor: Any, name: Any, bases: Any, type_kwargs: Any = None,
                            class_tracker_id: Any = None, extra: Any = None) -> Any:
    doc = type_kwargs.get("__doc__") if isinstance(type_kwargs, dict) else None
    return by_value_class(name, bases, doc=doc)


def _cp_make_skeleton_enum(bases: Any, name: Any, qualname: Any, members: Any, module: Any,
                           class_tracker_id: Any = None, extra: Any = None) -> Any:
    return by_value_class(qualname if isinstance(qualname, str) else name, bases,
                         module=module if isinstance(module, str) else "__main__",
                         enum_members=members if isinstance(members, dict) else None)


def _cp_class_setstate(obj: Any, state: Any) -> Any:
    if not (isinstance(state, tuple) and len(state) == 2):
        raise TypeError("_class_setstate expects (class, (state, slotstate))")
    update_by_value_class(obj, state[0] if isinstance(state[0], dict) else {})
    return obj


def _cp_builtin_type(name: Any) -> Any:
    if not isinstance(name, str):
        raise TypeError("_builtin_type expects a name")
    return _BUILTIN_TYPES.get(name) or standin_class("types", name, known=False)


def _inert(kind: str) -> SafeCallable:
    return SafeCallable(lambda *a, **k: InertObject(kind, a), f"inert {kind}")


_BUILTIN_TYPES: dict[str, Any] = {
    "CodeType": SafeCallable(lambda *a: InertCode(a), "inert CodeType"),
    "FunctionType": SafeCallable(_cp_function_type, "inert FunctionType"),
    "LambdaType": SafeCallable(_cp_function_type, "inert FunctionType"),
    "CellType": SafeCallable(lambda *a: InertCell(a[0] if a else EMPTY_CELL), "inert CellType"),
    "ClassType": SafeCallable(_cp_type_factory, "inert type"),
    "TypeType": SafeCallable(_cp_type_factory, "inert type"),
    "MethodType": _inert("method"),
    "ModuleType": SafeCallable(lambda name, *a: InertModule(name), "inert module"),
    "MappingProxyType": SafeCallable(lambda d: dict(d) if isinstance(d, dict) else {},
                                     "mappingproxy"),
    "SimpleNamespace": _inert("SimpleNamespace"),
    "NoneType": type(None),
    "EllipsisType": type(Ellipsis),
    "NotImplementedType": type(NotImplemented),
}

_TYPE_FACTORY = SafeCallable(_cp_type_factory, "inert type()")

_CLOUDPICKLE: dict[str, Any] = {
    "_make_skel_func": SafeCallable(_cp_make_skel_func, "cloudpickle._make_skel_func"),
    "_fill_function": SafeCallable(_cp_fill_function, "cloudpickle._fill_function"),
    "_function_setstate": SafeCallable(_cp_function_setstate, "cloudpickle._function_setstate"),
    "_builtin_type": SafeCallable(_cp_builtin_type, "cloudpickle._builtin_type"),
    "_make_cell": SafeCallable(lambda v=EMPTY_CELL: InertCell(v), "cloudpickle._make_cell"),
    "_make_empty_cell": SafeCallable(lambda: InertCell(), "cloudpickle._make_empty_cell"),
    "_make_skeleton_class": SafeCallable(_cp_make_skeleton_class,
                                         "cloudpickle._make_skeleton_class"),
    "_make_skeleton_enum": SafeCallable(_cp_make_skeleton_enum, "cloudpickle._make_skeleton_enum"),
    "_rehydrate_skeleton_class": SafeCallable(update_by_value_class,
                                              "cloudpickle._rehydrate_skeleton_class"),
    "_class_setstate": SafeCallable(_cp_class_setstate, "cloudpickle._class_setstate"),
    "subimport": SafeCallable(lambda name: InertModule(name), "cloudpickle.subimport"),
    "dynamic_subimport": SafeCallable(lambda name, vars=None: InertModule(name, vars),
                                      "cloudpickle.dynamic_subimport"),
    "_empty_cell_value": EMPTY_CELL,
    "_gen_ellipsis": SafeCallable(lambda: Ellipsis, "cloudpickle._gen_ellipsis"),
    "_gen_not_implemented": SafeCallable(lambda: NotImplemented,
                                         "cloudpickle._gen_not_implemented"),
    "_make_dict_keys": SafeCallable(lambda obj, *a: list(obj), "cloudpickle._make_dict_keys"),
    "_make_dict_values": SafeCallable(lambda obj, *a: list(obj), "cloudpickle._make_dict_values"),
    "_make_dict_items": SafeCallable(lambda obj, *a: list(dict(obj).items()),
                                     "cloudpickle._make_dict_items"),
    "_make_typevar": _inert("TypeVar"),
    "_get_dict_new": _inert("dict.__new__"),
    "_get_frozenset_new": _inert("frozenset.__new__"),
    "_get_list_new": _inert("list.__new__"),
    "_get_set_new": _inert("set.__new__"),
    "_get_tuple_new": _inert("tuple.__new__"),
    "_get_object_new": _inert("object.__new__"),
}
_CLOUDPICKLE_MODULES = ("cloudpickle", "cloudpickle.cloudpickle", "cloudpickle.cloudpickle_fast")


def _static_table() -> dict[tuple[str, str], Any]:
    t: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "complex"): complex,
        ("builtins", "slice"): slice,
        ("builtins", "object"): object,
        ("builtins", "type"): _TYPE_FACTORY,
        ("abc", "ABCMeta"): _TYPE_FACTORY,
        ("builtins", "classmethod"): SafeCallable(
            lambda *a: InertDescriptor("classmethod", a), "inert classmethod"),
        ("builtins", "staticmethod"): SafeCallable(
            lambda *a: InertDescriptor("staticmethod", a), "inert staticmethod"),
        ("builtins", "property"): SafeCallable(
            lambda *a: InertDescriptor("property", a), "inert property"),
        ("builtins", "Ellipsis"): Ellipsis,
        ("builtins", "NotImplemented"): NotImplemented,
    }
    for mod in _CLOUDPICKLE_MODULES:
        for name, obj in _CLOUDPICKLE.items():
            t[(mod, name)] = obj
    for name, obj in _NUMPY_TYPES.items():
        t[("numpy", name)] = obj
    return t


_STATIC = _static_table()


class _Resolver:
    """find_class: the allow-list. One per file (its checks hold the budget)."""

    def __init__(self, source: str | None, max_bytes: int):
        self.source = source
        self.checks = c = _Checks(source, max_bytes)
        self.table = dict(_STATIC)
        for core in ("numpy.core", "numpy._core"):
            self.table[(f"{core}.multiarray", "_reconstruct")] = SafeCallable(
                c.reconstruct, "numpy _reconstruct")
            self.table[(f"{core}.multiarray", "scalar")] = SafeCallable(c.scalar, "numpy scalar")
            self.table[(f"{core}.numeric", "_frombuffer")] = SafeCallable(
                c.frombuffer, "numpy _frombuffer")
        self.table[("numpy", "dtype")] = SafeCallable(c.dtype, "numpy.dtype")
        self.table[("builtins", "bytearray")] = SafeCallable(c.bytearray, "bytearray")
        self.table[("builtins", "bytes")] = SafeCallable(c.bytes, "bytes")
        for mod in ("_codecs", "codecs"):
            self.table[(mod, "encode")] = SafeCallable(c.encode, "_codecs.encode")
        self.table[("copyreg", "_reconstructor")] = SafeCallable(
            c.reconstructor, "copyreg._reconstructor")
        self.table[("copyreg", "__newobj__")] = SafeCallable(c.newobj, "copyreg.__newobj__")
        self.table[("copyreg", "__newobj_ex__")] = SafeCallable(c.newobj_ex,
                                                                "copyreg.__newobj_ex__")

    def __call__(self, module: Any, name: Any) -> Any:
        if not isinstance(module, str) or not isinstance(name, str):
            raise ModelFileError("pickle global names must be strings", self.source)
        if (module, name) in _compat_pickle.NAME_MAPPING:  # Python 2 names
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        found = self.table.get((module, name))
        if found is not None:
            return found
        if _denied(module) or module.split(".")[0] in ("cloudpickle",):
            raise ForbiddenPickleGlobal(
                f"refusing pickle global {module}.{name}: {_DATA_ONLY}", self.source)
        return standin_class(module, name)


def resolve_global(module: str, name: str, source: str | None = None,
                   max_bytes: int = DEFAULT_MAX_PICKLE_BYTES) -> Any:
    """The allow-list on its own (what `find_class` returns for module.name)."""
    return _Resolver(source, max_bytes)(module, name)


_P = pickle  # opcode constants


class SafeUnpickler(pickle._Unpickler):
    """pickle.Unpickler (pure-Python flavour) with every object-touching opcode checked."""

    dispatch: ClassVar[dict] = dict(pickle._Unpickler.dispatch)
    # set by pickle._Unpickler.load(); typeshed declares only its public methods
    stack: list[Any]
    append: Callable[[Any], None]
    pop_mark: Callable[[], list[Any]]

    def __init__(self, file: Any, source: str | None,
                 max_bytes: int = DEFAULT_MAX_PICKLE_BYTES):
        super().__init__(file, fix_imports=False, encoding="ASCII", errors="strict")
        self.source = source
        self._resolve = _Resolver(source, max_bytes)
        self._checks = self._resolve.checks

    # -- globals, persistent ids, extension registry
    def find_class(self, module: str, name: str) -> Any:
        return self._resolve(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise ForbiddenPickleGlobal(f"refusing a pickle persistent id ({pid!r:.40}): "
                                    f"{_DATA_ONLY}", self.source)

    def _refuse_ext(self) -> None:
        raise ForbiddenPickleGlobal("refusing a pickle extension-registry reference (EXT "
                                    f"opcode): {_DATA_ONLY}", self.source)

    # -- calls
    def _call(self, func: Any, args: Any, kwargs: Any = None) -> Any:
        if not isinstance(args, tuple):
            raise ModelFileError("malformed pickle: call arguments are not a tuple", self.source)
        kwargs = kwargs or {}
        if isinstance(func, (StandInMeta, SafeCallable)) or any(func is t for t in _REAL_CALLABLE):
            return func(*args, **kwargs)
        raise ForbiddenPickleGlobal(f"refusing to call {_describe(func)}: {_DATA_ONLY}",
                                    self.source)

    def load_reduce(self) -> None:
        stack = self.stack
        args = stack.pop()
        stack[-1] = self._call(stack[-1], args)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        if not isinstance(args, tuple):
            raise ModelFileError("malformed pickle: NEWOBJ arguments are not a tuple",
                                 self.source)
        self.append(self._checks.newobj(cls, *args))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._checks.newobj_ex(cls, args, kwargs))

    def _instantiate(self, klass: Any, args: list) -> None:
        if isinstance(klass, StandInMeta) and not args:
            self.append(blank(klass))
        else:
            self.append(self._call(klass, tuple(args)))

    # -- state
    def load_build(self) -> None:
        stack = self.stack
        state = stack.pop()
        inst = stack[-1]
        if isinstance(inst, StandIn):
            StandIn.__setstate__(inst, state)
        elif type(inst) is np.ndarray:
            self._checks.build_ndarray(inst, state)
        elif isinstance(inst, np.dtype):
            self._checks.build_dtype(inst, state)
        elif isinstance(inst, (dict, set, frozenset, complex, slice)) and not state:
            pass
        else:
            raise ForbiddenPickleGlobal(f"refusing to set the state of {_describe(type(inst))}: "
                                        f"{_DATA_ONLY}", self.source)

    # -- containers: only real lists / dicts / sets
    def load_append(self) -> None:
        value = self.stack.pop()
        target = self.stack[-1]
        if type(target) is not list:
            raise ModelFileError(f"malformed pickle: APPEND to {type(target).__name__}",
                                 self.source)
        target.append(value)

    def load_appends(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) is not list:
            raise ModelFileError(f"malformed pickle: APPENDS to {type(target).__name__}",
                                 self.source)
        target.extend(items)

    def load_setitem(self) -> None:
        stack = self.stack
        value = stack.pop()
        key = stack.pop()
        target = stack[-1]
        if type(target) not in (dict, OrderedDict):
            raise ModelFileError(f"malformed pickle: SETITEM on {type(target).__name__}",
                                 self.source)
        target[key] = value

    def load_setitems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) not in (dict, OrderedDict):
            raise ModelFileError(f"malformed pickle: SETITEMS on {type(target).__name__}",
                                 self.source)
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    def load_additems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) is not set:
            raise ModelFileError(f"malformed pickle: ADDITEMS on {type(target).__name__}",
                                 self.source)
        target.update(items)


_d = SafeUnpickler.dispatch
_d[_P.REDUCE[0]] = SafeUnpickler.load_reduce
_d[_P.NEWOBJ[0]] = SafeUnpickler.load_newobj
_d[_P.NEWOBJ_EX[0]] = SafeUnpickler.load_newobj_ex
_d[_P.BUILD[0]] = SafeUnpickler.load_build
_d[_P.APPEND[0]] = SafeUnpickler.load_append
_d[_P.APPENDS[0]] = SafeUnpickler.load_appends
_d[_P.SETITEM[0]] = SafeUnpickler.load_setitem
_d[_P.SETITEMS[0]] = SafeUnpickler.load_setitems
_d[_P.ADDITEMS[0]] = SafeUnpickler.load_additems
for _op in (_P.EXT1, _P.EXT2, _P.EXT4):
    _d[_op[0]] = SafeUnpickler._refuse_ext
# INST / OBJ go through _instantiate (overridden); GLOBAL / STACK_GLOBAL through
# find_class; PERSID / BINPERSID through persistent_load.
del _d, _op


def _check_tree(obj: Any, source: str | None) -> None:
    """Refuse object arrays anywhere and nesting a consumer could not walk."""
    seen: set[int] = set()
    todo: list[tuple[Any, int]] = [(obj, 0)]
    while todo:
        o, depth = todo.pop()
        if isinstance(o, (str, bytes, int, float, bool, type(None), complex)):
            continue
        if id(o) in seen:
            continue
        seen.add(id(o))
        if depth > MAX_DEPTH:
            raise ModelFileError(f"pickle nests objects more than {MAX_DEPTH} levels deep; "
                                 "SB2 data is expected to be shallow", source)
        kids: Any = ()
        if isinstance(o, np.ndarray):
            if o.dtype.hasobject:
                raise ObjectArrayInParameters(f"refusing a numpy object array: {_DATA_ONLY}",
                                              source)
        elif isinstance(o, dict):
            kids = [*o.keys(), *o.values()]
        elif isinstance(o, (list, tuple, set, frozenset)):
            kids = o
        elif isinstance(o, StandIn):
            kids = list(o.__dict__.values())
        elif isinstance(o, StandInMeta):
            kids = [o.sb_bases, o.sb_class_dict]
        elif isinstance(o, InertFunction):
            kids = [o.code, o.defaults, o.kwdefaults, o.closure_values, o.globals, o.dict,
                    o.annotations]
        elif isinstance(o, InertCode):
            kids = [o.co_consts]
        elif isinstance(o, InertCell):
            kids = [o.contents]
        elif isinstance(o, InertModule):
            kids = [o.vars]
        elif isinstance(o, (InertDescriptor, InertObject)):
            kids = [o.args]
        for k in kids:
            todo.append((k, depth + 1))


class _EofTrackingIO(io.BytesIO):
    """Remembers whether the unpickler ever asked for bytes past the end, so that a
    failure after that point is reported as truncation, whatever its form."""

    hit_eof = False

    def read(self, n: int | None = -1) -> bytes:
        out = super().read(n)
        if n is not None and n >= 0 and len(out) < n:
            self.hit_eof = True
        return out

    def readinto(self, buf) -> int:
        got = super().readinto(buf)
        if got < len(buf):
            self.hit_eof = True
        return got

    def readline(self, size: int | None = -1) -> bytes:
        out = super().readline(size)
        if not out.endswith(b"\n"):
            self.hit_eof = True
        return out


_TRUNCATION_HINTS = ("truncated", "exhausted", "ran out of input", "unexpected end")


def safe_loads(data: bytes, source: str | None,
               max_bytes: int = DEFAULT_MAX_PICKLE_BYTES) -> Any:
    """Unpickle `data` (from `source`, named in every error) with the allow-list."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("safe_loads expects bytes")
    if len(data) > max_bytes:
        raise MemberTooLarge(f"pickle of {len(data)} bytes is larger than the "
                             f"{max_bytes}-byte limit", source)
    if not data:
        raise TruncatedFile("empty pickle, expected pickled data", source)
    token = S.current_source.set(source)
    stream = _EofTrackingIO(bytes(data))
    try:
        result = SafeUnpickler(stream, source, max_bytes).load()
        _check_tree(result, source)
        return result
    except SbExportError:
        raise
    except Exception as e:
        if isinstance(e, EOFError) or stream.hit_eof:
            raise TruncatedFile("pickle ends before its STOP opcode: the file is truncated",
                                source) from e
        if isinstance(e, RecursionError):
            raise ModelFileError("pickle nests too deeply", source) from e
        if isinstance(e, MemoryError):
            raise MemberTooLarge("pickle needs more memory than is available", source) from e
        msg = str(e)
        if isinstance(e, pickle.UnpicklingError) and any(h in msg.lower()
                                                         for h in _TRUNCATION_HINTS):
            raise TruncatedFile(f"pickle is truncated ({msg})", source) from e
        raise ModelFileError(f"not a readable pickle: {type(e).__name__}: {msg[:200]}",
                             source) from e
    finally:
        S.current_source.reset(token)
