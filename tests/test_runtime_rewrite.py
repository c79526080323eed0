"""Graph-rewrite extension point: QDQ layer matching and a stage that replaces matched nodes
(here by a test op) before constant folding and op resolution."""

from __future__ import annotations

import dataclasses

import numpy as np
from onnx import TensorProto, helper

import fastq
from fastq.runtime import graph as rt_graph
from fastq.runtime.registry import register, supported_ops
from fastq.runtime.rewrite import find_qdq_layers

from _runtime_models import F, model, vi

DOM = "test.fastq.rewrite"
if "FloatMatMul" not in supported_ops(DOM):
    @register("FloatMatMul", domain=DOM)
    def _float_matmul(node, a, b):
        return np.matmul(a, b)

RNG = np.random.default_rng(3)


def qdq_matmul_model():
    wq = RNG.integers(-127, 128, (6, 4)).astype(np.int8)
    inits = {"xs": np.float32(0.05), "xz": np.uint8(128), "wq": wq,
             "ws": np.float32(0.01), "wz": np.int8(0), "ys": np.float32(0.1),
             "yz": np.uint8(100), "w2": RNG.standard_normal((4, 3)).astype(np.float32)}
    inits = {k: np.asarray(v) for k, v in inits.items()}
    nodes = [helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["x"], name="dq_x"),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], name="dq_w"),
             helper.make_node("MatMul", ["x", "w"], ["h"], name="mm1"),
             helper.make_node("QuantizeLinear", ["h", "ys", "yz"], ["hq"], name="q_h"),
             helper.make_node("DequantizeLinear", ["hq", "ys", "yz"], ["hd"], name="dq_h"),
             # weight not from a DequantizeLinear: not a QDQ layer
             helper.make_node("MatMul", ["hd", "w2"], ["y"], name="mm2")]
    return model(nodes, [vi("xq", TensorProto.UINT8, ["N", 6])], [vi("y", F, ["N", 3])], inits,
                 opset=17), inits


def oracle(xq, inits):
    x = (xq.astype(np.float32) - 128) * np.float32(0.05)
    w = inits["wq"].astype(np.float32) * np.float32(0.01)
    h = x @ w
    hq = np.clip(np.rint(h / np.float32(0.1)) + 100, 0, 255)
    return ((hq - 100) * np.float32(0.1)).astype(np.float32) @ inits["w2"]


def test_find_qdq_layers_and_replace(monkeypatch):
    found = []

    def stage(nodes, consts, ctx):
        layers = find_qdq_layers(nodes, consts)
        found.extend(layers)
        swap = {id(n) for n in nodes if n.op_type == "MatMul"}
        return [dataclasses.replace(n, op_type="FloatMatMul", domain=DOM, proto=None)
                if id(n) in swap else n for n in nodes]

    monkeypatch.setattr(rt_graph, "GRAPH_REWRITES", [stage])
    m, inits = qdq_matmul_model()
    s = fastq.InferenceSession(m)   # MatMul need not be registered: the stage replaced it
    assert len(found) == 1
    layer = found[0]
    assert (layer.layer.name, layer.x_dq.name, layer.w_dq.name, layer.y_q.name) == \
        ("mm1", "dq_x", "dq_w", "q_h")
    assert layer.bias is None
    xq = RNG.integers(0, 256, (5, 6)).astype(np.uint8)
    np.testing.assert_allclose(s.run(None, {"xq": xq})[0], oracle(xq, inits), rtol=1e-5,
                               atol=1e-5)

