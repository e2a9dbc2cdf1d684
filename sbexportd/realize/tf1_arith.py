"""TensorFlow 1.15's float32 arithmetic, reproduced with NumPy for the reference.

SB2's answers are what TF 1.15.5 computed in float32, and two of its kernels round
differently from NumPy's:

- tanh: Eigen's rational approximation (generic_fast_tanh_float), not a correctly
  rounded tanh. A value head with large weights after saturated units amplifies the
  few-ulp difference ~10x (zoo acktr/Pendulum values: 2e-4 with np.tanh, 1.5e-5
  with this).
- matrix products (MatMul, and Conv2D as a product of image patches): TF 1.15 runs
  its contractions through MKL-DNN's sgemm, which accumulates each output
  sequentially over k with fused multiply-adds, after splitting k into equal
  8-aligned slices (TensorContractionBlocking: the partial products of the slices
  are then added). OpenBLAS orders the sum differently; on a 400x300 TD3 actor the
  difference reaches 2.7e-5 on actions. Measured against TF 1.15.5 itself
  (tools/legacy/probe_tf1_matmul.py): bit-identical for batch >= 2 and k up to 700,
  and for Conv2D of nature_cnn's shapes. A single row (batch 1) or a single column
  goes through TF's matrix-vector kernel instead, whose order is not reproduced;
  NumPy's product is used there (both are float32-accurate; the verification's
  error bound, parity.py, covers the difference).

Everything here is float32 in, float32 out, like the tensors TF kept.
"""
from __future__ import annotations

import numpy as np

F32, F64 = np.float32, np.float64

_TANH_P = tuple(F32(c) for c in (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11,
                                 5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04,
                                 4.89352455891786e-03))
_TANH_Q = tuple(F32(c) for c in (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03,
                                 4.89352518554385e-03))


def tanh(a) -> np.ndarray:
    x = np.clip(np.asarray(a, F32), F32(-9), F32(9))
    x2 = x * x
    p = x2 * _TANH_P[0] + _TANH_P[1]
    for c in _TANH_P[2:]:
        p = p * x2 + c
    q = x2 * _TANH_Q[0] + _TANH_Q[1]
    for c in _TANH_Q[2:]:
        q = q * x2 + c
    return ((p * x) / q).astype(F32)


# k up to this many terms is one slice (measured: 384 is, 400 is split in two).
SLICE_K = 384


def k_slices(k: int) -> list[tuple[int, int]]:
    """The [lo, hi) ranges of k that TF 1.15 sums separately, in order."""
    if k <= SLICE_K:
        return [(0, k)]
    n = -(-k // SLICE_K)
    step = -(-(k // n) // 8) * 8
    return [(lo, min(k, lo + step)) for lo in range(0, k, step)]


def matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x (m, k) @ w (k, n) in float32, summed in TF 1.15's order."""
    x, w = np.asarray(x, F32), np.asarray(w, F32)
    m, k = x.shape
    n = w.shape[1]
    if m < 2 or n < 2 or k == 0:
        return (x @ w).astype(F32)
    # A fused multiply-add rounds x*w + acc once: the float64 product of two float32
    # is exact, so rounding the float64 sum to float32 is that one rounding (up to a
    # double rounding tie, which the measurement above never met).
    xd, wd = x.astype(F64), w.astype(F64)
    out: np.ndarray | None = None
    prod = np.empty((m, n), F64)
    for lo, hi in k_slices(k):
        acc = np.zeros((m, n), F32)
        for i in range(lo, hi):
            np.multiply(xd[:, i:i + 1], wd[i], out=prod)
            prod += acc
            acc = prod.astype(F32)
        out = acc if out is None else (out + acc).astype(F32)
    assert out is not None  # k > 0: one slice at least
    return out
