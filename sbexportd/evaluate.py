"""`sbexportd evaluate`: an agent (an SB2 file, or an export folder in its own runtime)
playing episodes of its environment in gymnasium.

What the agent saw in training is reproduced: for an SB2 file, VecNormalize and frame
stacking are decided as the zoo's enjoy.py did (`auto`) and built into the policy;
an export carries them inside its graph (state for the stacked frames), and an sb3 /
rl-zoo3 export runs inside SB3's own VecNormalize and VecFrameStack wrappers. The
zoo's env wrappers (config.yml `env_wrapper`, e.g. TimeFeatureWrapper; recorded in an
export's manifest) wrap the environment, as the zoo's enjoy.py did. Episodes
are seeded (env.reset(seed=seed) first, then the environment's own sequence), actions
deterministic; returns are the environment's raw rewards, as the zoo's benchmark
reported them.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .environments import EnvWrapper, Published, make, published, successor, wrap
from .errors import BadObservation, ExportError, ExportFolderError, SbExportError
from .read.files import Confine
from .registry import Registry

MAX_EPISODES = 10_000
Runner = Callable[[dict], dict]
# export targets evaluate runs in their own runtime from the manifest alone:
# (folder, manifest) -> (feeds -> {action, state}, runtime); sb3 and rl-zoo3 step in SB3 (Sb3Agent)
RUNNERS: Registry[Callable[[Path, dict], tuple[Runner, str]]] = Registry("export runtime", ExportError)
runner = RUNNERS.register
SB3_TARGETS = ("sb3", "rl-zoo3")


@dataclass
class Evaluation:
    source: str
    runtime: str
    env: str                     # the gymnasium id run
    trained_env: str             # the id the agent was trained on
    episodes: int
    seed: int
    returns: list[float]
    lengths: list[int]
    seconds: float
    algo: str = ""
    dynamics_note: str = ""
    published: Published | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns)) if self.returns else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.returns)) if self.returns else math.nan

    def within_published(self) -> bool | None:
        """|mean - published mean| <= published std (None when nothing is published)."""
        if self.published is None:
            return None
        return abs(self.mean - self.published.mean) <= self.published.std

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "runtime": self.runtime, "env": self.env, "trained_env": self.trained_env,
                "algo": self.algo, "episodes": self.episodes, "seed": self.seed,
                "mean_reward": self.mean, "std_reward": self.std, "returns": self.returns,
                "lengths": self.lengths, "seconds": round(self.seconds, 3),
                "published": self.published.as_dict() if self.published else None,
                "within_published_std": self.within_published(), "dynamics_note": self.dynamics_note or None,
                "notes": self.notes}

    def render(self) -> str:
        lines = [f"{self.source}: {self.episodes} episodes of {self.env}"
                 + (f" (trained on {self.trained_env})" if self.trained_env != self.env else "")
                 + f", seed {self.seed}, {self.runtime}",
                 (f"mean reward {self.mean:.3f} +- {self.std:.3f} (episode lengths {min(self.lengths)}-"
                  f"{max(self.lengths)}; {self.seconds:.1f} s)")]
        if self.published:
            p = self.published
            verdict = "within" if self.within_published() else "OUTSIDE"
            lines.append(f"rl-baselines-zoo published {p.mean:.3f} +- {p.std:.3f} for {p.algo} on {p.env} "
                         f"({p.n_episodes} episodes): {verdict} its std")
        else:
            lines.append("no published figure for this agent")
        if self.dynamics_note:
            lines.append(f"note: {self.dynamics_note}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# --- agents: obs -> action, carrying state -----------------------------------------------
class Agent:
    """reset() at an episode start; act(obs) -> the env action."""
    runtime = ""
    algo = ""
    trained_env = ""
    notes: list[str]  # each agent's own (set in __init__)
    wrappers: list[EnvWrapper]  # the zoo's env wrappers it was trained inside (set in __init__)

    def wrapped(self, env_id: str):
        """The environment, inside the agent's training wrappers."""
        for w in self.wrappers:
            self.notes.append(f"inside {w.name} (config.yml env_wrapper {w.trained_with})")
        return wrap(make(env_id), self.wrappers)

    def reset(self) -> None:
        ...

    def act(self, obs):
        raise NotImplementedError


class StatefulAgent(Agent):
    """A policy function feeds -> outputs with the export convention (obs, state, mask ->
    action, state), one environment at a time."""

    def __init__(self, run: Callable[[dict], dict], state_size: int, goal_keys: list[str] | None, obs_dtype: str,
                 obs_shape: list | None = None):
        self.run, self.state_size, self.goal_keys, self.obs_dtype = run, state_size, goal_keys, obs_dtype
        self.obs_shape = obs_shape  # per observation, as the export's manifest gives it (None: not checked)
        self.notes = []
        self.wrappers = []
        self.reset()

    def check(self, env, env_id: str) -> None:
        """The environment's observations must fit the export's input: a runtime fed
        others fails in its own words (or, TF Lite, silently)."""
        shape = getattr(env.observation_space, "shape", None)
        if self.goal_keys is None and self.obs_shape is not None and shape is not None \
                and list(shape) != list(self.obs_shape):
            raise BadObservation(f"{env_id}'s observations are {list(shape)}; this export takes {self.obs_shape} "
                                 "(evaluate it on the environment it was trained on)")

    def reset(self) -> None:
        self.state = np.zeros((1, self.state_size), np.float32)
        self.mask = np.ones((1,), np.float32)

    def act(self, obs):
        if self.goal_keys is not None:
            obs = np.concatenate([np.asarray(obs[k], np.float32).reshape(-1) for k in self.goal_keys])
        feeds = {"obs": np.asarray(obs).astype(self.obs_dtype)[None]}
        if self.state_size:
            feeds["state"], feeds["mask"] = self.state, self.mask
        out = self.run(feeds)
        if self.state_size:
            self.state = np.asarray(out["state"], np.float32).reshape(1, -1)
            self.mask = np.zeros((1,), np.float32)
        return np.asarray(out["action"])[0]


def sb2_agent(path: Path, backend: str, vecnormalize, frame_stack, algo: str | None = None,
              confine: Confine | None = None) -> Agent:
    from .model import load
    model = load(path, vecnormalize, frame_stack=frame_stack, algo=algo, confine=confine)
    spec = model.spec

    def run(feeds):
        out = model.predict(feeds["obs"], state=feeds.get("state"), mask=feeds.get("mask"), backend=backend)
        return {"action": out["actions"], "state": out.get("state")}
    goal = [k for k, _ in spec.goal_observation.spaces] if spec.goal_observation else None
    agent = StatefulAgent(run, spec.state_size, goal, spec.input_dtype)
    agent.runtime = f"sbexportd {backend} backend"
    agent.algo = spec.algo
    agent.trained_env = path.stem
    agent.notes = [f"VecNormalize statistics applied ({Path(str(model.vecnormalize.source)).name})"] \
        if spec.vecnormalize and model.vecnormalize is not None else []
    if spec.frame_stack:
        agent.notes.append(f"{spec.frame_stack} frames stacked")
    agent.wrappers = model.env_wrappers()
    return agent


def export_agent(folder: Path) -> Agent:
    manifest = read_manifest(folder)
    target: str = manifest["target"]  # a string: read_manifest checked
    try:
        if target in SB3_TARGETS:
            agent: Agent = Sb3Agent(folder, manifest)
        elif target in RUNNERS:
            run, runtime = RUNNERS[target](folder, manifest)
            inputs = {i["name"]: i for i in manifest["inputs"]}
            state, obs = inputs.get("state"), manifest["inputs"][0]
            goal = (manifest.get("goal_observation") or {}).get("keys")
            agent = StatefulAgent(run, int(state["shape"][1]) if state else 0, goal, obs["dtype"],
                                  list(obs["shape"][1:]) if obs["name"] == "obs" else None)
            agent.runtime = runtime
        else:
            raise ExportError(f"evaluate runs {', '.join((*SB3_TARGETS, *RUNNERS))} exports in their runtime; "
                              f"this is a {str(target)[:40]!r} export (evaluate the SB2 file, or one of those "
                              "exports)", folder)
    except SbExportError:
        raise
    except ImportError as exc:
        raise ExportFolderError(f"the runtime of this {target} export is not installed here: {exc}", folder) from exc
    except Exception as exc:
        raise ExportFolderError(f"this {target} export cannot be loaded in its runtime: {type(exc).__name__}: "
                                f"{str(exc)[:200]}", folder) from exc
    try:
        agent.wrappers = [EnvWrapper.from_dict(w) for w in manifest.get("env_wrappers") or []]
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ExportFolderError("manifest.json's env_wrappers is not what `sbexportd export` writes (a list of "
                                "{trained_with, name, kwargs})", folder) from None
    source = manifest.get("source") or {}
    agent.algo = str(source.get("algorithm", ""))
    agent.trained_env = Path(str(source.get("file", ""))).stem
    return agent


def read_manifest(folder: Path) -> dict:
    """An export folder's manifest.json, with the fields evaluate reads, or ExportFolderError."""
    path = folder / "manifest.json"
    if not path.is_file():
        raise ExportFolderError("not an export folder (no manifest.json); pass an SB2 file or an export "
                                "target's folder", folder)
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ExportFolderError(f"manifest.json is not JSON ({type(exc).__name__})", folder) from None
    def entries(key: str) -> bool:
        value = manifest.get(key)
        return isinstance(value, list) and bool(value) and all(isinstance(i, dict) and "name" in i for i in value)
    ok = isinstance(manifest, dict) and isinstance(manifest.get("target"), str) and entries("inputs") \
        and entries("outputs")
    if not ok:
        raise ExportFolderError("manifest.json lacks what `sbexportd export` writes (target, inputs, outputs)", folder)
    return manifest


def _io(manifest: dict) -> tuple[list[str], str | None, Callable[[dict], dict]]:
    """The manifest's input names, its state output (or None), and a function giving
    a runtime's outputs as {action, state}."""
    names = [i["name"] for i in manifest["inputs"]]
    outs = [o["name"] for o in manifest["outputs"]]
    state_out = next((o for o in outs if o in ("state", "state_out")), None)

    def conform(got: dict) -> dict:
        return {"action": np.asarray(got["action"]), "state": None if state_out is None else np.asarray(got[state_out])}
    return names, state_out, conform


@runner("onnx")
def _onnx(folder: Path, manifest: dict) -> tuple[Runner, str]:
    import onnxruntime as ort
    names, state_out, conform = _io(manifest)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(folder / "policy.onnx"), options, providers=["CPUExecutionProvider"])
    wanted = ["action"] + ([state_out] if state_out else [])

    def run(feeds):
        return conform(dict(zip(wanted, session.run(wanted, {k: feeds[k] for k in names}), strict=True)))
    return run, f"onnxruntime {ort.__version__}"


@runner("pytorch")
def _pytorch(folder: Path, manifest: dict) -> tuple[Runner, str]:
    import torch
    names, _, conform = _io(manifest)
    module = torch.jit.load(str(folder / "policy.torchscript.pt"), map_location="cpu").eval()

    def run(feeds):
        with torch.inference_mode():
            got = module(*[torch.from_numpy(np.ascontiguousarray(feeds[k])) for k in names])
        return conform({k: v.numpy() for k, v in got.items()})
    return run, f"TorchScript (torch {torch.__version__})"


@runner("tflite")
def _tflite(folder: Path, manifest: dict) -> tuple[Runner, str]:
    import warnings

    from .export.targets._tf_common import import_tf
    tf = import_tf()
    names, _, conform = _io(manifest)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice (LiteRT)
        interpreter = tf.lite.Interpreter(model_path=str(folder / "policy.tflite"))
    signature = interpreter.get_signature_runner("serving_default")

    def run(feeds):
        return conform(signature(**{k: feeds[k] for k in names}))
    return run, f"tensorflow lite {tf.__version__}"


@runner("savedmodel")
def _savedmodel(folder: Path, manifest: dict) -> tuple[Runner, str]:
    from .export.targets._tf_common import import_tf
    tf = import_tf()
    names, _, conform = _io(manifest)
    fn = tf.saved_model.load(str(folder)).signatures["serving_default"]

    def run(feeds):
        return conform({k: v.numpy() for k, v in fn(**{k: tf.constant(feeds[k]) for k in names}).items()})
    return run, f"tensorflow {tf.__version__} saved_model"


class Sb3Agent(Agent):
    """An sb3 / rl-zoo3 export, stepped by SB3 inside its own env wrappers (built in
    `wrap`): VecNormalize.load and VecFrameStack, as rl_zoo3's create_test_env does."""

    def __init__(self, folder: Path, manifest: dict):
        from .export.targets import sb3
        self.folder = sb3_folder(folder)
        self.meta = json.loads((self.folder / sb3.META).read_text())
        self.model: Any = None  # SB3's, loaded by wrap() inside its env wrappers
        import stable_baselines3
        self.runtime = (f"{self.meta['module']}.{self.meta['algorithm']} (stable_baselines3 "
                        f"{stable_baselines3.__version__})")
        self.notes = []
        self.wrappers = []

    def wrap(self, env_fn):
        from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecFrameStack, VecNormalize

        from .export.targets import sb3
        venv: VecEnv = DummyVecEnv([env_fn])
        if self.meta.get("vecnormalize"):
            norm = VecNormalize.load(str(self.folder / self.meta["vecnormalize"]), venv)
            norm.training, norm.norm_reward = False, False
            venv = norm
            self.notes.append("SB3 VecNormalize (training=False, norm_reward=False)")
        if self.meta.get("frame_stack"):
            venv = VecFrameStack(venv, int(self.meta["frame_stack"]))
            self.notes.append(f"SB3 VecFrameStack({self.meta['frame_stack']})")
        self.model, _, _ = sb3.load_folder(self.folder, env=venv if self.meta.get("her") else None)
        return venv


def sb3_folder(folder: Path) -> Path:
    """An sb3 export folder, or the one inside an rl-zoo3 layout (its sb3.json)."""
    if (folder / "sb3.json").is_file():
        return folder
    found = sorted(folder.rglob("sb3.json"))
    if len(found) != 1:
        raise ExportError("no single sb3.json in this rl-zoo3 export", folder)
    return found[0].parent


# --- episodes --------------------------------------------------------------------------------------
def evaluate(source: str | Path, env: str | None = None, episodes: object = 10, *, seed: int = 0,
             backend: str = "numpy", vecnormalize="auto", frame_stack="auto", algo: str | None = None,
             benchmark: str | Path | None = None, max_steps: int = 100_000,
             cancelled: Callable[[], bool] | None = None, confine: Confine | None = None) -> Evaluation:
    """Run `episodes` deterministic episodes of `source` (an SB2 .zip/.pkl, or an export
    folder with manifest.json) in gymnasium's `env` (default: the agent file's name, the
    zoo's convention), mapped to its gymnasium successor. See the module docstring.
    confine: sbexportd.load's, for an SB2 file and what is read beside it (serve --root)."""
    source = Path(source)
    if not isinstance(episodes, int) or isinstance(episodes, bool) or not 1 <= episodes <= MAX_EPISODES:
        raise BadObservation(f"episodes must be a number from 1 to {MAX_EPISODES}, got {episodes!r:.40}")
    if source.is_dir():
        agent = export_agent(source)
    else:
        agent = sb2_agent(source, backend, vecnormalize, frame_stack, algo, confine)
    trained = env or agent.trained_env
    if not trained:
        raise SbExportError("which environment? pass env (the agent's file name is not an environment id)", source)
    succ = successor(trained)
    start = time.perf_counter()
    if isinstance(agent, Sb3Agent):
        returns, lengths = _run_vec(agent, trained, episodes, seed, max_steps, cancelled)
    else:
        returns, lengths = _run(agent, trained, episodes, seed, max_steps, cancelled)
    algo_name = agent.algo
    pub = published(algo_name, trained, benchmark, near=source if not source.is_dir() else None) \
        if algo_name else None
    return Evaluation(str(source), agent.runtime, succ.new, trained, episodes, seed, returns, lengths,
                      time.perf_counter() - start, algo_name, succ.changed, pub, list(agent.notes))


def _action(env, action):
    from gymnasium import spaces
    space = env.action_space
    if isinstance(space, spaces.Discrete):
        return int(np.asarray(action).reshape(()))
    return np.asarray(action).reshape(space.shape).astype(space.dtype)


def _check(cancelled) -> None:
    if cancelled is not None and cancelled():
        from .errors import Cancelled
        raise Cancelled("evaluation cancelled")


def _run(agent: Agent, env_id: str, episodes: int, seed: int, max_steps: int, cancelled) -> tuple[list, list]:
    env = agent.wrapped(env_id)
    returns, lengths = [], []
    try:
        if isinstance(agent, StatefulAgent):
            agent.check(env, env_id)
        env.action_space.seed(seed)
        for i in range(episodes):
            obs, _ = env.reset(seed=seed) if i == 0 else env.reset()
            agent.reset()
            total, steps = 0.0, 0
            while steps < max_steps:
                obs, reward, terminated, truncated, _ = env.step(_action(env, agent.act(obs)))
                total += float(reward)
                steps += 1
                if terminated or truncated:
                    break
                if steps % 256 == 0:
                    _check(cancelled)
            returns.append(total)
            lengths.append(steps)
            _check(cancelled)
    finally:
        env.close()
    return returns, lengths


def _run_vec(agent: Sb3Agent, env_id: str, episodes: int, seed: int, max_steps: int, cancelled) -> tuple[list, list]:
    venv = agent.wrap(lambda: agent.wrapped(env_id))
    returns: list[float] = []
    lengths: list[int] = []
    try:
        venv.seed(seed)
        obs = venv.reset()
        state, starts = None, np.ones((1,), bool)
        total, steps = 0.0, 0
        while len(returns) < episodes:
            action, state = agent.model.predict(obs, state=state, episode_start=starts, deterministic=True)
            obs, reward, done, _ = venv.step(action)
            total += float(np.asarray(reward).reshape(-1)[0])  # norm_reward is off: the env's own reward
            steps += 1
            starts = np.asarray(done, bool)
            if done[0] or steps >= max_steps:
                returns.append(total)
                lengths.append(steps)
                total, steps = 0.0, 0
                _check(cancelled)
                if not done[0]:
                    obs = venv.reset()
                    starts = np.ones((1,), bool)
    finally:
        venv.close()
    return returns, lengths
