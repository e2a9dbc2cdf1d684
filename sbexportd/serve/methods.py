"""The sbexport/* methods: read params, call the daemon, shape the result.

Each is served as a request method (`sbexport/open`) and as a
workspace/executeCommand command (`sbexport.open`, arguments [params]); the
connection (server.py) dispatches both here. A method is `f(conn, params, request)`
and returns its result, or an awaitable of it when it must wait (a load, a worker
thread): a small predict on a warm model is answered without leaving the call.
Every exception becomes a JSON-RPC error (errors.map_exception).

Keys of the protocol's own objects are camelCase (LSP style); what sbexportd itself
describes (inspect, parameter stats, manifests) keeps the snake_case the CLI prints."""
from __future__ import annotations

import builtins
import functools
import math
from typing import Any, Literal, overload

from ..errors import SbExportError
from ..export.transaction import check_out
from ..registry import Registry
from . import errors
from .arrays import JSON_ENCODINGS, ArrayError, Bulky, Out, decode, is_encoded, shape_of, wire
from .daemon import OpenOptions
from .framing import MSGPACK

METHODS: Registry[Any] = Registry("method")
COMMANDS: list[str] = []  # the executeCommand names: sbexport.open, ...


class Params:
    """Typed access to a params object; anything wrong is -32602 invalid params."""

    def __init__(self, raw: Any, method: str):
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise errors.invalid_params(f"{method}: params must be an object")
        self.raw, self.method = raw, method

    def _get(self, key: str, types: tuple, what: str, default=None, required: bool = False):
        value = self.raw.get(key)
        if value is None:
            if required:
                raise errors.invalid_params(f"{self.method}: {key} is required ({what})")
            return default
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise errors.invalid_params(f"{self.method}: {key} must be {what}, got {type(value).__name__}")
        return value

    # Named for the JSON types they read; in this class body `str`, `bool` and `int` are
    # these methods, so annotations name the builtins as builtins.*. With a default or
    # required=True an accessor never answers None (the overloads say so).
    @overload
    def str(self, key: builtins.str, default: builtins.str, required: builtins.bool = False) -> builtins.str: ...
    @overload
    def str(self, key: builtins.str, default: None = None, *, required: Literal[True]) -> builtins.str: ...
    @overload
    def str(self, key: builtins.str, default: None = None, required: builtins.bool = False) -> builtins.str | None: ...
    def str(self, key, default=None, required=False):
        return self._get(key, (str,), "a string", default, required)

    @overload
    def path(self, key: builtins.str, required: Literal[True] = True) -> builtins.str: ...
    @overload
    def path(self, key: builtins.str, required: builtins.bool) -> builtins.str | None: ...
    def path(self, key, required=True):
        """A file or folder name: a non-empty string, valid Unicode, no NUL byte."""
        value = self.str(key, required=required)
        if value is None:
            return None
        if not value.strip():
            raise errors.invalid_params(f"{self.method}: {key} is empty; expected a path")
        if "\x00" in value:
            raise errors.invalid_params(f"{self.method}: {key} holds a NUL byte; expected a path")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise errors.invalid_params(f"{self.method}: {key} is not valid Unicode (a lone surrogate); "
                                        "expected a path") from None
        return value

    def bool(self, key: builtins.str, default: builtins.bool) -> builtins.bool:
        return self._get(key, (bool,), "true or false", default)

    @overload
    def int(self, key: builtins.str, default: builtins.int) -> builtins.int: ...
    @overload
    def int(self, key: builtins.str, default: None = None) -> builtins.int | None: ...
    def int(self, key, default=None):
        return self._get(key, (int,), "an integer", default)

    @overload
    def str_list(self, key: builtins.str, default: list[builtins.str]) -> list[builtins.str]: ...
    @overload
    def str_list(self, key: builtins.str, default: None = None) -> list[builtins.str] | None: ...
    def str_list(self, key, default=None):
        value = self._get(key, (list,), "a list of strings", default)
        if value is not None and not all(isinstance(v, str) for v in value):
            raise errors.invalid_params(f"{self.method}: {key} must be a list of strings")
        return value

    def frame_stack(self, key: builtins.str, default: builtins.int | builtins.str | None,
                    minimum: builtins.int = 1) -> builtins.int | builtins.str | None:
        """A number of frames for SB2's VecFrameStack (minimum..64), or "auto" (the zoo's
        config.yml beside the model)."""
        from ..model import MAX_FRAME_STACK
        value = self.raw.get(key)
        if value is None:
            return default
        if value != "auto" and (type(value) is not int or not minimum <= value <= MAX_FRAME_STACK):
            raise errors.invalid_params(f"{self.method}: {key} must be a number of frames from {minimum} to "
                                        f"{MAX_FRAME_STACK} or \"auto\", got {value!r:.40}")
        return value

    def choice(self, key: builtins.str, choices: tuple[builtins.str, ...], default: builtins.str) -> builtins.str:
        value = self.str(key, default)
        if value not in choices:
            raise errors.invalid_params(f"{self.method}: {key} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def model_id(self) -> builtins.str:
        return self.str("modelId", required=True)

    def encoding(self) -> builtins.str:
        return self.choice("encoding", JSON_ENCODINGS, "list")


def method(name: str):
    """Register a method `f(conn, params: Params, request)` (sync or async)."""
    def deco(fn):
        METHODS.add(name, fn)
        COMMANDS.append(name.replace("/", "."))
        return fn
    return deco


# -- the methods ----------------------------------------------------------------------------
@method("sbexport/open")
async def open_model(conn, p: Params, req):
    from ..model import BACKENDS
    from ..understand.context import ALGORITHMS
    algo = p.str("algo")
    if algo is not None and algo not in ALGORITHMS:
        raise errors.invalid_params(f"{p.method}: algo must be one of {', '.join(ALGORITHMS)}")
    activation = p.str("activation")  # (an unknown one: UnknownActivation, before anything is built)
    warm = p.str_list("backends", ["numpy"])
    unknown = [b for b in warm if b not in BACKENDS]
    if unknown:
        raise errors.ServeError(errors.BACKEND_UNAVAILABLE, f"unknown backend {', '.join(unknown)[:200]}",
                                "backend_unavailable")
    frame_stack = p.frame_stack("frameStack", None)
    path, vecnormalize = p.path("path"), p.path("vecnormalize", required=False)
    roots = conn.daemon.roots
    roots.check(path, "path")
    if vecnormalize not in (None, "auto"):
        roots.check(vecnormalize, "vecnormalize")
    opts = OpenOptions.make(path, vecnormalize, algo, activation, frame_stack)
    return await conn.daemon.open(conn.id, opts, warm=tuple(warm), progress=req.progress(p.raw), token=req.token)


@method("sbexport/inspect")
async def inspect_model(conn, p: Params, req):
    entry = await conn.daemon.use(p.model_id())
    return {"modelId": entry.model_id, **entry.model.inspect()}


@method("sbexport/parameters")
async def parameters(conn, p: Params, req):
    entry = await conn.daemon.use(p.model_id())
    names = p.str_list("names")
    values, encoding = p.bool("values", False), p.encoding()
    rows = entry.param_stats()
    if names is not None:
        missing = sorted(set(names) - {r["name"] for r in rows})
        if missing:
            raise errors.invalid_params(f"{p.method}: no parameter named {', '.join(missing[:5])}", "unknown_parameter")
        rows = [r for r in rows if r["name"] in set(names)]
    params = entry.model.archive.params
    out = [dict(r, value=Out(params[r["name"]], encoding)) if values else dict(r) for r in rows]
    return Bulky.maybe({"modelId": entry.model_id, "count": len(out), "totalValues": sum(r["size"] for r in out),
                        "parameters": out}, [params[r["name"]] for r in rows] if values else [])


@method("sbexport/predict")
def predict(conn, p: Params, req):
    """A small predict on a warm model is computed here, on the event loop; anything
    else (a load, a large batch, a backend to build) continues on the work pool."""
    from ..model import BACKENDS
    daemon, mid = conn.daemon, p.model_id()
    backend = p.str("backend")
    if backend is not None and backend not in BACKENDS:
        raise errors.ServeError(errors.BACKEND_UNAVAILABLE, f"unknown backend {backend!r}; choose one of "
                                f"{', '.join(BACKENDS)}", "backend_unavailable")
    ask = _Ask(p.encoding(), p.bool("deterministic", True), p.int("seed"), p.str_list("outputs"),
               req.encoding == MSGPACK if req is not None else False)
    values = count_values(p.raw.get("obs"), daemon.max_predict_values)
    entry = daemon.lookup(mid)
    if entry is not None and values <= 1 << 16:
        obs, state, mask = array_params(p)
        if daemon.predict_inline(entry, backend, _size(obs)):
            outputs = output_names(entry.model.spec, ask.wanted) if ask.wanted is not None else None
            result = entry.model.predict(obs, state, mask, ask.deterministic, backend, ask.seed, outputs)
            return _predict_result(entry, mid, backend, ask, result, outputs)
        return _predict_later(daemon, entry, mid, p, (obs, state, mask), backend, ask)
    return _predict_later(daemon, entry, mid, p, None, backend, ask)


class _Ask:
    __slots__ = ("encoding", "deterministic", "seed", "wanted", "msgpack")

    def __init__(self, encoding, deterministic, seed, wanted, msgpack):
        self.encoding, self.deterministic, self.seed, self.wanted, self.msgpack = (encoding, deterministic, seed,
                                                                                   wanted, msgpack)


async def _predict_later(daemon, entry, mid, p, arrays, backend, ask: _Ask):
    if arrays is None:  # building a big array from nested lists takes a while: not on the loop
        arrays = await daemon.run(daemon.work, array_params, p)
    obs, state, mask = arrays
    if entry is None:
        entry = await daemon.use(mid)
    outputs = output_names(entry.model.spec, ask.wanted) if ask.wanted is not None else None
    result = await daemon.predict(entry, obs, state=state, mask=mask, deterministic=ask.deterministic,
                                  seed=ask.seed, backend=backend, outputs=outputs)
    return _predict_result(entry, mid, backend, ask, result, outputs)


def _predict_result(entry, mid, backend, ask: _Ask, result, outputs):
    if ask.wanted is not None and not ask.deterministic and "actions" not in outputs:
        result.pop("actions", None)
    answer = {"modelId": mid, "backend": backend or entry.model.default_backend}
    if sum(v.size for v in result.values()) > Bulky.ELEMENTS:  # encoded on a worker thread
        answer["outputs"] = {k: Out(v, ask.encoding) for k, v in result.items()}
        return Bulky(answer)
    answer["outputs"] = {k: wire(v, ask.encoding, ask.msgpack) for k, v in result.items()}
    return answer


@method("sbexport/export")
async def export(conn, p: Params, req):
    to = p.raw.get("to")
    if isinstance(to, list) and to and all(isinstance(t, str) for t in to):
        pass
    elif not isinstance(to, str) or not to:
        raise errors.invalid_params(f"{p.method}: to must be a target name, 'a,b', a list of names or 'all'")
    out = p.path("out")
    conn.daemon.roots.check(out, "out")
    try:  # (the export transaction checks it again; a bad out is a bad param)
        check_out(out, forbidden=[conn.daemon.exports.root])
    except SbExportError as e:
        raise errors.invalid_params(f"{p.method}: out: {e}") from None
    results, failed = await conn.daemon.export(
        p.model_id(), to, out, force=p.bool("force", False), verify=p.bool("verify", True),
        all_or_nothing=p.bool("allOrNothing", False), progress=req.progress(p.raw), token=req.token)
    failures = [{"target": name, "ok": False, "error": errors.error_object(errors.map_exception(e))}
                for name, e in failed]
    if not results:  # nothing written: the request failed
        raise errors.none_exported(failed, failures)
    return {"modelId": p.model_id(), "out": out, "results": results, "failed": failures, "complete": not failed}


@method("sbexport/evaluate")
async def evaluate(conn, p: Params, req):
    """Episodes of gymnasium's env for an SB2 file or an export folder (sbexportd.evaluate)."""
    from ..evaluate import MAX_EPISODES
    from ..evaluate import evaluate as run_episodes
    from ..model import BACKENDS
    path = p.path("path")
    conn.daemon.roots.check(path, "path")  # (--root: an SB2 file or an export folder inside the roots)
    vecnormalize = p.path("vecnormalize", required=False) or "auto"
    if vecnormalize != "auto":
        conn.daemon.roots.check(vecnormalize, "vecnormalize")
    episodes = p.int("episodes", 10)
    if not 1 <= episodes <= MAX_EPISODES:
        raise errors.invalid_params(f"{p.method}: episodes must be from 1 to {MAX_EPISODES}")
    backend = p.choice("backend", tuple(BACKENDS), "numpy")
    call = functools.partial(run_episodes, path, p.str("env"), episodes, seed=p.int("seed", 0), backend=backend,
                             vecnormalize=vecnormalize, frame_stack=p.frame_stack("frameStack", "auto", minimum=0),
                             cancelled=req.token.cancelled, confine=conn.daemon.roots.confine)
    result = await conn.daemon.run(conn.daemon.work, call, token=req.token)
    return result.as_dict()


@method("sbexport/close")
def close_model(conn, p: Params, req):
    return conn.daemon.close(conn.id, p.model_id())


@method("sbexport/status")
def status(conn, p: Params, req):
    return conn.daemon.status()


@method("sbexport/targets")
def targets(conn, p: Params, req):
    from ..export.targets import TARGETS
    return {"targets": [{"name": t.name, "summary": t.summary} for t in TARGETS.values()]}


# -- the predict contract's params (also read by sbexportd.deploy.ray) -----------------------------
def count_values(value, limit: int, setting: str = "--max-predict-values") -> int:
    """How many observation values a predict's `obs` holds, without decoding it: the
    shape of a binary array, or the nested lists' lengths along their first elements
    (a ragged list is caught when it is decoded). Over `limit` (the daemon's
    --max-predict-values, named by `setting`): refused before anything is allocated for it."""
    if is_encoded(value):
        shape = shape_of(value)
        data = value["data"]
        if shape is not None:
            n = math.prod(shape)
        else:
            n = len(data) if isinstance(data, (list, str, bytes)) else 0
    elif type(value) is dict:  # HER: the goal dict
        n = sum(count_values(v, limit, setting) for v in value.values())
    else:
        n = 1
        while type(value) is list and value:
            n *= len(value)
            value = value[0]
    if n > limit:
        raise errors.ServeError(errors.MESSAGE_TOO_LARGE, f"sbexport/predict: obs holds {n} values; at most "
                                f"{limit} are taken per predict ({setting})", "batch_too_large")
    return n


def _size(obs) -> int:
    if isinstance(obs, dict):
        return sum(int(getattr(v, "size", 0)) for v in obs.values())
    return int(obs.size)


def array_params(p: Params):
    """obs (required; a goal dict for HER), state and mask, decoded (bad_observation)."""
    arrays = _array_param(p, "obs", required=True, goal=True), _array_param(p, "state"), _array_param(p, "mask")
    for key in ("obs", "state", "mask"):  # decoded: nested lists (~32 bytes a number) are freed now
        if type(p.raw.get(key)) is list:
            p.raw[key] = None
    return arrays


def _array_param(p: Params, key: str, required: bool = False, goal: bool = False):
    value = p.raw.get(key)
    if value is None:
        if required:
            raise errors.invalid_params(f"{p.method}: {key} is required (a list of numbers or {{dtype, shape, data}})")
        return None
    try:
        if goal and isinstance(value, dict) and not is_encoded(value):  # HER: the goal dict, by key
            return {str(k): decode(v, f"{key}.{k}") for k, v in value.items()}
        return decode(value, key)
    except ArrayError as e:
        raise errors.ServeError(errors.BAD_OBSERVATION, str(e), "bad_observation") from None


def output_names(spec, wanted: list[str]) -> tuple[str, ...]:
    """Requested names -> the spec's output names; `probs` covers probs_<i>, and a
    recurrent policy always returns its state."""
    have = list(spec.outputs)
    chosen: list[str] = []
    for name in wanted:
        match = [k for k in have if k == name or (name == "probs" and k.startswith("probs_"))]
        if not match:
            raise errors.invalid_params(f"sbexport/predict: this model has no output {name!r}; it has "
                                        f"{', '.join(sorted(have))}", "unknown_output")
        chosen += [k for k in match if k not in chosen]
    if spec.stateful and "state" in have and "state" not in chosen:
        chosen.append("state")
    return tuple(chosen)
