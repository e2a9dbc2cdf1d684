"""What TensorFlow 1.15 itself computes for the kernels the reference reproduces
(sbexportd/realize/tf1_arith.py): MatMul over the shapes SB2's policies have,
Conv2D of nature_cnn's layers, and tanh. Run in the legacy stack:

    /tmp/sb2legacy/bin/python tools/legacy/probe_tf1_arith.py tests/fixtures/tf1_arith.npz

Sessions are made the way SB2 made them (tf_util.make_session: intra- and
inter-op threads = n_cpu_tf_sess; the zoo goldens used the default, the machine's
cores), so the blocking TF picks is the one SB2's predict saw. tests/test_tf1_arith.py
holds the reference to these answers bit for bit.
"""
from __future__ import annotations

import multiprocessing
import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf

# (batch, k, n): the dense layers of the shared zoo (obs -> 64/256/400, 400 -> 300, heads)
# and k past the first slicing of k (400, 512, 576, 700).
MATMUL = [(16, 44, 64), (16, 256, 17), (8, 96, 64), (8, 400, 48), (16, 321, 16), (16, 384, 16),
          (16, 512, 16), (16, 576, 32), (16, 700, 16), (3, 300, 17)]
# (batch, h, w, c, kernel, stride, out): nature_cnn's three layers on small images
CONV = [(2, 36, 36, 4, 8, 4, 32), (1, 20, 20, 32, 4, 2, 64), (2, 9, 9, 64, 3, 1, 64)]


def main(out: str) -> None:
    rng = np.random.RandomState(20261130)
    threads = multiprocessing.cpu_count()
    config = tf.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads)
    arrays = {}
    graph = tf.Graph()
    with graph.as_default(), tf.Session(graph=graph, config=config) as sess:
        x_ph, w_ph = tf.placeholder(tf.float32, [None, None]), tf.placeholder(tf.float32, [None, None])
        product = tf.matmul(x_ph, w_ph)
        for i, (m, k, n) in enumerate(MATMUL):
            x = (rng.randn(m, k) * 3).astype(np.float32)
            w = rng.randn(k, n).astype(np.float32)
            arrays.update({f"matmul{i}_x": x, f"matmul{i}_w": w,
                           f"matmul{i}_y": sess.run(product, {x_ph: x, w_ph: w})})
        for i, (b, h, w_, c, k, s, o) in enumerate(CONV):
            x = rng.rand(b, h, w_, c).astype(np.float32)
            w = (rng.randn(k, k, c, o) / np.sqrt(k * k * c)).astype(np.float32)
            y = sess.run(tf.nn.conv2d(x, w, strides=[1, s, s, 1], padding="VALID"))
            arrays.update({f"conv{i}_x": x, f"conv{i}_w": w, f"conv{i}_y": y, f"conv{i}_stride": np.array(s)})
        t = np.concatenate([np.linspace(-10, 10, 4001), rng.randn(1000) * 3]).astype(np.float32)
        arrays.update(tanh_x=t, tanh_y=sess.run(tf.tanh(t)))
    arrays["tensorflow"] = np.array(tf.__version__)
    arrays["threads"] = np.array(threads)
    np.savez_compressed(out, **arrays)
    print(f"wrote {out}: {len(MATMUL)} products, {len(CONV)} convolutions, {t.size} tanh values "
          f"(TensorFlow {tf.__version__}, {threads} threads)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tf1_arith.npz")
