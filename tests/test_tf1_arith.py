"""The reference's float32 arithmetic against TensorFlow 1.15 itself
(tests/fixtures/tf1_arith.npz, made by tools/legacy/probe_tf1_arith.py in the
legacy stack), bit for bit."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from conftest import FIXTURES
from sbexportd.realize import tf1_arith
from sbexportd.realize.numpy_backend import OP_IMPLS, TF1
from sbexportd.understand.spec import Node

PROBE = np.load(FIXTURES / "tf1_arith.npz")
PRODUCTS = sorted({k.split("_")[0] for k in PROBE.files if k.startswith("matmul")})
CONVS = sorted({k.split("_")[0] for k in PROBE.files if k.startswith("conv")})


@pytest.mark.parametrize("case", PRODUCTS)
def test_matmul_is_tf1s_bit_for_bit(case):
    x, w, y = PROBE[f"{case}_x"], PROBE[f"{case}_w"], PROBE[f"{case}_y"]
    got = tf1_arith.matmul(x, w)
    assert got.dtype == np.float32
    assert np.array_equal(got, y), f"{x.shape} @ {w.shape}: {np.mean(got != y):.1%} differ"


def test_numpys_own_product_is_not(tmp_path):
    """The reason for the emulation: OpenBLAS sums in another order (k past a slice)."""
    x, w, y = (PROBE[f"matmul3_{c}"] for c in "xwy")
    assert x.shape[1] > tf1_arith.SLICE_K and not np.array_equal(x @ w, y)


@pytest.mark.parametrize("case", CONVS)
def test_conv2d_is_tf1s_bit_for_bit(case):
    x, w, y = PROBE[f"{case}_x"], PROBE[f"{case}_w"], PROBE[f"{case}_y"]
    node = Node("conv2d", ("x",), ("y",), {"stride": int(PROBE[f"{case}_stride"])}, {"w": "w", "b": "b"})
    (got,) = OP_IMPLS["conv2d"](node, [x], {"w": w, "b": np.zeros(w.shape[3], np.float32)}, TF1)
    assert np.array_equal(got, y)


def test_tanh_is_tf1s():
    x, y = PROBE["tanh_x"], PROBE["tanh_y"]
    assert np.array_equal(tf1_arith.tanh(x), y)
    assert not np.array_equal(np.tanh(x), y)  # a correctly rounded tanh is not what TF1 computed


@pytest.mark.parametrize("k,slices", [(44, 1), (384, 1), (400, 2), (576, 2), (700, 2)])
def test_k_slices_cover_k_in_order(k, slices):
    got = tf1_arith.k_slices(k)
    assert len(got) == slices and got[0][0] == 0 and got[-1][1] == k
    assert all(a[1] == b[0] for a, b in itertools.pairwise(got)) and all(lo % 8 == 0 for lo, _ in got)
