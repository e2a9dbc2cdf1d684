"""Export one model to targets: staged writes, a manifest, and verification of each
export in its own runtime against the NumPy reference."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import Cancelled, ExportError, OutputExists, ParityFailed, SbExportError, TargetUnavailable
from ..parity import judge
from .conventions import export_name, io, sample_inputs
from .targets import TARGETS, Target

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
Progress = Callable[[str, str, float], None]  # (target, stage, fraction done)

VERIFY_N = 64
VERIFY_SEED = 0


@dataclass
class TargetResult:
    target: str
    path: Path
    files: list[dict[str, Any]] = field(default_factory=list)
    parity: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def size(self) -> int:
        return sum(f["bytes"] for f in self.files)

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "path": str(self.path), "files": self.files,
                "bytes": self.size, "parity": self.parity, "seconds": round(self.seconds, 3)}


def resolve_targets(to: str | list[str]) -> list[str]:
    names = [t.name for t in TARGETS.values() if t.in_all] if to == "all" or to == ["all"] else (
        [t.strip() for t in to.split(",")] if isinstance(to, str) else list(to))
    unknown = [t for t in names if t not in TARGETS]
    if unknown:
        raise TargetUnavailable(f"unknown target {', '.join(unknown)}; choose from {', '.join(TARGETS)} or all")
    return names


def export(model, to: str | list[str], out: str | Path, *, force: bool = False, verify: bool = True,
           progress: Progress | None = None, cancelled: Callable[[], bool] | None = None) -> list[TargetResult]:
    """Write out/<target>/ for each target, all or nothing: every target is written
    and verified in a hidden staging folder first, and only when all of them are
    ready are they renamed into place. A failure, an interruption or a cancellation
    leaves no target folder and no staging folder behind."""
    out = Path(out)
    names = resolve_targets(to)
    if not force:
        taken = [n for n in names if (out / n).exists()]
        if taken:
            raise OutputExists(f"{', '.join(str(out / n) for n in taken)} already "
                               f"{'exists' if len(taken) == 1 else 'exist'}; pass --force to replace", out)
    made_out = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    progress = progress or (lambda *_: None)
    results: list[TargetResult] = []
    stages: list[Path] = []
    try:
        for name in names:
            target = TARGETS[name]
            start = time.perf_counter()
            progress(name, "writing", 0.0)
            tmp = _stage(out / name)
            stages.append(tmp)
            target.load_module().write(model, tmp)
            _check_cancel(cancelled)
            progress(name, "verifying", 0.5)
            parity = verify_export(model, target, tmp) if verify else {"verified": False}
            _check_cancel(cancelled)
            write_manifest(model, target, tmp, _files(tmp), parity)
            results.append(TargetResult(name, out / name, _files(tmp), parity, time.perf_counter() - start))
            progress(name, "done", 1.0)
        _check_cancel(cancelled)
        for tmp, result in zip(stages, results, strict=True):
            _install(tmp, result.path, force)
    except BaseException:
        for tmp in stages:
            shutil.rmtree(tmp, ignore_errors=True)
        if made_out and not any(out.iterdir()):
            out.rmdir()
        raise
    return results


def _check_cancel(cancelled) -> None:
    if cancelled is not None and cancelled():
        raise Cancelled("export cancelled; nothing was written")


def _stage(final: Path) -> Path:
    """A hidden, empty sibling of `final` to write into."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the export is an ordinary folder
    return tmp


def _install(tmp: Path, final: Path, force: bool) -> None:
    """Rename a finished stage onto `final` (replacing it only with force)."""
    if not final.exists():
        tmp.rename(final)
        return
    if not force:
        raise OutputExists(f"{final} appeared while exporting; pass --force to replace", final)
    # a fresh name: two replacements of one folder at once must not collide
    old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
    old.rmdir()
    final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


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


def write_manifest(model, target: Target, folder: Path, files: list[dict[str, Any]], parity: dict[str, Any]) -> None:
    """manifest.json. A target module may rename or retype its I/O (`adjust_io`, e.g.
    graphdef's `state_out`, tfjs's int32) and add notes (`manifest_notes`)."""
    spec, archive = model.spec, model.archive
    mod = target.load_module()
    inputs, outputs = io(spec)
    if hasattr(mod, "adjust_io"):
        inputs, outputs = mod.adjust_io(spec, inputs, outputs)
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
        "source": {"file": archive.path.name, "sha256": archive.sha256, "format": archive.format,
                   "algorithm": spec.algo, "policy": spec.policy},
        "parity": parity,
        "notes": notes,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
