"""Inert stand-ins for the Python objects an SB2 save file refers to.

Nothing in here imports, calls or executes anything named by a file. A pickle
that says "the class stable_baselines.common.policies.MlpPolicy" gets a stand-in
class that only *records* that name; a pickled instance of such a class becomes
an instance of the stand-in that only *records* its state.

What the understanding layer can rely on
----------------------------------------
Stand-in classes (`is_standin_class(x)`; also the type of every stand-in
instance) have these class attributes:

    sb_module     "stable_baselines.common.policies"  (for by-value classes: the
                  class' own `__module__` as pickled, usually "__main__")
    sb_name       "MlpPolicy"   (the qualname as pickled)
    sb_known      True for names from SB2 / gym.spaces / gym.utils /
                  numpy.random / TF activations; False for anything else
                  (e.g. the zoo's utils.utils.CustomDQNPolicy, __main__.X)
    sb_by_value   True when cloudpickle stored the class by value (a class
                  defined in a user's __main__); then
    sb_bases      its bases as pickled (usually other stand-in classes, e.g.
                  stable_baselines.deepq.policies.FeedForwardPolicy), and
    sb_class_dict its class __dict__ as pickled (functions are InertFunction)
    sb_activation "relu", "tanh", ... when the name is a TensorFlow activation
                  (tensorflow.python.ops.gen_nn_ops.relu, ...), else None

Stand-in instances have:
    - the pickled state's str keys as ordinary attributes (`box.low`), except keys
      starting with "sb_" or dunder keys, which stay only in
    - `sb_state`: the raw state given to BUILD (None if there was none), and
    - `sb_args` / `sb_kwargs`: constructor arguments when the pickle called a
      known class (`GoalSelectionStrategy(0)` -> sb_args == (0,)) or gave
      NEWOBJ arguments.

Calling a stand-in class is refused (ForbiddenPickleGlobal) unless sb_known; a
known one returns an inert instance that records the arguments. The refusal is
in the metaclass, so it holds whichever unpickler is used.
"""
from __future__ import annotations

import contextvars
import threading
from typing import Any, ClassVar, cast

from sbexportd.errors import ForbiddenPickleGlobal

__all__ = [
    "StandIn", "StandInMeta", "standin_class", "by_value_class", "is_standin",
    "is_standin_class", "qualified_name", "InertFunction", "InertCode", "InertCell",
    "InertModule", "InertDescriptor", "InertObject", "EMPTY_CELL",
    "TF_ACTIVATIONS",
]

# The file being read, for error messages raised from places that do not know it
# (the metaclass). Set by safe_pickle.safe_loads.
current_source: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "sbexportd_current_source", default=None)

MAX_NAME_LEN = 512

# TensorFlow functions SB2 policies take as `act_fun` / `activ`, by name. The
# module a function was pickled from varies with the TF release
# (tf.nn.relu -> gen_nn_ops.relu, tf.tanh -> math_ops.tanh or gen_math_ops.tanh,
# tf.nn.swish -> nn_impl.swish, ...), so only the function name decides.
TF_ACTIVATIONS = {
    "relu": "relu", "relu6": "relu6", "crelu": "crelu", "elu": "elu", "selu": "selu",
    "tanh": "tanh", "sigmoid": "sigmoid", "softplus": "softplus",
    "softsign": "softsign", "leaky_relu": "leaky_relu", "swish": "swish",
    "silu": "swish", "gelu": "gelu", "identity": "identity", "linear": "identity",
    "softmax": "softmax", "log_softmax": "log_softmax", "hard_sigmoid": "hard_sigmoid",
}


class StandInMeta(type):
    """Metaclass of every stand-in class: refuses calls to unknown names."""

    # what every stand-in class carries (set in its namespace; defaults on StandIn)
    sb_module: str
    sb_name: str
    sb_known: bool
    sb_by_value: bool
    sb_bases: tuple
    sb_class_dict: dict

    def __call__(cls, *args, **kwargs):
        if not cls.sb_known:
            src = current_source.get()
            raise ForbiddenPickleGlobal(
                f"refusing to call {qualified_name(cls)}: only known Stable Baselines, "
                "gym and numpy.random names may be constructed by a model file "
                "(the name itself is kept as an inert reference)", src)
        inst = blank(cls)
        inst.__dict__["sb_args"] = tuple(args)
        inst.__dict__["sb_kwargs"] = dict(kwargs)
        return inst

    def __repr__(cls):
        kind = "by-value class" if cls.sb_by_value else "class"
        return f"<stand-in {kind} {qualified_name(cls)}>"

    def __reduce__(cls):  # never let a stand-in be pickled back out
        raise TypeError(f"{cls!r} is an inert stand-in and cannot be pickled")


class StandIn(metaclass=StandInMeta):
    """Base of all stand-in classes. Instances only hold data."""

    sb_module: str = ""
    sb_name: str = ""
    sb_known: bool = False
    sb_by_value: bool = False
    sb_bases: tuple = ()
    sb_class_dict: ClassVar[dict] = {}
    sb_activation: str | None = None
    sb_doc: str | None = None
    sb_enum_members: dict | None = None
    # instance defaults
    sb_state: Any = None
    sb_args: tuple = ()
    sb_kwargs: dict = {}  # noqa: RUF012 - a shared read-only default: a constructed stand-in gets its own

    def __setstate__(self, state: Any) -> None:
        d = self.__dict__
        d["sb_state"] = state
        parts = []
        if isinstance(state, dict):
            parts.append(state)
        elif isinstance(state, tuple) and len(state) == 2 and all(
                s is None or isinstance(s, dict) for s in state):
            parts.extend(s for s in state if s)  # (state, slotstate)
        for part in parts:
            for k, v in part.items():
                if type(k) is str and not k.startswith("sb_") and not (
                        k.startswith("__") and k.endswith("__")):
                    d[k] = v

    def __repr__(self):
        attrs = [k for k in self.__dict__ if not k.startswith("sb_")]
        extra = f" attrs={attrs}" if attrs else ""
        if self.__dict__.get("sb_args"):
            extra += f" args={self.sb_args!r}"
        return f"<stand-in {qualified_name(type(self))} instance{extra}>"

    def __reduce_ex__(self, protocol):
        raise TypeError(f"{self!r} is an inert stand-in and cannot be pickled")

    def sb_get(self, name: str, default: Any = None) -> Any:
        """The pickled attribute `name`, or `default`."""
        return self.__dict__.get(name, default)


def blank(cls: StandInMeta) -> StandIn:
    """An instance of the stand-in class `cls`, nothing of it called (object.__new__)."""
    return object.__new__(cast("type[StandIn]", cls))


def qualified_name(cls: Any) -> str:
    if isinstance(cls, StandInMeta):
        return f"{cls.sb_module}.{cls.sb_name}" if cls.sb_module else cls.sb_name
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', repr(cls))}"


def is_standin_class(obj: Any) -> bool:
    return isinstance(obj, StandInMeta)


def is_standin(obj: Any) -> bool:
    """True for stand-in instances (not classes)."""
    return isinstance(obj, StandIn)


def _is_known(module: str, name: str) -> bool:
    top = module.split(".")[0]
    if top == "stable_baselines":
        return True
    if module.startswith(("gym.spaces", "gym.utils")):
        return True
    if module == "numpy.random" or module.startswith("numpy.random."):
        return True
    return bool(top == "tensorflow" and name.rsplit(".", 1)[-1] in TF_ACTIVATIONS)


_cache: dict[tuple[str, str], StandInMeta] = {}
_cache_lock = threading.Lock()
_CACHE_MAX = 20000


def _check_name(module: object, name: object) -> None:
    if not isinstance(module, str) or not isinstance(name, str):
        raise TypeError("pickle global names must be str")
    if len(module) > MAX_NAME_LEN or len(name) > MAX_NAME_LEN:
        raise ForbiddenPickleGlobal(
            f"refusing pickle global with a {max(len(module), len(name))}-character "
            f"name (at most {MAX_NAME_LEN} expected)", current_source.get())


def standin_class(module: str, name: str, *, known: bool | None = None) -> StandInMeta:
    """The (cached) stand-in class for the global `module.name`."""
    _check_name(module, name)
    key = (module, name)
    cls = _cache.get(key)
    if cls is not None:
        return cls
    short = name.rsplit(".", 1)[-1] or "StandIn"
    activation = None
    if module.split(".")[0] == "tensorflow":
        activation = TF_ACTIVATIONS.get(short)
    ns = {
        "sb_module": module,
        "sb_name": name,
        "sb_known": _is_known(module, name) if known is None else known,
        "sb_by_value": False,
        "sb_bases": (),
        "sb_class_dict": {},
        "sb_activation": activation,
        "__qualname__": name,
        "__module__": __name__,
        "__slots__": (),  # instances still have StandIn's __dict__
    }
    cls = StandInMeta(short, (StandIn,), ns)
    with _cache_lock:
        if len(_cache) < _CACHE_MAX:
            cls = _cache.setdefault(key, cls)
    return cls


def by_value_class(name: Any, bases: Any, *, module: Any = "__main__",
                   doc: Any = None, enum_members: dict | None = None) -> StandInMeta:
    """A fresh (uncached) stand-in for a class cloudpickle stored by value."""
    if not isinstance(name, str):
        raise TypeError(f"class name must be str, got {type(name).__name__}")
    _check_name(module if isinstance(module, str) else "", name)
    if bases is None:
        bases = ()
    if not isinstance(bases, (tuple, list)):
        raise TypeError("class bases must be a tuple")
    ns = {
        "sb_module": module if isinstance(module, str) else "__main__",
        "sb_name": name,
        "sb_known": False,
        "sb_by_value": True,
        "sb_bases": tuple(bases),
        "sb_class_dict": {},
        "sb_activation": None,
        "sb_doc": doc if isinstance(doc, str) else None,
        "sb_enum_members": dict(enum_members) if enum_members else None,
        "__qualname__": name,
        "__module__": __name__,
        "__slots__": (),
    }
    return StandInMeta(name.rsplit(".", 1)[-1] or "StandIn", (StandIn,), ns)


def update_by_value_class(cls: Any, class_dict: Any) -> Any:
    """cloudpickle's _rehydrate_skeleton_class / _class_setstate, inertly: the
    class dict is recorded in sb_class_dict; nothing is set on the class."""
    if not (isinstance(cls, StandInMeta) and cls.sb_by_value):
        raise TypeError("only by-value stand-in classes can be rehydrated")
    if not isinstance(class_dict, dict):
        raise TypeError("class dict must be a dict")
    merged = dict(cls.sb_class_dict)
    merged.update(class_dict)
    type.__setattr__(cls, "sb_class_dict", merged)
    mod = class_dict.get("__module__")
    if isinstance(mod, str) and len(mod) <= MAX_NAME_LEN:
        type.__setattr__(cls, "sb_module", mod)
    doc = class_dict.get("__doc__")
    if isinstance(doc, str):
        type.__setattr__(cls, "sb_doc", doc)
    qn = class_dict.get("__qualname__")
    if isinstance(qn, str) and len(qn) <= MAX_NAME_LEN:
        type.__setattr__(cls, "sb_name", qn)
    return cls


# --- inert replacements for what cloudpickle rebuilds ------------------------
class _Inert:
    """Base of inert records: plain attribute bags that refuse re-pickling."""

    def __reduce_ex__(self, protocol):
        raise TypeError(f"{self!r} is inert and cannot be pickled")


class _EmptyCell(_Inert):
    def __repr__(self):
        return "<empty cell>"


EMPTY_CELL = _EmptyCell()


class InertCode(_Inert):
    """A code object cloudpickle stored. Never built into real code: only its
    names and constants are kept (consts may include nested InertCode)."""

    def __init__(self, args: tuple):
        self.co_name = None
        self.co_filename = None
        self.co_firstlineno = None
        self.co_consts: tuple = ()
        self.co_names: tuple = ()
        self.co_varnames: tuple = ()
        # CodeType(argcount, [posonlyargcount,] kwonlyargcount, nlocals, stacksize,
        # flags, codestring, consts, names, varnames, filename, name, firstlineno, ...)
        idx = next((i for i, a in enumerate(args) if isinstance(a, (bytes, bytearray))), None)
        if idx is not None:
            rest = list(args[idx + 1:]) + [None] * 6
            consts, names, varnames, filename, name, firstlineno = rest[:6]
            if isinstance(consts, tuple):
                self.co_consts = consts
            if isinstance(names, tuple):
                self.co_names = names
            if isinstance(varnames, tuple):
                self.co_varnames = varnames
            if isinstance(filename, str):
                self.co_filename = filename
            if isinstance(name, str):
                self.co_name = name
            if isinstance(firstlineno, int):
                self.co_firstlineno = firstlineno

    def __repr__(self):
        return f"<inert code {self.co_name!r} from {self.co_filename!r}>"


class InertCell(_Inert):
    def __init__(self, contents: Any = EMPTY_CELL):
        self.contents = contents

    def __repr__(self):
        return f"<inert cell {self.contents!r}>"


class InertFunction(_Inert):
    """A function cloudpickle stored by value (a learning-rate schedule, a
    lambda, a method of a by-value class). Not callable.

    Attributes: name, qualname, module, doc, code (InertCode or None),
    defaults, kwdefaults, closure_values (list; EMPTY_CELL for empty cells),
    globals (dict of the globals it referenced), dict, annotations.
    SB2's constant schedule `constfn(v)` shows up as name "func" with
    closure_values == [v]."""

    def __init__(self, code: Any = None, cell_count: Any = -1):
        self.code = code if isinstance(code, InertCode) else None
        # as pickled: fill() sets these from the file, unchecked
        self.name: Any = self.code.co_name if self.code else None
        self.qualname: Any = self.name
        self.module: Any = None
        self.doc: Any = None
        self.defaults: Any = None
        self.kwdefaults: Any = None
        self.annotations: Any = None
        self.dict: dict = {}
        self.globals: dict = {}
        self.closure_values: list = (
            [EMPTY_CELL] * cell_count if isinstance(cell_count, int) and 0 < cell_count < 4096
            else [])

    def fill(self, state: dict) -> None:
        """cloudpickle's _fill_function / _function_setstate, recorded."""
        for key, attr in (("name", "name"), ("__name__", "name"),
                          ("qualname", "qualname"), ("__qualname__", "qualname"),
                          ("module", "module"), ("__module__", "module"),
                          ("doc", "doc"), ("__doc__", "doc"),
                          ("defaults", "defaults"), ("__defaults__", "defaults"),
                          ("kwdefaults", "kwdefaults"), ("__kwdefaults__", "kwdefaults"),
                          ("annotations", "annotations"),
                          ("__annotations__", "annotations")):
            if key in state:
                setattr(self, attr, state[key])
        g = state.get("globals", state.get("__globals__"))
        if isinstance(g, dict):
            self.globals.update(g)
        d = state.get("dict")
        if isinstance(d, dict):
            self.dict.update(d)
        cv = state.get("closure_values")
        if cv is None and "__closure__" in state:
            cl = state["__closure__"]
            cv = [c.contents if isinstance(c, InertCell) else c for c in cl] if cl else []
        if isinstance(cv, (list, tuple)):
            self.closure_values = list(cv)

    def __repr__(self):
        return f"<inert function {self.module}.{self.qualname}>"


class InertModule(_Inert):
    """cloudpickle's subimport('tensorflow'): the module name only; nothing is imported."""

    def __init__(self, name: Any, vars: Any = None):
        self.name = name
        self.vars = vars if isinstance(vars, dict) else None

    def __repr__(self):
        return f"<inert module {self.name!r}>"


class InertDescriptor(_Inert):
    """classmethod(f) / staticmethod(f) / property(fget, ...) in a by-value class."""

    def __init__(self, kind: str, args: tuple):
        self.kind = kind
        self.args = args

    def __repr__(self):
        return f"<inert {self.kind}>"


class InertObject(_Inert):
    """Anything else cloudpickle rebuilds (bound methods, type vars, ...)."""

    def __init__(self, kind: str, args: tuple = ()):
        self.kind = kind
        self.args = args

    def __repr__(self):
        return f"<inert {self.kind}>"
