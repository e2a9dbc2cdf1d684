"""What every fixture generator shares, in any Stable Baselines 2 release from 2.2 to 2.10.

make_fixtures.py (SB2 2.10.2) and make_era_fixtures.py (older releases, one venv each)
import this module; check_current.py uses it to ask SB2 2.10.2 about older files.
It imports only numpy, gym, TensorFlow and cloudpickle at top level, so it loads in
every release's venv (Python 3.7, TensorFlow 1.15.5, that release's gym).

The golden format (keys, shapes, observation sampler) is described in README.md.
"""
import json
import os
import platform
import random
import zlib

import gym
import numpy as np
import tensorflow as tf
from gym import spaces

N_OBS = 32          # observations per non-recurrent golden
T_STEPS = 5         # time steps per recurrent golden
OBS_SEED = 12345    # np.random.RandomState seed for the golden observations


# ---------------------------------------------------------------------------
# Spaces. Factories, so that every case gets fresh space objects (own RNG state).
def f32(*xs):
    return np.array(xs, dtype=np.float32)


SPACES = {
    # observations
    "vec": lambda: spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32),
    "bounded": lambda: spaces.Box(low=f32(-3, 0, -1, 2), high=f32(5, 1, 1, 8), dtype=np.float32),
    "offset": lambda: spaces.Box(low=f32(0, -10, 5, -1), high=f32(4, -6, 9, 1), dtype=np.float32),
    "dobs": lambda: spaces.Discrete(5),
    "mdobs": lambda: spaces.MultiDiscrete([3, 4, 2]),
    "mbobs": lambda: spaces.MultiBinary(5),
    "img": lambda: spaces.Box(0, 255, shape=(36, 36, 1), dtype=np.uint8),      # smallest nature_cnn input
    # non-square, 3 channels, and conv3 output 2x1 so the flatten order into fc1 matters
    "img_wide": lambda: spaces.Box(0, 255, shape=(44, 40, 3), dtype=np.uint8),
    "img_float": lambda: spaces.Box(-1.0, 1.0, shape=(36, 36, 1), dtype=np.float32),  # (x-low)/(high-low)
    # actions
    "discrete": lambda: spaces.Discrete(3),
    "box": lambda: spaces.Box(low=f32(-2, 0), high=f32(1, 3), dtype=np.float32),  # asymmetric bounds
    "box_sym": lambda: spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
    # symmetric but not [-1, 1]: SB2 < 2.9 scales DDPG/SAC/TD3 actions by |low| (and asserts
    # symmetric bounds when training), 2.9+ unscales from [low, high]; both give 2 * tanh here
    "box_sym2": lambda: spaces.Box(-2.0, 2.0, shape=(2,), dtype=np.float32),
    "multidiscrete": lambda: spaces.MultiDiscrete([3, 2]),
    "multibinary": lambda: spaces.MultiBinary(3),
}


_BOX_SAMPLE_OVERFLOWS = tuple(int(x) for x in gym.__version__.split(".")[:2]) < (0, 13)


def seed_space(space, seed):
    """gym >= 0.11 seeds each space; gym 0.10 samples from the module-level gym.spaces.prng."""
    if hasattr(space, "seed"):
        space.seed(seed)
    else:
        from gym.spaces import prng
        prng.seed(seed)


class SpaceEnv(gym.Env):
    """Tiny episodic env with given spaces: observations sampled from the space,
    a reward that depends a little on observation and action."""

    def __init__(self, observation_space, action_space, seed, ep_len=16):
        self.observation_space, self.action_space = observation_space, action_space
        seed_space(self.observation_space, seed)
        seed_space(self.action_space, seed + 1)
        self.rng = np.random.RandomState(seed + 2)
        self.ep_len, self.t, self._obs = ep_len, 0, None

    def _sample(self):
        space = self.observation_space
        if _BOX_SAMPLE_OVERFLOWS and isinstance(space, spaces.Box) and not np.all(np.isfinite(space.low)):
            # gym < 0.13 samples Box uniformly in [low, high], which overflows for infinite bounds
            # (gym 0.13+ draws a standard normal there): do what the newer gym does
            return self.rng.normal(size=space.shape).astype(space.dtype)
        return space.sample()

    def reset(self):
        self.t = 0
        self._obs = self._sample()
        return self._obs

    def step(self, action):
        self.t += 1
        o = np.asarray(self._obs, dtype=np.float64).ravel()
        a = np.asarray(action, dtype=np.float64).ravel()
        reward = float(np.tanh(0.1 * o.mean()) - 0.1 * np.mean(np.square(a - 0.5))
                       + 0.05 * self.rng.randn())
        self._obs = self._sample()
        return self._obs, reward, self.t >= self.ep_len, {}

    def render(self, mode="human"):
        pass


def make_env(case, seed, idx=0):
    return SpaceEnv(SPACES[case["obs"]](), SPACES[case["act"]](), seed + 1000 * idx)


# ---------------------------------------------------------------------------
def sample_obs(space, rng, n):
    """Same sampler as ../shared/tools/oracle.py, except integer-dtype Box
    (images): uniform integers over the whole inclusive [low, high] range."""
    if isinstance(space, spaces.Box):
        if np.issubdtype(space.dtype, np.integer):
            return rng.randint(space.low.astype(np.int64), space.high.astype(np.int64) + 1,
                               size=(n,) + space.shape).astype(space.dtype)
        low, high = space.low.astype(np.float64), space.high.astype(np.float64)
        finite = np.isfinite(low) & np.isfinite(high) & (high - low < 1e6)
        normal = rng.normal(0.0, 1.0, size=(n,) + space.shape)
        uni = rng.uniform(np.where(finite, low, 0), np.where(finite, high, 1), size=(n,) + space.shape)
        return np.where(finite, uni, normal).astype(space.dtype)
    if isinstance(space, spaces.Discrete):
        return rng.randint(0, space.n, size=(n,))
    if isinstance(space, spaces.MultiDiscrete):
        return np.stack([rng.randint(0, k, size=(n,)) for k in space.nvec], axis=1)
    if isinstance(space, spaces.MultiBinary):
        return rng.randint(0, 2, size=(n, space.n))
    raise TypeError("unsupported observation space %r" % (space,))


def _num(x):
    x = float(x)
    if np.isfinite(x):
        return x
    return "inf" if x > 0 else "-inf"


def space_info(space):
    info = {"type": type(space).__name__, "repr": repr(space)}
    if isinstance(space, spaces.Box):
        info.update(shape=list(space.shape), dtype=str(space.dtype))
        if space.low.size <= 16:
            info.update(low=[_num(v) for v in space.low.ravel()], high=[_num(v) for v in space.high.ravel()])
        else:
            info.update(low_unique=sorted({_num(v) for v in np.unique(space.low)}, key=str),
                        high_unique=sorted({_num(v) for v in np.unique(space.high)}, key=str))
    elif isinstance(space, spaces.Discrete):
        info.update(n=int(space.n), shape=[])
    elif isinstance(space, spaces.MultiDiscrete):
        info.update(nvec=[int(v) for v in space.nvec], shape=list(space.shape))
    elif isinstance(space, spaces.MultiBinary):
        info.update(n=int(space.n), shape=[int(space.n)])
    elif isinstance(space, spaces.Dict):
        info["spaces"] = {k: space_info(v) for k, v in space.spaces.items()}
    return info


def kw_repr(value):
    """repr without memory addresses (functions as module.name)."""
    if callable(value) and hasattr(value, "__name__"):
        return "%s.%s" % (getattr(value, "__module__", "?"), value.__name__)
    if isinstance(value, dict):
        return "{%s}" % ", ".join("%r: %s" % (k, kw_repr(v)) for k, v in value.items())
    if isinstance(value, list):
        return "[%s]" % ", ".join(kw_repr(v) for v in value)
    return repr(value)


def case_seed(name):
    return zlib.crc32(name.encode()) % 100000


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    tf.set_random_seed(seed)


def close(model):
    if model is None:
        return
    inner = getattr(model, "model", None) if type(model).__name__ == "HER" else model
    sess = getattr(inner, "sess", None)
    if sess is not None:
        sess.close()


# ---------------------------------------------------------------------------
# Recording SB2's answers
def algo_name(model):
    return type(model).__name__.lower()


def is_recurrent(model):
    return bool(getattr(model.policy, "recurrent", False))


def actor_critic_policy(inner):
    for attr in ("act_model", "step_model", "policy_pi"):
        p = getattr(inner, attr, None)
        if p is not None and hasattr(p, "value"):
            return p
    return None


def record_probs(rec, model, action_space, obs, state=None, mask=None, suffix=""):
    probs = model.action_probability(obs, state, mask)
    if probs is None:
        return
    if isinstance(action_space, spaces.Box):
        if isinstance(probs, (list, tuple)):
            rec["mean" + suffix], rec["std" + suffix] = np.asarray(probs[0]), np.asarray(probs[1])
        else:
            # SB2 < 2.4: policy_proba is the bare Gaussian mean (the std is not part of the answer)
            rec["mean" + suffix] = np.asarray(probs)
    elif isinstance(probs, list):
        for i, p in enumerate(probs):
            rec["probs_%d%s" % (i, suffix)] = np.asarray(p)
    else:
        rec["probs" + suffix] = np.asarray(probs)


def record_flat(rec, model, inner, obs):
    """The algorithm-specific extras for a batch of (flat) observations."""
    name = algo_name(inner)
    if name in ("a2c", "acer", "acktr", "ppo2", "trpo", "ppo1", "gail"):
        record_probs(rec, model, inner.action_space, obs)
        rec["values"] = np.asarray(actor_critic_policy(inner).value(obs))
    elif name == "dqn":
        with inner.sess.as_default():
            _, q_values, _ = inner.step_model.step(obs)
        rec["q_values"] = np.asarray(q_values)
        record_probs(rec, model, inner.action_space, obs)
    elif name == "sac":
        p = inner.policy_tf
        mean, std = p.proba_step(obs)
        rec["mean"], rec["std"] = np.asarray(mean), np.asarray(std)
        rec["values"] = inner.sess.run(p.value_fn, {p.obs_ph: obs}).reshape(-1)
    elif name == "ddpg":
        rec["values"] = inner.sess.run(inner.critic_with_actor_tf, {inner.obs_train: obs}).reshape(-1)
    # td3: actions only


def decision_margins(rec, action_space):
    """How far SB2's deterministic choices are from a tie: a test tolerance hint."""
    out = {}
    for k, v in rec.items():
        if k.startswith("probs") and not k.endswith("_error"):
            p = np.asarray(v, np.float64).reshape(-1, v.shape[-1])
            if isinstance(action_space, spaces.MultiBinary):
                out[k + "_min_abs_p_minus_half"] = float(np.abs(p - 0.5).min())
            else:
                s = np.sort(p, axis=1)
                out[k + "_min_top2_gap"] = float((s[:, -1] - s[:, -2]).min())
        if k == "q_values":
            s = np.sort(np.asarray(v, np.float64), axis=1)
            out["q_values_min_top2_gap"] = float((s[:, -1] - s[:, -2]).min())
    # on-policy Gaussian: predict returns clip(mean, low, high) (SB2 >= 2.4; earlier: the mean)
    if (isinstance(action_space, spaces.Box) and "mean" in rec and "state" not in rec
            and rec["mean"].shape == rec["actions"].shape):
        out["n_actions_clipped"] = int((np.abs(rec["actions"] - rec["mean"]) > 0).sum())
    return out


def first_answer(model, rec):
    """What a second load of the same agent must reproduce: deterministic actions (+ state)."""
    if "mask" in rec:
        a, s = model.predict(rec["obs"][0], state=rec["state"][0], mask=rec["mask"][0], deterministic=True)
        return np.concatenate([np.asarray(a, np.float64).ravel(), np.asarray(s, np.float64).ravel()])
    return np.asarray(model.predict(rec["obs"], deterministic=True)[0], np.float64).ravel()


def expected_first(rec):
    if "mask" in rec:
        return np.concatenate([rec["actions"][0].astype(np.float64).ravel(), rec["state_out"][0].ravel()])
    return rec["actions"].astype(np.float64).ravel()


def versions():
    import cloudpickle
    import stable_baselines as sb
    return {"stable_baselines": sb.__version__, "tensorflow": tf.__version__, "gym": gym.__version__,
            "numpy": np.__version__, "cloudpickle": cloudpickle.__version__,
            "python": platform.python_version()}


def policy_name(cls):
    return "%s.%s" % (cls.__module__, cls.__name__)


# ---------------------------------------------------------------------------
def read_meta(case_dir):
    path = os.path.join(case_dir, "meta.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_meta(case_dir, meta):
    with open(os.path.join(case_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=False)


def release_of(meta):
    return meta["versions"]["stable_baselines"]


def drop_stale(out_dir, known, release):
    """Remove fixtures of `release` whose case is no longer in the generator's list
    (a full run only; other releases' fixtures are left alone)."""
    for name in os.listdir(out_dir):
        meta = read_meta(os.path.join(out_dir, name))
        if meta is not None and name not in known and release_of(meta) == release:
            import shutil
            shutil.rmtree(os.path.join(out_dir, name))


def write_index(out_dir):
    """OUT_DIR/index.json: every case of every release (built from the meta.json files)."""
    entries = []
    for name in sorted(os.listdir(out_dir)):
        m = read_meta(os.path.join(out_dir, name))
        if m is None:
            continue
        obs = m.get("inner_observation_space", m["observation_space"])
        entries.append({"case": m["case"], "release": release_of(m), "era": m.get("era", {}).get("name"),
                        "algo": m["algo"], "inner_algo": m.get("inner_algo"),
                        "policy": m["policy"], "obs": m["observation_space"]["type"],
                        "obs_shape": obs.get("shape"), "obs_dtype": obs.get("dtype"),
                        "action": m["action_space"]["type"], "recurrent": m["recurrent"],
                        "formats": m["formats"], "what_it_covers": m["what_it_covers"]})
    releases = sorted({e["release"] for e in entries}, key=lambda v: [int(x) for x in v.split(".")])
    index = {"generators": ["tools/legacy/make_fixtures.py (2.10.2)",
                            "tools/legacy/make_era_fixtures.py (older releases)"],
             "releases": releases, "n_cases": len(entries), "cases": entries}
    with open(os.path.join(out_dir, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
    return entries
