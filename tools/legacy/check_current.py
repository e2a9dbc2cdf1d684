"""Ask Stable Baselines 2.10.2 about the files older releases saved.

Runs inside the 2.10.2 venv (tools/legacy/setup_env.sh /tmp/sb2legacy):

    usage: check_current.py FIXTURES_DIR [--only PATTERN]

For every fixture that an OLDER release saved (meta.json "versions"), it loads each
model file with this release's own `<Algo>.load`, asks it the golden's questions on the
golden's observations, and writes into that meta.json, under "sb2_2_10_2", per format:
whether it loads (and the error if not), the largest difference from the saving
release's answers per golden key, and `agrees` (the parity rule of tests/parity.py:
discrete actions equal, everything else within 1e-5 of max(1, |answer|)). Where 2.10.2
loads the file and does not agree, its own answers go to golden_2_10_2.npz beside the
golden: sbexportd reproduces SB2 2.10.2 wherever 2.10.2 reads the file, and
tests/test_parity_fixtures.py holds it to those answers.

A DDPG file from before 2.6 references the module `stable_baselines.ddpg.memory`, which
2.6 removed; SB2's changelog (2.6.0) tells users to alias it. Such files are tried as
they are and then again with that alias, and both results are recorded.
"""
import argparse
import fnmatch
import gc
import os
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_lib import close, read_meta, release_of, write_meta
from make_era_fixtures import RELEASE, algo_class, record

INPUTS = {"obs", "actions_obs_single"}
DISCRETE_ACTIONS = ("Discrete", "MultiDiscrete", "MultiBinary")


def memory_alias():
    """The fix SB2's changelog gives for DDPG files saved before 2.6.0."""
    import stable_baselines.common.buffers as buffers  # deepq.replay_buffer until 2.9
    sys.modules["stable_baselines.ddpg.memory"] = buffers
    buffers.Memory = buffers.ReplayBuffer


def compare(meta, golden, answers):
    out, agrees = {}, True
    for key, want in golden.items():
        if key in INPUTS:
            continue
        if key not in answers:
            out[key] = "not answered"
            agrees = False
            continue
        got = np.asarray(answers[key], np.float64)
        want = np.asarray(want, np.float64)
        if got.shape != want.shape:
            out[key] = "shape %s, saving release %s" % (list(got.shape), list(want.shape))
            agrees = False
            continue
        diff = float(np.max(np.abs(got - want))) if want.size else 0.0
        out[key] = diff
        if key == "actions" and meta["action_space"]["type"] in DISCRETE_ACTIONS:
            agrees &= diff == 0.0
        else:
            agrees &= bool(np.all(np.abs(got - want) <= 1e-5 * np.maximum(1.0, np.abs(want))))
    return {"loads": True, "agrees": bool(agrees), "max_abs_diff": out}


def ask(meta, path, golden):
    cls = algo_class(meta["algo"])
    tf.reset_default_graph()
    try:
        model = cls.load(path)
    except Exception as exc:  # noqa: BLE001 - the fact to record
        if os.environ.get("FIXTURES_TRACEBACK"):
            traceback.print_exc()
        return {"loads": False, "error": "%s: %s" % (type(exc).__name__, str(exc).splitlines()[0][:300])}
    try:
        answers = record({}, model)
        if not np.array_equal(answers["obs"], golden["obs"]):
            raise RuntimeError("the golden observations differ from the sampler's")
        result = compare(meta, golden, answers)
        current = os.path.join(os.path.dirname(path), "golden_2_10_2.npz")
        if not result["agrees"]:
            np.savez(current, **{k: np.asarray(v) for k, v in answers.items() if k in golden})
            result["answers"] = "golden_2_10_2.npz"
        elif os.path.exists(current):
            os.remove(current)
        return result
    finally:
        close(model)
        del model
        gc.collect()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("fixtures_dir")
    ap.add_argument("--only", default=None, help="fnmatch pattern on fixture folder names")
    args = ap.parse_args()
    if RELEASE != "2.10.2":
        sys.exit("check_current.py runs in the stable-baselines 2.10.2 venv (this is %s)" % RELEASE)
    todo = []
    for name in sorted(os.listdir(args.fixtures_dir)):
        case_dir = os.path.join(args.fixtures_dir, name)
        meta = read_meta(case_dir)
        if meta is None or release_of(meta) == RELEASE:
            continue
        if args.only is None or fnmatch.fnmatch(name, args.only):
            todo.append((name, case_dir, meta))
    results = {}
    for name, case_dir, meta in todo:  # plain loads first: the alias must not leak into them
        golden = dict(np.load(os.path.join(case_dir, "golden.npz")))
        results[name] = {fmt: ask(meta, os.path.join(case_dir, "model." + fmt), golden) for fmt in meta["formats"]}
    memory_alias()
    for name, case_dir, meta in todo:
        golden = dict(np.load(os.path.join(case_dir, "golden.npz")))
        for fmt, res in results[name].items():
            if not res["loads"] and "stable_baselines.ddpg.memory" in res["error"]:
                res["with_ddpg_memory_alias"] = ask(meta, os.path.join(case_dir, "model." + fmt), golden)
        meta["sb2_2_10_2"] = dict(results[name], note="what stable-baselines 2.10.2 answers when it loads this "
                                  "file (tools/legacy/check_current.py)")
        write_meta(case_dir, meta)
        for fmt, res in results[name].items():
            final = res.get("with_ddpg_memory_alias", res)
            print("%-48s %s  loads=%s%s agrees=%s %s" % (
                name, fmt, res["loads"], " (with the ddpg.memory alias: %s)" % final["loads"]
                if final is not res else "", final.get("agrees"), final.get("error") or final["max_abs_diff"]))


if __name__ == "__main__":
    main()
