"""The op contract (understand/ops.py): every op has a schema, a shape rule and an
implementation in every backend, and validate() refuses a node that breaks it."""
from __future__ import annotations

import copy
import dataclasses
import json

import pytest

from sbexportd.errors import InvalidSpec
from sbexportd.understand.ops import OPS, VARIADIC, schema_document
from sbexportd.understand.shapes import RULES
from synthetic import cases

CASES = cases()


def test_every_op_has_a_schema_a_shape_rule_and_a_numpy_implementation():
    from sbexportd.realize.numpy_backend import OP_IMPLS
    assert set(OPS) == set(RULES) == set(OP_IMPLS)
    json.dumps(schema_document())  # the form the Java and Node suites read


def _broken_nodes():
    """(case, node index, how) for one node of each op in the synthetic programs."""
    seen = set()
    for case in CASES:
        for i, node in enumerate(case.spec.nodes):
            if node.op in seen:
                continue
            seen.add(node.op)
            op = OPS[node.op]
            yield pytest.param(case, i, "one input too many" if op.inputs[-1] != VARIADIC else "no input",
                               id=f"{node.op}-inputs")
            if op.params:
                yield pytest.param(case, i, "a parameter missing", id=f"{node.op}-params")
            yield pytest.param(case, i, "an unknown attribute", id=f"{node.op}-attrs")
            if op.attrs and node.attrs:
                yield pytest.param(case, i, "an attribute of the wrong type", id=f"{node.op}-attr-type")


@pytest.mark.parametrize("case,index,how", list(_broken_nodes()))
def test_validate_refuses_a_node_that_breaks_its_op(case, index, how):
    spec = copy.copy(case.spec)
    node = spec.nodes[index]
    if how == "one input too many":
        node = dataclasses.replace(node, inputs=node.inputs + (node.inputs[0],))
    elif how == "no input":
        node = dataclasses.replace(node, inputs=())
    elif how == "a parameter missing":
        role = next(r for r in OPS[node.op].params if r not in OPS[node.op].optional_params)
        node = dataclasses.replace(node, params={k: v for k, v in node.params.items() if k != role})
    elif how == "an unknown attribute":
        node = dataclasses.replace(node, attrs={**node.attrs, "surprise": 1})
    else:
        name = next(iter(node.attrs))
        node = dataclasses.replace(node, attrs={**node.attrs, name: {"not": "a value"}})
    spec.nodes = [*spec.nodes[:index], node, *spec.nodes[index + 1:]]
    with pytest.raises(InvalidSpec, match=rf"node {index} \({node.op}\)"):
        spec.validate()


def test_every_activation_is_checked():
    case = next(c for c in CASES if any(n.op == "activation" for n in c.spec.nodes))
    spec = copy.copy(case.spec)
    i = next(i for i, n in enumerate(spec.nodes) if n.op == "activation")
    spec.nodes = list(spec.nodes)
    spec.nodes[i] = dataclasses.replace(spec.nodes[i], attrs={"fn": "gelu"})
    with pytest.raises(InvalidSpec, match="'gelu' is not one of"):
        spec.validate()


def test_conformance_vectors_cover_every_op():
    """tests/conformance.py has a program for every op of the contract, and with the
    network-level cases they use every op (the Java and Node suites run them all)."""
    import conformance
    from synthetic import covered_ops
    per_op = {n.op for c in conformance.cases() for n in c.spec.nodes}
    assert per_op | {"concat_dict"} == set(OPS)  # concat_dict: synthetic her_dict feeds it a dict
    assert covered_ops([c.spec for c in CASES]) == set(OPS)
