"""`rl-zoo3`: the sb3 conversion in rl-baselines3-zoo's folder layout, so that

    python -m rl_zoo3.enjoy --algo ALGO --env ENV -f FOLDER --no-render

runs the agent (rl_zoo3's get_model_path, get_saved_hyperparams and create_test_env):

    ALGO/ENV_1/ENV.zip              the SB3 model (ALGO: rl_zoo3's name, ppo, a2c, trpo, ppo_lstm, sac, td3, dqn)
    ALGO/ENV_1/ENV/config.yml       the hyperparameters: normalize, frame_stack, env_wrapper, ...
    ALGO/ENV_1/ENV/args.yml         the arguments enjoy reads (env, algo, env_kwargs)
    ALGO/ENV_1/ENV/vecnormalize.pkl SB3's VecNormalize with SB2's statistics, where used
    ALGO/ENV_1/sb3.json, NOTE.txt   how it was converted; the command above

ENV is the gymnasium successor of the id the agent was trained on (the agent file's
name, the zoo's convention): Pendulum-v0 -> Pendulum-v1, LunarLander-v2 -> v3, ...;
NOTE.txt and the manifest say where gymnasium's dynamics changed. When the successor's
observation space has the shape the policy reads and the policy does not depend on its
bounds, the model holds the successor's space (so SB3 accepts the env to train on).
Verified in SB3 through rl_zoo3's own path resolution and settings reading.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ...environments import env_wrappers, make, successor
from ...errors import NotRepresentable
from ...understand.spec import Box, PolicySpec
from ..sb3_mapping import Sb3Plan, is_sb3_image, plan
from . import sb3

ZOO_ALGOS = {"PPO": "ppo", "A2C": "a2c", "TRPO": "trpo", "RecurrentPPO": "ppo_lstm", "SAC": "sac", "TD3": "td3",
             "DQN": "dqn"}
# SB2 rl-baselines-zoo wrappers -> their SB3-side classes
NOTE = "NOTE.txt"
FOLDER = "rl-zoo3"  # the export's folder name (out/rl-zoo3), which enjoy's -f names

_notes: dict[int, list[str]] = {}


def env_id_of(model) -> str:
    """The agent file's name: the zoo names agents after their environment."""
    return model.archive.path.stem


def layout(folder: Path, algo: str, env: str) -> tuple[Path, Path]:
    run = folder / algo / f"{env}_1"
    return run, run / env


def write(model, folder: Path) -> None:
    spec: PolicySpec = model.spec
    old = env_id_of(model)
    succ = successor(old)
    p = plan(model)
    notes = list(p.notes)
    env_space_note = _adopt_env_space(p, spec, succ.new)
    if env_space_note:
        notes.append(env_space_note)
    algo = ZOO_ALGOS[p.algo]
    run, stats = layout(folder, algo, succ.new)
    stats.mkdir(parents=True)
    m = sb3.build(model, p)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.save(str(run / f"{succ.new}.zip"))
    vn = sb3._vecnormalize_node(spec)
    if vn is not None:
        sb3.write_vecnormalize(model, vn, stats / sb3.VECNORMALIZE, p)
        notes += [n for n in p.notes if n not in notes]  # what writing the statistics noted
    sb2 = model.zoo_config()  # (under the model's confine: serve --root)
    config: dict[str, Any] = {"policy": p.policy, "n_timesteps": int(sb2.get("n_timesteps", 0) or 0)}
    if vn is not None:
        kwargs: dict[str, Any] = {"norm_obs": True, "norm_reward": False}
        kwargs.update({k: v for k, v in sb3._zoo_normalize_kwargs(model).items() if isinstance(v, (bool, int, float))})
        config["normalize"] = str(kwargs)  # rl_zoo3 eval()s a string into VecNormalize's kwargs
    if spec.frame_stack:
        config["frame_stack"] = int(spec.frame_stack)
    wrappers = env_wrappers(sb2)
    for w in wrappers:
        if w.name is None:
            raise NotRepresentable(f"the agent was trained inside the zoo wrapper {w.trained_with!r}, which has no "
                                   "rl_zoo3 counterpart sbexportd knows", why=f"env_wrapper {w.trained_with}",
                                   closest="the sb3 target, wrapping the env yourself")
    if wrappers:  # rl_zoo3 reads the zoo's forms: a name, {name: kwargs}, or a list of them
        forms = [{w.name: w.kwargs} if w.kwargs else w.name for w in wrappers]
        config["env_wrapper"] = forms[0] if len(forms) == 1 else forms
    if "her" in p.extra:
        config["replay_buffer_class"] = "HerReplayBuffer"
        config["replay_buffer_kwargs"] = str(p.extra["her"])
    (stats / "config.yml").write_text(yaml.safe_dump(config, sort_keys=True))
    args = {"algo": algo, "env": succ.new, "env_kwargs": None, "seed": 0, "n_timesteps": -1,
            "folder": FOLDER, "trained_agent": "", "sbexportd_source": model.archive.path.name}
    (stats / "args.yml").write_text(yaml.safe_dump(args, sort_keys=True))
    command = f"python -m rl_zoo3.enjoy --algo {algo} --env {succ.new} -f {FOLDER} --no-render"
    meta = {"format": "sbexportd-sb3", "algorithm": p.algo, "module": p.module, "policy": p.policy,
            "file": f"{succ.new}.zip", "vecnormalize": f"{succ.new}/{sb3.VECNORMALIZE}" if vn is not None else None,
            "frame_stack": spec.frame_stack or 0, "her": p.extra.get("her"), "rl_zoo3": {
                "algo": algo, "env": succ.new, "trained_env": old, "command": command}, "notes": notes}
    (run / sb3.META).write_text(json.dumps(meta, indent=2) + "\n")
    text = [(f"rl-baselines3-zoo layout of {model.archive.path.name} ({spec.algo.upper()} {spec.policy}) as "
             f"{p.module}.{p.algo}."), "", f"Run it from the folder that holds {FOLDER}/:", "", f"    {command}", ""]
    if succ.new != old:
        text.append(f"{old} is {succ.new} in gymnasium." + (f" What changed: {succ.changed}." if succ.changed
                                                             else " gymnasium says the dynamics are unchanged."))
    text += [""] + [f"- {n}" for n in notes]
    (run / NOTE).write_text("\n".join(text) + "\n")
    _notes[id(spec)] = ([f"rl_zoo3: {command}"] + ([f"environment {old} -> {succ.new}"
                                                    + (f": {succ.changed}" if succ.changed else " (same dynamics)")]
                                                   if succ.new != old else []) + notes)
    sb3.remember(spec, p)


def _adopt_env_space(p: Sb3Plan, spec: PolicySpec, env_id: str) -> str:
    """Hold the successor's observation space when the policy cannot tell the difference
    (same shape and dtype, no image scaling); SB3 compares spaces before it trains."""
    if not isinstance(p.observation_space, Box) or is_sb3_image(p.observation_space) or p.policy != "MlpPolicy":
        return ""
    try:
        env = make(env_id)
    except Exception:  # noqa: BLE001 - the env is optional at export time
        return ""
    try:
        space = env.observation_space
        if tuple(space.shape) != p.observation_space.shape or np.dtype(space.dtype).name != p.observation_space.dtype:
            return ""
        low, high = np.asarray(space.low), np.asarray(space.high)
        if np.array_equal(low, p.observation_space.low) and np.array_equal(high, p.observation_space.high):
            return ""
        p.observation_space = Box(low=low.copy(), high=high.copy(), dtype=np.dtype(space.dtype).name)
        return (f"observation_space: {env_id}'s own bounds (SB2's file had the old id's); the MLP policy does "
                "not read them, and SB3 accepts the env for training")
    finally:
        env.close()


def manifest_notes(spec: PolicySpec) -> list[str]:
    return list(_notes.pop(id(spec), []))


def outputs(spec: PolicySpec) -> list[str]:
    return sb3.outputs(spec)


def adjust_io(spec: PolicySpec, inputs: list, outputs_: list):
    return sb3.adjust_io(spec, inputs, outputs_)


def load(folder: Path, spec: PolicySpec):
    """rl_zoo3's own resolution of the model and its settings, then SB3 as the sb3 target."""
    from huggingface_sb3 import EnvironmentName
    from rl_zoo3.utils import get_model_path, get_saved_hyperparams

    folder = Path(folder)
    (algo_dir,) = [d for d in folder.iterdir() if d.is_dir()]
    (run,) = [d for d in algo_dir.iterdir() if d.is_dir()]
    meta = json.loads((run / sb3.META).read_text())
    env = EnvironmentName(meta["rl_zoo3"]["env"])
    _, model_path, log_path = get_model_path(0, str(folder), algo_dir.name, env)
    hyper, _stats_path = get_saved_hyperparams(str(Path(log_path) / env), test_mode=True)
    if bool(hyper.get("normalize")) != bool(meta.get("vecnormalize")):
        raise NotRepresentable("rl_zoo3 reads config.yml's normalize differently from the conversion",
                               why="config.yml", closest="none")
    if int(hyper.get("frame_stack", 0) or 0) != int(meta.get("frame_stack") or 0):
        raise NotRepresentable("rl_zoo3 reads config.yml's frame_stack differently from the conversion",
                               why="config.yml", closest="none")
    run_fn, runtime = sb3.load(Path(model_path).parent, spec)
    return run_fn, f"rl_zoo3 get_model_path / get_saved_hyperparams -> {Path(model_path).name}; {runtime}"
