"""What every connection shares: the open models and their warm cache, the
executors, the export cache and the counters. Connections come and go; this stays.

Threads: the event loop only does cheap work (lookups, small NumPy predicts); loads,
backend builds and large predicts run on `work`, exports on `export_pool`, so a slow
export never holds up a predict (and a predict never waits behind an export)."""
from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import os
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import Cancelled, SbExportError
from . import errors
from .arrays import ENCODINGS
from .auth import Throttle
from .roots import Roots

PROTOCOL_VERSION = "1.1"  # what 1.1 added: protocol.md, Versioning
STOP_GRACE = 10.0  # seconds a stop waits for running work before the process exits regardless
# Predicts up to this many observation values run on the event loop (no thread hop):
# tens of microseconds with the fast path; larger ones go to the work pool, where
# several run at once on every core.
INLINE_PREDICT_VALUES = 1024  # (the NumPy reference, milliseconds a call in TF1's arithmetic, never runs inline)

# The connection a request came from: the work pools serve connections in turns.
current_connection: contextvars.ContextVar[int | None] = contextvars.ContextVar("sbexportd_connection",
                                                                                default=None)


class FairExecutor(Executor):
    """A thread pool that serves its submitters in turns: each connection has its own
    queue and the threads take one task from each connection with work in round-robin
    order, so a connection with a hundred queued predicts delays another's by one
    predict, not a hundred. The key is `current_connection` at submit time. Its tasks
    read (predicts, loads, decoding): its threads are daemon threads."""

    def __init__(self, max_workers: int, thread_name_prefix: str):
        self.max_workers = max(1, max_workers)
        self._prefix = thread_name_prefix
        self._queues: OrderedDict[Any, deque] = OrderedDict()
        self._cv = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._shutdown = False

    def submit(self, fn, /, *args, **kwargs) -> Future:
        f: Future = Future()
        key = current_connection.get()
        with self._cv:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._queues.setdefault(key, deque()).append((f, fn, args, kwargs))
            if self._idle == 0 and len(self._threads) < self.max_workers:
                t = threading.Thread(target=self._work, name=f"{self._prefix}_{len(self._threads)}", daemon=True)
                self._threads.append(t)
                t.start()
            else:
                self._cv.notify()
        return f

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._queues and not self._shutdown:
                    self._idle += 1
                    self._cv.wait()
                    self._idle -= 1
                if not self._queues:
                    return
                key, queue = next(iter(self._queues.items()))
                f, fn, args, kwargs = queue.popleft()
                if queue:
                    self._queues.move_to_end(key)  # the next task comes from the next connection
                else:
                    del self._queues[key]
            if not f.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as e:  # noqa: BLE001 - handed to whoever waits
                f.set_exception(e)
            else:
                f.set_result(result)
            del f, fn, args, kwargs

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._cv:
            self._shutdown = True
            if cancel_futures:
                for queue in self._queues.values():
                    for f, *_ in queue:
                        f.cancel()
                self._queues.clear()
            self._cv.notify_all()
        if wait:
            for t in self._threads:
                t.join()


class CancelToken:
    """Set by $/cancelRequest, window/workDoneProgress/cancel, shutdown or a lost
    client; checked by long work between its stages."""

    __slots__ = ("_set", "_probes")

    def __init__(self):
        self._set = False  # a plain flag (one writer, readers poll): one per request, no Event needed
        self._probes: list[Callable[[], bool]] = []

    def cancel(self) -> None:
        self._set = True

    def watch(self, probe: Callable[[], bool]) -> None:
        self._probes.append(probe)

    def cancelled(self) -> bool:
        if not self._set and self._probes and any(p() for p in self._probes):
            self._set = True
        return self._set

    def check(self, what: str = "request") -> None:
        if self.cancelled():
            raise Cancelled(f"{what} cancelled; nothing was written")


NO_CANCEL = CancelToken()


class NullProgress:
    def begin(self, message: str | None = None) -> None: ...
    def report(self, message: str | None = None, percentage: float | None = None) -> None: ...
    def end(self, message: str | None = None) -> None: ...


@dataclass(frozen=True)
class OpenOptions:
    """What identifies a model: the same options always give the same modelId."""

    path: str
    vecnormalize: str | None = None
    algo: str | None = None
    activation: str | None = None
    frame_stack: int | str | None = None  # SB2's VecFrameStack(n) in front of the policy, or "auto"

    @classmethod
    def make(cls, path: str, vecnormalize: str | None = None, algo: str | None = None,
             activation: str | None = None, frame_stack: int | str | None = None) -> OpenOptions:
        def absolute(p: str) -> str:  # not resolved: what a symlink points to is not the client's business
            return os.path.abspath(os.path.expanduser(p))
        vn = None if vecnormalize is None else ("auto" if vecnormalize == "auto" else absolute(vecnormalize))
        return cls(absolute(path), vn, algo, activation, frame_stack)

    @property
    def model_id(self) -> str:
        key = asdict(self)
        if key["frame_stack"] is None:  # the modelIds of files opened without it stay what they were
            del key["frame_stack"]
        return "m-" + hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def _stamp(path: str) -> tuple[int, int, int, int, int]:
    """What tells a changed file: an in-place edit can restore the mtime (touch -d,
    os.utime) but not the ctime, which only the kernel sets."""
    st = os.stat(path)
    return st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_dev


def _probe(path: str) -> tuple[int, int, int, int, int] | None:
    """A watched file's stamp, None while it does not exist (its appearing is a change)."""
    try:
        return _stamp(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _same(path: str, stamp) -> bool:
    try:
        return _probe(path) == stamp
    except OSError:
        return False


def _digest(path: str, confine) -> str | None:
    """(sidecar files) The sha256 of a regular file, None when there is none, so that a
    touched but unchanged config.yml keeps the warm entry. Read only inside --root."""
    from ..read.files import is_regular
    if not is_regular(path):
        return None
    try:
        return _file_sha256(path, confine, "a file beside the model")
    except (OSError, SbExportError) as e:  # unreadable or outside --root: never equal to a digest
        return f"unreadable: {type(e).__name__}"


def _sidecars(opts: OpenOptions, stats_source: str | None) -> list[str]:
    """The files beside the model that this load read or would have read had they
    existed: the zoo's config.yml (exports read it whatever the options: the manifest's
    env_wrappers, the sb3 and rl-zoo3 settings), with "auto" VecNormalize or frame
    stacking the statistics candidates too; for the statistics used, the config.yml and
    ret_rms.pkl beside them. A change to any (one appearing or going included) can
    change the model or its exports."""
    from ..read import statistics_sidecars, zoo_sidecars
    from ..read.vecnormalize import NAMES
    zoo = [str(p) for p in zoo_sidecars(opts.path)]  # config.yml first, then the statistics candidates
    paths = zoo if "auto" in (opts.vecnormalize, opts.frame_stack) else zoo[:1]
    if opts.vecnormalize not in (None, "auto") and os.path.isdir(opts.vecnormalize):
        paths += [os.path.join(opts.vecnormalize, n) for n in NAMES]  # the folder's first found is read
    if stats_source:
        paths += [stats_source, *(str(p) for p in statistics_sidecars(stats_source))]
    return list(dict.fromkeys(p for p in paths if p != opts.path))


def _file_sha256(path: str, confine=None, what: str = "an SB2 .zip or .pkl model") -> str:
    """(reload check) Regular files only, size first: see sbexportd.read.files."""
    from ..read import Limits
    from ..read.files import open_regular
    lim = Limits()
    fp, _ = open_regular(path, max(lim.max_total_bytes, lim.max_pickle_bytes), confine=confine, what=what)
    h = hashlib.sha256()
    with fp:
        for chunk in iter(lambda: fp.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Entry:
    """A loaded model in the cache: the Model keeps its spec and warm backends."""

    def __init__(self, model_id: str, options: OpenOptions, model, stamps: dict[str, Any], seconds: float,
                 digests: dict[str, str | None] | None = None):
        self.model_id, self.options, self.model = model_id, options, model
        self.stamps = stamps  # path -> stamp (None: absent) of the model file and its sidecars
        self.digests = dict(digests or {})  # sidecar path -> sha256 (None: absent), as loaded
        self.sha256 = model.archive.sha256
        self.load_seconds = seconds
        self.loaded_at = time.time()
        self.last_used = time.time()
        self.uses = 0
        self.backends: set[str] = set()
        self._lock = threading.Lock()
        self._param_stats: list[dict[str, Any]] | None = None
        self.param_bytes = int(sum(np.asarray(v).nbytes for v in model.archive.params.values()))
        vn = model.vecnormalize
        h = hashlib.sha256(json.dumps([self.sha256, model.archive.path.name, options.algo, options.activation,
                                       model.spec.frame_stack or 0, __version__]).encode())
        if vn is not None:  # the statistics themselves, wherever they were found
            h.update(np.ascontiguousarray(vn.mean, np.float64).tobytes())
            h.update(np.ascontiguousarray(vn.var, np.float64).tobytes())
            h.update(repr((vn.epsilon, vn.clip_obs, vn.norm_obs, vn.source)).encode())
        if self.digests:  # config.yml and the statistics as read: the sb3 and rl-zoo3 targets read them too
            h.update(json.dumps(sorted(self.digests.items())).encode())
        self.identity = h.hexdigest()  # what an export of this model depends on

    def fresh(self) -> bool:
        return all(_same(p, s) for p, s in self.stamps.items())

    def backend(self, name: str):
        with self._lock:  # build once even when two requests ask at the same time
            impl = self.model.backend(name)
            self.backends.add(name)
            return impl

    def param_stats(self) -> list[dict[str, Any]]:
        if self._param_stats is None:
            from ..params import stats
            self._param_stats = stats(self.model.archive.params)
        return self._param_stats

    def summary(self) -> dict[str, Any]:
        spec, archive = self.model.spec, self.model.archive
        return {"file": str(archive.path), "format": archive.format, "sha256": archive.sha256,
                "algorithm": spec.algo, "policy": spec.policy,
                "observation_space": spec.observation_space.describe(),
                "action_space": spec.action_space.describe(),
                "input": {"name": "obs", "dtype": spec.input_dtype, "shape": [None, *spec.observation_space.shape]},
                "recurrent": ({"n_lstm": spec.recurrent, "state_shape": [None, spec.state_size]}
                              if spec.recurrent else None),
                "frame_stack": ({"n": spec.frame_stack, "state_shape": [None, spec.state_size]}
                                if spec.frame_stack else None),
                "goal_keys": [k for k, _ in spec.goal_observation.spaces] if spec.goal_observation else None,
                "outputs": sorted(spec.outputs), "vecnormalize": bool(spec.vecnormalize)}

    def fast_path(self) -> dict[str, Any]:
        return self.model.fast_path.as_dict()


class Daemon:
    def __init__(self, *, max_models: int = 16, token: str | None = None, max_message_bytes: int = 256 << 20,
                 workers: int | None = None, export_workers: int = 1, export_cache: int = 32,
                 max_predict_values: int = 1 << 24, max_in_flight: int = 32, max_connections: int = 256,
                 header_timeout: float = 10.0, idle_timeout: float = 3600.0,
                 allow_origins: tuple[str, ...] = (), roots: tuple[str, ...] = ()):
        if max_models < 1:
            raise ValueError("--max-models must be at least 1")
        if max_in_flight < 1 or max_connections < 1 or max_predict_values < 1:
            raise ValueError("--max-in-flight, --max-connections and --max-predict-values must be at least 1")
        self.max_models = max_models
        self.token = token  # required on network connections when set (auth.py)
        self.throttle = Throttle()
        self.allow_origins = tuple(allow_origins)  # WebSocket Origin headers let in (browsers)
        self.roots = Roots(roots)  # --root: the folders clients may read and write; none = anywhere
        self.stop_deadline: float | None = None
        self.max_message_bytes = max_message_bytes
        self.max_predict_values = max_predict_values
        self.max_in_flight = max_in_flight
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.started = time.time()
        self._t0 = time.monotonic()
        self._lock = threading.RLock()
        self.registry: dict[str, OpenOptions] = {}  # open modelIds (any connection's)
        self.holders: dict[str, set[int]] = {}  # modelId -> connections that opened it
        self.cache: OrderedDict[str, Entry] = OrderedDict()  # loaded models, least recently used first
        self._loading: dict[str, Future] = {}
        self.counters: Counter = Counter()
        self.by_method: Counter = Counter()
        self.connections: set = set()
        self.connections_total = 0
        self.in_flight = 0
        self.work = FairExecutor(workers or min(8, (os.cpu_count() or 1) + 2), "sbexportd-work")
        # exports write files: a standard pool, whose threads a stop waits for
        self.export_pool = ThreadPoolExecutor(max_workers=max(1, export_workers), thread_name_prefix="sbexportd-export")
        from .exports import ExportCache
        self.exports = ExportCache(export_cache)

    # -- capabilities and status -------------------------------------------------
    def capabilities(self) -> dict[str, Any]:
        from ..export.targets import TARGETS
        from ..model import BACKENDS
        from ..understand.context import ALGORITHMS
        return {"version": __version__, "protocolVersion": PROTOCOL_VERSION, "targets": list(TARGETS),
                "algorithms": list(ALGORITHMS), "backends": list(BACKENDS), "encodings": list(ENCODINGS)}

    def status(self) -> dict[str, Any]:
        now = time.time()
        with self._lock:
            models = [{"modelId": mid, "path": e.options.path, "algorithm": e.model.spec.algo,
                       "policy": e.model.spec.policy, "open": mid in self.registry,
                       "connections": len(self.holders.get(mid, ())), "backends": sorted(e.backends),
                       "defaultBackend": e.model.default_backend, "fastPath": e.fast_path(),
                       "uses": e.uses, "idleSeconds": round(now - e.last_used, 3),
                       "loadSeconds": round(e.load_seconds, 3), "parameterBytes": e.param_bytes}
                      for mid, e in reversed(self.cache.items())]
            c = self.counters
            return {"version": __version__, "protocolVersion": PROTOCOL_VERSION, "pid": os.getpid(),
                    "uptimeSeconds": round(time.monotonic() - self._t0, 3), "rssBytes": rss_bytes(),
                    "models": models, "openModels": len(self.registry),
                    "cache": {"maxModels": self.max_models, "loaded": len(self.cache), "hits": c["hits"],
                              "misses": c["misses"], "reloads": c["reloads"], "evictions": c["evictions"]},
                    "exportCache": self.exports.status(),
                    "requests": {"served": c["served"], "failed": c["failed"], "inFlight": self.in_flight,
                                 "byMethod": dict(self.by_method)},
                    "connections": {"open": len(self.connections), "total": self.connections_total,
                                    "refused": c["refused_connections"], "max": self.max_connections},
                    "limits": {"maxMessageBytes": self.max_message_bytes,
                               "maxPredictValues": self.max_predict_values, "maxInFlight": self.max_in_flight,
                               "headerTimeout": self.header_timeout, "idleTimeout": self.idle_timeout},
                    "security": {"auth": self.token is not None, "roots": self.roots.describe(),
                                 "allowedOrigins": list(self.allow_origins),
                                 "refused": {"auth": c["authFailures"], "origin": c["originRefused"],
                                             "http": c["httpRefused"]}}}

    # -- connections -----------------------------------------------------------------
    def connection_opened(self, conn) -> None:
        with self._lock:
            self.connections.add(conn)
            self.connections_total += 1

    def connection_closed(self, conn) -> None:
        """A client that leaves releases its models (they stay warm in the cache)."""
        with self._lock:
            self.connections.discard(conn)
            for mid in [m for m, h in self.holders.items() if conn.id in h]:
                self._release(mid, conn.id, evict=False)

    def count_response(self, ok: bool) -> None:
        self.counters["served"] += 1
        if not ok:
            self.counters["failed"] += 1

    # -- models -------------------------------------------------------------------------
    async def open(self, conn_id: int, opts: OpenOptions, *, warm: tuple[str, ...] = ("numpy",),
                   progress=None, token: CancelToken = NO_CANCEL) -> dict[str, Any]:
        progress = progress or NullProgress()
        mid = opts.model_id
        start = time.perf_counter()
        progress.begin(f"opening {Path(opts.path).name}")
        try:
            token.check("open")
            entry, hit = await self._entry(mid, opts, progress)
            for i, name in enumerate(warm):
                if name not in entry.backends:
                    token.check("open")
                    progress.report(f"building the {name} backend", 50 + 50 * i / len(warm))
                    await self.run(self.work, entry.backend, name)
            token.check("open")
        except BaseException:
            progress.end("failed")
            raise
        with self._lock:
            self.registry[mid] = opts
            self.holders.setdefault(mid, set()).add(conn_id)
        progress.end("loaded" if not hit else "already loaded")
        return {"modelId": mid, "cached": hit, "seconds": round(time.perf_counter() - start, 4),
                "summary": entry.summary(), "defaultBackend": entry.model.default_backend,
                "fastPath": entry.fast_path()}

    def close(self, conn_id: int, mid: str) -> dict[str, Any]:
        with self._lock:
            if mid not in self.registry:
                raise errors.unknown_model(mid)
            still = self._release(mid, conn_id, evict=True)
        return {"modelId": mid, "closed": True, "stillOpenElsewhere": still}

    def _release(self, mid: str, conn_id: int, *, evict: bool) -> bool:
        holders = self.holders.get(mid, set())
        holders.discard(conn_id)
        if holders:
            return True
        self.holders.pop(mid, None)
        self.registry.pop(mid, None)
        if evict:
            self.cache.pop(mid, None)
        return False

    def lookup(self, mid: str) -> Entry | None:
        """The warm, fresh entry of an open model, or None (then `use` loads it).
        Raises unknown_model for ids never opened, or closed."""
        with self._lock:
            if mid not in self.registry:
                raise errors.unknown_model(mid)
            e = self.cache.get(mid)
            if e is None or not e.fresh():
                return None
            self.cache.move_to_end(mid)
            self.counters["hits"] += 1
            e.uses += 1
            e.last_used = time.time()
            return e

    async def use(self, mid: str) -> Entry:
        e = self.lookup(mid)
        if e is None:
            e, _ = await self._entry(mid, self.registry[mid], NullProgress())
            e.uses += 1
        return e

    async def _entry(self, mid: str, opts: OpenOptions, progress) -> tuple[Entry, bool]:
        with self._lock:
            e = self.cache.get(mid)
            if e is not None and e.fresh():
                self.cache.move_to_end(mid)
                self.counters["hits"] += 1
                return e, True
            fut = self._loading.get(mid)
            if fut is None:  # one load per model, however many clients ask at once
                fut = self.work.submit(self._load, mid, opts, e, progress)
                self._loading[mid] = fut
                fut.add_done_callback(lambda f: self._loading.pop(mid, None))
        entry = await asyncio.shield(asyncio.wrap_future(fut))
        return entry, e is not None and entry is e  # kept warm: only stamps changed, not bytes

    def _load(self, mid: str, opts: OpenOptions, old: Entry | None, progress) -> Entry:
        """(work thread) Read and understand the file; keep the old entry if only its
        mtime changed, not its bytes."""
        start = time.perf_counter()
        try:
            stamps: dict[str, Any] = {opts.path: _stamp(opts.path)}  # FileNotFoundError -> file_not_found
        except OSError:
            with self._lock:  # gone from disk: the stale entry must not linger as if loaded
                if self.cache.get(mid) is old:
                    self.cache.pop(mid, None)
            raise
        if opts.vecnormalize not in (None, "auto"):
            os.stat(opts.vecnormalize)
        if old is not None:
            same_aux = all(_same(p, s) or _digest(p, self.roots.confine) == old.digests.get(p)
                           for p, s in old.stamps.items() if p != opts.path)
            if same_aux and _file_sha256(opts.path) == old.sha256:
                old.stamps.update({p: _probe(p) for p in old.stamps if p != opts.path})
                old.stamps[opts.path] = stamps[opts.path]
                with self._lock:
                    self.cache[mid] = old
                    self.cache.move_to_end(mid)
                    self.counters["hits"] += 1
                return old
            self.counters["reloads"] += 1
        progress.report("reading and understanding the file", 10)
        from ..model import load
        # stamped and hashed before the load, so that a change while it reads shows at the next use
        stamps.update({p: _probe(p) for p in _sidecars(opts, None)})
        digests = {p: _digest(p, self.roots.confine) for p in stamps if p != opts.path}
        model = load(opts.path, opts.vecnormalize, algo=opts.algo, activation=opts.activation,
                     frame_stack=opts.frame_stack, confine=self.roots.confine)  # sidecars: inside --root
        vn = model.vecnormalize
        source = vn.source if vn is not None and vn.source else None  # read under the confine: inside --root
        for p in _sidecars(opts, source):
            if p not in stamps:
                stamps[p], digests[p] = _probe(p), _digest(p, self.roots.confine)
        entry = Entry(mid, opts, model, stamps, 0.0, digests)
        progress.report("building the numpy backend", 40)
        entry.backend("numpy")
        progress.report("building and verifying the fast path", 60)
        fast = model.fast_path  # verified against the reference before it serves anything
        if fast.verified:
            entry.backends.add(fast.backend)
        entry.load_seconds = time.perf_counter() - start
        with self._lock:
            self.counters["misses"] += 1
            self.cache[mid] = entry
            self.cache.move_to_end(mid)
            while len(self.cache) > self.max_models:
                self.cache.popitem(last=False)
                self.counters["evictions"] += 1
        return entry

    # -- work ------------------------------------------------------------------------------
    async def run(self, pool: Executor, fn, *args, token: CancelToken | None = None):
        """fn(*args) on a pool thread. If the awaiting task is cancelled (shutdown), the
        thread is told through `token` and awaited, so it can clean up first, for up to
        STOP_GRACE seconds (a thread stuck in a converter must not hold the stop)."""
        fut = asyncio.get_running_loop().run_in_executor(pool, partial(fn, *args))
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            if token is not None:
                token.cancel()
            await asyncio.wait([fut], timeout=self.grace_left())
            if fut.done() and not fut.cancelled():
                fut.exception()  # it was cancelled; its own error no longer matters (retrieved: not logged)
            raise

    def predict_inline(self, e: Entry, backend: str | None, values: int) -> bool:
        """Whether a predict runs on the event loop: small ones on the warm fast path."""
        from ..realize.backends import FAST_CANDIDATES
        name = backend or e.model.default_backend
        return name in FAST_CANDIDATES and name in e.backends and values <= INLINE_PREDICT_VALUES

    async def predict(self, e: Entry, obs, *, state=None, mask=None, deterministic: bool = True,
                      seed: int | None = None, backend: str | None = None,
                      outputs: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        if backend is not None and backend not in e.backends:
            await self.run(self.work, e.backend, backend)
        return await self.run(self.work, e.model.predict, obs, state, mask, deterministic, backend, seed, outputs)

    async def export(self, mid: str, to, out: str, *, force: bool, verify: bool, all_or_nothing: bool = False,
                     progress=None, token: CancelToken = NO_CANCEL):
        """([results of the targets written], [(target, error) of those that failed])."""
        from ..export.core import resolve_targets
        names = resolve_targets(to)
        e = await self.use(mid)
        return await self.run(self.export_pool, self.exports.export, e, names, out, force, verify, all_or_nothing,
                              progress or NullProgress(), token, token=token)

    # -- stopping --------------------------------------------------------------------------
    def close_all(self) -> None:
        self.work.shutdown(wait=False, cancel_futures=True)
        self.export_pool.shutdown(wait=False, cancel_futures=True)
        self.exports.close()

    def stopping(self) -> float:
        """The daemon is stopping: running work has STOP_GRACE seconds from now (the
        first call). The deadline."""
        if self.stop_deadline is None:
            self.stop_deadline = time.monotonic() + STOP_GRACE
        return self.stop_deadline

    def grace_left(self) -> float:
        return max(0.0, self.stopping() - time.monotonic())

    def wait_idle(self) -> bool:
        """Whether the worker threads all ended within the stop's grace (after close_all)."""
        end = time.monotonic() + self.grace_left()
        for t in [t for t in threading.enumerate() if t.name.startswith("sbexportd-") and not t.daemon]:
            t.join(max(0.0, end - time.monotonic()))
            if t.is_alive():
                return False
        return True


def rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        try:
            import resource
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # peak, not current
        except Exception:  # noqa: BLE001 - no way to tell on this platform
            return None
