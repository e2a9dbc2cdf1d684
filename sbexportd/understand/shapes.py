"""Shape rules: every op's parameters checked against its inputs as a spec is built.

Each rule maps the per-sample shapes of a node's inputs (batch excluded) and the
shapes of its parameters to the shapes of its outputs, or raises
`InconsistentParameters` naming the tensor that does not fit. `check_program` runs
them over a whole spec, so a parameter naming that puts a tensor where it cannot
go (an old file's unnamed list read in the wrong order) fails while the spec is
made, never as a broadcasting error at predict time.
"""
from __future__ import annotations

from collections.abc import Callable
from math import prod
from typing import TYPE_CHECKING

from ..errors import InconsistentParameters, UnsupportedModel
from ..registry import Registry

if TYPE_CHECKING:
    from .spec import Node

Shape = tuple[int, ...]
Rule = Callable[["Node", list[Shape], dict[str, Shape]], tuple[Shape, ...]]
RULES: Registry[Rule] = Registry("shape rule", UnsupportedModel)
rule = RULES.register  # @rule("op", ...): one rule for several ops


class _Mismatch(Exception):
    pass


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise _Mismatch(message)


def _param(node, params: dict[str, Shape], role: str) -> tuple[str, Shape]:
    return node.params[role], params[node.params[role]]


def _same_as_input(node, role: str, x: Shape, params: dict[str, Shape]) -> None:
    name, shape = _param(node, params, role)
    _need(shape == x or shape in ((), (1,)), f"{role} {name!r} has shape {list(shape)}, the input {list(x)}")


@rule("cast_float", "activation", "softmax", "round", "exp", "clip_value", "concat_dict")
def _elementwise(node, xs, params):
    return (xs[0],)


@rule("one_hot")
def _one_hot(node, xs, params):
    _need(xs[0] in ((), (1,)), f"one_hot takes one index per sample, got shape {list(xs[0])}")
    return ((int(node.attrs["n"]),),)


@rule("multi_one_hot")
def _multi_one_hot(node, xs, params):
    nvec = [int(n) for n in node.attrs["nvec"]]
    _need(xs[0] == (len(nvec),), f"multi_one_hot takes {len(nvec)} indices, got shape {list(xs[0])}")
    return ((sum(nvec),),)


@rule("scale_box", "clip_box", "unscale_box")
def _box(node, xs, params):
    for role in node.params:
        _same_as_input(node, role, xs[0], params)
    return (xs[0],)


@rule("vecnormalize", "running_norm")
def _normalize(node, xs, params):
    for role in node.params:
        name, shape = _param(node, params, role)
        _need(shape == xs[0], f"{role} {name!r} has shape {list(shape)}, the observation {list(xs[0])}")
    return (xs[0],)


@rule("flatten")
def _flatten(node, xs, params):
    return ((prod(xs[0]),),)


@rule("dense")
def _dense(node, xs, params):
    (w, ws), (b, bs) = _param(node, params, "w"), _param(node, params, "b")
    _need(len(xs[0]) == 1, f"dense {w!r} takes a vector, got shape {list(xs[0])}")
    _need(len(ws) == 2 and ws[0] == xs[0][0],
          f"weight {w!r} has shape {list(ws)}, its input has {xs[0][0]} features")
    _need(bs == (ws[1],), f"bias {b!r} has shape {list(bs)}, its weight {w!r} {list(ws)}")
    return ((ws[1],),)


@rule("conv2d")
def _conv2d(node, xs, params):
    (w, ws), (b, bs) = _param(node, params, "w"), _param(node, params, "b")
    _need(len(xs[0]) == 3, f"conv2d {w!r} takes an (H, W, C) image, got shape {list(xs[0])}")
    _need(len(ws) == 4 and ws[2] == xs[0][2],
          f"kernel {w!r} has shape {list(ws)}, its input has {xs[0][2]} channels")
    _need(bs == (ws[3],), f"bias {b!r} has shape {list(bs)}, its kernel {w!r} {list(ws)}")
    s = int(node.attrs["stride"])
    h, wd = (xs[0][0] - ws[0]) // s + 1, (xs[0][1] - ws[1]) // s + 1
    _need(h >= 1 and wd >= 1, f"kernel {w!r} {list(ws)} does not fit the image {list(xs[0])}")
    return ((h, wd, ws[3]),)


@rule("layer_norm")
def _layer_norm(node, xs, params):
    for role in ("gamma", "beta"):
        name, shape = _param(node, params, role)
        _need(shape == xs[0][-1:], f"{role} {name!r} has shape {list(shape)}, the input {list(xs[0])}")
    return (xs[0],)


@rule("lstm")
def _lstm(node, xs, params):
    x, state, mask = xs
    n = int(node.attrs["n_hidden"])
    _need(len(x) == 1, f"the LSTM takes a vector, got shape {list(x)}")
    want = {"wx": (x[0], 4 * n), "wh": (n, 4 * n), "b": (4 * n,)}
    if node.attrs.get("layer_norm"):
        want.update(gx=(4 * n,), bx=(4 * n,), gh=(4 * n,), bh=(4 * n,), gc=(n,), bc=(n,))
    for role, shape in want.items():
        name, got = _param(node, params, role)
        _need(got == shape, f"LSTM {role} {name!r} has shape {list(got)}, expected {list(shape)}")
    _need(state == (2 * n,) and mask == (), f"LSTM state {list(state)} / mask {list(mask)}: expected "
                                           f"[{2 * n}] and []")
    return ((n,), (2 * n,))


@rule("frame_stack")
def _frame_stack(node, xs, params):
    x, state, mask = xs
    n, frame = int(node.attrs["n"]), tuple(int(d) for d in node.attrs["frame"])
    _need(n >= 2 and x == frame, f"frame_stack of {n} frames {list(frame)} got a frame {list(x)}")
    _need(state == ((n - 1) * prod(frame),) and mask == (),
          f"frame_stack state {list(state)} / mask {list(mask)}: expected [{(n - 1) * prod(frame)}] and []")
    return ((*frame[:-1], frame[-1] * n), state)


@rule("concat")
def _concat(node, xs, params):
    _need(all(len(s) == 1 for s in xs), f"concat takes vectors, got {[list(s) for s in xs]}")
    return ((sum(s[0] for s in xs),),)


@rule("dueling")
def _dueling(node, xs, params):
    a, v = xs
    _need(len(a) == 1 and v == (1,), f"dueling takes advantages [n] and a value [1], got {list(a)}, {list(v)}")
    return (a,)


@rule("squeeze_last")
def _squeeze_last(node, xs, params):
    _need(xs[0] == (1,), f"squeeze_last takes shape [1], got {list(xs[0])}")
    return ((),)


@rule("argmax")
def _argmax(node, xs, params):
    _need(len(xs[0]) == 1, f"argmax takes a vector, got shape {list(xs[0])}")
    return ((),)


@rule("split")
def _split(node, xs, params):
    sizes = [int(s) for s in node.attrs["sizes"]]
    _need(xs[0] == (sum(sizes),), f"split into {sizes} needs shape [{sum(sizes)}], got {list(xs[0])}")
    return tuple((s,) for s in sizes)


@rule("stack_last")
def _stack_last(node, xs, params):
    _need(all(s == () for s in xs), f"stack_last takes scalars, got {[list(s) for s in xs]}")
    return ((len(xs),),)


@rule("exp_broadcast")
def _exp_broadcast(node, xs, params):
    name, shape = _param(node, params, "logstd")
    _need(len(xs[0]) == 1 and shape in ((1, xs[0][0]), (xs[0][0],)),
          f"logstd {name!r} has shape {list(shape)}, the mean {list(xs[0])}")
    return (xs[0],)


def check_program(spec, source: str | None = None) -> dict[str, Shape]:
    """Every node's parameters against its inputs, in order; returns every tensor's
    per-sample shape. Raises InconsistentParameters naming the node and tensor."""
    shapes: dict[str, Shape] = {"obs": tuple(spec.observation_space.shape)}
    if spec.stateful:
        shapes.update(state=(spec.state_size,), mask=())
    params = {k: tuple(v.shape) for k, v in spec.tensors.items()}
    for i, node in enumerate(spec.nodes):
        try:
            out = RULES[node.op](node, [shapes[x] for x in node.inputs], params)
        except _Mismatch as exc:
            raise InconsistentParameters(f"node {i} ({node.op}): {exc}", source) from None
        if len(out) != len(node.outputs):
            raise InconsistentParameters(f"node {i} ({node.op}) writes {len(node.outputs)} tensors, "
                                         f"its op makes {len(out)}", source)
        shapes.update(zip(node.outputs, out, strict=True))
    return shapes
