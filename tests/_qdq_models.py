"""Small float models (onnx.helper, random weights) and their ONNX Runtime QDQ quantization,
shared by the int8-layer tests and the int8 runtime benchmark.

``quantize(model, feeds, dirpath)`` runs ``onnxruntime.quantization.quantize_static`` (QDQ,
per-channel int8 weights, u8 activations) with a tiny calibration reader and returns the
quantized ModelProto; files go under ``dirpath`` only (pytest's tmp_path in tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT


class _Builder:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: List[onnx.NodeProto] = []
        self.inits: List[onnx.TensorProto] = []
        self.k = 0

    def name(self, p: str) -> str:
        self.k += 1
        return f"{p}{self.k}"

    def const(self, arr: np.ndarray, p: str = "c") -> str:
        n = self.name(p)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), n))
        return n

    def node(self, op: str, ins: List[str], **attrs) -> str:
        out = self.name(op.lower() + "_out")
        self.nodes.append(helper.make_node(op, ins, [out], name=self.name(op), **attrs))
        return out

    def conv(self, x: str, c: int, oc: int, k: int = 3, stride: int = 1, group: int = 1,
             bias: bool = True, pad: bool = True) -> str:
        fan = c // group * k * k
        w = (self.rng.standard_normal((oc, c // group, k, k)) * np.sqrt(2.0 / fan))
        ins = [x, self.const(w.astype(np.float32), "w")]
        if bias:
            ins.append(self.const((self.rng.standard_normal(oc) * 0.1).astype(np.float32), "b"))
        p = k // 2 if pad else 0
        return self.node("Conv", ins, kernel_shape=[k, k], strides=[stride, stride],
                         pads=[p, p, p, p], group=group)

    def matmul(self, x: str, k: int, n: int, bias: bool = True) -> str:
        w = (self.rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
        y = self.node("MatMul", [x, self.const(w, "w")])
        if bias:
            y = self.node("Add", [y, self.const((self.rng.standard_normal(n) * 0.1)
                                                .astype(np.float32), "b")])
        return y

    def model(self, inputs, outputs, opset: int = 17) -> onnx.ModelProto:
        g = helper.make_graph(self.nodes, "g", inputs, outputs, self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = min(m.ir_version, 9)
        return m


def cnn_model(hw: int = 16, c: int = 8, blocks: int = 1, seed: int = 0) -> onnx.ModelProto:
    """Conv+Relu stem, residual blocks (conv-relu-conv + Add, Relu), a Concat, a head conv."""
    b = _Builder(seed)
    x = b.node("Relu", [b.conv("x", 3, c)])
    for _ in range(blocks):
        h = b.node("Relu", [b.conv(x, c, c)])
        h = b.conv(h, c, c)
        x = b.node("Relu", [b.node("Add", [x, h])])
    br = b.node("Relu", [b.conv(x, c, c, k=1)])
    cat = b.node("Concat", [x, br], axis=1)
    y = b.conv(cat, 2 * c, c, stride=2)
    return b.model([helper.make_tensor_value_info("x", F, [1, 3, hw, hw])],
                   [helper.make_tensor_value_info(y, F, None)])


def depthwise_model(hw: int = 16, c: int = 16, blocks: int = 1, seed: int = 1
                    ) -> onnx.ModelProto:
    """MobileNet-style: stem conv, then (depthwise 3x3 + Relu, pointwise 1x1 + Relu) blocks."""
    b = _Builder(seed)
    x = b.node("Relu", [b.conv("x", 3, c, stride=2)])
    for i in range(blocks):
        x = b.node("Relu", [b.conv(x, c, c, k=3, group=c, stride=2 if i % 2 else 1)])
        x = b.node("Relu", [b.conv(x, c, c, k=1)])
    return b.model([helper.make_tensor_value_info("x", F, [1, 3, hw, hw])],
                   [helper.make_tensor_value_info(x, F, None)])


def mlp_model(k: int = 32, hidden: int = 48, n: int = 10, batch: int = 4, seed: int = 2
              ) -> onnx.ModelProto:
    """MatMul+Add+Relu, then Gemm (transB=1) + Relu, then Gemm (transB=0)."""
    b = _Builder(seed)
    h = b.node("Relu", [b.matmul("x", k, hidden)])
    w1 = (b.rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)).astype(np.float32)
    h = b.node("Relu", [b.node("Gemm", [h, b.const(w1, "w"), b.const(
        (b.rng.standard_normal(hidden) * 0.1).astype(np.float32), "b")], transB=1)])
    w2 = (b.rng.standard_normal((hidden, n)) / np.sqrt(hidden)).astype(np.float32)
    y = b.node("Gemm", [h, b.const(w2, "w"), b.const(
        (b.rng.standard_normal(n) * 0.1).astype(np.float32), "b")])
    return b.model([helper.make_tensor_value_info("x", F, [batch, k])],
                   [helper.make_tensor_value_info(y, F, None)])


def bert_model(seq: int = 16, hidden: int = 32, heads: int = 2, layers: int = 1, ffn: int = 0,
               seed: int = 3) -> onnx.ModelProto:
    """BERT-style encoder layers: Q/K/V MatMuls, attention (Q K^T, Softmax, . V), output
    projection, residual + LayerNormalization, GELU-free FFN (MatMul-Relu-MatMul)."""
    b = _Builder(seed)
    ffn = ffn or 4 * hidden
    dh = hidden // heads
    x = "x"

    def heads_split(t):  # [1, S, H] -> [1, heads, S, dh]
        r = b.node("Reshape", [t, b.const(np.array([1, seq, heads, dh], np.int64), "s")])
        return b.node("Transpose", [r], perm=[0, 2, 1, 3])

    def ln(t):
        return b.node("LayerNormalization", [t, b.const(np.ones(hidden, np.float32), "g"),
                                             b.const(np.zeros(hidden, np.float32), "be")],
                      axis=-1, epsilon=1e-5)

    for _ in range(layers):
        q, k, v = (heads_split(b.matmul(x, hidden, hidden)) for _ in range(3))
        kt = b.node("Transpose", [k], perm=[0, 1, 3, 2])
        s = b.node("Mul", [b.node("MatMul", [q, kt]),
                           b.const(np.float32(1.0 / np.sqrt(dh)), "sc")])
        p = b.node("Softmax", [s], axis=-1)
        ctx = b.node("Transpose", [b.node("MatMul", [p, v])], perm=[0, 2, 1, 3])
        ctx = b.node("Reshape", [ctx, b.const(np.array([1, seq, hidden], np.int64), "s")])
        x = ln(b.node("Add", [x, b.matmul(ctx, hidden, hidden)]))
        f = b.node("Relu", [b.matmul(x, hidden, ffn)])
        x = ln(b.node("Add", [x, b.matmul(f, ffn, hidden)]))
    return b.model([helper.make_tensor_value_info("x", F, [1, seq, hidden])],
                   [helper.make_tensor_value_info(x, F, None)])


def calibration(model: onnx.ModelProto, n: int = 4, seed: int = 10) -> List[Dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        feeds = {}
        for i in model.graph.input:
            shape = [d.dim_value for d in i.type.tensor_type.shape.dim]
            feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
        out.append(feeds)
    return out


def quantize(model: onnx.ModelProto, feeds: List[Dict[str, np.ndarray]], dirpath,
             per_channel: bool = True, extra_options=None, **kw) -> onnx.ModelProto:
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    d = Path(dirpath)
    src, dst = d / "float.onnx", d / "qdq.onnx"
    onnx.save(model, src)
    opts = {"ActivationSymmetric": False, "WeightSymmetric": True}
    opts.update(extra_options or {})
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=per_channel, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, extra_options=opts, **kw)
    return onnx.load(str(dst))
