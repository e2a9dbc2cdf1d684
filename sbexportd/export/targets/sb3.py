"""`sb3`: a Stable-Baselines3 save that SB3 (or sb3-contrib) loads and trains on its own.

    model.zip          written by SB3's own `save()`: `PPO.load("model.zip")` (A2C, SAC, TD3, DQN
                       from stable_baselines3; TRPO, RecurrentPPO from sb3_contrib) reads it with
                       no sbexportd installed; `predict(obs, deterministic=True)` gives SB2's action
    vecnormalize.pkl   SB3's VecNormalize with SB2's observation statistics (when the agent
                       was trained under VecNormalize), and the counts and return statistics
                       that continued training goes on from: `VecNormalize.load(path, venv)`
    sb3.json           which class loads model.zip, how to wrap the env (VecNormalize, frame
                       stack), and the notes of the conversion

The mapping (sbexportd.export.sb3_mapping, docs/targets/sb3.md) is exact or refused with
NotRepresentable. Verification happens in SB3 itself: model.zip loaded by its class,
its `predict` (and the distribution, value and Q heads SB3 computes) on the seeded
observations, through SB3's VecNormalize.normalize_obs and StackedObservations where the
agent had them; then a short `learn()` on an environment of the same spaces, which
must change the weights.
"""
from __future__ import annotations

import importlib
import json
import threading
import warnings
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ExportError, PathNotAllowed
from ...understand.spec import Box, DictSpace, Discrete, MultiBinary, MultiDiscrete, PolicySpec, Space
from ..conventions import action_dtype, output_names
from ..sb3_mapping import Sb3Plan, plan

FILE = "model.zip"
VECNORMALIZE = "vecnormalize.pkl"
META = "sb3.json"
LEARN_STEPS = 16

_lock = threading.Lock()            # SB3 construction seeds torch's global generator
# The plan of the spec last written, for outputs / adjust_io / manifest_notes (which the
# export core calls with the spec only): id(spec) -> (a weak reference to it, the plan).
_plans: dict[int, tuple[weakref.ref, Sb3Plan]] = {}


def _plan_of(spec: PolicySpec) -> Sb3Plan | None:
    ref, p = _plans.get(id(spec), (None, None))
    return p if ref is not None and ref() is spec else None


def outputs(spec: PolicySpec) -> list[str]:
    """The export outputs SB3 computes for this policy (verification checks these)."""
    p = _plan_of(spec)
    return list(p.outputs) if p is not None else [e for e, _ in output_names(spec)]


def adjust_io(spec: PolicySpec, inputs: list, outputs_: list) -> tuple[list, list]:
    keep = set(outputs(spec))
    return inputs, [o for o in outputs_ if o["name"] in keep]


def manifest_notes(spec: PolicySpec) -> list[str]:
    p = _plan_of(spec)
    if p is None:
        return []
    load = f"from {p.module} import {p.algo}; model = {p.algo}.load('{FILE}')"
    return [f"Stable-Baselines3: {p.module}.{p.algo}('{p.policy}'); {load}"] + p.notes


# --- spaces and a stand-in environment ---------------------------------------------------
def gym_space(space: Space):
    from gymnasium import spaces
    if isinstance(space, Box):
        return spaces.Box(low=space.low, high=space.high, shape=space.shape, dtype=np.dtype(space.dtype))
    if isinstance(space, Discrete):
        return spaces.Discrete(space.n)
    if isinstance(space, MultiDiscrete):
        return spaces.MultiDiscrete(list(space.nvec))
    if isinstance(space, MultiBinary):
        return spaces.MultiBinary(space.n)
    if isinstance(space, DictSpace):
        return spaces.Dict({k: gym_space(s) for k, s in space.spaces})
    raise ExportError(f"sb3: no gymnasium space for {space!r}")


def spaces_env(observation_space, action_space, goal: bool = False, seed: int = 0):
    """A gymnasium environment with the agent's spaces: observations sampled from the space,
    reward 0, episodes of 8 steps. Enough for SB3 to build a model and to run learn()."""
    import gymnasium as gym

    class SpacesEnv(gym.Env):
        metadata = {"render_modes": []}  # noqa: RUF012 - gymnasium's Env declares it per instance

        def __init__(self):
            self.observation_space, self.action_space = observation_space, action_space
            self.observation_space.seed(seed)
            self.rng = np.random.default_rng(seed)
            self.t = 0

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.t = 0
            return self.sample(), {}

        def sample(self):
            """Like the space's sample(), but a standard normal where a bound is
            unbounded or huge (gym's CartPole says float32 max: uniform draws would be
            ~1e38 and turn the network's sums into inf - inf)."""
            space = self.observation_space
            if isinstance(space, gym.spaces.Dict):
                return {k: self._box(s) if isinstance(s, gym.spaces.Box) else s.sample() for k, s in space.items()}
            return self._box(space) if isinstance(space, gym.spaces.Box) else space.sample()

        def _box(self, space):
            low, high = space.low.astype(np.float64), space.high.astype(np.float64)
            finite = np.isfinite(low) & np.isfinite(high) & (high - low < 1e6)
            x = np.where(finite, self.rng.uniform(np.where(finite, low, 0), np.where(finite, high, 1)),
                         self.rng.normal(size=space.shape))
            if np.issubdtype(space.dtype, np.integer):
                x = np.round(x)
            return np.clip(x, low, high).astype(space.dtype)

        def step(self, action):
            self.t += 1
            obs = self.sample()
            reward = float(self.compute_reward(obs["achieved_goal"], obs["desired_goal"], {})) if goal else 0.0
            return obs, reward, False, self.t >= 8, {}

        def compute_reward(self, achieved_goal, desired_goal, info):
            a, d = np.asarray(achieved_goal, np.float32), np.asarray(desired_goal, np.float32)
            return -(np.abs(a - d).sum(axis=-1) > 0.05).astype(np.float32)
    return SpacesEnv()


def _algo_class(algo: str, module: str):
    return getattr(importlib.import_module(module), algo)


# --- writing ------------------------------------------------------------------------------------
def build(model, p: Sb3Plan):
    """The SB3 model of a plan, holding SB2's weights (SB3's own classes, built by SB3)."""
    import torch
    from stable_baselines3.common.vec_env import DummyVecEnv

    cls = _algo_class(p.algo, p.module)
    kwargs = dict(p.policy_kwargs)
    kwargs["activation_fn"] = getattr(torch.nn, kwargs["activation_fn"])
    if kwargs.get("optimizer_class") == "RMSpropTFLike":
        from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike
        kwargs["optimizer_class"] = RMSpropTFLike
    if p.algo == "DQN" or p.algo in ("SAC", "TD3"):
        kwargs.pop("ortho_init", None)
    hyper = dict(p.hyperparameters)
    buffer_size = hyper.pop("buffer_size", None)
    if "her" in p.extra:
        from stable_baselines3 import HerReplayBuffer
        hyper["replay_buffer_class"] = HerReplayBuffer
        hyper["replay_buffer_kwargs"] = dict(p.extra["her"])
    if buffer_size is not None:
        hyper["buffer_size"] = 64  # the real size is set before saving: no huge buffer here
    obs_space, act_space = gym_space(p.observation_space), gym_space(p.action_space)
    env = DummyVecEnv([lambda: spaces_env(obs_space, act_space, goal="her" in p.extra)])
    with _lock, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            m = cls(p.policy, env, policy_kwargs=kwargs, device="cpu", seed=0, verbose=0, **hyper)
        except (TypeError, ValueError, AssertionError) as exc:
            raise ExportError(f"sb3: {p.algo}({p.policy}) refused the converted settings: {exc}") from exc
    _load_weights(m, p)
    if buffer_size is not None:
        m.buffer_size = int(buffer_size)
    if "log_ent_coef" in p.extra:
        with torch.no_grad():
            m.log_ent_coef.fill_(p.extra["log_ent_coef"])
    return m


def _load_weights(m, p: Sb3Plan) -> None:
    import torch
    have = m.policy.state_dict()
    sd: dict[str, Any] = {}
    for key in have:
        if key in p.state_dict:
            sd[key] = torch.from_numpy(np.ascontiguousarray(p.state_dict[key]))
            continue
        alias = key.replace("pi_features_extractor.", "features_extractor.").replace(
            "vf_features_extractor.", "features_extractor.")
        if alias in p.state_dict:  # SB3 keeps aliases of a shared features extractor
            sd[key] = torch.from_numpy(np.ascontiguousarray(p.state_dict[alias]))
            continue
        raise ExportError(f"sb3: the conversion has no value for {p.algo}'s {key}")
    extra = sorted(set(p.state_dict) - set(have))
    if extra:
        raise ExportError(f"sb3: {p.algo}({p.policy}) has no parameters {extra[:4]}")
    for key, value in sd.items():
        if tuple(value.shape) != tuple(have[key].shape):
            raise ExportError(f"sb3: {key} is {list(value.shape)} in the conversion, {list(have[key].shape)} in SB3")
    m.policy.load_state_dict(sd, strict=True)


def write(model, folder: Path) -> None:
    spec = model.spec
    p = plan(model)
    m = build(model, p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.save(str(folder / FILE))
    vn = _vecnormalize_node(spec)
    if vn is not None:
        write_vecnormalize(model, vn, folder / VECNORMALIZE, p)
    meta = {"format": "sbexportd-sb3", "algorithm": p.algo, "module": p.module, "policy": p.policy,
            "file": FILE, "vecnormalize": VECNORMALIZE if vn is not None else None,
            "frame_stack": spec.frame_stack or 0, "her": p.extra.get("her"),
            "load": f"from {p.module} import {p.algo}; model = {p.algo}.load('{FILE}')",
            "notes": p.notes}
    (folder / META).write_text(json.dumps(meta, indent=2) + "\n")
    remember(spec, p)


def remember(spec: PolicySpec, p: Sb3Plan) -> None:
    """Keep the plan for outputs / adjust_io / manifest_notes of this spec's export."""
    with _lock:
        for key in [k for k, (ref, _) in _plans.items() if ref() is None]:
            del _plans[key]
        _plans[id(spec)] = (weakref.ref(spec), p)


def _vecnormalize_node(spec: PolicySpec):
    return next((n for n in spec.nodes if n.op == "vecnormalize"), None)


def write_vecnormalize(model, node, path: Path, p: Sb3Plan) -> None:
    """SB3's VecNormalize (its own class, saved by its own save()) with SB2's statistics."""
    from stable_baselines3.common.running_mean_std import RunningMeanStd
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    spec = model.spec
    mean = np.asarray(spec.tensors[node.params["mean"]], np.float64)
    var = np.asarray(spec.tensors[node.params["var"]], np.float64)
    frame = Box(low=np.full(mean.shape, -np.inf, np.float32), high=np.full(mean.shape, np.inf, np.float32))
    obs_space = gym_space(frame)
    env = DummyVecEnv([lambda: spaces_env(obs_space, gym_space(spec.action_space))])
    settings = _zoo_normalize_kwargs(model)
    vn = VecNormalize(env, training=False, norm_obs=True, norm_reward=bool(settings.get("norm_reward", False)),
                      clip_obs=float(node.attrs["clip"]), epsilon=float(node.attrs["eps"]),
                      gamma=float(p.hyperparameters.get("gamma", 0.99)))
    rms = vn.obs_rms
    assert isinstance(rms, RunningMeanStd)  # one Box observation: one set of statistics
    rms.mean, rms.var = mean.copy(), var.copy()
    # The counts: without them SB3 starts at 1e-4 and the first update of a continued
    # training replaces SB2's statistics with that batch's.
    stats = model.vecnormalize
    missing = []
    if stats is not None and stats.count is not None:
        rms.count = float(stats.count)
    else:
        missing.append("obs_rms.count")
    if stats is not None and stats.returns is not None and stats.returns.mean.shape == vn.ret_rms.mean.shape:
        vn.ret_rms.mean = stats.returns.mean.copy()
        vn.ret_rms.var = stats.returns.var.copy()
        vn.ret_rms.count = float(stats.returns.count)
    else:
        missing.append("ret_rms")
    if missing:
        p.notes.append(f"vecnormalize.pkl: SB2's statistics did not hold {' or '.join(missing)}; SB3's initial "
                       "values stand there (count 1e-4: continued training starts those statistics afresh)")
    vn.save(str(path))


def _zoo_normalize_kwargs(model) -> dict[str, Any]:
    try:
        return dict(model.zoo_settings().normalize_kwargs or {})
    except PathNotAllowed:  # a config.yml leading out of serve --root: refused, not guessed
        raise
    except Exception:  # noqa: BLE001 - settings are a convenience here
        return {}


# --- loading back, in SB3 ----------------------------------------------------------------------
def load_folder(folder: Path, env=None, **overrides):
    """(SB3 model, VecNormalize or None, sb3.json) from an sb3 export folder."""
    import pickle
    folder = Path(folder)
    meta = json.loads((folder / META).read_text())
    cls = _algo_class(meta["algorithm"], meta["module"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = cls.load(str(folder / meta["file"]), env=env, device="cpu", **overrides)
    vn = None
    if meta.get("vecnormalize"):
        with open(folder / meta["vecnormalize"], "rb") as f:  # what VecNormalize.load does, without a venv
            vn = pickle.load(f)
    return m, vn, meta


def load(folder: Path, spec: PolicySpec):
    import stable_baselines3
    import torch
    folder = Path(folder)
    meta = json.loads((folder / META).read_text())
    env = None
    if meta.get("her"):
        # SB3 builds HerReplayBuffer at load time, which needs the environment
        from stable_baselines3.common.vec_env import DummyVecEnv
        assert spec.goal_observation is not None  # an HER agent's spec has its goal observation
        obs_space = gym_space(spec.goal_observation)
        act_space = gym_space(spec.action_space)
        env = DummyVecEnv([lambda: spaces_env(obs_space, act_space, goal=True)])
    m, vn, meta = load_folder(folder, env=env)
    run = runner(m, vn, meta, spec)
    _learns(folder, meta, m, spec)
    module = importlib.import_module(meta["module"])
    runtime = (f"{meta['module']} {module.__version__} {meta['algorithm']}.load + predict "
               f"(stable_baselines3 {stable_baselines3.__version__}, torch {torch.__version__})"
               + ("; SB3 VecNormalize.normalize_obs" if vn is not None else "")
               + ("; SB3 StackedObservations" if meta.get("frame_stack") else "")
               + f"; learn({LEARN_STEPS} steps) ran and changed the weights")
    return run, runtime


def runner(m, vn, meta: dict, spec: PolicySpec):
    """feeds (the export convention) -> SB3's answers under the convention's names."""
    import torch
    policy = m.policy
    frames = int(meta.get("frame_stack") or 0)
    algo = meta["algorithm"]
    goal = spec.goal_observation

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        obs: Any = np.asarray(feeds["obs"])  # a dict of arrays for a goal observation
        n = obs.shape[0]
        out: dict[str, np.ndarray] = {}
        if vn is not None:
            obs = vn.normalize_obs(obs.astype(np.float64))
        if frames:
            obs, out["state"] = _stack(obs, feeds["state"], feeds["mask"], frames)
        if goal is not None:
            obs = _goal_dict(obs, goal)
        kw: dict[str, Any] = {}
        if algo == "RecurrentPPO":
            state = np.asarray(feeds["state"], np.float32)
            k = state.shape[1] // 2
            kw = {"state": (state[None, :, k:], state[None, :, :k]),           # SB3: (h, c); SB2: (c, h)
                  "episode_start": np.asarray(feeds["mask"], np.float32).reshape(-1)}
        with torch.no_grad():
            actions, new_state = m.predict(obs, deterministic=True, **kw)
            out["action"] = np.asarray(actions).astype(action_dtype(spec)).reshape((n, *spec.action_space.shape))
            tensor = policy.obs_to_tensor(obs)[0]
            if algo == "RecurrentPPO":
                h, c = (torch.as_tensor(s) for s in kw["state"])
                starts = torch.as_tensor(kw["episode_start"])
                dist, _ = policy.get_distribution(tensor, (h, c), starts)
                out["values"] = policy.predict_values(tensor, (h, c), starts).numpy().reshape(-1)
                out["state"] = np.concatenate([new_state[1][0], new_state[0][0]], axis=1).astype(np.float32)
                out.update(_distribution(dist, spec))
            elif algo in ("PPO", "A2C", "TRPO"):
                out.update(_distribution(policy.get_distribution(tensor), spec))
                out["values"] = policy.predict_values(tensor).numpy().reshape(-1)
            elif algo == "SAC":
                mean, log_std, _ = policy.actor.get_action_dist_params(tensor)
                out["mean"], out["std"] = mean.numpy(), log_std.exp().numpy()
            elif algo == "DQN":
                out["q_values"] = policy.q_net(tensor).numpy()
        return out
    return run


def _distribution(dist, spec: PolicySpec) -> dict[str, np.ndarray]:
    space = spec.action_space
    d = dist.distribution
    if isinstance(space, Box):
        return {"mean": d.mean.numpy(), "std": d.stddev.numpy()}
    if isinstance(space, MultiDiscrete):
        return {f"probs_{i}": c.probs.numpy() for i, c in enumerate(d)}
    return {"probs": d.probs.numpy()}


def _stack(obs, state, mask, n: int):
    """SB3's own StackedObservations, primed with the previous frames carried in `state`."""
    from gymnasium import spaces
    from stable_baselines3.common.vec_env.stacked_observations import StackedObservations

    obs = np.asarray(obs, np.float32)
    b, frame = obs.shape[0], obs.shape[1:]
    stacker = StackedObservations(b, n, spaces.Box(-np.inf, np.inf, frame, np.float32), channels_order="last")
    prev = np.asarray(state, np.float32).reshape((b, *frame[:-1], frame[-1] * (n - 1)))
    # update() shifts the stack by one frame first: the oldest slot is dropped
    stacker.stacked_obs[...] = np.concatenate([np.zeros_like(obs), prev], axis=-1)
    dones = np.asarray(mask).reshape(-1) > 0.5
    stacked, _ = stacker.update(obs, dones, [{} for _ in range(b)])
    return stacked, stacked[..., frame[-1]:].reshape(b, -1).astype(np.float32)


def _goal_dict(flat: np.ndarray, goal: DictSpace) -> dict[str, np.ndarray]:
    out, at = {}, 0
    for key, space in goal.spaces:
        size = int(np.prod(space.shape or (1,)))
        out[key] = flat[:, at:at + size].reshape((flat.shape[0], *space.shape))
        at += size
    return out


def _learns(folder: Path, meta: dict, m, spec: PolicySpec) -> None:
    """A short learn() from the saved file on an environment of the agent's spaces: it must
    run and move the weights (SB3 trains the converted model, not a fresh one)."""
    import torch
    from stable_baselines3.common.vec_env import DummyVecEnv

    obs_space, act_space = m.observation_space, m.action_space
    env = DummyVecEnv([lambda: spaces_env(obs_space, act_space, goal=bool(meta.get("her")), seed=1)])
    on_policy = meta["algorithm"] in ("PPO", "A2C", "TRPO", "RecurrentPPO")
    overrides: dict[str, Any] = ({"n_steps": 8, "batch_size": 8, "n_epochs": 1} if meta["algorithm"] in
                                 ("PPO", "RecurrentPPO") else {"n_steps": 8, "batch_size": 8}
                                 if meta["algorithm"] == "TRPO" else {"n_steps": 8} if on_policy else
                                 {"learning_starts": 8, "batch_size": 4, "buffer_size": 64, "train_freq": 1,
                                  "gradient_steps": 1, "policy_delay": 1} if meta["algorithm"] == "TD3" else
                                 {"learning_starts": 8, "batch_size": 4, "buffer_size": 64, "train_freq": 1,
                                  "gradient_steps": 1})
    if meta.get("her"):
        overrides["learning_starts"] = 16  # HER samples whole episodes (8 steps each)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainee, _, _ = load_folder(folder, env=env, **overrides)
        before = {k: v.clone() for k, v in trainee.policy.state_dict().items()}
        try:
            trainee.learn(total_timesteps=LEARN_STEPS + overrides.get("learning_starts", 0))
        except Exception as exc:  # SB3's own failure, reported as the export's
            raise ExportError(f"sb3: {meta['algorithm']}.learn() failed on the converted model: "
                              f"{type(exc).__name__}: {exc}", folder) from exc
    after = trainee.policy.state_dict()
    if not any(not torch.equal(before[k], after[k]) for k in before):
        raise ExportError(f"sb3: {meta['algorithm']}.learn() ran but changed no weight", folder)
