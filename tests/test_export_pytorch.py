"""The `pytorch` export target on every fixture model and zoo agent: written through
sbexportd.export.export, verified (manifest parity), loaded back both ways (policy.py
imported from the file + policy.pt, and policy.torchscript.pt), and run standalone
in a subprocess where only torch can be imported. The code generator is also run on
the synthetic specs, which together use every op of spec.OPS."""
from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import sbexportd
from conftest import FIXTURES, ZOO
from sbexportd.errors import ParityFailed
from sbexportd.export import export
from sbexportd.export.conventions import export_name, io, output_names, sample_inputs
from sbexportd.parity import judge
from sbexportd.realize.numpy_backend import NumpyPolicy
from sbexportd.understand.spec import OPS

torch = pytest.importorskip("torch", reason="torch not installed (run `make install`)")

import synthetic  # noqa: E402
from sbexportd.export import codegen_torch  # noqa: E402
from sbexportd.export.targets import pytorch as target  # noqa: E402


def _fixture_cases() -> dict[str, tuple[Path, Path | None]]:
    cases = {}
    for d in sorted(FIXTURES.iterdir()):
        if (d / "model.zip").is_file():
            vn = d / "vecnormalize.pkl"
            cases[d.name] = (d / "model.zip", vn if vn.is_file() else None)
    return cases


def _zoo_cases() -> dict[str, tuple[Path, str]]:
    """The zoo agents run standalone below (tests/test_zoo.py exports every agent)."""
    agents = ZOO / "agents"
    if not agents.is_dir():
        return {}
    return {f"zoo_{algo}_{env}": (agents / algo / f"{env}.pkl", "auto")
            for algo, env in (("her", "FetchReach-v1"), ("a2c", "MountainCarContinuous-v0"))}


CASES = _fixture_cases()
ZOO_CASES = _zoo_cases()
ALL = {**CASES, **ZOO_CASES}
# the standalone subprocess run: one case per op family (every op a real model uses)
STANDALONE = ["ppo2_mlp_vec_discrete", "ppo2_mlp_vec_box", "a2c_mlp_elu", "a2c_mlp_dobs_discrete",
              "ppo2_mlp_mdobs_discrete", "a2c_mlp_vec_multidiscrete", "ppo2_mlp_mbobs_multibinary",
              "a2c_cnn_img_discrete", "ppo2_cnn_floatimg_box", "ppo2_mlplstm_vec_box", "a2c_cnnlnlstm_img_discrete",
              "ppo2_mlplnlstm_vec_multidiscrete", "dqn_mlp_vec_discrete", "dqn_lncnn_img_discrete",
              "sac_lnmlp_vec_box", "td3_mlp_vec_box", "ddpg_mlp_normobs", "ddpg_cnn_img_box", "her_sac_bitflip",
              "her_dqn_bitflip", "ppo2_mlp_vecnormalize"] + [k for k in ("zoo_her_FetchReach-v1",
                                                                          "zoo_a2c_MountainCarContinuous-v0")
                                                             if k in ZOO_CASES]
MEASURED: dict[str, float] = {}


def _check_outputs(spec, got: dict, feeds: dict, where: str) -> float:
    """Every reference output within the parity rule; returns the largest abs error."""
    verdict = judge(spec, feeds, export_name)
    assert sorted(got) == sorted(verdict.reference), where
    mine = {k: (v.detach().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in got.items()}
    if "action" in verdict.reference:
        assert mine["action"].dtype == verdict.reference["action"].dtype, where
    checks = verdict.check(mine)
    assert checks.passed, f"{where}: {checks.describe()}"
    return checks.worst


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every case exported once: {case: (model, result, folder)}."""
    root = tmp_path_factory.mktemp("pytorch")
    done = {}
    for case, (path, vn) in ALL.items():
        model = sbexportd.load(path, vn)
        start = time.perf_counter()
        (result,) = export(model, "pytorch", root / case)
        MEASURED[case] = time.perf_counter() - start
        done[case] = (model, result, root / case / "pytorch")
    return done


def test_zoo_agents_present():
    if not ZOO.is_dir():
        pytest.skip(f"../shared/zoo not found at {ZOO}: zoo agents NOT exported")
    assert len(ZOO_CASES) == 2 and all(p.is_file() for p, _ in ZOO_CASES.values())


def test_every_op_has_an_emitter():
    assert set(codegen_torch.EMITTERS) == set(OPS)
    assert set(codegen_torch.ACTIVATION_EXPR) == set(synthetic.ACTIVATIONS)


@pytest.mark.parametrize("case", list(ALL))
def test_export_parity(exported, case):
    model, _result, folder = exported[case]
    manifest = json.loads((folder / "manifest.json").read_text())
    parity = manifest["parity"]
    assert parity["verified"] and parity["passed"], parity
    assert "TorchScript (scripted" in parity["runtime"] and "eager" in parity["runtime"]
    assert set(parity["max_abs_error"]) == {d["name"] for d in manifest["outputs"]}
    assert max(parity["max_abs_error"].values()) < 1e-3
    inputs, outputs = io(model.spec)
    assert manifest["inputs"] == inputs and manifest["outputs"] == outputs
    assert sorted(f["path"] for f in manifest["files"]) == ["policy.pt", "policy.py", "policy.torchscript.pt"]
    for f in manifest["files"]:
        assert hashlib.sha256((folder / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    assert not (folder / target.NOTE).exists(), (folder / target.NOTE).read_text()  # scripted, not traced


@pytest.mark.parametrize("case", list(ALL))
def test_both_runtimes_dynamic_batch(exported, case):
    """policy.py + policy.pt and the TorchScript file, on batches of 1, 5 and 64."""
    model, _, folder = exported[case]
    spec = model.spec
    eager = target.load_source(folder)
    scripted = target.load_torchscript(folder)
    names = [e for e, _ in output_names(spec)]
    for batch, seed in ((1, 3), (5, 4), (64, 5)):
        feeds = sample_inputs(spec, batch, seed)
        args = target.inputs(spec, feeds)
        with torch.no_grad():
            a, b = eager(*args), scripted(*args)
        assert list(a) == names and list(b) == names  # the convention's order
        _check_outputs(spec, a, feeds, f"{case} eager batch {batch}")
        _check_outputs(spec, b, feeds, f"{case} torchscript batch {batch}")
        assert all(v.shape[0] == batch for v in b.values())


def test_inference_modules(exported, tmp_path):
    """Both modules come out ready for inference: no parameter asks for gradients, so
    outputs are plain tensors a user can .numpy() without torch.no_grad()."""
    model, _, folder = exported["ppo2_mlp_vec_box"]
    args = target.inputs(model.spec, sample_inputs(model.spec, 4, 1))
    for module in (target.load_source(folder), target.load_torchscript(folder)):
        assert not any(p.requires_grad for p in module.parameters())
        out = module(*args)
        assert all(not v.requires_grad for v in out.values())
        out["action"].numpy()
    script = ("import sys, torch; sys.path.insert(0, sys.argv[1]); from policy import load, example_inputs; "
              "p = load(); print(p(*example_inputs(2))['action'].numpy().shape)")
    proc = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "(2, 2)", proc.stderr[-2000:]


def test_state_dict_layout(exported):
    model, _, folder = exported["a2c_cnn_img_discrete"]
    state = torch.load(folder / "policy.pt", weights_only=True)
    assert type(state) is dict and all(isinstance(v, torch.Tensor) for v in state.values())
    params = model.archive.params
    w = np.asarray(params["model/pi/w:0"])
    assert np.array_equal(state["pi.weight"].numpy(), w.T)                   # nn.Linear holds (out, in)
    k = np.asarray(params["model/c1/w:0"])
    assert np.array_equal(state["c1.weight"].numpy(), k.transpose(3, 2, 0, 1))  # OIHW from HWIO
    assert set(state) == set(target.load_source(folder).state_dict())

    model, _, folder = exported["ppo2_mlp_vecnormalize"]
    state = torch.load(folder / "policy.pt", weights_only=True)
    assert state["vecnormalize_mean"].dtype == torch.float64 and state["vecnormalize_var"].dtype == torch.float64
    assert np.array_equal(state["vecnormalize_var"].numpy(), model.vecnormalize.var)


def test_generated_source_reads_like_the_policy(exported):
    src = (exported["a2c_cnn_img_discrete"][2] / "policy.py").read_text()
    assert "nn.Conv2d(3, 32, kernel_size=8, stride=4)" in src and ".permute(0, 3, 1, 2)" in src
    assert "torch.flatten(c3.permute(0, 2, 3, 1), 1)" in src
    assert "# model/fc1: dense" in src and "nn.Linear(" in src
    src = (exported["ppo2_mlp_vec_discrete"][2] / "policy.py").read_text()
    assert "# model/pi_fc0: dense 4 -> " in src and ", tanh" in src
    assert "class Policy(nn.Module)" in src and "def load(" in src and 'if __name__ == "__main__":' in src
    src = (exported["dqn_lnmlp_vec_discrete"][2] / "policy.py").read_text()
    assert "class LayerNorm(nn.Module)" in src and "eps=1e-12" in src and "dueling" in src
    src = (exported["ppo2_mlplnlstm_vec_multidiscrete"][2] / "policy.py").read_text()
    assert "class LnLSTMCell(nn.Module)" in src and "eps: float = 1e-5" in src
    src = (exported["ppo2_mlp_vecnormalize"][2] / "policy.py").read_text()
    assert "torch.float64" in src and "register_buffer(\"vecnormalize_mean\"" in src


@pytest.mark.parametrize("case", list(ALL))
def test_imports_only_torch(exported, case):
    tree = ast.parse((exported[case][2] / "policy.py").read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            roots.add(node.module.split(".")[0])
    assert roots <= {"torch", "typing", "pathlib"}, roots


# Run in `python -I` with cwd = the export folder: sbexportd and numpy cannot be imported.
STANDALONE_SCRIPT = textwrap.dedent('''
    import importlib.abc, importlib.util, runpy, sys
    from pathlib import Path

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("sbexportd", "numpy"):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)")
            return None

    sys.meta_path.insert(0, Block())
    import warnings
    warnings.simplefilter("ignore")
    import torch

    spec = importlib.util.spec_from_file_location("policy", Path.cwd() / "policy.py")
    policy_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(policy_module)
    policy = policy_module.load("policy.pt")
    scripted = torch.jit.load("policy.torchscript.pt")
    args = torch.load(sys.argv[1], weights_only=True)
    with torch.no_grad():
        torch.save({"eager": policy(*args), "script": scripted(*args)}, sys.argv[2])
    runpy.run_path("policy.py", run_name="__main__")          # the file's own smoke run
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("sbexportd", "numpy"))
    print("LEAKED", leaked)
''')


@pytest.mark.parametrize("case", STANDALONE)
def test_standalone_subprocess(exported, case, tmp_path):
    model, _, folder = exported[case]
    spec = model.spec
    feeds = sample_inputs(spec, 16, 7)
    torch.save(list(target.inputs(spec, feeds)), tmp_path / "inputs.pt")
    (tmp_path / "check.py").write_text(STANDALONE_SCRIPT)
    proc = subprocess.run([sys.executable, "-I", str(tmp_path / "check.py"), str(tmp_path / "inputs.pt"),
                           str(tmp_path / "out.pt")], cwd=folder, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LEAKED []" in proc.stdout, proc.stdout
    assert "action" in proc.stdout  # the smoke run printed the outputs
    out = torch.load(tmp_path / "out.pt", weights_only=True)
    _check_outputs(spec, out["eager"], feeds, f"{case} standalone eager")
    _check_outputs(spec, out["script"], feeds, f"{case} standalone torchscript")


def test_main_smoke_run_from_elsewhere(exported, tmp_path):
    """`python policy.py` from another folder finds policy.pt beside itself."""
    folder = exported["ppo2_mlplstm_vec_box"][2]
    proc = subprocess.run([sys.executable, "-I", str(folder / "policy.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [line.split()[0] for line in proc.stdout.splitlines()] == ["action", "mean", "std", "values", "state"]


def test_recurrent_rollout_and_reset(exported):
    """Feeding `state` back for a few steps matches the reference; mask 1.0 ignores the state."""
    model, _, folder = exported["a2c_cnnlnlstm_img_discrete"]
    spec = model.spec
    scripted = target.load_torchscript(folder)
    ref = NumpyPolicy(spec)
    obs = sample_inputs(spec, 6, 11)["obs"]
    state = np.zeros((6, spec.state_size), np.float32)
    ref_state = state
    for step in range(4):
        mask = np.full(6, 1.0 if step == 0 else 0.0, np.float32)
        with torch.no_grad():
            out = scripted(*target.inputs(spec, {"obs": obs, "state": state, "mask": mask}))
        r = ref.run(obs, ref_state, mask)
        assert np.array_equal(out["action"].numpy(), r["actions"])
        assert np.abs(out["state"].numpy() - r["state"]).max() < 1e-5
        state, ref_state = out["state"].numpy(), r["state"]
    noise = np.random.default_rng(0).uniform(-3, 3, state.shape).astype(np.float32)
    with torch.no_grad():
        reset = scripted(*target.inputs(spec, {"obs": obs, "state": noise, "mask": np.ones(6, np.float32)}))
        fresh = scripted(*target.inputs(spec, {"obs": obs, "state": np.zeros_like(noise),
                                               "mask": np.zeros(6, np.float32)}))
    for name in reset:
        assert torch.equal(reset[name], fresh[name]), name


@pytest.mark.parametrize("case", [c.name for c in synthetic.cases()])
def test_codegen_on_synthetic_specs(case, tmp_path):
    """Every op (concat_dict's goal dict, all activations, float64 observations,
    rounding on exact halves ...) through the generated source, eager and scripted."""
    c = {c.name: c for c in synthetic.cases()}[case]
    spec = c.spec
    gen = codegen_torch.generate(spec)
    (tmp_path / "policy.py").write_text(gen.source)
    with target.import_source(tmp_path / "policy.py") as module:
        policy = module.Policy()
        policy.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in gen.state_dict.items()})
        policy.eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scripted = torch.jit.script(policy)
    rng = np.random.default_rng(0)
    for batch in (1, 7):
        feeds = {"obs": c.obs(rng, batch)}
        if spec.stateful:
            feeds["state"] = synthetic.state(c, rng, batch)
            feeds["mask"] = (np.arange(batch) % 3 == 1).astype(np.float32)
        args = target.inputs(spec, feeds)
        with torch.no_grad():
            _check_outputs(spec, policy(*args), feeds, f"{case} eager")
            _check_outputs(spec, scripted(*args), feeds, f"{case} torchscript")


def test_synthetic_specs_cover_every_op():
    assert synthetic.covered_ops([c.spec for c in synthetic.cases()]) == set(OPS)


def test_wrong_code_fails_verification_and_leaves_nothing(tmp_path, monkeypatch):
    model = sbexportd.load(FIXTURES / "ppo2_mlp_vec_box" / "model.zip")
    monkeypatch.setitem(codegen_torch.ACTIVATION_EXPR, "tanh", "torch.sigmoid({x})")
    with pytest.raises(ParityFailed):
        export(model, "pytorch", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # the export made it, and leaves nothing


def test_eager_module_is_checked_too(tmp_path, monkeypatch):
    """The runner holds policy.py + policy.pt to the rule, not only the TorchScript file."""
    model = sbexportd.load(FIXTURES / "ppo2_mlp_vec_discrete" / "model.zip")
    real = target.load_source

    def broken(folder):
        policy = real(folder)
        with torch.no_grad():
            policy.pi.bias[0] += 5.0  # (adding to every logit would change nothing)
        return policy
    monkeypatch.setattr(target, "load_source", broken)
    with pytest.raises(ParityFailed, match="eager"):
        export(model, "pytorch", tmp_path / "out")
    assert not (tmp_path / "out" / "pytorch").exists()


def test_report_measurements(exported):
    """Largest error and export time over every case (printed with -s)."""
    worst = max(max(r.parity["max_abs_error"].values()) for _, r, _ in exported.values())
    print(f"\npytorch: {len(exported)} exports, max abs error {worst:.2e}, "
          f"export seconds mean {np.mean(list(MEASURED.values())):.2f} max {max(MEASURED.values()):.2f}")
    assert worst < 1e-3
