"""Export one model to targets: each target made in a staging folder, verified in
its own runtime against the NumPy reference, given a manifest, and installed by
the export transaction (transaction.py), which the daemon uses too."""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import Cancelled, ExportError, ParityFailed, SbExportError, TargetUnavailable
from ..parity import judge
from .conventions import export_name, sample_inputs, target_io
from .targets import TARGETS, Target
from .transaction import Transaction

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
Progress = Callable[[str, str, float], None]  # (target, stage, fraction done)

VERIFY_N = 64
VERIFY_SEED = 0


@dataclass
class TargetResult:
    """One target of an export: written and verified (`ok`), or failed with `error`
    (then nothing was written under its name)."""
    target: str
    path: Path
    files: list[dict[str, Any]] = field(default_factory=list)
    parity: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: SbExportError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def size(self) -> int:
        return sum(f["bytes"] for f in self.files)

    def as_dict(self) -> dict[str, Any]:
        d = {"target": self.target, "ok": self.ok, "path": str(self.path), "files": self.files,
             "bytes": self.size, "parity": self.parity, "seconds": round(self.seconds, 3)}
        if self.error is not None:
            d["error"] = {"code": self.error.code, "message": str(self.error)}
        return d


def resolve_targets(to: str | list[str]) -> list[str]:
    """Target names in the order given, each once ("all": every target that is in all)."""
    names = [t.name for t in TARGETS.values() if t.in_all] if to == "all" or to == ["all"] else (
        [t.strip() for t in to.split(",")] if isinstance(to, str) else list(to))
    unknown = [t for t in names if t not in TARGETS]
    if unknown:
        raise TargetUnavailable(f"unknown target {', '.join(map(str, unknown))}; choose from "
                                f"{', '.join(TARGETS)} or all")
    return list(dict.fromkeys(names))


def export(model, to: str | list[str], out: str | Path, *, force: bool = False, verify: bool = True,
           all_or_nothing: bool = False, progress: Progress | None = None,
           cancelled: Callable[[], bool] | None = None) -> list[TargetResult]:
    """Write out/<target>/ for each target, each made and verified in a hidden
    staging folder and renamed into place only when complete (transaction.py).

    A target that fails (its writer, its runtime, its parity check) is reported in
    its TargetResult (`ok` False, `error`) and leaves nothing under its name; the
    others are kept. all_or_nothing=True: the first failure raises and no target is
    kept. When no target could be made, the (first) failure is raised. A
    cancellation or an interruption always leaves `out` as it was."""
    names = resolve_targets(to)
    progress = progress or (lambda *_: None)
    results: dict[str, TargetResult] = {}
    with Transaction(out, names, force=force, all_or_nothing=all_or_nothing) as txn:
        for name in names:
            _check_cancel(cancelled)
            start = time.perf_counter()
            with txn.attempt(name):
                result = build_target(model, name, txn.stage(name), verify=verify, progress=progress,
                                      cancelled=cancelled, shown_as=txn.out / name)
            if name in txn.errors:
                results[name] = TargetResult(name, txn.out / name, seconds=time.perf_counter() - start,
                                             error=txn.errors[name])
                progress(name, "failed", 1.0)
                continue
            txn.ready(name)
            results[name] = result
        _check_cancel(cancelled)
        txn.commit()
        for name, err in txn.errors.items():  # failed to install (all_or_nothing raised already)
            results[name].error, results[name].files, results[name].parity = err, [], {}
    ordered = [results[n] for n in names]
    if not any(r.ok for r in ordered):
        first = ordered[0].error
        assert first is not None  # (not ok: its error)
        raise first if len(ordered) == 1 else _none_exported(ordered)
    return ordered


def _none_exported(results: list[TargetResult]) -> ExportError:
    """Several targets, none made: one error listing why (of their class when they share one)."""
    kinds = {type(r.error) for r in results}
    cls = kinds.pop() if len(kinds) == 1 else ExportError
    if not issubclass(cls, ExportError):
        cls = ExportError
    err = cls("no target could be exported: " + "; ".join(str(r.error) for r in results))
    err.failures = [r.error for r in results]  # type: ignore[attr-defined]
    return err


def build_target(model, name: str, folder: Path, *, verify: bool = True, progress: Progress | None = None,
                 cancelled: Callable[[], bool] | None = None, shown_as: Path | None = None) -> TargetResult:
    """Write target `name` into the empty `folder`, verify it in its runtime, write
    its manifest. Every failure is an SbExportError naming `shown_as` (where the
    target is going), never the staging folder it was made in."""
    progress = progress or (lambda *_: None)
    shown_as = shown_as or folder
    target = TARGETS[name]
    start = time.perf_counter()
    try:
        progress(name, "writing", 0.0)
        target.load_module().write(model, folder)
        _check_cancel(cancelled)
        progress(name, "verifying", 0.5)
        parity = verify_export(model, target, folder) if verify else {"verified": False}
        _check_cancel(cancelled)
        write_manifest(model, target, folder, _files(folder), parity)
    except Cancelled:
        raise
    except SbExportError as e:
        raise _renamed(e, folder, shown_as) from e
    except Exception as e:  # a converter or runtime failed on this target (re-raised typed)
        message = _scrub(f"export failed: {type(e).__name__}: {e}", folder, shown_as)
        raise ExportError(message[:2000], shown_as) from e
    progress(name, "done", 1.0)
    return TargetResult(name, shown_as, _files(folder), parity, time.perf_counter() - start)


def _scrub(text: str, folder: Path, shown_as: Path) -> str:
    return text.replace(str(folder), str(shown_as))


def _renamed(e: SbExportError, folder: Path, shown_as: Path) -> SbExportError:
    """The same error, about `shown_as` instead of the staging folder."""
    detail = getattr(e, "detail", str(e))
    path = e.path
    if path is not None and (path == str(folder) or path.startswith(str(folder) + os.sep)):
        path = str(shown_as) + path[len(str(folder)):]
    new = type(e).__new__(type(e))
    # what a subclass keeps besides its message (NotRepresentable's why and closest)
    new.__dict__.update({k: _scrub(v, folder, shown_as) if isinstance(v, str) else v for k, v in vars(e).items()})
    SbExportError.__init__(new, _scrub(detail, folder, shown_as), path)
    return new


def _check_cancel(cancelled) -> None:
    if cancelled is not None and cancelled():
        raise Cancelled("export cancelled; nothing was written")


def _files(folder: Path) -> list[dict[str, Any]]:
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        files.append({"path": path.relative_to(folder).as_posix(), "bytes": len(data),
                      "sha256": hashlib.sha256(data).hexdigest()})
    return [f for f in files if f["path"] != "manifest.json"]


def reference_outputs(model, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The reference's answers under the export convention's names."""
    return judge(model.spec, feeds, export_name).reference


def verify_export(model, target: Target, folder: Path) -> dict[str, Any]:
    """Load the export in its own runtime, run seeded observations, compare every
    output with the reference under the parity rule and its float32 bound
    (sbexportd.parity). Raises ParityFailed when the rule does not hold."""
    mod = target.load_module()
    runner, runtime = mod.load(folder, model.spec)
    feeds = sample_inputs(model.spec, VERIFY_N, VERIFY_SEED)
    try:
        got = runner(feeds)
    except SbExportError:
        raise
    except Exception as exc:  # the runtime itself failed on our file
        raise ExportError(f"{target.name}: {runtime} could not run the export: {exc}", folder) from exc
    verdict = judge(model.spec, feeds, export_name)
    if hasattr(mod, "outputs"):  # a target that carries only some outputs (sb3: what SB3 computes)
        carried = set(mod.outputs(model.spec))
        verdict.reference = {k: v for k, v in verdict.reference.items() if k in carried}
    for name in verdict.reference:
        if name not in got:
            raise ParityFailed(f"{target.name}: output {name!r} missing from the export", folder)
    checks = verdict.check(got)
    parity = {"verified": True, "reference": "numpy", "arithmetic": "tf1-float32", "runtime": runtime,
              "observations": VERIFY_N, "seed": VERIFY_SEED, "max_abs_error": checks.max_abs_error,
              "float32_bound": {k: float(np.max(verdict.bound[k])) for k in checks if k in verdict.bound},
              "passed": checks.passed}
    if not checks.passed:
        raise ParityFailed(f"{target.name}: the export does not reproduce the policy in {runtime}: "
                           f"{checks.describe()} (use --no-verify to keep it anyway)", folder)
    return parity


def _env_wrappers(model, notes: list[str]) -> list[dict[str, Any]] | None:
    """The zoo's env wrappers the agent was trained inside (evaluate applies them); None,
    with a note, when its config.yml cannot be read: the policy itself does not need it."""
    from ..environments import UnknownEnvironment
    from ..errors import PathNotAllowed, ZooConfigError
    try:
        wrappers = model.env_wrappers()
    except (ZooConfigError, PathNotAllowed, UnknownEnvironment) as e:
        notes.append(f"env_wrappers unknown: the zoo's config.yml beside the model could not be read ({e})")
        return None
    for w in wrappers:
        notes.append(f"trained inside the zoo's {w.trained_with}: run the policy on observations wrapped in "
                     + (f"{w.name}" if w.name else "it (no gymnasium counterpart known)"))
    return [w.as_dict() for w in wrappers]


def write_manifest(model, target: Target, folder: Path, files: list[dict[str, Any]], parity: dict[str, Any]) -> None:
    """manifest.json. A target module may rename or retype its I/O (`adjust_io`, e.g.
    graphdef's `state_out`, tfjs's int32) and add notes (`manifest_notes`)."""
    spec, archive = model.spec, model.archive
    mod = target.load_module()
    inputs, outputs = target_io(spec, getattr(mod, "adjust_io", None))
    notes = list(spec.notes) + (list(mod.manifest_notes(spec)) if hasattr(mod, "manifest_notes") else [])
    vn = model.vecnormalize
    manifest = {
        "format": "sbexportd-export",
        "format_version": 1,
        "sbexportd_version": __version__,
        "target": target.name,
        "files": files,
        "inputs": inputs,
        "outputs": outputs,
        "preprocessing": spec.preprocessing,
        "postprocessing": spec.postprocessing,
        "observation_space": spec.observation_space.describe(),
        "action_space": spec.action_space.describe(),
        "goal_observation": ({"keys": [k for k, _ in spec.goal_observation.spaces],
                              "note": "concatenate the goal dict in this key order into obs"}
                             if spec.goal_observation else None),
        "vecnormalize": ({"applied": True, "source": vn.source, "epsilon": vn.epsilon, "clip_obs": vn.clip_obs}
                         if spec.vecnormalize else {"applied": False}),
        "env_wrappers": _env_wrappers(model, notes),
        "source": {"file": archive.path.name, "sha256": archive.sha256, "format": archive.format,
                   "algorithm": spec.algo, "policy": spec.policy},
        "parity": parity,
        "notes": notes,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
