"""What `inspect` reports: the spec, in words and numbers a user can check."""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import SbExportError


def _auto(model) -> dict[str, Any]:
    """What `--vecnormalize auto` and `--frame-stack auto` would do, and why."""
    try:
        s = model.zoo_settings()  # (a config.yml outside serve --root: PathNotAllowed, said below)
    except SbExportError as exc:
        return {"vecnormalize": False, "frame_stack": 0, "reason": f"cannot decide: {exc}",
                "statistics": None, "config": None}
    return {"vecnormalize": s.normalize, "frame_stack": s.frame_stack, "reason": s.reason,
            "statistics": str(s.statistics) if s.statistics else None,
            "config": str(s.config) if s.config else None}


def describe(model) -> dict[str, Any]:
    spec, archive = model.spec, model.archive
    used = set(spec.used_tensors())
    trained = [k for k in spec.sb2_params if k in used]
    auto = _auto(model)
    return {
        "file": str(archive.path),
        "format": archive.format,
        "sha256": archive.sha256,
        "algorithm": spec.algo,
        "policy": {"class": spec.policy, "custom": model.archive.data.get("policy") is not None and
                   not getattr(model.archive.data["policy"], "sb_known", True)},
        "observation_space": spec.observation_space.describe(),
        "goal_observation": spec.goal_observation.describe() if spec.goal_observation else None,
        "action_space": spec.action_space.describe(),
        "input": {"name": "obs", "dtype": spec.input_dtype,
                  "shape": [None] + list(spec.observation_space.shape)},
        "recurrent": {"n_lstm": spec.recurrent, "state_shape": [None, spec.state_size]} if spec.recurrent else None,
        "frame_stack": ({"n": spec.frame_stack, "state_shape": [None, spec.state_size]}
                        if spec.frame_stack else None),
        "preprocessing": spec.preprocessing,
        "layers": [{"name": ly.name, "kind": ly.kind, "shape": ly.shape, "activation": ly.activation}
                   for ly in spec.summary],
        "postprocessing": spec.postprocessing,
        "outputs": sorted(spec.outputs),
        "distribution": spec.distribution.kind,
        "parameters": {"in_file": len(spec.sb2_params), "used_by_policy": len(trained),
                       "policy_weights": int(sum(np.asarray(spec.tensors[k]).size for k in trained))},
        "vecnormalize": {"applied": spec.vecnormalize, "found_beside_model": auto["statistics"]},
        "auto": auto,
        "notes": list(spec.notes),
    }


def render(info: dict[str, Any]) -> str:
    """The human-readable form of `describe`."""
    def space(s):
        return f"{s['type']}(" + ", ".join(f"{k}={v}" for k, v in s.items() if k != "type") + ")"
    lines = [
        f"{info['file']}  ({info['format']}, sha256 {info['sha256'][:12]}...)",
        f"algorithm    {info['algorithm'].upper()}   policy {info['policy']['class']}"
        + ("  (custom class, code not in file)" if info["policy"]["custom"] else ""),
        f"observation  {space(info['observation_space'])}",
    ]
    if info["goal_observation"]:
        lines.append(f"goal obs     {space(info['goal_observation'])}")
    lines.append(f"action       {space(info['action_space'])}")
    if info["recurrent"]:
        lines.append(f"recurrent    LSTM n_lstm={info['recurrent']['n_lstm']} "
                     f"(state {info['recurrent']['state_shape']}, mask [N])")
    if info["frame_stack"]:
        lines.append(f"frame stack  {info['frame_stack']['n']} frames (state "
                     f"{info['frame_stack']['state_shape']}, mask [N])")
    lines.append("preprocess   " + ("; ".join(info["preprocessing"]) or "none"))
    lines.append("layers")
    for layer in info["layers"]:
        act = f"  {layer['activation']}" if layer["activation"] else ""
        lines.append(f"  {layer['name']:<40} {layer['kind']:<10} {layer['shape']}{act}")
    lines.append(f"action       {info['postprocessing']}")
    lines.append(f"outputs      {', '.join(info['outputs'])}")
    p = info["parameters"]
    lines.append(f"parameters   {p['used_by_policy']} of {p['in_file']} tensors used by the policy, "
                 f"{p['policy_weights']} weights")
    vn, auto = info["vecnormalize"], info["auto"]
    if vn["applied"]:
        lines.append("vecnormalize applied")
    elif auto["vecnormalize"]:
        lines.append(f"vecnormalize NOT applied; --vecnormalize auto would apply it: {auto['reason']}")
    elif vn["found_beside_model"] or auto["config"]:
        lines.append(f"vecnormalize not applied, and auto would not: {auto['reason']}")
    if auto["frame_stack"]:
        lines.append(f"frame stack  the zoo's config stacks {auto['frame_stack']} frames "
                     f"({auto['config']}); --frame-stack auto takes single observations")
    for note in info["notes"]:
        lines.append(f"note         {note}")
    return "\n".join(lines)
