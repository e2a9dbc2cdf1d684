"""Fixtures saved by OLDER Stable Baselines 2 releases: one on-disk format era each.

Runs inside one release's venv, made by `sh tools/legacy/setup_env.sh VENV RELEASE`
(Python 3.7, TensorFlow 1.15.5, that release with the gym and cloudpickle of its day):

    usage: make_era_fixtures.py OUT_DIR [--only PATTERN] [--list]

The release running it decides everything: which cases exist (SAC came in 2.4, TD3 in
2.7), whether policy_kwargs can be passed (2.4+), and the file it writes, through its
own `model.save`:
  * before 2.6: a cloudpickle .pkl whose parameters are a bare, unnamed list (before
    2.6 DDPG and SAC list every trainable variable twice, and DDPG adds obs_rms /
    ret_rms at the end from 2.5);
  * 2.6 and 2.7: a cloudpickle .pkl with a named OrderedDict;
  * 2.8 and later: the .zip (its `save(path, cloudpickle=True)` writes the 2.6 pkl,
    which the 2.10.2 fixtures of make_fixtures.py already cover).
Each case goes to OUT_DIR/v<release>_<case>/ (dots as underscores): model.pkl or
model.zip, golden.npz with THAT release's answers after a fresh `<Algo>.load` of the
saved file (the golden format of make_fixtures.py), and meta.json, which also lists
`saved_params`: for every position of the saved parameters, the TensorFlow variable
that this release saves there and assigns from there at load (recorded from the
session fetches of `model.save`, so an unnamed list gets SB2's own names).
Cases: DDPG LnMlpPolicy + normalize_observations + AdaptiveParamNoiseSpec, PPO2 Box,
DQN LnMlpPolicy, SAC (2.4+), TD3 (2.7+); tiny networks where policy_kwargs exist.

check_current.py then asks SB2 2.10.2 about each file (meta.json "sb2_2_10_2").
"""
import argparse
import fnmatch
import gc
import inspect
import os
import shutil
import sys
import time
import traceback
import warnings
import zipfile

warnings.filterwarnings("ignore")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KMP_WARNINGS", "0")

if sys.version_info[:2] != (3, 7):
    sys.exit("make_era_fixtures.py runs only in a legacy env (Python 3.7, TF 1.15, an older SB2): "
             "sh tools/legacy/setup_env.sh /tmp/sb2-2.5.1 2.5.1 && /tmp/sb2-2.5.1/bin/python %s OUT_DIR"
             % sys.argv[0])

import gym  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from gym import spaces  # noqa: E402

tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
import cloudpickle  # noqa: E402
import stable_baselines as sb  # noqa: E402
from stable_baselines.common.vec_env import DummyVecEnv  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_lib import (  # noqa: E402
    N_OBS,
    OBS_SEED,
    case_seed,
    close,
    decision_margins,
    drop_stale,
    kw_repr,
    make_env,
    policy_name,
    record_flat,
    sample_obs,
    seed_everything,
    space_info,
    versions,
    write_index,
    write_meta,
)

gym.logger.set_level(40)

RELEASE = sb.__version__
V = tuple(int(x) for x in RELEASE.split(".")[:3])


def algo_class(name):
    try:  # DDPG, TRPO, PPO1, GAIL need mpi4py; SAC and TD3 did not exist in early releases
        return getattr(sb, name.upper(), None)
    except ImportError:
        return None


# ---------------------------------------------------------------------------
# The eras: what the release writes, and what changed from the one before.
ERAS = [
    # (first release, name, format, how parameters are stored, what changed)
    ((2, 0, 0), "pkl-list", "pkl", "unnamed list",
     ("cloudpickle (data, params); params = sess.run(self.params), a bare list in TensorFlow "
      "creation order; no policy_kwargs in data; DDPG saves find_trainable_variables('model'), i.e. "
      "EVERY trainable variable once (model, param-noise actors, target), its critic output layer is "
      "qf/qf, and no obs_rms (normalize_observations=True files lose their running mean/std, "
      "so the loaded model normalizes with mean 0, std 1 and only clips)")),
    ((2, 4, 0), "pkl-list-kwargs", "pkl", "unnamed list",
     ("policy_kwargs saved in data; SAC added; DDPG saves params + target_params, both "
      "find_trainable_variables (all trainable variables, so the list holds everything twice), "
      "still no obs_rms; SAC (new in 2.4) saves params + target_params, also every trainable "
      "variable twice")),
    ((2, 5, 0), "pkl-list-obsrms", "pkl", "unnamed list",
     ("DDPG appends obs_rms (runningsum, runningsumsq, count: float64) and ret_rms variables "
      "after the doubled list; 2.5.1 renames the critic output layer qf/qf -> qf/qf_output")),
    ((2, 6, 0), "pkl-dict", "pkl", "named OrderedDict",
     ("params = get_parameters(): an OrderedDict variable name -> array (get_parameter_list "
      "order, no duplicates); stable_baselines.ddpg.memory removed (older DDPG files need a "
      "sys.modules alias to load in 2.6+); DDPG's data gains buffer_size and random_exploration")),
    ((2, 8, 0), "zip", "zip", "named npz in a zip",
     ("model.save writes a zip: 'data' (JSON, objects as base64 cloudpickle), 'parameters' "
      "(numpy savez), 'parameter_list' (JSON names); save(path, cloudpickle=True) still writes "
      "the 2.6 pkl; noise classes moved to stable_baselines.common.noise")),
]


def era_of(version):
    era = [e for e in ERAS if e[0] <= version][-1]
    return {"name": era[1], "first_release": ".".join(map(str, era[0])), "release": RELEASE,
            "format": era[2], "params": era[3], "what_changed": era[4]}


# ---------------------------------------------------------------------------
# Training settings (the same small ones as make_fixtures.py)
ALGO_KW = {
    "a2c": dict(n_steps=8, learning_rate=7e-3),
    "ppo2": dict(n_steps=16, nminibatches=1, noptepochs=2, learning_rate=2.5e-3),
    "dqn": dict(buffer_size=500, learning_starts=32, batch_size=16, target_network_update_freq=40,
                exploration_fraction=0.5),
    "sac": dict(buffer_size=500, learning_starts=32, batch_size=16),
    "td3": dict(buffer_size=500, learning_starts=32, batch_size=16, train_freq=16, gradient_steps=16),
    "ddpg": dict(buffer_size=500, nb_rollout_steps=20, nb_train_steps=10, batch_size=16),
}
STEPS = {"a2c": 256, "ppo2": 256, "dqn": 200, "sac": 128, "td3": 128, "ddpg": 120}
VEC_ALGOS = {"a2c", "ppo2"}

CASES = []


def case(name, algo, policy, obs, act, covers, pk=None, kw=None, since=(2, 0, 0), param_noise=False):
    CASES.append(dict(name=name, algo=algo, policy=policy, obs=obs, act=act, covers=covers,
                      policy_kwargs=pk or {}, kw=kw or {}, since=since, param_noise=param_noise,
                      steps=STEPS[algo]))


# policy_kwargs exist from 2.4.0; before that each policy has its default size (64-64).
case("ddpg_lnmlp_normobs_paramnoise", "ddpg", "LnMlpPolicy", "offset", "box_sym2",
     "DDPG LnMlpPolicy (layer_norm) + normalize_observations=True + AdaptiveParamNoiseSpec together: "
     "param-noise actor copies (noise/, noise_adapt/) among the saved variables, obs_rms in float64",
     pk=dict(layers=[16, 16]), kw=dict(normalize_observations=True), param_noise=True)
case("ppo2_mlp_vec_box", "ppo2", "MlpPolicy", "vec", "box",
     "PPO2 MlpPolicy, asymmetric Box actions (SB2 < 2.4 predict returns the UNCLIPPED mean, 2.4+ clips)",
     pk=dict(net_arch=[dict(pi=[16], vf=[16])]))
case("dqn_lnmlp_vec_discrete", "dqn", "LnMlpPolicy", "vec", "discrete",
     "DQN LnMlpPolicy (layer norm, dueling by default); the params also hold the target network",
     pk=dict(layers=[16]))
case("sac_mlp_vec_box", "sac", "MlpPolicy", "vec", "box_sym2",
     "SAC MlpPolicy, symmetric Box(-2, 2) (SB2 < 2.6 saves every trainable variable twice)",
     pk=dict(layers=[16, 16]), since=(2, 4, 0))
case("td3_lnmlp_vec_box", "td3", "LnMlpPolicy", "vec", "box_sym2", "TD3 LnMlpPolicy, symmetric Box(-2, 2)",
     pk=dict(layers=[16, 16]), since=(2, 7, 0))


def folder(c):
    return "v%s_%s" % (RELEASE.replace(".", "_"), c["name"])


# ---------------------------------------------------------------------------
class FetchRecorder:
    """Stands in for model.sess during model.save: records which variables each
    sess.run fetches, i.e. the names of the saved parameters in saved order."""

    def __init__(self, sess):
        self._sess, self.fetched = sess, []

    def run(self, fetches, *args, **kwargs):
        if isinstance(fetches, (list, tuple)) and all(isinstance(f, tf.Variable) for f in fetches):
            self.fetched += [(f.name, [int(d) for d in f.shape]) for f in fetches]
        return self._sess.run(fetches, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._sess, name)


def build(c, seed):
    algo = c["algo"]
    cls = algo_class(algo)
    kw = dict(ALGO_KW[algo])
    kw.update(c["kw"])
    notes = []
    if algo == "ddpg":
        if c["param_noise"]:
            from stable_baselines.ddpg.noise import AdaptiveParamNoiseSpec  # 2.8+ re-exports it here
            kw["param_noise"] = AdaptiveParamNoiseSpec(initial_stddev=0.1, desired_action_stddev=0.1)
        if V < (2, 6, 0):  # buffer_size came in 2.6.0 (memory_limit before)
            kw["memory_limit"] = kw.pop("buffer_size")
    if c["policy_kwargs"]:
        if V >= (2, 4, 0):
            kw["policy_kwargs"] = c["policy_kwargs"]
        else:
            notes.append("no policy_kwargs before 2.4.0: the policy has its default size")
    if V >= (2, 9, 0):  # seeding moved to the constructor in 2.9.0
        kw.update(seed=seed, n_cpu_tf_sess=1)
    accepted = inspect.signature(cls.__init__).parameters
    unknown = sorted(k for k in kw if k not in accepted)
    if unknown:
        raise TypeError("%s %s does not take %s" % (cls.__name__, RELEASE, unknown))
    if algo in VEC_ALGOS:
        env = DummyVecEnv([lambda: make_env(c, seed)])
    else:
        env = make_env(c, seed)
    model = cls(c["policy"], env, verbose=0, **kw)
    return model, kw, notes


def train_and_save(c, case_dir, seed):
    model, kw, notes = build(c, seed)
    model.learn(total_timesteps=c["steps"], **({} if V >= (2, 9, 0) else {"seed": seed}))
    files = []
    recorder = FetchRecorder(model.sess)
    model.sess = recorder
    try:
        if V < (2, 8, 0):
            model.save(os.path.join(case_dir, "model.pkl"))
            files = ["pkl"]
        else:  # the zip only: save(path, cloudpickle=True) writes the 2.6 pkl, which 2.10.2's cases cover
            model.save(os.path.join(case_dir, "model.zip"))
            files = ["zip"]
    finally:
        model.sess = recorder._sess
    saved = recorder.fetched
    train_info = {"total_timesteps": c["steps"], "num_timesteps_done": int(getattr(model, "num_timesteps", 0))}
    close(model)
    del model
    return files, saved, kw, notes, train_info


def check_saved_layout(path, saved):
    """What the file holds must be what the recorder saw: a list (< 2.6) or names."""
    if path.endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            import json
            names = json.loads(z.read("parameter_list").decode())
        layout = "zip parameter_list"
    else:
        with open(path, "rb") as f:
            _, params = cloudpickle.load(f)
        if isinstance(params, dict):
            names, layout = list(params.keys()), type(params).__name__
        else:
            names, layout = None, type(params).__name__
            if len(params) != len(saved):
                raise RuntimeError("%s holds %d parameters, the save fetched %d" % (path, len(params), len(saved)))
            for i, (value, (name, shape)) in enumerate(zip(params, saved)):
                if list(np.shape(value)) != shape:
                    raise RuntimeError("position %d: shape %s, variable %s has %s" % (i, np.shape(value), name, shape))
    if names is not None and names != [n for n, _ in saved]:
        raise RuntimeError("%s names its parameters %s, the save fetched %s" % (path, names[:4], saved[:4]))
    return layout


def record(c, model):
    """This release's answers from the loaded model (non-recurrent golden format)."""
    rng = np.random.RandomState(OBS_SEED)
    obs = sample_obs(model.observation_space, rng, N_OBS)
    rec = {"obs": obs, "actions": np.asarray(model.predict(obs, deterministic=True)[0])}
    rec["actions_obs_single"] = np.asarray(model.predict(obs[0], deterministic=True)[0])
    record_flat(rec, model, model, obs)
    if isinstance(model.action_space, spaces.Box) and "mean" in rec and "std" not in rec:
        # SB2 < 2.4: action_probability is the policy's `policy` tensor; prove it is the Gaussian mean
        pol = model.act_model if hasattr(model, "act_model") else model.step_model
        mean = model.sess.run(pol.proba_distribution.mean, {pol.obs_ph: obs})
        if not np.array_equal(mean, rec["mean"]):
            raise RuntimeError("action_probability is not the Gaussian mean in this release")
    return rec


def run_case(c, out_dir):
    name = folder(c)
    case_dir = os.path.join(out_dir, name)
    if os.path.isdir(case_dir):
        shutil.rmtree(case_dir)
    os.makedirs(case_dir)
    seed = case_seed(name)
    seed_everything(seed)
    tf.reset_default_graph()
    files, saved, kw, notes, train_info = train_and_save(c, case_dir, seed)
    gc.collect()

    layouts = {fmt: check_saved_layout(os.path.join(case_dir, "model." + fmt), saved) for fmt in files}
    first = os.path.join(case_dir, "model." + files[0])
    cls = algo_class(c["algo"])
    tf.reset_default_graph()
    model = cls.load(first)
    rec = record(c, model)
    policy_kwargs = getattr(model, "policy_kwargs", None)
    meta = {
        "case": name,
        "what_it_covers": c["covers"] + " -- saved by stable-baselines %s" % RELEASE,
        "algo": c["algo"],
        "inner_algo": None,
        "policy": model.policy.__name__,
        "policy_class": policy_name(model.policy),
        "policy_kwargs": {k: kw_repr(v) for k, v in (policy_kwargs or {}).items()},
        "algo_kwargs": {k: kw_repr(v) for k, v in kw.items() if k != "policy_kwargs"},
        "observation_space": space_info(model.observation_space),
        "action_space": space_info(model.action_space),
        "n_envs": int(getattr(model, "n_envs", 1)),
        "recurrent": False,
        "formats": files,
        "files": ["model.%s" % f for f in files] + ["golden.npz", "meta.json"],
        "versions": versions(),
        "era": era_of(V),
        "params": dict(saved),
        "saved_params": dict({"layout": layouts, "count": len(saved), "unique": len({n for n, _ in saved})},
                             # an unnamed list: position i is variable names[i] (shapes in "params")
                             **({"names": [n for n, _ in saved]} if V < (2, 6, 0) else {})),
        "seeds": {"train": seed, "golden_obs": OBS_SEED},
        "training": train_info,
        "golden": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in sorted(rec.items())},
        "golden_from": "model.%s loaded by stable-baselines %s" % (files[0], RELEASE),
        "decision_margins": decision_margins(rec, model.action_space),
        "notes": notes,
    }
    close(model)
    del model
    gc.collect()
    np.savez_compressed(os.path.join(case_dir, "golden.npz"), **rec)
    write_meta(case_dir, meta)
    return meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--only", default=None, help="fnmatch pattern on case names (without the v<release>_ prefix)")
    ap.add_argument("--list", action="store_true", help="list this release's cases and exit")
    args = ap.parse_args()
    if V >= (2, 10, 2):
        sys.exit("stable-baselines %s is the current release: its fixtures come from make_fixtures.py" % RELEASE)
    cases = [c for c in CASES if c["since"] <= V and algo_class(c["algo"]) is not None
             and (args.only is None or fnmatch.fnmatch(c["name"], args.only))]
    missing = [c["name"] for c in CASES if c["since"] <= V and algo_class(c["algo"]) is None]
    if args.list:
        print("stable-baselines %s, era %s" % (RELEASE, era_of(V)["name"]))
        for c in cases:
            print(folder(c), c["algo"], c["policy"], c["obs"], c["act"])
        return
    os.makedirs(args.out_dir, exist_ok=True)
    if args.only is None:
        drop_stale(args.out_dir, {folder(c) for c in cases}, RELEASE)
    ok, failed, t_all = 0, list(missing), time.time()
    for name in missing:
        print("FAIL %s unavailable in this venv (mpi4py missing?)" % name, flush=True)
    for c in cases:
        t0 = time.time()
        try:
            run_case(c, args.out_dir)
            ok += 1
            print("ok   %-44s %5.1fs" % (folder(c), time.time() - t0), flush=True)
        except Exception as exc:  # noqa: BLE001 - one case failing must not stop the others
            failed.append(c["name"])
            print("FAIL %s %s: %s" % (folder(c), type(exc).__name__, str(exc)[:300]), flush=True)
            if os.environ.get("FIXTURES_TRACEBACK"):
                traceback.print_exc()
            shutil.rmtree(os.path.join(args.out_dir, folder(c)), ignore_errors=True)
        gc.collect()
    write_index(args.out_dir)
    print("stable-baselines %s: %d ok, %d failed%s, %.0fs" % (
        RELEASE, ok, len(failed), (": " + " ".join(failed)) if failed else "", time.time() - t_all))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
