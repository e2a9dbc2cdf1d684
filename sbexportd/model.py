"""`sbexportd.load`: a read, understood model with warm backends."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import BackendUnavailable, BadObservation, InvalidArgument
from .read import ZooSettings, read_model, read_vecnormalize, read_zoo_config, zoo_settings
from .read.archive import Archive, VecNormalizeStats
from .read.files import Confine
from .realize.backends import BACKENDS, FAST_CANDIDATES
from .understand import understand
from .understand.spec import DictSpace, PolicySpec

if TYPE_CHECKING:
    from .environments import EnvWrapper
    from .realize.fast import FastPath

# Backends that do not bound their own memory get batches in chunks of at most this
# many rows and about CHUNK_VALUES observation values: a batch of a million
# observations then needs the reference's intermediate tensors for a chunk, not for
# the whole batch (the outputs are row-independent, and so is the sampling stream).
CHUNK_ROWS = 4096
CHUNK_VALUES = 1 << 18
MAX_FRAME_STACK = 64  # frames a VecFrameStack in front of the policy may hold


def load(path: str | Path, vecnormalize: str | Path | VecNormalizeStats | None = None, *,
         algo: str | None = None, activation: str | None = None, frame_stack: int | str | None = None,
         confine: Confine | None = None) -> Model:
    """Read an SB2 .zip or .pkl safely and understand its policy.

    vecnormalize: a vecnormalize.pkl / obs_rms.pkl path (or its folder), "auto" to
    decide as the zoo's enjoy.py did (its config.yml's `normalize`, or, without a
    config, the statistics beside the model: sbexportd.read.zoo_settings), or None.

    frame_stack: n > 1 puts SB2's VecFrameStack(n) in front of the policy, so that it
    takes single observations and carries the previous n - 1 as state; "auto" takes n
    from the zoo's config.yml (`frame_stack`); None or 0: the policy's own input.

    confine(path, what): run on the model file and every sidecar file (config.yml,
    statistics) before it is opened and on the file actually opened, now and whenever
    the model reads one later (inspect, exports); it raises PathNotAllowed for one that
    may not be read (`serve --root`)."""
    archive = read_model(path, confine=confine)
    stats = _resolve_vecnormalize(archive.path, vecnormalize, confine)
    frames = _resolve_frame_stack(archive.path, frame_stack, confine)
    spec = understand(archive, algo=algo, activation=activation, vecnormalize=stats, frame_stack=frames)
    return Model(archive, spec, stats, confine)


def _resolve_frame_stack(model_path: Path, frame_stack, confine: Confine | None) -> int:
    if frame_stack is None:
        return 0
    if str(frame_stack) == "auto":
        return zoo_settings(model_path, confine=confine).frame_stack
    try:
        n = int(frame_stack)
    except (TypeError, ValueError):
        n = -1
    if isinstance(frame_stack, bool) or n < 0 or n > MAX_FRAME_STACK:
        raise BadObservation(f"frame_stack must be 'auto' or a number of frames from 0 to {MAX_FRAME_STACK}, "
                             f"got {frame_stack!r:.40}", model_path)
    return n


def _resolve_vecnormalize(model_path: Path, vn, confine: Confine | None) -> VecNormalizeStats | None:
    if vn is None or isinstance(vn, VecNormalizeStats):
        return vn
    if str(vn) == "auto":
        settings = zoo_settings(model_path, confine=confine)
        if not settings.normalize or settings.statistics is None:
            return None
        return read_vecnormalize(settings.statistics, confine=confine)
    return read_vecnormalize(vn, confine=confine)


def _is_seed(value: object) -> bool:
    """What NumPy's generators take as a seed here: a non-negative integer."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and bool(value >= 0)


class Model:
    def __init__(self, archive: Archive, spec: PolicySpec, vecnormalize: VecNormalizeStats | None = None,
                 confine: Confine | None = None):
        self.archive = archive
        self.spec = spec
        self.vecnormalize = vecnormalize
        self.confine = confine  # load's check of the sidecar files, for those read later
        self._backends: dict[str, Any] = {}
        self._lock = threading.Lock()  # one build per backend, whichever thread asks first
        self._fast: FastPath | None = None  # once chosen
        self._fast_lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self.archive.path

    def zoo_settings(self) -> ZooSettings:
        """read.ZooSettings of the zoo's files beside this model (under load's confine)."""
        return zoo_settings(self.archive.path, confine=self.confine)

    def env_wrappers(self) -> list[EnvWrapper]:
        """The zoo's wrappers this agent was trained inside (config.yml `env_wrapper`,
        under load's confine): what an environment must be wrapped in to run it."""
        from .environments import env_wrappers
        return env_wrappers(self.zoo_config())

    def zoo_config(self) -> dict[str, Any]:
        """The zoo's config.yml beside this model (under load's confine), {} without one."""
        from .read.zoo_settings import config_of
        cand = config_of(self.archive.path)
        return read_zoo_config(cand, confine=self.confine) if cand is not None else {}

    # -- backends (built once, kept warm) ----------------------------------------
    def backend(self, name: str = "numpy", *, verified: bool = True):
        """The named backend, built once. `onnxruntime` is served only once it has
        reproduced the reference on this model (see `fast_path`), unless verified=False."""
        if name in FAST_CANDIDATES and verified and not self.fast_path.verified:
            raise BackendUnavailable(f"the {name} backend is not used for this model: "
                                     f"{self.fast_path.reason}", self.path)
        impl = self._backends.get(name)
        if impl is not None:
            return impl
        with self._lock:
            return self._build_backend(name)

    @property
    def fast_path(self):
        """realize.fast.FastPath: the default backend (the fastest one that reproduces
        the NumPy reference on seeded observations, else the reference) and why."""
        if self._fast is None:
            with self._fast_lock:
                if self._fast is None:
                    from .realize.fast import choose
                    self._fast = choose(self)
        return self._fast

    @property
    def default_backend(self) -> str:
        return self.fast_path.backend

    def _build_backend(self, name: str):
        if name not in self._backends:
            info = BACKENDS[name]
            try:
                impl = info.load()(self.spec)
            except ImportError as exc:  # its runtime is not installed (the `full` extra)
                raise BackendUnavailable(f"the {name} backend needs {exc.name or exc} (pip install "
                                         "'sbexportd[full]')", self.path) from exc
            self._backends[name] = impl
        return self._backends[name]

    # -- inference --------------------------------------------------------------------
    def predict(self, obs: Any, state: np.ndarray | None = None, mask: np.ndarray | None = None,
                deterministic: bool = True, backend: str | None = None, seed: int | None = None,
                outputs: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """SB2's predict(obs, state, mask, deterministic) and more: returns a dict with
        `actions` and, where they apply, `probs` (probs_<i>), `mean`, `std`, `values`,
        `q_values`, `state`. A single unbatched observation gives unbatched outputs.

        backend: None for the default (`default_backend`: the fastest verified one),
        or a name of BACKENDS."""
        batch, single = self._batch(obs)
        n = batch.shape[0]
        if self.spec.stateful:
            state = np.zeros((n, self.spec.state_size), np.float32) if state is None else \
                self._numbers(state, "state", np.float32)
            mask = np.zeros((n,), np.float32) if mask is None else self._numbers(mask, "mask", np.float32).reshape(-1)
            if state.shape != (n, self.spec.state_size) or mask.shape != (n,):
                raise BadObservation(f"recurrent policy: state must be ({n}, {self.spec.state_size}) and "
                                     f"mask ({n},); got {list(state.shape)} and {list(mask.shape)}", self.path)
        if not deterministic and seed is not None and not _is_seed(seed):
            raise InvalidArgument(f"seed must be a non-negative integer (or None), got {seed!r:.40}", self.path)
        impl = self.backend(backend or self.default_backend)
        rng = None if deterministic else np.random.default_rng(seed)
        rows = n if getattr(impl, "chunk_rows", None) else self._chunk_rows()
        if n <= rows and rng is None:  # the common case, without the chunking
            whole = impl.run(batch, state, mask, outputs)
            if single:
                return {k: np.asarray(v)[0] for k, v in whole.items()}
            return {k: np.asarray(v) for k, v in whole.items()}
        result: dict[str, np.ndarray] = {}
        for lo in range(0, max(n, 1), rows):  # outputs allocated once, after the first chunk
            sl = slice(lo, lo + rows)
            b, s, m = batch[sl], None if state is None else state[sl], None if mask is None else mask[sl]
            part = impl.run(b, s, m, outputs)
            if rng is not None:  # one stream across chunks: the same draws as one call
                part["actions"] = impl.sample(b, s, m, rng)
            if n <= rows:
                result = {k: np.asarray(v) for k, v in part.items()}
                break
            for k, v in part.items():
                v = np.asarray(v)
                if k not in result:
                    result[k] = np.empty((n, *v.shape[1:]), v.dtype)
                result[k][sl] = v
        if single:
            result = {k: v[0] for k, v in result.items()}
        return result

    def _chunk_rows(self) -> int:
        row = max(1, int(np.prod(self.spec.observation_space.shape)))
        return max(1, min(CHUNK_ROWS, CHUNK_VALUES // row))

    def _batch(self, obs: Any) -> tuple[np.ndarray, bool]:
        spec = self.spec
        if spec.goal_observation is not None and isinstance(obs, dict):
            obs = self._flatten_goal(spec.goal_observation, obs)
        x = self._numbers(obs, "observations")
        shape = spec.observation_space.shape
        if x.shape == shape:
            return x[None], True
        if x.shape[1:] == shape:
            return x, False
        raise BadObservation(f"observation shape {list(x.shape)} fits neither the observation space "
                             f"{list(shape)} nor a batch of it {['N'] + list(shape)}", self.path)

    def _flatten_goal(self, goal: DictSpace, obs: dict) -> np.ndarray:
        missing = [k for k, _ in goal.spaces if k not in obs]
        if missing:
            raise BadObservation(f"goal observation lacks {missing}; expected keys "
                                 f"{[k for k, _ in goal.spaces]}", self.path)
        parts = [self._numbers(obs[k], f"goal observation {k!r}", np.float32) for k, _ in goal.spaces]
        batched = parts[0].ndim == (len(goal.spaces[0][1].shape) or 1) + 1
        try:
            return np.concatenate([p if batched else p.reshape(-1) for p in parts], axis=-1)
        except ValueError:  # the keys' shapes do not line up
            got = {k: list(p.shape) for (k, _), p in zip(goal.spaces, parts, strict=True)}
            want = {k: list(space.shape) for k, space in goal.spaces}
            raise BadObservation(f"goal observation shapes {got} do not line up: expected {want}, or a batch "
                                 f"(N, ...) of each with one N", self.path) from None

    def _numbers(self, value: Any, what: str, dtype=None) -> np.ndarray:
        """`value` as a NumPy array of numbers (in `dtype` if given), or BadObservation."""
        try:
            x = np.asarray(value, dtype)
            if x.dtype.kind in "US":  # text: numbers written as strings pass, as SB2's feed_dict took them
                x = x.astype(self.spec.input_dtype)
        except (ValueError, TypeError, OverflowError):
            raise BadObservation(f"{what} must be a rectangular array of numbers (got ragged lists or text)",
                                 self.path) from None
        if x.dtype == object:
            raise BadObservation(f"{what} must be numbers (got ragged or object data)", self.path)
        return x

    # -- export -------------------------------------------------------------------------
    def export(self, to, out, *, force: bool = False, verify: bool = True, all_or_nothing: bool = False,
               progress=None):
        """Export to targets ("onnx", ["pytorch", "tfjs"], "all") under out/<target>/,
        each verified in its runtime; a target that fails is reported (`ok` False) and
        the others kept, unless all_or_nothing: see sbexportd.export.export."""
        from .export import export
        return export(self, to, out, force=force, verify=verify, all_or_nothing=all_or_nothing,
                      progress=progress)

    # -- description -----------------------------------------------------------------
    def inspect(self) -> dict[str, Any]:
        from .describe import describe
        return describe(self)

