"""Float benchmark models built with onnx.helper: a MobileNet-v2-style depthwise CNN and a
BERT-style encoder. Random weights: the benchmarks time and compare engines, they do not
score accuracy. The ResNet-style model is onnx's own light resnet50 (shipped with onnx)."""

from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT


class _Builder:
    def __init__(self, seed: int = 0):
        self.nodes, self.inits, self.rng, self.n = [], [], np.random.default_rng(seed), 0

    def name(self, p: str) -> str:
        self.n += 1
        return f"{p}{self.n}"

    def const(self, arr: np.ndarray, p: str = "w") -> str:
        n = self.name(p)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), n))
        return n

    def op(self, op: str, ins, **attrs) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, list(ins), [out], name=out, **attrs))
        return out

    def conv(self, x, cin, cout, k=3, stride=1, group=1, act=True):
        w = self.rng.standard_normal((cout, cin // group, k, k)).astype(np.float32)
        w *= np.sqrt(2.0 / (cin // group * k * k))
        b = (0.01 * self.rng.standard_normal(cout)).astype(np.float32)
        y = self.op("Conv", [x, self.const(w), self.const(b, "b")], kernel_shape=[k, k],
                    strides=[stride, stride], pads=[k // 2] * 4, group=group)
        return self.op("Relu", [y]) if act else y

    def model(self, inputs, outputs, opset=17) -> onnx.ModelProto:
        g = helper.make_graph(self.nodes, "bench", inputs, outputs, self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = min(m.ir_version, 10)
        return m


def mobilenet_v2_like(resolution: int = 112) -> onnx.ModelProto:
    """Inverted residual blocks (1x1 expand, 3x3 depthwise, 1x1 project, residual Add)."""
    b = _Builder(1)
    x = b.conv("x", 3, 32, 3, stride=2)
    cin = 32
    for cout, stride, expand in [(16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6),
                                 (64, 2, 6), (64, 1, 6), (96, 1, 6)]:
        hidden = cin * expand
        h = b.conv(x, cin, hidden, 1) if expand != 1 else x
        h = b.conv(h, hidden, hidden, 3, stride=stride, group=hidden)
        h = b.conv(h, hidden, cout, 1, act=False)
        x = b.op("Add", [x, h]) if stride == 1 and cin == cout else h
        cin = cout
    x = b.conv(x, cin, 320, 1)
    x = b.op("GlobalAveragePool", [x])
    x = b.op("Flatten", [x])
    w = (b.rng.standard_normal((320, 100)) * 0.05).astype(np.float32)
    y = b.op("MatMul", [x, b.const(w)])
    return b.model([helper.make_tensor_value_info("x", F, ["N", 3, resolution, resolution])],
                   [helper.make_tensor_value_info(y, F, ["N", 100])])


def bert_like(layers: int = 6, seq: int = 128, hidden: int = 256, heads: int = 4,
              dynamic_batch: bool = False) -> onnx.ModelProto:
    """Post-LN encoder blocks as PyTorch exports them: MatMul+Add projections, Reshape/
    Transpose heads, Softmax attention with an additive mask, Erf GELU, LayerNormalization.
    ``dynamic_batch``: inputs ["N", ...] and Reshapes that copy the batch dim (0)."""
    nb = 0 if dynamic_batch else 1
    batch = "N" if dynamic_batch else 1
    b = _Builder(2)
    d = hidden // heads
    s = lambda *v: b.const(np.array(v, np.int64), "s")  # noqa: E731
    lin = lambda x, i, o: b.op("Add", [b.op("MatMul", [x, b.const(  # noqa: E731
        (b.rng.standard_normal((i, o)) / np.sqrt(i)).astype(np.float32))]),
        b.const(np.zeros(o, np.float32), "b")])

    def ln(x):
        return b.op("LayerNormalization", [x, b.const(np.ones(hidden, np.float32), "g"),
                                           b.const(np.zeros(hidden, np.float32), "b")], axis=-1)

    x = "x"
    mask = b.op("Mul", [b.op("Sub", [b.const(np.float32(1.0), "one"), "mask"]),
                        b.const(np.float32(-10000.0), "neg")])
    for _ in range(layers):
        def heads_of(t):
            return b.op("Transpose", [b.op("Reshape", [t, s(nb, seq, heads, d)])],
                        perm=[0, 2, 1, 3])
        q, k, v = (heads_of(lin(x, hidden, hidden)) for _ in range(3))
        kt = b.op("Transpose", [k], perm=[0, 1, 3, 2])
        att = b.op("Div", [b.op("MatMul", [q, kt]), b.const(np.float32(np.sqrt(d)), "c")])
        att = b.op("Softmax", [b.op("Add", [att, mask])], axis=-1)
        ctx = b.op("Transpose", [b.op("MatMul", [att, v])], perm=[0, 2, 1, 3])
        ctx = lin(b.op("Reshape", [ctx, s(nb, seq, hidden)]), hidden, hidden)
        x = ln(b.op("Add", [x, ctx]))
        h = lin(x, hidden, 4 * hidden)
        gelu = b.op("Mul", [b.op("Mul", [h, b.op("Add", [b.op("Erf", [b.op("Div", [
            h, b.const(np.float32(np.sqrt(2.0)), "c")])]), b.const(np.float32(1.0), "c")])]),
            b.const(np.float32(0.5), "c")])
        x = ln(b.op("Add", [x, lin(gelu, 4 * hidden, hidden)]))
    return b.model([helper.make_tensor_value_info("x", F, [batch, seq, hidden]),
                    helper.make_tensor_value_info("mask", F, [batch, 1, 1, seq])],
                   [helper.make_tensor_value_info(x, F, [batch, seq, hidden])])


def light_resnet50() -> onnx.ModelProto:
    path = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light",
                        "light_resnet50.onnx")
    return onnx.load(path)


def feeds_for(name: str, m: onnx.ModelProto) -> dict:
    rng = np.random.default_rng(0)
    if name.startswith("bert"):
        seq, hidden = (d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim[1:])
        mask = np.ones((1, 1, 1, seq), np.float32)
        mask[..., seq - 16:] = 0  # padded tail
        return {"x": rng.standard_normal((1, seq, hidden)).astype(np.float32), "mask": mask}
    inp = m.graph.input[0]
    shape = [d.dim_value if d.dim_value > 0 else 1 for d in inp.type.tensor_type.shape.dim]
    return {inp.name: rng.standard_normal(shape).astype(np.float32)}


def calibration(name: str, m: onnx.ModelProto, n: int, seed: int = 1) -> list:
    """``n`` feeds like ``feeds_for``'s (fresh random activations; the BERT mask's padded
    tail varies per sample)."""
    rng = np.random.default_rng(seed)
    base = feeds_for(name, m)
    out = []
    for _ in range(n):
        d = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in base.items()
             if k != "mask"}
        if "mask" in base:
            mask = np.ones_like(base["mask"])
            mask[..., rng.integers(mask.shape[-1] // 2, mask.shape[-1] + 1):] = 0
            d["mask"] = mask
        out.append(d)
    return out


def nncf_ready(m: onnx.ModelProto):
    """The same function as ``m`` in a form NNCF 3.4's ONNX backend takes: ConstantOfShape
    nodes fed by an initializer (how onnx's light models make their weights) folded into
    initializers -- NNCF's graph builder raises AttributeError on such weights -- and an
    opset below 13 converted to 13 (NNCF rejects opset < 10 and is per-tensor only below 13).
    Returns ``(model, changes)``; ``m`` itself is returned when nothing needs changing."""
    from onnx import version_converter

    def constant_of_shape(model):
        inits = {t.name: t for t in model.graph.initializer}
        return inits, [n for n in model.graph.node
                       if n.op_type == "ConstantOfShape" and n.input[0] in inits]
    inits, folds = constant_of_shape(m)
    if not folds and m.opset_import[0].version >= 13:
        return m, []
    m = onnx.ModelProto.FromString(m.SerializeToString())
    inits, folds = constant_of_shape(m)
    for n in folds:
        shape = numpy_helper.to_array(inits[n.input[0]])
        fill = (numpy_helper.to_array(n.attribute[0].t).ravel() if n.attribute
                else np.zeros(1, np.float32))
        m.graph.initializer.append(numpy_helper.from_array(np.full(shape, fill[0]), n.output[0]))
    done = {id(n) for n in folds}
    keep = [n for n in m.graph.node if id(n) not in done]
    del m.graph.node[:]
    m.graph.node.extend(keep)
    used = {i for n in m.graph.node for i in n.input} | {o.name for o in m.graph.output}
    live = [t for t in m.graph.initializer if t.name in used]
    del m.graph.initializer[:]
    m.graph.initializer.extend(live)
    ins = [i for i in m.graph.input if i.name not in inits]   # IR >= 4: weights are no inputs
    del m.graph.input[:]
    m.graph.input.extend(ins)
    changes = [f"{len(folds)} ConstantOfShape weights folded into initializers"] if folds else []
    m.ir_version = max(m.ir_version, 7)
    if m.opset_import[0].version < 13:
        changes.append(f"opset {m.opset_import[0].version} -> 13")
        m = version_converter.convert_version(m, 13)
    onnx.checker.check_model(m)
    return m, changes


MODELS = {"resnet50_light": light_resnet50, "mobilenet_v2_like": mobilenet_v2_like,
          "bert_6x128": bert_like}
