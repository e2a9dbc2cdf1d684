"""Small real SB2 2.10 files (embedded in tests/hostile/samples.py): custom
policies pickled by value, lambda schedules, TF activations, vecnormalize.pkl."""
from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sbexportd.errors import ForbiddenPickleGlobal, VecNormalizeError
from sbexportd.read import InertDescriptor, InertFunction, find_vecnormalize, read_model, read_vecnormalize
from sbexportd.read.safe_pickle import safe_loads
from sbexportd.read.standins import standin_class
from tests.hostile import samples

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def agent_dir(tmp_path):
    (tmp_path / "ppo2_custom.zip").write_bytes(samples.PPO2_CUSTOM_ZIP)
    (tmp_path / "ppo2_custom.pkl").write_bytes(samples.PPO2_CUSTOM_PKL)
    (tmp_path / "ppo2_tanh.zip").write_bytes(samples.PPO2_TANH_ZIP)
    return tmp_path


@pytest.mark.parametrize("name", ["ppo2_custom.zip", "ppo2_custom.pkl"])
def test_by_value_policy(agent_dir, name):
    a = read_model(agent_dir / name)
    policy = a.data["policy"]
    assert policy.sb_name == "MyPolicy" and policy.sb_module == "__main__"
    assert policy.sb_by_value is True and policy.sb_known is False
    (base,) = policy.sb_bases
    assert base is standin_class("stable_baselines.common.policies", "FeedForwardPolicy")
    assert base.sb_known and not base.sb_by_value
    init = policy.sb_class_dict["__init__"]
    assert isinstance(init, InertFunction) and init.qualname == "MyPolicy.__init__"
    consts = [x for c in init.code.co_consts for x in (c if isinstance(c, tuple) else (c,))]
    assert {"pi", "vf", "mlp", 8} <= set(consts)
    with pytest.raises(ForbiddenPickleGlobal):
        policy()
    assert a.data["policy_kwargs"]["act_fun"].sb_activation == "relu"
    lr = a.data["learning_rate"]
    assert isinstance(lr, InertFunction) and lr.name == "<lambda>"
    assert 0.0003 in lr.code.co_consts and lr.code.co_filename == "gen.py"
    assert list(a.params) == ["model/pi_fc0/w:0", "model/pi_fc0/b:0", "model/vf_fc0/w:0",
                              "model/vf_fc0/b:0", "model/vf/w:0", "model/vf/b:0",
                              "model/pi/w:0", "model/pi/b:0", "model/q/w:0", "model/q/b:0"]
    assert a.params["model/pi_fc0/w:0"].shape == (4, 8)


def test_zip_and_pkl_agree(agent_dir):
    z, p = read_model(agent_dir / "ppo2_custom.zip"), read_model(agent_dir / "ppo2_custom.pkl")
    assert list(z.params) == list(p.params)
    for k in z.params:
        np.testing.assert_array_equal(z.params[k], p.params[k])
    assert z.data.keys() == p.data.keys()


def test_activation_tanh(agent_dir):
    a = read_model(agent_dir / "ppo2_tanh.zip")
    act = a.data["policy_kwargs"]["act_fun"]
    assert act.sb_module == "tensorflow.python.ops.gen_math_ops" and act.sb_name == "tanh"
    assert act.sb_activation == "tanh" and act.sb_known
    assert a.data["policy_kwargs"]["net_arch"] == [16]


def test_vecnormalize_2_10(tmp_path):
    model = tmp_path / "agent.zip"
    model.write_bytes(samples.PPO2_CUSTOM_ZIP)
    (tmp_path / "agent").mkdir()
    path = tmp_path / "agent" / "vecnormalize.pkl"
    path.write_bytes(samples.VECNORMALIZE_PKL)
    assert find_vecnormalize(model) == path
    vn = read_vecnormalize(path)
    assert vn.mean.shape == vn.var.shape == (4,)
    assert (vn.epsilon, vn.clip_obs, vn.norm_obs) == (1e-8, 5.0, True)
    path.rename(tmp_path / "vecnormalize.pkl")  # beside the model
    assert find_vecnormalize(model) == tmp_path / "vecnormalize.pkl"


def test_obs_rms_with_config_normalize_kwargs(tmp_path):
    rms = safe_loads(samples.VECNORMALIZE_PKL, "v").obs_rms
    folder = tmp_path / "agent"
    folder.mkdir()
    (tmp_path / "agent.pkl").write_bytes(samples.PPO2_CUSTOM_PKL)
    # an obs_rms.pkl as the old zoo wrote it: a pickled RunningMeanStd (written as raw
    # opcodes copied from the VecNormalize sample's obs_rms would be long; reuse via BUILD)
    from tests.hostile import make
    arr = make.call(make.glob("numpy.core.multiarray", "_reconstruct"),
                    make.glob("numpy", "ndarray"), make.tup(make.i(0)), make.b(b"b"))

    def np_array(values):
        raw = np.asarray(values, "<f8").tobytes()
        dt = make.call(make.glob("numpy", "dtype"), make.s("f8"), make.NEWFALSE, make.NEWTRUE)
        dt += make.tup(make.i(3), make.s("<"), make.NONE, make.NONE, make.NONE, make.i(-1),
                       make.i(-1), make.i(0)) + make.BUILD
        return arr + make.tup(make.i(1), make.tup(make.i(len(values))), dt, make.NEWFALSE,
                              make.b(raw)) + make.BUILD

    obj = (make.glob("stable_baselines.common.running_mean_std", "RunningMeanStd") + make.tup()
           + b"\x81" + make.EMPTY_DICT + make.MARK + make.s("mean") + np_array(rms.mean + 1)
           + make.s("var") + np_array(rms.var * 2) + make.s("count") + make.i(7) + b"u"
           + make.BUILD)
    (folder / "obs_rms.pkl").write_bytes(make.pickle_of(obj))
    (folder / "config.yml").write_text(
        "!!python/object/apply:collections.OrderedDict\n"
        "- - [normalize, '{''norm_obs'': True, ''norm_reward'': False, ''clip_obs'': 3.0}']\n"
        "  - [policy, MlpPolicy]\n")
    assert find_vecnormalize(tmp_path / "agent.pkl") == folder / "obs_rms.pkl"
    vn = read_vecnormalize(folder)
    np.testing.assert_array_equal(vn.mean, rms.mean + 1)
    np.testing.assert_array_equal(vn.var, rms.var * 2)
    assert (vn.clip_obs, vn.epsilon, vn.norm_obs) == (3.0, 1e-8, True)
    assert vn.count == 7 and vn.returns is None  # the pickle's count; no ret_rms.pkl beside it
    vn = read_vecnormalize(folder / "obs_rms.pkl", config={"normalize": "dict(norm_obs=False)"})
    assert vn.norm_obs is False and vn.clip_obs == 10.0
    # a count that is not a positive number is refused, naming it
    for bad in (make.s("seven"), make.i(0)):
        (folder / "ret_rms.pkl").write_bytes(make.pickle_of(obj.replace(make.s("count") + make.i(7),
                                                                        make.s("count") + bad)))
        with pytest.raises(VecNormalizeError, match=r"ret_rms\.count"):
            read_vecnormalize(folder)


def test_cloudpickle_16_by_value_class():
    obj = safe_loads(samples.CLOUDPICKLE_16_BY_VALUE, "cp16.pkl")
    policy = obj["policy"]
    assert policy.sb_by_value and policy.sb_name == "MyPolicy" and policy.sb_doc == "doc"
    (base,) = policy.sb_bases
    assert base.sb_by_value and base.sb_name == "Base"
    assert policy.sb_class_dict["layers"] == [64, 64]
    assert isinstance(policy.sb_class_dict["s"], InertDescriptor)
    assert policy.sb_class_dict["s"].kind == "staticmethod"
    assert obj["lr"].closure_values == [0.001] and obj["lr"].qualname == "constfn.<locals>.func"
    assert obj["lam"].code.co_consts[-1] == 0.0003


def test_standins_refuse_repickling(agent_dir):
    a = read_model(agent_dir / "ppo2_custom.pkl")
    for obj in (a.data["policy"], a.data["observation_space"], a.data["learning_rate"]):
        with pytest.raises((TypeError, pickle.PicklingError)):
            pickle.dumps(obj)


def test_reader_imports_no_framework(agent_dir):
    """The read layer imports neither tensorflow, torch, gym, stable_baselines nor
    cloudpickle, even while reading files that name them."""
    zoo = Path(__file__).resolve().parents[2] / "shared" / "zoo" / "agents"
    code = f"""
import sys, glob
from sbexportd.read import read_model, read_vecnormalize, read_zoo_config, find_vecnormalize
files = sorted(glob.glob({str(agent_dir)!r} + '/*')) + sorted(glob.glob({str(zoo)!r} + '/*/*.*'))
for f in files:
    read_model(f)
    vn = find_vecnormalize(f)
    if vn:
        read_vecnormalize(vn)
for f in glob.glob({str(zoo)!r} + '/*/*/config.yml'):
    read_zoo_config(f)
bad = sorted(m for m in sys.modules if m.split('.')[0] in
             ('tensorflow', 'torch', 'gym', 'stable_baselines', 'cloudpickle', 'tests'))
print(len(files), bad)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    n, bad = out.stdout.strip().split(" ", 1)
    assert int(n) >= 3 and bad == "[]"
