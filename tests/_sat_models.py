"""Hand-built QDQ models whose int8 values the saturation tests control: every quantized layer
is ``QuantizeLinear -> DequantizeLinear -> Conv|MatMul|Gemm <- DequantizeLinear(int8 w)`` with
chosen integer weights and an activation scale/zero point derived from a bound on the float
input, so the u8 activations stay in [0, qmax] (``qmax <= 64``: no pair can saturate, 2*64*127
< 32767) or, with ``zp=230``, in [205, 255] (near 255: they saturate against weights of 127).
Input values lie in [0, 1].
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class QdqNet:
    def __init__(self, shape, seed: int = 0, opset: int = 13):
        self.rng = np.random.default_rng(seed)
        self.shape = tuple(shape)
        self.nodes: List[onnx.NodeProto] = []
        self.inits: List[onnx.TensorProto] = []
        self.cur, self.bound, self.k = "x", 1.0, 0
        self.opset = opset
        self.quantized_inputs = {}        # layer -> (q tensor, scale, zp, int8 weights)
        self._cin = self.shape[1]

    def _n(self, p: str) -> str:
        self.k += 1
        return f"{p}_{self.k}"

    def _c(self, arr, p: str) -> str:
        n = self._n(p)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), n))
        return n

    def quant(self, zp: int = 0, qmax: int = 64, signed: bool = False):
        """Q -> DQ of the current tensor; returns (dq name, q name, scale, zp)."""
        if zp == 230:
            scale = self.bound / 25.0               # [-bound, bound] -> [205, 255]
        else:
            scale = self.bound / qmax
        s = self._c(np.float32(scale), "s")
        z = self._c(np.int8(zp) if signed else np.uint8(zp), "zp")
        q = self._n("q")
        dq = self._n("dq")
        self.nodes.append(helper.make_node("QuantizeLinear", [self.cur, s, z], [q],
                                           name=self._n("Q")))
        self.nodes.append(helper.make_node("DequantizeLinear", [q, s, z], [dq],
                                           name=self._n("DQ")))
        return dq, q, np.float32(scale), zp

    def _weights(self, w_int: np.ndarray, ws: float, axis: int):
        n_out = w_int.shape[axis]
        wq = self._c(w_int.astype(np.int8), "w")
        wsn = self._c(np.full(n_out, ws, np.float32), "ws")
        wz = self._c(np.zeros(n_out, np.int8), "wz")
        wd = self._n("wdq")
        self.nodes.append(helper.make_node("DequantizeLinear", [wq, wsn, wz], [wd],
                                           name=self._n("WDQ"), axis=axis))
        return wd

    def conv(self, name: str, oc: int, k=(3, 3), stride=(1, 1), pads=(1, 1, 1, 1),
             dil=(1, 1), group: int = 1, w_int: Optional[np.ndarray] = None,
             w_range: int = 127, zp: int = 0, qmax: int = 64, ws: float = 0.01,
             bias: bool = True, signed: bool = False) -> str:
        c = self._cin
        if w_int is None:
            w_int = self.rng.integers(-w_range, w_range + 1, (oc, c // group) + tuple(k))
        dq, q, s, z = self.quant(zp, qmax, signed)
        self.quantized_inputs[name] = (q, s, z, np.asarray(w_int, np.int8))
        ins = [dq, self._weights(np.asarray(w_int), ws, 0)]
        b = (self.rng.standard_normal(oc) * 0.1).astype(np.float32)
        if bias:
            ins.append(self._c(b, "b"))
        out = self._n(name + "_out")
        self.nodes.append(helper.make_node("Conv", ins, [out], name=name, kernel_shape=list(k),
                                           strides=list(stride), pads=list(pads),
                                           dilations=list(dil), group=group))
        xmax = ((127 if signed else 255) - z) * float(s)
        self.bound = float(np.abs(w_int).reshape(oc, -1).sum(axis=1).max()) * ws * xmax + 1.0
        self.cur, self._cin = out, oc
        return out

    def relu(self) -> str:
        out = self._n("relu")
        self.nodes.append(helper.make_node("Relu", [self.cur], [out], name=self._n("Relu")))
        self.cur = out
        return out

    def flatten(self) -> str:
        out = self._n("flat")
        self.nodes.append(helper.make_node("Flatten", [self.cur], [out], name=self._n("Flat")))
        self.cur = out
        return out

    def matmul(self, name: str, k: int, n: int, w_int: Optional[np.ndarray] = None,
               zp: int = 0, qmax: int = 64, ws: float = 0.01, gemm: bool = False,
               signed: bool = False) -> str:
        if w_int is None:
            w_int = self.rng.integers(-127, 128, (n, k) if gemm else (k, n))
        dq, q, s, z = self.quant(zp, qmax, signed)
        self.quantized_inputs[name] = (q, s, z, np.asarray(w_int, np.int8))
        out = self._n(name + "_out")
        if gemm:   # transB=1: weights [N, K], per output channel on axis 0
            wd = self._weights(np.asarray(w_int), ws, 0)
            b = self._c((self.rng.standard_normal(n) * 0.1).astype(np.float32), "b")
            self.nodes.append(helper.make_node("Gemm", [dq, wd, b], [out], name=name,
                                               transB=1))
        else:
            wd = self._weights(np.asarray(w_int), ws, 1)
            self.nodes.append(helper.make_node("MatMul", [dq, wd], [out], name=name))
        xmax = ((127 if signed else 255) - z) * float(s)
        self.bound = float(np.abs(w_int).sum(axis=1 if gemm else 0).max()) * ws * xmax + 1.0
        self.cur = out
        return out

    def model(self, outputs: Optional[List[str]] = None) -> onnx.ModelProto:
        outs = outputs or [self.cur]
        g = helper.make_graph(
            self.nodes, "qdq_net",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(self.shape))],
            [onnx.ValueInfoProto(name=o) for o in outs], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", self.opset)])
        m.ir_version = 8
        typed = {vi.name: vi for vi in onnx.shape_inference.infer_shapes(m).graph.value_info}
        for vi in m.graph.output:           # outputs typed as shape inference finds them
            vi.CopyFrom(typed[vi.name])
        onnx.checker.check_model(m)
        return m

    def data(self, n: int, seed: int = 1, low: float = 0.0) -> List[np.ndarray]:
        rng = np.random.default_rng(seed)
        return [rng.uniform(low, 1.0, self.shape).astype(np.float32) for _ in range(n)]


def quantize_u8(x: np.ndarray, scale: np.float32, zp: int, signed: bool = False):
    """The u8 values a fused layer reads: ONNX QuantizeLinear (round half to even of x / scale,
    + zp, saturate to the type) and, for int8, the +128 shift; with the shifted zero point."""
    q = np.rint(x.astype(np.float32) / np.float32(scale)).astype(np.float64) + zp
    if signed:
        return (np.clip(q, -128, 127) + 128).astype(np.uint8), zp + 128
    return np.clip(q, 0, 255).astype(np.uint8), zp


def saturating_net(seed=0):
    """conv_a (weights |w| <= 60: pairs <= 2*255*60) -> relu -> conv_c (inputs <= 64) -> relu
    -> conv_sat (inputs in [230, 255] with zero point 230, weights +127 / -127 per channel:
    every pair saturates) -> relu -> flatten -> mm (inputs <= 64)."""
    net = QdqNet((1, 6, 8, 8), seed)
    net.conv("conv_a", 8, w_range=60, qmax=255)
    net.relu()
    net.conv("conv_c", 8)
    net.relu()
    sign = np.where(np.arange(8) % 2 == 0, 1, -1).reshape(8, 1, 1, 1)
    net.conv("conv_sat", 8, w_int=np.broadcast_to(127 * sign, (8, 8, 3, 3)).copy(), zp=230)
    net.relu()
    net.flatten()
    net.matmul("mm", 8 * 8 * 8, 10)
    return net
