"""The editor settings, section `sbexportd` (docs/editors.md):

    sbexportd.export.targets        ["onnx"]    what the Export lens exports to
    sbexportd.export.outputFolder   "exported"  where: <folder>/<model file stem>/<target>/; relative
                                                 to the document's workspace folder (else its folder)
    sbexportd.export.overwrite      false       replace an earlier export of the same model
    sbexportd.vecnormalize          "auto"      "auto": the statistics the zoo keeps beside the model;
                                                 "none"; or a vecnormalize.pkl / obs_rms.pkl path

Read from workspace/configuration when the client supports it, else from
workspace/didChangeConfiguration's `settings.sbexportd`. Values of the wrong type are
reported (window/showMessage) and replaced by the default: a typo never stops the
features."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SECTION = "sbexportd"


@dataclass(frozen=True)
class Settings:
    targets: tuple[str, ...] = ("onnx",)
    output_folder: str = "exported"
    overwrite: bool = False
    vecnormalize: str = "auto"  # "auto" | "none" | a path
    problems: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def parse(cls, raw: Any) -> Settings:
        """From the `sbexportd` section (nested, as VS Code and Neovim send it, or with
        dotted keys)."""
        from ...export.targets import TARGETS
        if not isinstance(raw, dict):
            return cls(problems=() if raw is None else (f"{SECTION}: expected an object, got {type(raw).__name__}",))
        flat = _flatten(raw)
        problems: list[str] = []
        default = cls()

        def get(key: str, want: type, fallback):
            value = flat.get(key)
            if value is None:
                return fallback
            if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
                problems.append(f"{SECTION}.{key}: expected {want.__name__}, got {value!r}; using {fallback!r}")
                return fallback
            return value

        targets = flat.get("export.targets")
        if isinstance(targets, str):
            targets = [t.strip() for t in targets.split(",") if t.strip()]
        if targets is None:
            targets = list(default.targets)
        elif not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            problems.append(f"{SECTION}.export.targets: expected a list of target names, got {targets!r}")
            targets = list(default.targets)
        if targets == ["all"]:
            targets = list(TARGETS)
        unknown = [t for t in targets if t not in TARGETS]
        if unknown:
            problems.append(f"{SECTION}.export.targets: unknown target {', '.join(map(repr, unknown))}; "
                            f"the targets are {', '.join(TARGETS)}")
            targets = [t for t in targets if t in TARGETS] or list(default.targets)
        vn = get("vecnormalize", str, default.vecnormalize).strip() or default.vecnormalize
        return cls(targets=tuple(dict.fromkeys(targets)),
                   output_folder=get("export.outputFolder", str, default.output_folder).strip()
                   or default.output_folder,
                   overwrite=get("export.overwrite", bool, default.overwrite),
                   vecnormalize=vn, problems=tuple(problems))

    def vecnormalize_option(self, base) -> str | None:
        """What sbexport/open takes: None, "auto" or an absolute path (relative to base)."""
        if self.vecnormalize.lower() == "none":
            return None
        if self.vecnormalize.lower() == "auto":
            return "auto"
        import os
        from pathlib import Path
        p = Path(os.path.expanduser(self.vecnormalize))
        return str(p if p.is_absolute() or base is None else Path(base) / p)


def _flatten(raw: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in raw.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out
