"""The name tables (sbexportd/registry.py): a name registered twice is refused, an
unknown name is a typed error naming the known ones, and every table that
implements the op contract (understand/ops.py) has an entry for every op and every
activation, so a new op or activation without an implementation fails here."""
from __future__ import annotations

import importlib

import pytest

from sbexportd import errors
from sbexportd.registry import DuplicateName, Registry, UnknownName
from sbexportd.understand.ops import OPS
from sbexportd.understand.spec import ACTIVATIONS

# (module, op table, activation table or None): every implementation of the contract in Python
OP_TABLES = {
    "numpy": ("sbexportd.realize.numpy_backend", "OP_IMPLS", None),
    "tensorflow": ("sbexportd.realize.tf_backend", "CONVERTERS", "ACTIVATIONS"),
    "torch": ("sbexportd.realize.torch_backend", "CONVERTERS", "ACTIVATIONS"),
    "onnxruntime": ("sbexportd.realize.onnxruntime_backend", "CONVERTERS", "ACTIVATIONS"),
    "torch codegen": ("sbexportd.export.codegen_torch", "EMITTERS", "ACTIVATION_EXPR"),
    "shape rules": ("sbexportd.understand.shapes", "RULES", None),
}


def table(where: str, which: int) -> Registry:
    module, *names = OP_TABLES[where]
    return getattr(importlib.import_module(module), names[which - 1])


def test_a_name_registered_twice_is_refused():
    reg: Registry = Registry("widget")

    @reg.register("a", "b")
    def first():
        return 1
    with pytest.raises(DuplicateName, match="widget 'b' registered twice"):
        reg.register("b")(lambda: 2)
    assert reg["b"] is first and list(reg) == ["a", "b"]
    with pytest.raises(DuplicateName):
        Registry("widget", entries=[("x", 1), ("x", 2)])


@pytest.mark.parametrize("where", list(OP_TABLES))
def test_a_real_table_refuses_a_second_converter(where):
    ops = table(where, 1)
    before = dict(ops)
    with pytest.raises(DuplicateName, match="'dense' registered twice"):
        ops.register("dense")(lambda *a: None)
    assert dict(ops) == before


def test_an_unknown_name_is_the_tables_typed_error_naming_the_known_ones():
    reg = Registry("backend", errors.BackendUnavailable, [("numpy", 1), ("torch", 2)])
    with pytest.raises(errors.BackendUnavailable, match="unknown backend 'jax'; choose one of numpy, torch"):
        reg["jax"]
    with pytest.raises(UnknownName, match="unknown thing 'x'"):
        Registry("thing")["x"]
    assert "jax" not in reg and reg.get("jax") is None and reg.get(["unhashable"]) is None
    with pytest.raises(errors.BackendUnavailable, match=r"no backend for 'jax', 'tpu'; there are: numpy, torch"):
        reg.require(["numpy", "tpu", "jax"])


@pytest.mark.parametrize("where", list(OP_TABLES))
def test_every_op_of_the_contract_has_an_implementation(where):
    """A new op in understand/ops.py fails here until every backend (and the shape
    rules, and the torch code generator) implements it; nothing else is registered."""
    assert list(table(where, 1)) and set(table(where, 1)) == set(OPS), where


@pytest.mark.parametrize("where", [w for w, (_, _, acts) in OP_TABLES.items() if acts])
def test_every_activation_has_an_implementation(where):
    assert set(table(where, 2)) == set(ACTIVATIONS), where


def test_numpy_has_every_activation_in_both_arithmetics():
    from sbexportd.realize.numpy_backend import ACTIVATION_FNS
    assert ACTIVATION_FNS and all(set(fns) == set(ACTIVATIONS) for fns in ACTIVATION_FNS.values())


def test_unknown_activation_in_a_backend_is_a_typed_error():
    from sbexportd.realize.torch_backend import ACTIVATIONS as TORCH
    with pytest.raises(errors.BackendUnavailable, match="unknown torch activation 'gelu'; choose one of identity"):
        TORCH["gelu"]


def test_every_algorithm_has_an_adapter():
    from sbexportd.understand.adapters import ADAPTERS
    from sbexportd.understand.context import ALGORITHMS
    assert set(ADAPTERS) == set(ALGORITHMS)
    with pytest.raises(errors.UnknownAlgorithm, match="unknown algorithm 'ppo3'"):
        ADAPTERS["ppo3"]


def test_targets_are_a_table():
    from sbexportd.export.targets import TARGETS
    assert "onnx" in TARGETS and TARGETS["onnx"].name == "onnx"
    with pytest.raises(errors.TargetUnavailable, match="unknown target 'coreml'; choose one of pytorch, onnx"):
        TARGETS["coreml"]


def test_backends_are_one_table_the_cli_and_the_model_read():
    from sbexportd.cli import build_parser
    from sbexportd.realize.backends import BACKENDS, FAST_CANDIDATES, REFERENCE, Backend
    assert REFERENCE in BACKENDS and FAST_CANDIDATES and set(FAST_CANDIDATES) <= set(BACKENDS)
    for name, info in BACKENDS.items():
        cls = info.load()
        assert issubclass(cls, Backend) and cls.name == name
        assert cls.sample is Backend.sample  # one sampling for every backend
        for command in (["predict", "m.zip", "--obs", "o.npy"], ["evaluate", "m.zip"]):
            assert build_parser().parse_args([*command, "--backend", name]).backend == name
    with pytest.raises(errors.BackendUnavailable, match="unknown backend 'jax'; choose one of numpy, tensorflow"):
        BACKENDS["jax"]


def test_one_layout_rule_for_both_torch_programs():
    """realize/layout.py: a conv stack entered once (NHWC -> NCHW), an activation of a
    conv output kept NCHW, anything else handed NHWC again; the torch backend and the
    code generator both follow it (their parity tests check the numbers)."""
    from sbexportd.realize.layout import TO_NCHW, TO_NHWC, Layout
    lay = Layout()
    assert lay.permutation("conv2d", "obs") == TO_NCHW
    lay.record("conv2d", ["obs"], ["c1"])
    assert "c1" in lay and lay.permutation("conv2d", "c1") is None and lay.permutation("activation", "c1") is None
    lay.record("activation", ["c1"], ["r1"])
    assert "r1" in lay and lay.permutation("flatten", "r1") == TO_NHWC and lay.permutation("", "r1") == TO_NHWC
    lay.record("flatten", ["r1"], ["f"])
    lay.record("activation", ["f"], ["a"])
    assert "f" not in lay and "a" not in lay and lay.permutation("dense", "a") is None


def test_the_op_contract_is_a_table_whose_attribute_types_are_known():
    from sbexportd.understand.ops import ATTR_TYPES
    assert all(kind in ATTR_TYPES for op in OPS.values() for kind in op.attrs.values())
    with pytest.raises(errors.InvalidSpec, match="unknown op 'launch'; choose one of cast_float"):
        OPS["launch"]
