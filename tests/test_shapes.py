"""The spec's shape rules (understand/shapes.py): every op has one, every synthetic
program passes them, and a parameter of the wrong shape anywhere is refused at build
time with an error naming it, never at predict time."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from sbexportd.errors import InconsistentParameters
from sbexportd.understand.shapes import RULES, check_program
from sbexportd.understand.spec import OPS
from synthetic import cases

CASES = cases()


def test_every_op_has_a_shape_rule():
    assert set(RULES) == set(OPS)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_synthetic_programs_pass_and_outputs_are_batched_shapes(case):
    spec = case.spec
    shapes = check_program(spec)
    from sbexportd.realize.numpy_backend import NumpyPolicy
    rng = np.random.default_rng(0)
    env = NumpyPolicy(spec).forward(case.obs(rng, 3), *((np.zeros((3, spec.state_size), np.float32),
                                                          np.zeros(3, np.float32)) if spec.stateful else ()))
    for node in spec.nodes:
        for name in node.outputs:
            assert np.shape(env[name]) == (3, *shapes[name]), (node.op, name)


def _wrong(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A different shape of the kind a misnamed tensor has: transposed, or one longer."""
    if len(shape) == 2 and shape[0] != shape[1]:
        return shape[::-1]
    return (*shape[:-1], shape[-1] + 1) if shape else (2,)


def _params_with_roles():
    for case in CASES:
        seen = set()
        for i, node in enumerate(case.spec.nodes):
            for role, key in node.params.items():
                if key not in seen:
                    seen.add(key)
                    yield pytest.param(case, i, role, id=f"{case.name}-{i}-{node.op}-{role}")


@pytest.mark.parametrize("case,index,role", list(_params_with_roles()))
def test_a_parameter_of_the_wrong_shape_is_refused_naming_it(case, index, role):
    spec = copy.copy(case.spec)
    key = spec.nodes[index].params[role]
    spec.tensors = dict(spec.tensors)
    spec.tensors[key] = np.zeros(_wrong(spec.tensors[key].shape), np.float32)
    with pytest.raises(InconsistentParameters) as err:
        check_program(spec, "model.zip")
    assert repr(key) in str(err.value) and "model.zip" in str(err.value)

