"""Bias correction, changing only float biases (POT's FastBiasCorrection / BiasCorrection).

Fast: per layer, the per-channel mean of its float input is fed through the quantized layer
(QDQ input, int8 weights, no bias) in the fastq executor with ``arith="exact32"``; new bias =
float output mean - that output's per-channel mean. Full: layer by layer in topological levels
on 20% of the samples, the quantized model (upstream layers already corrected) is run and each
layer's bias is moved by float mean - quantized mean (both means over that same subset). A
change is applied only if max |new - old| / |old| < threshold (POT: never when some old bias
is 0, unless ``apply_for_all_nodes`` created the bias).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .. import stats as fstats
from ..graph.ir import Graph
from ..runtime import InferenceSession


@dataclass
class BiasSite:
    layer: str
    bias: str                    # initializer name (fresh copy owned by this layer)
    out: str                     # float output tensor that includes the bias
    in_axis: int
    out_axis: int
    created: bool = False


def find_sites(g: Graph, plan, apply_for_all: bool) -> Dict[str, BiasSite]:
    cons = g.consumers()
    nodes = {n.name: n for n in g.nodes}
    sites: Dict[str, BiasSite] = {}
    for name in plan.layers:
        n = nodes[name]
        if (name, 0) not in [e for q in plan.activations.values() for e in q.consumers]:
            continue
        conv = n.op_type in ("Conv", "ConvTranspose")
        ax = 1 if conv else -1
        if n.op_type in ("Conv", "ConvTranspose", "Gemm"):
            if len(n.input) > 2 and n.input[2] in g.inits and g.inits[n.input[2]].ndim == 1:
                b = g.fresh(n.input[2] + "_" + name)
                g.inits[b] = g.inits[n.input[2]].astype(np.float32).copy()
                n.input[2] = b
                sites[name] = BiasSite(name, b, n.output[0], ax, ax)
            elif apply_for_all and len(n.input) < 3 and n.op_type != "ConvTranspose":
                w = g.inits[n.input[1]]
                c = w.shape[0] if n.op_type == "Conv" else \
                    (w.shape[0] if _attr(n, "transB") else w.shape[1])
                b = g.fresh(name + "_bias")
                g.inits[b] = np.zeros(c, np.float32)
                n.input.append(b)
                sites[name] = BiasSite(name, b, n.output[0], ax, ax, created=True)
        elif n.op_type == "MatMul":
            users = cons.get(n.output[0], [])
            if len(users) == 1 and users[0][0].op_type == "Add":
                add, i = users[0]
                other = add.input[1 - i]
                w = g.inits[n.input[1]]
                if other in g.inits and g.inits[other].shape == (w.shape[-1],):
                    b = g.fresh(other + "_" + name)
                    g.inits[b] = g.inits[other].astype(np.float32).copy()
                    add.input[1 - i] = b
                    sites[name] = BiasSite(name, b, add.output[0], -1, -1)
    return sites


def _attr(n, key):
    for a in n.attribute:
        if a.name == key:
            return helper.get_attribute_value(a)
    return 0


def _decide(old: np.ndarray, new: np.ndarray, threshold: float, created: bool) -> tuple:
    if created:
        return True, 0.0
    if np.count_nonzero(old == 0):
        return False, float("inf")
    mag = float(np.max(np.abs((new - old) / old)))
    return mag < threshold, mag


def _layer_parts(g: Graph, n: onnx.NodeProto, k: int, x_shape, act_qp, w_qp, wq, axis_x):
    """Q/DQ(x) -> layer(x, DQ(w_int8)) with no bias, names prefixed ``l{k}_``: the nodes,
    initializers, input and output of one layer's correction subgraph. Fresh inputs, so
    no graph input is ever duplicated."""
    from .. import qparams as qp_mod
    p = f"l{k}_"
    kw = {"axis": axis_x} if act_qp.per_channel else {}
    wkw = {"axis": wq.axis} if w_qp.per_channel else {}
    nodes = [helper.make_node("QuantizeLinear", [p + "x", p + "xs", p + "xz"], [p + "xq"], **kw),
             helper.make_node("DequantizeLinear", [p + "xq", p + "xs", p + "xz"], [p + "xd"],
                              **kw),
             helper.make_node("DequantizeLinear", [p + "wq", p + "ws", p + "wz"], [p + "wd"],
                              **wkw)]
    layer = helper.make_node(n.op_type, [p + "xd", p + "wd"], [p + "y"], name=p + n.name)
    layer.attribute.extend(n.attribute)
    nodes.append(layer)
    w = g.inits[wq.tensor]
    inits = [numpy_helper.from_array(np.asarray(act_qp.scale, np.float32), p + "xs"),
             numpy_helper.from_array(act_qp.zero_point_typed, p + "xz"),
             numpy_helper.from_array(qp_mod.quantize(w, w_qp, wq.axis), p + "wq"),
             numpy_helper.from_array(np.asarray(w_qp.scale, np.float32), p + "ws"),
             numpy_helper.from_array(w_qp.zero_point_typed, p + "wz")]
    vin = helper.make_tensor_value_info(p + "x", onnx.TensorProto.FLOAT, list(x_shape))
    vout = helper.make_tensor_value_info(p + "y", onnx.TensorProto.FLOAT,
                                         [f"{p}d{i}" for i in range(len(x_shape))])
    return nodes, inits, vin, vout


def fast_bias_correction(g: Graph, plan, sites: Dict[str, BiasSite], stats, act_qp, w_qp,
                         threshold: float, progress=None) -> Dict[str, dict]:
    """All layers' subgraphs side by side in one model, run once in exact32."""
    nodes = {n.name: n for n in g.nodes}
    parts, feeds, todo = [], {}, []
    for k, (name, s) in enumerate(sites.items()):
        n = nodes[name]
        x = n.input[0]
        qp = act_qp.get(x)
        if qp is None or x not in stats.means or s.out not in stats.means:
            continue
        shape = list(stats.shapes[x])
        xm = stats.means[x].astype(np.float32)
        bshape = [1] * len(shape)
        bshape[s.in_axis] = -1
        feeds[f"l{k}_x"] = np.ascontiguousarray(np.broadcast_to(xm.reshape(bshape), shape),
                                                np.float32)
        parts.append(_layer_parts(g, n, k, shape, qp, w_qp[name], plan.weights[name],
                                  s.in_axis))
        todo.append((k, name, s))
    if not todo:
        return {}
    graph = helper.make_graph([x for p in parts for x in p[0]], "fast_bias_correction",
                              [p[2] for p in parts], [p[3] for p in parts],
                              [x for p in parts for x in p[1]])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", max(g.opset, 13))])
    m.ir_version = 8
    ys = InferenceSession(m, arith="exact32").run(None, feeds)
    out: Dict[str, dict] = {}
    for (k, name, s), y in zip(todo, ys):
        q_mean = np.asarray(fstats.mean(np.ascontiguousarray(y, np.float32),
                                        channel_axis=s.out_axis), np.float64)
        old = g.inits[s.bias].astype(np.float64)
        new = stats.means[s.out] - q_mean
        ok, mag = _decide(old, new, threshold, s.created)
        if ok:
            g.inits[s.bias] = new.astype(np.float32)
        out[name] = {"applied": ok, "relative_change": mag,
                     "bias_shift": (new - old).astype(np.float32) if ok else None}
        if progress is not None:
            progress.update(1)
    return out


def full_bias_correction(g: Graph, plan, sites: Dict[str, BiasSite], stats, samples,
                         export: Callable[[], onnx.ModelProto], threshold: float,
                         progress=None) -> Dict[str, dict]:
    """Levels: a layer's level is 1 + the largest level of a quantized layer upstream, so all
    layers of one level can be measured in one run after the levels before are corrected."""
    level = _levels(g, sites)
    out: Dict[str, dict] = {}
    # float means over the same subset the quantized runs see (POT: one subset for both)
    fcols = {s.out: fstats.MeanCollector(channel_axis=s.out_axis) for s in sites.values()}
    fsess = InferenceSession(g.to_model(), keep=fcols.keys())   # not fused away

    def fcb(name, x):
        fcols[name].update(np.asarray(x, np.float32), name=name)
    for feeds in samples:
        fsess.run_with_intermediates(feeds, fcols.keys(), fcb)
    fp_mean = {t: np.asarray(c.result(), np.float64) for t, c in fcols.items()}
    for lv in sorted(set(level.values())):
        todo = [k for k, v in level.items() if v == lv]
        cols = {sites[k].out: fstats.MeanCollector(channel_axis=sites[k].out_axis)
                for k in todo}
        sess = InferenceSession(export(), arith="exact32", keep=cols.keys())

        def cb(name, x):
            cols[name].update(np.asarray(x, np.float32), name=name)
        for feeds in samples:
            sess.run_with_intermediates(feeds, cols.keys(), cb)
        for k in todo:
            s = sites[k]
            old = g.inits[s.bias].astype(np.float64)
            new = old + fp_mean[s.out] - np.asarray(cols[s.out].result(), np.float64)
            ok, mag = _decide(old, new, threshold, s.created)
            if ok:
                g.inits[s.bias] = new.astype(np.float32)
            out[k] = {"applied": ok, "relative_change": mag,
                      "bias_shift": (new - old).astype(np.float32) if ok else None}
            if progress is not None:
                progress.update(1)
    return out


def _levels(g: Graph, sites) -> Dict[str, int]:
    """Per site: the number of corrected layers on the longest path above it."""
    lv_out: Dict[str, int] = {}
    memo: Dict[str, int] = {}
    for n in g.nodes:                       # topological order
        base = max([lv_out[x] for x in n.input if x in lv_out] or [0])
        if n.name in sites:
            memo[n.name] = base
        for o in n.output:
            lv_out[o] = base + (1 if n.name in sites else 0)
    return memo
