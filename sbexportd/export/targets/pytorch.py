"""`pytorch`: three files that need only PyTorch.

    policy.py               a readable, standalone nn.Module source (class Policy, load(),
                            a __main__ smoke run), generated from the spec by
                            sbexportd.export.codegen_torch; imports only torch
    policy.pt               its state_dict: tensors only (torch.load(weights_only=True))
    policy.torchscript.pt   torch.jit.script of that module: dynamic batch, dict outputs;
                            torch.jit.load needs neither policy.py nor sbexportd

Verification loads both back: the TorchScript file with torch.jit.load, and policy.py
imported from the file in a fresh module namespace with policy.pt's weights. The
TorchScript outputs go to the manifest's parity check; the eager module is held to
the same rule against the NumPy reference inside the runner (a failure of either
fails the export).
"""
from __future__ import annotations

import importlib.util
import itertools
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ... import __version__
from ...errors import ExportError, ParityFailed
from ...parity import compare_all, discrete_names
from ...understand.spec import PolicySpec
from ..codegen_torch import TORCH_DTYPES, generate

SOURCE = "policy.py"
WEIGHTS = "policy.pt"
SCRIPT = "policy.torchscript.pt"
NOTE = "NOTE.txt"

_names = itertools.count()
_lock = threading.Lock()


def _torch():
    import torch
    return torch


@contextmanager
def import_source(path: Path) -> Iterator[Any]:
    """policy.py as a fresh module (a new name each time, so two exports never share
    classes). It is in sys.modules while the block runs: torch.jit.script reads the
    classes' source through it."""
    with _lock:
        name = f"sbexportd_policy_{os.getpid()}_{next(_names)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} cannot be imported as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


def load_source(folder: Path):
    """The eager module: policy.py imported from `folder`, with policy.pt's weights."""
    torch = _torch()
    folder = Path(folder)
    with import_source(folder / SOURCE) as module:
        policy = module.Policy()
        policy.load_state_dict(torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True))
    return policy.eval().requires_grad_(False)


def load_torchscript(folder: Path):
    torch = _torch()
    return torch.jit.load(str(Path(folder) / SCRIPT), map_location="cpu").eval()


def _title(model) -> tuple[str, str]:
    spec = model.spec
    title = f"{spec.algo.upper()} {spec.policy} from {model.archive.path.name}"
    provenance = (f"Exported by sbexportd {__version__} from {model.archive.path.name} "
                  f"(sha256 {model.archive.sha256}).")
    if spec.vecnormalize and model.vecnormalize is not None:
        provenance += f"\nVecNormalize statistics ({Path(str(model.vecnormalize.source)).name}) are built in."
    return title, provenance


def write(model, folder: Path) -> None:
    torch = _torch()
    spec = model.spec
    title, provenance = _title(model)
    gen = generate(spec, title=title, provenance=provenance)
    (folder / SOURCE).write_text(gen.source)
    with import_source(folder / SOURCE) as module:
        policy = module.Policy()
        policy.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in gen.state_dict.items()}, strict=True)
        policy.eval().requires_grad_(False)  # an inference module: outputs are plain tensors (.numpy())
        # a plain dict of plain tensors: loadable with weights_only=True
        torch.save({k: v.detach().clone().contiguous() for k, v in policy.state_dict().items()}, folder / WEIGHTS)
        scripted, how = _script(policy, spec, module)
    scripted.save(str(folder / SCRIPT))
    if how != "script":
        (folder / NOTE).write_text(how + "\n")


def _script(policy, spec: PolicySpec, module):
    """torch.jit.script (keeps the dynamic batch and every branch); trace only if
    scripting fails, with the reason in NOTE.txt."""
    torch = _torch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script is deprecated in favour of torch.export
        try:
            return torch.jit.script(policy), "script"
        except Exception as exc:  # noqa: BLE001 - any scripting failure falls back to trace
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        example = module.example_inputs(4)
        try:
            traced = torch.jit.trace(policy, example, strict=False, check_trace=False)
        except Exception as exc:
            raise ExportError(f"pytorch: neither torch.jit.script ({reason}) nor torch.jit.trace "
                              f"({type(exc).__name__}: {exc}) accepted the generated module") from exc
    return traced, (f"policy.torchscript.pt was made with torch.jit.trace (with a batch of 4), because "
                    f"torch.jit.script failed: {reason}")


def _tensor(a, dtype: str | None = None):
    torch = _torch()
    a = np.asarray(a)
    if dtype is not None:
        a = a.astype(dtype)
    if a.dtype.name not in TORCH_DTYPES:  # e.g. uint16: widen, the values are kept
        a = a.astype(np.float64 if a.dtype.kind == "f" else np.int64)
    return torch.from_numpy(np.array(a, copy=True, order="C"))


def inputs(spec: PolicySpec, feeds: dict[str, Any]) -> tuple:
    """Convention feeds -> forward's arguments (obs in SB2's placeholder dtype)."""
    obs = feeds["obs"]
    if isinstance(obs, dict):
        x = {k: _tensor(v) for k, v in obs.items()}
    else:
        x = _tensor(obs, spec.input_dtype if spec.input_dtype in TORCH_DTYPES else None)
    if not spec.stateful:
        return (x,)
    return x, _tensor(feeds["state"], "float32"), _tensor(np.asarray(feeds["mask"]).reshape(-1), "float32")


def load(folder: Path, spec: PolicySpec):
    torch = _torch()
    folder = Path(folder)
    scripted = load_torchscript(folder)
    eager = load_source(folder)
    discrete = discrete_names(spec)

    def numpy(out) -> dict[str, np.ndarray]:
        return {k: v.detach().numpy() for k, v in out.items()}

    def run(feeds):
        """The TorchScript module's answers (verified against the reference by the
        caller), after checking that policy.py run eagerly gives the same."""
        args = inputs(spec, feeds)
        with torch.inference_mode():
            got = numpy(scripted(*args))
            mine = numpy(eager(*args))
        checks = compare_all(mine, got, discrete)
        if not checks.passed:
            raise ParityFailed(f"pytorch: {SOURCE} + {WEIGHTS} (eager) disagrees with the TorchScript "
                               f"module: {checks.describe()}", folder)
        return got

    how = "traced" if (folder / NOTE).exists() else "scripted"
    runtime = (f"TorchScript ({how}, torch.jit.load, torch {torch.__version__}); "
               f"{SOURCE} + {WEIGHTS} imported from the files (eager) also checked")
    return run, runtime
