"""Hover text: `sbexportd inspect` (sbexportd.describe) as Markdown that reads well in
VS Code's hover and in Neovim's floating window alike (headings, a list, one code
block; no tables, which Neovim shows raw)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

MAX_LIST = 8  # numbers shown of a long bound


def model_hover(info: dict[str, Any], vecnormalize_setting: str) -> str:
    policy = info.get("policy") or {}
    title = f"### {str(info.get('algorithm', '?')).upper()} `{policy.get('class', '?')}`"
    if policy.get("custom"):
        title += " (custom class, code not in file)"
    lines = [title, "",
             (f"`{Path(str(info.get('file', ''))).name}` ({info.get('format')}, sha256 "
              f"`{str(info.get('sha256', ''))[:12]}`)"), ""]
    lines.append(f"- **observation** {space(info.get('observation_space'))}")
    if info.get("goal_observation"):
        lines.append(f"- **goal observation** {space(info['goal_observation'])}")
    lines.append(f"- **action** {space(info.get('action_space'))}"
                 + (f": {info['postprocessing']}" if info.get("postprocessing") else ""))
    rec = info.get("recurrent")
    if rec:
        lines.append(f"- **recurrent** LSTM n_lstm={rec.get('n_lstm')}, state {_value(rec.get('state_shape'))}, "
                     "mask [N]")
    pre = info.get("preprocessing") or []
    lines.append("- **preprocessing** " + ("; ".join(map(str, pre)) if pre else "none"))
    lines.append("- **VecNormalize** " + vecnormalize(info.get("vecnormalize") or {}, vecnormalize_setting))
    if info.get("outputs"):
        lines.append(f"- **outputs** {', '.join(map(str, info['outputs']))}"
                     + (f" ({info['distribution']} distribution)" if info.get("distribution") else ""))
    p = info.get("parameters") or {}
    if p:
        lines.append(f"- **parameters** {p.get('used_by_policy')} of {p.get('in_file')} tensors used by the "
                     f"policy, {p.get('policy_weights'):,} weights")
    layers = info.get("layers") or []
    if layers:
        w_name = max(len(str(layer.get("name", ""))) for layer in layers)
        w_kind = max(len(str(layer.get("kind", ""))) for layer in layers)
        lines += ["", "```text"]
        for layer in layers:
            lines.append(f"{layer.get('name', '')!s:<{w_name}}  {layer.get('kind', '')!s:<{w_kind}}  "
                         f"{layer.get('shape', '')}  {layer.get('activation') or ''}".rstrip())
        lines.append("```")
    for note in info.get("notes") or []:
        lines += ["", f"*note:* {note}"]
    return "\n".join(lines) + "\n"


def vecnormalize(vn: dict[str, Any], setting: str) -> str:
    found = vn.get("found_beside_model")
    if vn.get("applied"):
        text = "applied" + (f" (`{Path(str(found)).name}` beside the model)" if found and setting == "auto"
                            else f" (setting `sbexportd.vecnormalize`: {setting})")
    elif found:
        text = (f"`{found}` found beside the model but **not applied** (setting `sbexportd.vecnormalize` is "
                f"{setting!r}; set it to \"auto\" to apply it)")
    else:
        text = "none (no vecnormalize.pkl / obs_rms.pkl beside the model)"
    extra = [f"{v}" for k, v in vn.items() if k not in ("applied", "found_beside_model") and isinstance(v, str) and v]
    return text + "".join(f"; {e}" for e in extra)


def vecnormalize_file_hover(path: Path, stats) -> str:
    shape = list(getattr(stats.mean, "shape", ()))
    return (f"### VecNormalize statistics\n\n`{path.name}`: observation mean and variance of shape {shape}, "
            f"epsilon {stats.epsilon:g}, clip_obs {stats.clip_obs:g}, norm_obs {stats.norm_obs}.\n\n"
            f"Applied to the model beside it when `sbexportd.vecnormalize` is \"auto\".\n")


def problem_hover(message: str, hint: str | None) -> str:
    return f"**sbexportd:** {message}" + (f"\n\n{hint}" if hint else "") + "\n"


def space(s: Any) -> str:
    """Box shape [4] float32, low [...] high [...] / Discrete n=2 / Dict {...}"""
    if not isinstance(s, dict):
        return "?" if s is None else str(s)
    kind = s.get("type", "?")
    if kind == "Dict" and isinstance(s.get("spaces"), dict):
        return "Dict {" + ", ".join(f"{k}: {space(v)}" for k, v in s["spaces"].items()) + "}"
    parts = [f"{k}={_value(v)}" for k, v in s.items() if k != "type" and v is not None]
    return f"{kind}(" + ", ".join(parts) + ")"


def _value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        flat = list(v)
        if len(flat) > MAX_LIST:
            return "[" + ", ".join(_value(x) for x in flat[:MAX_LIST // 2]) + f", ... ({len(flat)} values)]"
        return "[" + ", ".join(_value(x) for x in flat) + "]"
    if isinstance(v, float):
        return f"{v:.6g}"
    if v is None:
        return "None"
    return str(v)
