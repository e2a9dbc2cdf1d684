"""Image layouts in a torch program: the spec (SB2, TensorFlow) holds images NHWC,
torch's convolutions take NCHW.

Both torch programs (the torch backend's SpecModule, and the generated policy.py of
export/codegen_torch.py) follow one rule, kept here: a conv stack is entered with one
NHWC -> NCHW permute, its outputs and the activations of them stay NCHW, and any
other op reading an NCHW tensor (flatten, above all) gets it back in NHWC first, so
features come out in SB2's order. `Layout` tracks which tensors are held NCHW."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

TO_NCHW = (0, 3, 1, 2)
TO_NHWC = (0, 2, 3, 1)
CONV = "conv2d"
# ops computed elementwise on a tensor in either layout: the output keeps the input's
KEEPS_LAYOUT = frozenset({"activation"})


class Layout:
    """Which tensors of a program are held NCHW; the others are in the spec's layout."""

    def __init__(self) -> None:
        self.nchw: set[str] = set()

    def __contains__(self, tensor: object) -> bool:
        return tensor in self.nchw

    def permutation(self, op: str, tensor: str) -> tuple[int, ...] | None:
        """The permute `op` needs on `tensor` before it reads it, or None.
        (op "" is any reader that wants the spec's layout: a public output, say.)"""
        if op == CONV:
            return None if tensor in self.nchw else TO_NCHW
        if op in KEEPS_LAYOUT or tensor not in self.nchw:
            return None
        return TO_NHWC

    def record(self, op: str, inputs: Sequence[str], outputs: Iterable[str]) -> None:
        """After a node ran: the layout `op` left its outputs in."""
        if op == CONV or (op in KEEPS_LAYOUT and inputs and inputs[0] in self.nchw):
            self.nchw.update(outputs)
