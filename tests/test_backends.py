"""The TensorFlow 2, PyTorch and ONNX Runtime backends against the NumPy reference, on synthetic
specs that together use every op (tests/synthetic.py), plus what the exporters
rely on: a TF graph traced once, a traceable torch module, shared sampling."""
from __future__ import annotations

import io
import subprocess
import sys
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pytest

import synthetic
from sbexportd.parity import compare_all, discrete_names
from sbexportd.realize.backends import BACKENDS as REGISTERED
from sbexportd.realize.backends import REFERENCE
from sbexportd.understand.spec import OPS

CASES = {case.name: case for case in synthetic.cases()}
BACKENDS = tuple(b for b in REGISTERED if b != REFERENCE)  # each held to the reference


def _require(backend: str):
    module = backend
    return pytest.importorskip(module, reason=f"{module} is not installed: the {backend} backend is NOT tested "
                                              f"(install the 'full' extra)")


@cache
def policy(case: str, backend: str):
    """Each backend is built once per case (and kept warm) for the whole module."""
    if backend != REFERENCE:
        _require(backend)
    return REGISTERED[backend].load()(CASES[case].spec)


def inputs(case: str, batch: int, seed: int = 0):
    """(obs, state, mask) for a case; recurrent cases get random state and some resets."""
    c = CASES[case]
    rng = np.random.default_rng(seed)
    obs = c.obs(rng, batch)
    if not c.spec.stateful:
        return obs, None, None
    state = synthetic.state(c, rng, batch)
    mask = (np.arange(batch) % 3 == 1).astype(np.float32)  # batch 7: rows 1 and 4 reset
    return obs, state, mask


def compare(spec, got: dict, ref: dict) -> dict[str, float]:
    """The parity rule (sbexportd.parity: discrete actions exactly, everything else
    within 1e-5, relative to max(1, |ref|) but for actions), with the same outputs,
    shapes and dtypes as the reference. Returns the max abs error per output."""
    assert set(got) == set(ref), f"outputs {sorted(got)} != reference {sorted(ref)}"
    for name, r in ref.items():
        g, r = np.asarray(got[name]), np.asarray(r)
        assert g.shape == r.shape, f"{name}: shape {g.shape} != reference {r.shape}"
        assert g.dtype == r.dtype, f"{name}: dtype {g.dtype} != reference {r.dtype}"
    checks = compare_all(got, ref, discrete_names(spec))
    assert checks.passed, checks.describe()
    return checks.max_abs_error


def test_cases_cover_every_op():
    assert synthetic.covered_ops([c.spec for c in CASES.values()]) == set(OPS)


def test_backends_do_not_import_frameworks_eagerly():
    code = ("import sys, sbexportd, sbexportd.realize.tf_backend, sbexportd.realize.torch_backend\n"
            "import sbexportd.realize.onnxruntime_backend, sbexportd.realize.fast\n"
            "bad = [m for m in ('tensorflow', 'torch', 'onnx', 'onnxruntime') if m in sys.modules]\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


@pytest.mark.parametrize("batch", (1, 7))
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(CASES))
def test_matches_numpy_reference(case, backend, batch, record_property):
    spec = CASES[case].spec
    pol = policy(case, backend)
    obs, state, mask = inputs(case, batch, seed=batch)
    ref = policy(case, "numpy").run(obs, state, mask)
    errors = compare(spec, pol.run(obs, state, mask), ref)
    for name, err in errors.items():
        record_property(name, err)
    # outputs= selects
    first = next(iter(spec.outputs))
    assert set(pol.run(obs, state, mask, outputs=(first,))) == {first}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", [n for n, c in CASES.items() if c.spec.stateful])
def test_recurrent_rollout(case, backend):
    """Five steps, each backend feeding back its own state; resets on some steps."""
    spec = CASES[case].spec
    pol, ref = policy(case, backend), policy(case, "numpy")
    batch = 4
    obs, state, _ = inputs(case, batch, seed=3)
    mine, theirs = state, state
    rng = np.random.default_rng(4)
    for step in range(5):
        mask = (rng.uniform(size=batch) < 0.3).astype(np.float32) if step else np.ones(batch, np.float32)
        x = CASES[case].obs(rng, batch)
        got, want = pol.run(x, mine, mask), ref.run(x, theirs, mask)
        compare(spec, got, want)
        mine, theirs = got["state"], want["state"]
    assert not np.allclose(mine, 0)
    # mask = 1 resets: the state fed in is ignored
    a = pol.run(obs, state, np.ones(batch, np.float32))
    b = pol.run(obs, np.zeros_like(state), np.zeros(batch, np.float32))
    compare(spec, a, b)


# --- sampling: shared code (sampling.py), checked once through each backend ----------------
N_DRAWS = 20_000
SAMPLING_CASES = {
    "categorical": "mlp_tanh_discrete",
    "multi_categorical": "multidiscrete_obs_actions",
    "bernoulli": "multibinary_obs_actions",
    "diag_gaussian": "all_activations_gaussian",
    "squashed_gaussian": "sac_lnmlp_vecnormalize",
    "softmax_q": "discrete_obs_dueling_dqn",
    "deterministic": "ddpg_running_norm_float64_obs",
}


def test_sampling_cases_match_their_kind():
    assert {k: CASES[c].spec.distribution.kind for k, c in SAMPLING_CASES.items()} == \
        {k: k for k in SAMPLING_CASES}


def _repeat(obs, n):
    if isinstance(obs, dict):
        return {k: np.repeat(v, n, axis=0) for k, v in obs.items()}
    return np.repeat(obs, n, axis=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(SAMPLING_CASES))
def test_sampling(kind, backend):
    case = SAMPLING_CASES[kind]
    spec = CASES[case].spec
    pol, ref = policy(case, backend), policy(case, "numpy")
    obs1, _, _ = inputs(case, 1, seed=5)
    obs = _repeat(obs1, N_DRAWS)
    a = pol.sample(obs, rng=np.random.default_rng(123))
    b = pol.sample(obs, rng=np.random.default_rng(123))
    assert np.array_equal(a, b), "the same seed gave different actions"
    assert not np.array_equal(a, pol.sample(obs, rng=np.random.default_rng(124))) or kind == "deterministic"
    # the same seed through the reference backend: the same draws (up to float error)
    r = ref.sample(obs, rng=np.random.default_rng(123))
    assert a.shape == r.shape and a.dtype == r.dtype
    if kind in ("diag_gaussian", "squashed_gaussian", "deterministic"):
        assert np.max(np.abs(a - r)) <= 1e-4
    else:
        assert np.mean(a != r) <= 1e-3  # a near-tie may flip a rare draw
    out = ref.run(obs1)
    if kind in ("categorical", "softmax_q"):
        freq = np.bincount(a, minlength=spec.action_space.n) / N_DRAWS
        assert np.max(np.abs(freq - out["probs"][0])) <= 0.02, (freq, out["probs"][0])
    elif kind == "multi_categorical":
        for i, n in enumerate(spec.action_space.nvec):
            freq = np.bincount(a[:, i], minlength=n) / N_DRAWS
            assert np.max(np.abs(freq - out[f"probs_{i}"][0])) <= 0.02
    elif kind == "bernoulli":
        assert set(np.unique(a)) <= {0.0, 1.0}
        assert np.max(np.abs(a.mean(axis=0) - out["probs"][0])) <= 0.02
    elif kind == "diag_gaussian":
        mean, std = out["mean"][0], out["std"][0]
        assert np.all(np.abs(mean) + 6 * std < spec.action_space.high)  # the clip does not bias this check
        assert np.all(np.abs(a.mean(axis=0) - mean) <= 5 * std / np.sqrt(N_DRAWS))
        assert np.all(np.abs(a.std(axis=0) / std - 1) <= 0.03)
    elif kind == "squashed_gaussian":
        # unscale(tanh(.)) is monotone: the draws' quantiles are those of N(mean, std)
        mean, std = out["mean"][0], out["std"][0]
        low, high = spec.action_space.low, spec.action_space.high

        def squash(x):
            return low + 0.5 * (np.tanh(x) + 1) * (high - low)
        checked = 0
        for j in range(len(mean)):
            if not 1e-3 < std[j] < 3:  # a clipped log-std (exp(-20)): nothing to measure
                continue
            checked += 1
            below = np.mean(a[:, j] < squash(mean[j])[j])
            within = np.mean((a[:, j] > squash(mean[j] - std[j])[j]) & (a[:, j] < squash(mean[j] + std[j])[j]))
            assert abs(below - 0.5) <= 0.02 and abs(within - 0.6827) <= 0.02, (below, within)
        assert checked
        assert np.all((a >= low) & (a <= high))
    else:  # deterministic: the policy's action
        assert np.array_equal(a, pol.run(obs)["actions"])


# --- what the exporters reuse --------------------------------------------------------------
@pytest.mark.parametrize("case", ["lstm_discrete", "nature_cnn_40x44x3_gaussian", "her_td3_dict_obs",
                                  "sac_lnmlp_vecnormalize"])
def test_tf_graph_traced_once(case):
    tf = _require("tensorflow")
    spec = CASES[case].spec
    pol = policy(case, "tensorflow")
    serve = pol.module.serve
    assert serve.experimental_get_tracing_count() == 1
    made = None
    for batch in (1, 7, 3, 7, 1):
        pol.run(*inputs(case, batch, seed=batch))
        pol.sample(*inputs(case, batch, seed=batch), rng=np.random.default_rng(0))
        made = made or dict(pol.graph._callables)
    assert serve.experimental_get_tracing_count() == 1, "run() retraced the tf.function"
    assert pol.graph._callables == made, "a Session callable per set of outputs, made once"
    assert isinstance(pol.concrete, tf.types.experimental.ConcreteFunction)
    assert set(pol.concrete.structured_outputs) == set(spec.outputs)
    assert isinstance(pol.module, tf.Module)
    import inspect
    assert next(iter(inspect.signature(type(pol.module).serve.python_function).parameters)) == "self"
    # weights are the module's variables, float64 only where SB2 computed in float64
    names = {v.name for v in pol.module.variables}
    assert len(names) == len(spec.used_tensors())
    for v in pol.module.variables:
        assert v.dtype == (tf.float64 if v.name.startswith("vecnormalize/") else tf.float32), v.name
    # the concrete function answers like run()
    obs, state, mask = inputs(case, 7, seed=7)
    feed = pol._inputs(obs, state, mask)
    out = pol.concrete(*feed)
    ref = policy(case, "numpy").run(obs, state, mask)
    compare(spec, {k: v.numpy() for k, v in out.items()}, ref)


@pytest.mark.parametrize("case", list(CASES))
def test_torch_jit_trace(case):
    torch = _require("torch")
    spec = CASES[case].spec
    pol = policy(case, "torch")
    module = pol.module
    assert module.output_names == list(spec.outputs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.trace is deprecated in 2.13
        traced = torch.jit.trace(module, pol.inputs(*inputs(case, 3, seed=3)))
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    obs, state, mask = inputs(case, 7, seed=7)  # another batch size than traced with
    with torch.inference_mode():
        got = dict(zip(module.output_names, (t.numpy() for t in loaded(*pol.inputs(obs, state, mask))), strict=True))
    compare(spec, got, policy(case, "numpy").run(obs, state, mask))


def test_torch_buffer_names():
    torch = _require("torch")
    from sbexportd.realize.torch_backend import SpecModule
    case = "nature_cnn_40x44x3_gaussian"
    module = policy(case, "torch").module
    assert isinstance(module, SpecModule) and isinstance(module, torch.nn.Module)
    spec = CASES[case].spec
    assert set(module.sb2_names.values()) == set(spec.used_tensors())
    assert set(dict(module.named_buffers())) == set(module.sb2_names)
    for name in module.sb2_names:
        assert name.isidentifier() and "/" not in name and ":" not in name
    assert module.sb2_names["model__c1__w"] == "model/c1/w:0"
    kernel = spec.tensors["model/c1/w:0"]  # HWIO in the spec, OIHW in the module
    assert np.array_equal(module.model__c1__w.numpy(), kernel.transpose(3, 2, 0, 1))
    assert "model__c1__w" in module.layouts


def test_tf_float32_vecnormalize_variant():
    """make_module(float64=False), for TFLite (no float64 kernels): float32 statistics,
    close to SB2's float64 arithmetic but not held to the parity rule."""
    tf = _require("tensorflow")
    from sbexportd.realize.tf_backend import make_module
    case = "sac_lnmlp_vecnormalize"
    module = make_module(CASES[case].spec, float64=False)
    assert all(v.dtype == tf.float32 for v in module.variables)
    obs, _, _ = inputs(case, 7)
    got = module.serve(tf.constant(obs))
    ref = policy(case, "numpy").run(obs)
    for name, r in ref.items():
        assert np.max(np.abs(got[name].numpy() - r) / np.maximum(1, np.abs(r))) <= 1e-4, name
