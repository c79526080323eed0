"""Seeded models with what real exporters produce: MobileNetV3 blocks (HardSwish as an op or
decomposed as x*HardSigmoid(x) / x*Clip(x+3,0,6)/6, squeeze-excite), opset-11 channel shuffles
(Reshape/Transpose chains between Convs), a Conv whose output is a graph output, a graph input
read by several biased layers, a static-shape MatMul+Add encoder FFN.

Contract: each returns ``(model, make_data)`` like ``builders``; batch axes are dynamic unless
the docstring says static.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from .builders import _B, _image_data

F = TensorProto.FLOAT


def _hswish(b: _B, x: str, form: str) -> str:
    if form == "op":
        return b.node("HardSwish", [x])
    if form == "hsig":
        return b.node("Mul", [x, b.node("HardSigmoid", [x], alpha=1 / 6, beta=0.5)])
    # PyTorch before opset 14: x * Clip(x + 3, 0, 6) / 6
    c = b.node("Clip", [b.node("Add", [x, b.const(np.float32(3))]), b.const(np.float32(0)),
                        b.const(np.float32(6))])
    return b.node("Div", [b.node("Mul", [x, c]), b.const(np.float32(6))])


def mobilenet_v3_like(seed=3, form="op", res=32, width=16, blocks=2, se=True, opset=None):
    """stem conv + hswish, then ``blocks`` of [1x1 expand + hswish, 3x3 depthwise + hswish,
    squeeze-excite (GAP, 1x1 relu, 1x1, HardSigmoid, Mul), 1x1 project, residual Add], a
    hswish head conv, GAP, Gemm. ``form``: how HardSwish is written ("op", "hsig", "clip")."""
    opset = opset or (14 if form == "op" else 11)
    b = _B(seed)
    y = _hswish(b, b.conv("input", 3, width, 3, stride=2, act=None), form)
    c = width
    for _ in range(blocks):
        h = _hswish(b, b.conv(y, c, 3 * c, 1, act=None), form)
        h = _hswish(b, b.conv(h, 3 * c, 3 * c, 3, group=3 * c, act=None), form)
        if se:
            s = b.node("GlobalAveragePool", [h])
            s = b.conv(s, 3 * c, c, 1)
            s = b.node("HardSigmoid", [b.conv(s, c, 3 * c, 1, act=None)], alpha=1 / 6, beta=0.5)
            h = b.node("Mul", [h, s])
        h = b.conv(h, 3 * c, c, 1, act=None)
        y = b.node("Add", [y, h])
    y = _hswish(b, b.conv(y, c, 4 * c, 1, act=None), form)
    y = b.node("Flatten", [b.node("GlobalAveragePool", [y])], axis=1)
    y = b.gemm(y, 4 * c, 10)
    b.nodes[-1].output[0] = "logits"
    m = b.model([helper.make_tensor_value_info("input", F, ["N", 3, res, res])],
                [helper.make_tensor_value_info("logits", F, ["N", 10])], opset=opset)
    return m, _image_data((3, res, res))


def shuffle_net_like(seed=4, res=16, opset=11):
    """Convs separated by a channel shuffle (Reshape -> Transpose -> Reshape, as opset-11
    exports write it), then Transpose -> Reshape -> Flatten into a Gemm."""
    b = _B(seed)
    g = 2
    y = b.conv("input", 3, 16, 3)
    for _ in range(2):
        y = b.conv(y, 16, 16, 1)
        y = b.node("Reshape", [y, b.const(np.array([0, g, 16 // g, res, res], np.int64))])
        y = b.node("Transpose", [y], perm=[0, 2, 1, 3, 4])
        y = b.node("Reshape", [y, b.const(np.array([0, 16, res, res], np.int64))])
        y = b.conv(y, 16, 16, 3, group=16, act=None)
    y = b.node("Transpose", [y], perm=[0, 2, 3, 1])
    y = b.node("Reshape", [y, b.const(np.array([0, res * res, 16], np.int64))])
    y = b.node("Flatten", [y], axis=1)
    y = b.gemm(y, res * res * 16, 10)
    b.nodes[-1].output[0] = "logits"
    m = b.model([helper.make_tensor_value_info("input", F, ["N", 3, res, res])],
                [helper.make_tensor_value_info("logits", F, ["N", 10])], opset=opset)
    return m, _image_data((3, res, res))


def conv_head_output(seed=5, res=16):
    """A segmentation-style head: the last Conv's output is the graph output, and an
    intermediate Relu output is a second graph output also read by the next Conv."""
    b = _B(seed)
    y = b.conv("input", 3, 16, 3)
    b.nodes[-1].output[0] = "features"
    y = b.conv("features", 16, 16, 3)
    y = b.conv(y, 16, 4, 1, act=None)
    b.nodes[-1].output[0] = "mask_logits"
    m = b.model([helper.make_tensor_value_info("input", F, ["N", 3, res, res])],
                [helper.make_tensor_value_info("mask_logits", F, ["N", 4, res, res]),
                 helper.make_tensor_value_info("features", F, ["N", 16, res, res])])
    return m, _image_data((3, res, res))


def shared_input_layers(seed=6, res=8):
    """The graph input is read directly by two biased Convs and (flattened) by a MatMul+Add:
    per-layer bias-correction subgraphs must each get the input without duplicating it."""
    b = _B(seed)
    a = b.conv("input", 3, 8, 3, act=None)
    c = b.conv("input", 3, 8, 1, act=None)
    b.node("Concat", [a, c], axis=1)
    b.nodes[-1].output[0] = "maps"
    f = b.node("Flatten", ["input"], axis=1)
    w = (b.rng.standard_normal((3 * res * res, 8)) * 0.1).astype(np.float32)
    mm = b.node("MatMul", [f, b.const(w, "w")], "matmul")
    b.node("Add", [mm, b.const(b.rng.normal(0, .5, 8).astype(np.float32), "b")], "bias")
    b.nodes[-1].output[0] = "vec"
    m = b.model([helper.make_tensor_value_info("input", F, ["N", 3, res, res])],
                [helper.make_tensor_value_info("maps", F, ["N", 16, res, res]),
                 helper.make_tensor_value_info("vec", F, ["N", 8])])
    return m, _image_data((3, res, res))


def ffn_static(seed=7, seq=64, d=128, ffn=512):
    """A transformer FFN with a *static* input shape [1, seq, d]: MatMul + Add bias, Relu,
    MatMul + Add bias, residual Add, LayerNormalization."""
    b = _B(seed)
    r = b.rng

    def lin(x, k, n):
        w = (r.standard_normal((k, n)) * np.sqrt(1.0 / k)).astype(np.float32)
        y = b.node("MatMul", [x, b.const(w, "w")], "matmul")
        return b.node("Add", [y, b.const(r.normal(0, .1, n).astype(np.float32), "b")], "add")
    h = b.node("Relu", [lin("input", d, ffn)])
    y = b.node("Add", [lin(h, ffn, d), "input"], "residual")
    y = b.node("LayerNormalization", [y, b.const(np.ones(d, np.float32)),
                                      b.const(np.zeros(d, np.float32))], "ln", axis=-1)
    b.nodes[-1].output[0] = "output"
    m = b.model([helper.make_tensor_value_info("input", F, [1, seq, d])],
                [helper.make_tensor_value_info("output", F, [1, seq, d])], opset=17)

    def make(n, seed=0):
        rng = np.random.default_rng(seed)
        return [{"input": rng.standard_normal((1, seq, d)).astype(np.float32)}
                for _ in range(n)]
    return m, make
