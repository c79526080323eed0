"""Generator of the demo's package data (run once; needs scikit-learn, fastq does not):
trains a small CNN on scikit-learn's 8x8 digits with numpy (im2col convs, Adam), exports it
as ``digits_cnn.onnx`` (opset 13, dynamic batch) and writes ``calibration.npz`` (300 training
images) and ``validation.npz`` (held-out images and labels). ``python make_demo.py [DIR]``.
"""

from __future__ import annotations

import os
import sys

import numpy as np


def _pad(x, p):
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))


def _cols(x, k, s):
    """[N, C, H, W] (padded) -> [N, Ho, Wo, C, k, k] windows."""
    w = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
    return w.transpose(0, 2, 3, 1, 4, 5)


class Conv:
    def __init__(self, rng, cin, cout, k=3, s=1):
        self.w = rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))
        self.b = np.zeros(cout)
        self.k, self.s = k, s

    def fwd(self, x):
        self.xshape = x.shape
        c = _cols(_pad(x, self.k // 2), self.k, self.s)
        self.c = c.reshape(-1, np.prod(c.shape[3:]))
        n, ho, wo = c.shape[:3]
        y = self.c @ self.w.reshape(len(self.w), -1).T + self.b
        return y.reshape(n, ho, wo, -1).transpose(0, 3, 1, 2)

    def bwd(self, dy):
        n, f, ho, wo = dy.shape
        d = dy.transpose(0, 2, 3, 1).reshape(-1, f)
        self.dw = (d.T @ self.c).reshape(self.w.shape)
        self.db = d.sum(0)
        dc = (d @ self.w.reshape(f, -1)).reshape(n, ho, wo, *self.w.shape[1:])
        p = self.k // 2
        dx = np.zeros((n, self.xshape[1], self.xshape[2] + 2 * p, self.xshape[3] + 2 * p))
        s = self.s
        for i in range(self.k):
            for j in range(self.k):
                dx[:, :, i:i + s * ho:s, j:j + s * wo:s] += dc[..., i, j].transpose(0, 3, 1, 2)
        return dx[:, :, p:-p, p:-p]


def train(x, y, seed=0, epochs=40):
    rng = np.random.default_rng(seed)
    c1, c2 = Conv(rng, 1, 8), Conv(rng, 8, 16, s=2)
    fw = rng.standard_normal((10, 256)) * np.sqrt(1.0 / 256)
    fb = np.zeros(10)
    params = [c1.w, c1.b, c2.w, c2.b, fw, fb]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    t = 0
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for k in range(0, len(x), 64):
            idx = order[k:k + 64]
            xb, yb = x[idx], y[idx]
            h1 = np.maximum(c1.fwd(xb), 0)
            h2 = np.maximum(c2.fwd(h1), 0)
            f = h2.reshape(len(xb), -1)
            z = f @ fw.T + fb
            p = np.exp(z - z.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            dz = p
            dz[np.arange(len(xb)), yb] -= 1
            dz /= len(xb)
            dfw, dfb = dz.T @ f, dz.sum(0)
            dh2 = (dz @ fw).reshape(h2.shape) * (h2 > 0)
            dh1 = c2.bwd(dh2) * (h1 > 0)
            c1.bwd(dh1)
            grads = [c1.dw, c1.db, c2.dw, c2.db, dfw, dfb]
            t += 1
            for i, (pa, g) in enumerate(zip(params, grads)):
                m[i] = 0.9 * m[i] + 0.1 * g
                v[i] = 0.999 * v[i] + 0.001 * g * g
                pa -= 3e-3 * (m[i] / (1 - 0.9 ** t)) / (np.sqrt(v[i] / (1 - 0.999 ** t)) + 1e-8)
    return c1, c2, fw, fb


def to_onnx(c1, c2, fw, fb):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    f32 = lambda a, n: numpy_helper.from_array(np.asarray(a, np.float32), n)  # noqa: E731
    nodes = [
        helper.make_node("Conv", ["image", "conv1.w", "conv1.b"], ["c1"], name="conv1",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "conv2.w", "conv2.b"], ["c2"], name="conv2",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Flatten", ["r2"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc", transB=1),
    ]
    g = helper.make_graph(
        nodes, "digits_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [f32(c1.w, "conv1.w"), f32(c1.b, "conv1.b"), f32(c2.w, "conv2.w"),
         f32(c2.b, "conv2.b"), f32(fw, "fc.w"), f32(fb, "fc.b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name="fastq make_demo")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def main(out_dir: str) -> None:
    import onnx
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    tr, va = order[:1400], order[1400:]
    c1, c2, fw, fb = train(x[tr].astype(np.float64), y[tr])
    model = to_onnx(c1, c2, fw, fb)
    onnx.save(model, os.path.join(out_dir, "digits_cnn.onnx"))
    np.savez_compressed(os.path.join(out_dir, "calibration.npz"), image=x[tr[:300]])
    np.savez_compressed(os.path.join(out_dir, "validation.npz"), image=x[va], label=y[va])
    h = np.maximum(c1.fwd(x[va].astype(np.float64)), 0)
    z = np.maximum(c2.fwd(h), 0).reshape(len(va), -1) @ fw.T + fb
    print(f"validation accuracy (numpy float64): {np.mean(z.argmax(1) == y[va]):.4f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
