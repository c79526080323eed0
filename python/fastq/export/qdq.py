"""QDQ ONNX from a plan and its QParams: activations get QuantizeLinear -> DequantizeLinear
read by the quantized consumers only (float consumers keep the float tensor); weights become
int8 initializers behind a per-axis DequantizeLinear; Conv/Gemm biases become int32 with scale
x_scale * w_scale and zero point 0 (ONNX Runtime's QLinearConv form), and so does the constant
bias of a MatMul's ``Add`` (ORT then fuses MatMul + Add into QGemm). A quantized graph output
is written by its DequantizeLinear (the producer's output is renamed). Graph input/output names,
dtypes and dynamic axes are the float model's.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, Optional, Tuple

import numpy as np
import onnx
from onnx import helper

from .. import qparams as qp_mod
from ..graph.ir import Graph
from ..qparams import QParams

INT32_MAX = 2**31 - 1
BIAS_HEADROOM = 0.5        # keep |bias_q| <= half the int32 range (sums add to it)


def _dq(e: Graph, q_name: str, scale: np.ndarray, zp: np.ndarray, out: str,
        axis: Optional[int], base: str) -> onnx.NodeProto:
    s, z = e.fresh(base + "_scale"), e.fresh(base + "_zero_point")
    e.inits[s], e.inits[z] = scale, zp
    kw = {"axis": axis} if axis is not None and np.ndim(scale) else {}
    return helper.make_node("DequantizeLinear", [q_name, s, z], [out],
                            name=e.fresh(base + "_DequantizeLinear"), **kw)


def bias_scale_guard(b: np.ndarray, x_scale: np.float32, w_scale: np.ndarray
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """Per-channel weight scales enlarged where b / (x_scale * w_scale) would leave the int32
    headroom (ONNX Runtime's quantizer does the same): returns (w_scale, enlarged mask)."""
    w_scale = np.broadcast_to(np.asarray(w_scale, np.float32), b.shape).copy()
    limit = INT32_MAX * BIAS_HEADROOM
    need = (np.abs(b.astype(np.float64)) / (float(x_scale) * limit)).astype(np.float32)
    big = need > w_scale
    w_scale[big] = need[big] * np.float32(1.0001)
    return w_scale, big


def as_u8(qp: QParams) -> QParams:
    """A signed activation grid written as uint8 with the zero point shifted by 128: the same
    levels and the same dequantized values (x86 int8 kernels take u8 activations; ONNX
    Runtime converts s8 Q/DQ to u8 itself, but not when one DQ feeds several nodes, which
    would leave those layers unfused)."""
    if not qp.signed:
        return qp
    return replace(qp, zero_point=(qp.zero_point + 128).astype(np.int32), dtype=np.uint8,
                   qmin=qp.qmin + 128, qmax=qp.qmax + 128, signed=False)


def build(g: Graph, plan, act_qp: Dict[str, QParams], w_qp: Dict[str, QParams],
          u8_activations: bool = True, qcache: Optional[dict] = None
          ) -> Tuple[onnx.ModelProto, Dict[str, dict]]:
    """The QDQ model; and per layer what the export decided (bias quantized, scales enlarged).
    ``u8_activations``: signed activation grids are written as u8 with zero point + 128.
    ``qcache``: a dict kept across builds over the same float weights (AccuracyAware's
    re-exports): each weight is quantized once per (tensor, scales, zero points, axis)."""
    e = g.copy()
    nodes = {n.name: n for n in e.nodes}
    new: List[onnx.NodeProto] = []
    info: Dict[str, dict] = {}
    edge_qp: Dict[Tuple[str, int], QParams] = {}
    for t, q in plan.activations.items():
        qp = act_qp.get(t)
        if qp is None:
            continue
        if u8_activations:
            qp = as_u8(qp)
        s, z = e.fresh(t + "_scale"), e.fresh(t + "_zero_point")
        e.inits[s] = qp.scale
        e.inits[z] = qp.zero_point_typed
        qn, dqn = e.fresh(t + "_quantized"), e.fresh(t + "_dequantized")
        src = t
        if q.graph_output:          # the producer writes a new name; the DQ writes ``t``
            src, dqn = e.fresh(t + "_float"), t
            for n in e.nodes:
                for i, o in enumerate(n.output):
                    if o == t:
                        n.output[i] = src
        kw = {"axis": q.channel_axis} if qp.per_channel else {}
        new.append(helper.make_node("QuantizeLinear", [src, s, z], [qn],
                                    name=e.fresh(t + "_QuantizeLinear"), **kw))
        new.append(helper.make_node("DequantizeLinear", [qn, s, z], [dqn],
                                    name=e.fresh(t + "_DequantizeLinear"), **kw))
        for node, idx in q.consumers:
            nodes[node].input[idx] = dqn
            edge_qp[(node, idx)] = qp
    for name, wq in plan.weights.items():
        n = nodes[name]
        qp = w_qp[name]
        w = e.inits[wq.tensor]
        rec = {"bias_quantized": False, "scale_enlarged_channels": []}
        xqp = edge_qp.get((name, 0))
        has_bias = n.op_type in ("Conv", "Gemm") and len(n.input) > 2 and n.input[2] and \
            n.input[2] in e.inits and e.inits[n.input[2]].ndim == 1
        b_node, b_idx = n, 2
        if wq.bias_add is not None and wq.bias_add[0] in nodes:
            b_node, b_idx = nodes[wq.bias_add[0]], wq.bias_add[1]
            has_bias = b_node.input[b_idx] in e.inits
        if has_bias and xqp is not None and not xqp.per_channel and \
                np.all(qp.zero_point == 0):
            b = e.inits[b_node.input[b_idx]].astype(np.float32)
            ws, big = bias_scale_guard(b, xqp.scale, qp.scale)
            if big.any():
                if not qp.per_channel:
                    ws = np.full_like(ws, ws.max())
                    qp = replace(qp, scale=np.float32(ws.max()))
                else:
                    qp = replace(qp, scale=ws.astype(np.float32))
                rec["scale_enlarged_channels"] = [int(i) for i in np.flatnonzero(big)]
            bscale = (np.float32(xqp.scale) * np.broadcast_to(qp.scale, b.shape)
                      ).astype(np.float32)
            bq = np.rint(b.astype(np.float64) / bscale).astype(np.int32)
            bname = b_node.input[b_idx]
            bqn = e.fresh(bname + "_quantized")
            e.inits[bqn] = bq
            out = e.fresh(bname + "_dequantized")
            new.append(_dq(e, bqn, bscale, np.zeros(b.shape, np.int32), out, 0, bname))
            b_node.input[b_idx] = out
            rec["bias_quantized"] = True
        wqn = e.fresh(wq.tensor + "_quantized")
        if qcache is None:
            e.inits[wqn] = qp_mod.quantize(w, qp, wq.axis)
        else:
            key = (wq.tensor, qp.scale.shape, qp.scale.tobytes(), qp.zero_point.tobytes(),
                   qp.qmin, qp.qmax, qp.dtype, wq.axis)
            got = qcache.get(key)
            if got is None or got[0] is not w:
                got = qcache[key] = (w, qp_mod.quantize(w, qp, wq.axis))
            e.inits[wqn] = got[1]
        out = e.fresh(wq.tensor + "_dequantized")
        new.append(_dq(e, wqn, qp.scale, qp.zero_point_typed, out, wq.axis, wq.tensor))
        n.input[1] = out
        w_qp[name] = qp
        info[name] = rec
    e.nodes.extend(new)
    e.topo_sort()
    e.remove_unused()
    if e.opset < 13:
        e.set_opset(13)
    return e.to_model(), info
