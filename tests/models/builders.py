"""Seeded test models for quantization: ``resnet_like``, ``mobilenet_like``, ``bert_like``.

Contract: each returns ``(model, make_data)``; ``make_data(n, seed)`` gives ``n`` sample dicts
(batch 1 each) from one fixed distribution, so calibration and evaluation data match. Weights
are He-initialised so activations stay O(1) through the net; batch axes are dynamic.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _B:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, p):
        self.n += 1
        return f"{p}{self.n}"

    def const(self, arr, p="c"):
        n = self.name(p)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), n))
        return n

    def node(self, op, inputs, p=None, n_out=1, **attrs):
        name = self.name(p or op.lower())
        outs = [f"{name}_out{i}" if i else f"{name}_out" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs[0] if n_out == 1 else outs

    def conv(self, x, cin, cout, k, stride=1, group=1, bias=True, bn=False, act="relu"):
        w = self.rng.standard_normal((cout, cin // group, k, k)).astype(np.float32)
        w *= np.sqrt(2.0 / (cin // group * k * k))
        ins = [x, self.const(w, "w")]
        if bias:
            ins.append(self.const(self.rng.normal(0, 0.1, cout).astype(np.float32), "b"))
        y = self.node("Conv", ins, "conv", pads=[k // 2] * 4, strides=[stride] * 2, group=group,
                      kernel_shape=[k, k])
        if bn:
            c = lambda a: self.const(a.astype(np.float32), "bn")  # noqa: E731
            y = self.node("BatchNormalization",
                          [y, c(self.rng.uniform(0.5, 1.5, cout)), c(self.rng.normal(0, .1, cout)),
                           c(self.rng.normal(0, .1, cout)), c(self.rng.uniform(.5, 2., cout))],
                          "bn", epsilon=1e-5)
        if act == "relu":
            y = self.node("Relu", [y])
        elif act == "relu6":
            y = self.node("Clip", [y, self.const(np.float32(0)), self.const(np.float32(6))])
        elif act == "hardswish":
            y = self.node("HardSwish", [y])
        return y

    def gemm(self, x, k, n):
        w = (self.rng.standard_normal((n, k)) * np.sqrt(1.0 / k)).astype(np.float32)
        b = self.rng.normal(0, .1, n).astype(np.float32)
        return self.node("Gemm", [x, self.const(w, "w"), self.const(b, "b")], "gemm", transB=1)

    def model(self, inputs, outputs, opset=13):
        g = helper.make_graph(self.nodes, "g", inputs, outputs, self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def _image_data(shape, classes=10):
    """Normalised "photos" of ``classes`` fixed low-frequency prototypes (seeded by the
    shape), each sample one prototype with random contrast, shift and texture noise; pixels
    in [0, 1] then mean/std normalised as image pipelines do (about [-2, 2])."""
    protos = np.random.default_rng(sum(shape)).uniform(0, 1, (classes, shape[0], 4, 4))
    up = np.ones((1, shape[1] // 4, shape[2] // 4))

    def make(n, seed=0):
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(n):
            base = 0.5 + 0.3 * (protos[rng.integers(classes)] - 0.5) * rng.uniform(0.8, 1.2)
            img = np.kron(base, up)[None]
            img = np.clip(img + 0.2 * rng.standard_normal(img.shape), 0, 1)
            out.append({"input": ((img - 0.5) / 0.25).astype(np.float32)})
        return out
    return make


def resnet_like(seed=0, with_noise_nodes=True):
    """conv-BN-relu stem, two residual blocks (Add), a two-branch Concat, MaxPool, GAP, Gemm."""
    b = _B(seed)
    x = "input"
    y = b.conv(x, 3, 16, 3, bn=True)
    if with_noise_nodes:
        y = b.node("Identity", [y])
    for _ in range(2):
        h = b.conv(y, 16, 16, 3)
        h = b.conv(h, 16, 16, 3, act=None, bn=True)
        y = b.node("Relu", [b.node("Add", [h, y])])
    if with_noise_nodes:
        y = b.node("Dropout", [y])
    br1 = b.conv(y, 16, 8, 1)
    br2 = b.conv(y, 16, 8, 3)
    y = b.node("Concat", [br1, br2], axis=1)
    y = b.node("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])
    y = b.conv(y, 16, 32, 3, stride=2)
    y = b.node("GlobalAveragePool", [y])
    y = b.node("Flatten", [y], axis=1)
    y = b.gemm(y, 32, 10)
    b.nodes[-1].output[0] = "logits"
    m = b.model([helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 16, 16])],
                [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])])
    return m, _image_data((3, 16, 16))


def mobilenet_like(seed=1):
    """stem conv (relu6), depthwise-separable blocks (one residual, one HardSwish), GAP, Gemm."""
    b = _B(seed)
    y = b.conv("input", 3, 16, 3, stride=2, bn=True, act="relu6")
    y = b.conv(y, 16, 16, 3, group=16, bn=True, act="relu6")
    y = b.conv(y, 16, 24, 1, act=None, bn=True)
    h = b.conv(y, 24, 24, 3, group=24, act="relu6")
    h = b.conv(h, 24, 24, 1, act=None)
    y = b.node("Add", [h, y])
    y = b.conv(y, 24, 24, 3, group=24, stride=2, act="hardswish")
    y = b.conv(y, 24, 32, 1)
    y = b.node("GlobalAveragePool", [y])
    y = b.node("Flatten", [y], axis=1)
    y = b.gemm(y, 32, 10)
    b.nodes[-1].output[0] = "logits"
    m = b.model([helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
                [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], opset=14)
    return m, _image_data((3, 32, 32))


def bert_like(seed=2, d=32, heads=4, ffn=64):
    """One encoder block: QKV MatMul+Add, scores MatMul, scale, mask Add (-3.4e38), Softmax,
    context MatMul, output proj, residual Add, LayerNorm, Erf-GELU FFN, residual, LayerNorm."""
    b = _B(seed)
    dh = d // heads
    r = b.rng

    def lin(x, k, n):
        w = (r.standard_normal((k, n)) * np.sqrt(1.0 / k)).astype(np.float32)
        y = b.node("MatMul", [x, b.const(w, "w")], "matmul")
        return b.node("Add", [y, b.const(r.normal(0, .1, n).astype(np.float32), "b")], "add")

    def heads_(x):
        y = b.node("Reshape", [x, b.const(np.array([0, 0, heads, dh], np.int64), "shape")])
        return b.node("Transpose", [y], perm=[0, 2, 1, 3])

    def ln(x):
        return b.node("LayerNormalization", [x, b.const(r.uniform(.8, 1.2, d).astype(np.float32)),
                                            b.const(r.normal(0, .05, d).astype(np.float32))],
                      "ln", axis=-1, epsilon=1e-5)

    x = "input"
    q, k, v = heads_(lin(x, d, d)), heads_(lin(x, d, d)), heads_(lin(x, d, d))
    kt = b.node("Transpose", [k], perm=[0, 1, 3, 2])
    s = b.node("MatMul", [q, kt], "scores")
    s = b.node("Mul", [s, b.const(np.float32(1 / np.sqrt(dh)))])
    s = b.node("Add", [s, "mask"], "maskadd")
    p = b.node("Softmax", [s], axis=-1)
    c = b.node("MatMul", [p, v], "context")
    c = b.node("Reshape", [b.node("Transpose", [c], perm=[0, 2, 1, 3]),
                           b.const(np.array([0, 0, d], np.int64), "shape")])
    h = ln(b.node("Add", [lin(c, d, d), x], "residual"))
    f = lin(h, d, ffn)
    g = b.node("Mul", [f, b.node("Add", [b.node("Erf", [b.node("Div", [f, b.const(
        np.float32(np.sqrt(2)))])]), b.const(np.float32(1))])])
    g = b.node("Mul", [g, b.const(np.float32(0.5))])
    ln(b.node("Add", [lin(g, ffn, d), h], "residual"))
    b.nodes[-1].output[0] = "output"
    m = b.model([helper.make_tensor_value_info("input", TensorProto.FLOAT, ["B", "S", d]),
                 helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["B", 1, 1, "S"])],
                [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["B", "S", d])],
                opset=17)

    def make(n, seed=0, seq=8):
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(n):
            keep = np.ones(seq, np.float32)
            keep[rng.integers(seq // 2, seq + 1):] = 0
            mask = np.where(keep > 0, 0, -3.4e38).astype(np.float32).reshape(1, 1, 1, seq)
            out.append({"input": rng.standard_normal((1, seq, d)).astype(np.float32),
                        "mask": mask})
        return out
    return m, make
