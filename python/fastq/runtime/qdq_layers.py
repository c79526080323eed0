"""Fused int8 layers for sessions with an arith: each QDQ ``DequantizeLinear(x) -> Conv | MatMul
| Gemm <- DequantizeLinear(w)`` becomes one node in domain "fastq" (``QdqConv`` / ``QdqLinear``)
that runs the int8 kernels on the quantized input in the session's arith; the weights are
packed once (prepare hook). When the layer's only consumer is a per-tensor QuantizeLinear and
its bias is absent or DequantizeLinear(int32, x_scale * w_scale) -- the pattern ONNX Runtime
turns into QLinearConv / QLinearMatMul / QGemm -- the fused node also absorbs the QuantizeLinear
and requantizes as ONNX Runtime does: float32(acc + bias_int32) * (x_scale * w_scale / y_scale),
round half to even, + y_zero_point, saturate (``_core.requantize``). Otherwise it returns the
float output (``kernels.qconv`` / ``qlinear`` epilogue) and a QuantizeLinear after it stays.
Per-tensor QuantizeLinear (float32) and DequantizeLinear (u8/s8) nodes with constant scalar
parameters run in C++ (``_core.quantize_f32`` / ``dequantize_f32``: the float32 steps and the
round-half-even of the numpy ops, bit for bit).

Layout: a 2-D QdqConv returns its output as a transposed NCHW view of an NHWC buffer: u8/s8
when it requantizes (``_core.qconv_requant_nhwc``), else qconv's float32 values
(``_core.qconv_dequant_nhwc``); the next QdqConv reads a u8 buffer directly, the
Q/DQ ops work in memory order and keep the view, and any other consumer reads correct NCHW
values through numpy's strides (session outputs are made C-contiguous). Between int8 layers,
``Q(Relu?(DQ(a) + DQ(b)))`` runs as QdqAdd, ``Q(Concat(DQ(x_i)...))`` as QdqConcat and
``DQ(x) + bias`` as DequantizeAdd: one pass each, the same float32 steps as the unfused ops.

Fused: int8 weights with zero point 0, per tensor or per output channel (axis 0 for Conv and
Gemm transB=1, axis 1 for MatMul [K, N] and Gemm transB=0); uint8/int8 per-tensor activations;
float bias (a constant, or DequantizeLinear(int32) folded to float; a MatMul's following
Add of a constant [N] vector, or of DequantizeLinear of constants, becomes its bias); Gemm
alpha folded into the weight scales, beta into the bias. Anything else (uint8 or
nonzero-zero-point weights,
3-D conv, transA, non-constant weights, ...) stays unfused and runs in float, so sat16pair is
not emulated for it: ``unfused_layers(ctx)`` lists those with the reason, ``fused_layers``
the fused ones. Float sessions (arith None) are never rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
from onnx import TensorProto

from .. import _core, kernels
from . import graph
from .registry import Node, OpContext, register
from .rewrite import LAYER_OPS, QdqLayer, find_qdq_layers
from .ops.nn_common import fail, ints_attr, window_geometry

DOMAIN = "fastq"
_CONV_ATTRS = ("auto_pad", "pads", "strides", "dilations", "group", "kernel_shape")


@dataclass(frozen=True)
class LayerRecord:
    """One QDQ layer of a session: fused (``fused_as`` set) or not (``reason`` says why)."""
    name: str
    op_type: str
    fused_as: Optional[str]
    reason: str = ""
    arith: Optional[str] = None
    pairing: Optional[str] = None
    output: str = ""          # "int8" (QuantizeLinear absorbed, ORT requant) or "float"


def fused_layers(ctx: OpContext) -> List[LayerRecord]:
    return list(ctx.rewrites.get("int8_layers", []))


def unfused_layers(ctx: OpContext) -> List[LayerRecord]:
    return list(ctx.rewrites.get("unfused_qdq_layers", []))


# -- matching ---------------------------------------------------------------------------------

class _Skip(Exception):
    """A QDQ layer the fused path cannot represent exactly (the message is the reason)."""


def _const(consts, name: str, what: str) -> np.ndarray:
    if not name or name not in consts:
        raise _Skip(f"{what} is not a constant")
    return np.asarray(consts[name])


def _activation(layer: QdqLayer, consts) -> None:
    dq = layer.x_dq
    if dq.attr("block_size", 0) or dq.attr("output_dtype", 0):
        raise _Skip("activation DequantizeLinear uses block_size/output_dtype")
    if len(dq.inputs) < 3 or not dq.inputs[2]:
        raise _Skip("activation DequantizeLinear has no zero point (its dtype is unknown)")
    s = _const(consts, dq.inputs[1], "activation scale")
    z = _const(consts, dq.inputs[2], "activation zero point")
    if s.size != 1 or z.size != 1:
        raise _Skip("activation is quantized per axis (per tensor is fused)")
    if s.dtype != np.float32:
        raise _Skip(f"activation scale is {s.dtype} (float32 is fused)")
    if z.dtype not in (np.uint8, np.int8):
        raise _Skip(f"activation zero point is {z.dtype} (uint8/int8 are fused)")
    v = float(s.reshape(()))
    if not np.isfinite(v) or v <= 0:
        raise _Skip(f"activation scale {v} is not positive and finite")


def _weights(layer: QdqLayer, consts, want_axis: int, ndims) -> None:
    dq = layer.w_dq
    if dq.attr("block_size", 0) or dq.attr("output_dtype", 0):
        raise _Skip("weight DequantizeLinear uses block_size/output_dtype")
    w = _const(consts, dq.inputs[0], "weight")
    s = _const(consts, dq.inputs[1], "weight scale")
    if w.dtype != np.int8:
        raise _Skip(f"weights are {w.dtype} (int8 with zero point 0 is fused)")
    if w.ndim not in ndims:
        raise _Skip(f"weights have rank {w.ndim} (fused: {', '.join(map(str, ndims))})")
    if len(dq.inputs) > 2 and dq.inputs[2]:
        z = _const(consts, dq.inputs[2], "weight zero point")
        if np.any(z != 0):
            raise _Skip("weight zero point is nonzero (symmetric int8 weights are fused)")
    if s.dtype != np.float32:
        raise _Skip(f"weight scale is {s.dtype} (float32 is fused)")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise _Skip("weight scales are not all positive and finite")
    if s.size > 1:
        axis = int(dq.attr("axis", 1))
        axis = axis + w.ndim if axis < 0 else axis
        if s.ndim != 1 or axis != want_axis or s.shape[0] != w.shape[want_axis]:
            raise _Skip(f"weight scales of shape {s.shape} on axis {axis}: per output "
                        f"channel means axis {want_axis} with {w.shape[want_axis]} entries")


def _scalar_q(consts, q: Node) -> bool:
    """QuantizeLinear / DequantizeLinear with a constant per-tensor float32 scale and a
    constant u8/s8 zero point."""
    if q.attr("block_size", 0) or q.attr("output_dtype", 0) or len(q.inputs) < 3:
        return False
    s, z = consts.get(q.inputs[1]), consts.get(q.inputs[2])
    return (s is not None and z is not None and np.size(s) == 1 and np.size(z) == 1
            and np.asarray(s).dtype == np.float32 and np.asarray(z).dtype in (np.uint8, np.int8)
            and float(np.asarray(s).reshape(())) > 0)


def _int_bias(layer: QdqLayer, consts, producer) -> Optional[str]:
    """Name of the int32 bias when the bias is DequantizeLinear(int32, x_scale * w_scale, 0)
    of constants ("" when there is no bias); None when the output cannot be requantized."""
    if not layer.bias:
        return ""
    dq = producer.get(layer.bias)
    if dq is None or dq.op_type != "DequantizeLinear" or not all(
            x in consts for x in dq.inputs if x):
        return None
    bq, bs = np.asarray(consts[dq.inputs[0]]), np.asarray(consts[dq.inputs[1]], np.float32)
    if bq.dtype != np.int32 or bq.ndim != 1 or dq.attr("block_size", 0):
        return None
    if len(dq.inputs) > 2 and dq.inputs[2] and np.any(np.asarray(consts[dq.inputs[2]]) != 0):
        return None
    xs = np.float32(np.asarray(consts[layer.x_dq.inputs[1]]).reshape(()))
    ws = np.asarray(consts[layer.w_dq.inputs[1]], np.float32).reshape(-1)
    if not np.allclose(bs.reshape(-1), xs * ws, rtol=1e-6, atol=0):
        return None
    return dq.inputs[0]


def _fuse(layer: QdqLayer, consts, ctx: OpContext, producer) -> Node:
    n = layer.layer
    _activation(layer, consts)
    xq, xs, xz = layer.x_dq.inputs[:3]
    wq, ws = layer.w_dq.inputs[:2]
    bias = layer.bias or ""
    ys = yz = ""
    outputs = n.outputs
    # The QuantizeLinear is absorbed only when nobody needs the layer's float output (a graph
    # output, or a tensor the session was asked to keep for run_with_intermediates).
    if layer.y_q is not None and _scalar_q(consts, layer.y_q) and \
            n.outputs[0] not in ctx.graph_outputs and not (
            n.op_type == "Gemm" and (n.attr("alpha", 1.0) != 1 or n.attr("beta", 1.0) != 1)):
        ib = _int_bias(layer, consts, producer)
        if ib is not None:
            bias, (ys, yz), outputs = ib, layer.y_q.inputs[1:3], layer.y_q.outputs
    if n.op_type == "Conv":
        _weights(layer, consts, 0, (3, 4))
        attrs = {k: n.attrs[k] for k in _CONV_ATTRS if k in n.attrs}
        attrs["pairing"] = ctx.conv_pairing
        op = "QdqConv"
    else:
        attrs = {"kind": n.op_type}
        if n.op_type == "Gemm":
            if n.attr("transA", 0):
                raise _Skip("Gemm with transA=1")
            tb = int(n.attr("transB", 0))
            _weights(layer, consts, 0 if tb else 1, (2,))
            attrs.update(transB=tb, alpha=float(n.attr("alpha", 1.0)),
                         beta=float(n.attr("beta", 1.0)))
        else:
            _weights(layer, consts, 1, (2,))
        op = "QdqLinear"
    attrs["requant"] = int(bool(ys))
    return Node(name=n.name, op_type=op, domain=DOMAIN, version=1, opset=1, attrs=attrs,
                inputs=(xq, xs, xz, wq, ws, bias, ys, yz), outputs=outputs, proto=None)


def _bias_add(layer: QdqLayer, f: Node, consts, consumers, producer, ctx: OpContext
              ) -> Optional[Node]:
    """The Add that only adds a constant float32 [N] vector to a fused MatMul's float output
    (the bias ONNX exporters put after MatMul), or None. The vector may also be a
    DequantizeLinear of constants (a QDQ export's int32 bias): constant folding, which runs
    after this stage, makes it the float32 vector the unfused Add would have added."""
    n = layer.layer
    if n.op_type != "MatMul" or f.attrs["requant"] or n.outputs[0] in ctx.graph_outputs:
        return None
    users = consumers.get(n.outputs[0], [])
    if len(users) != 1 or users[0].op_type != "Add" or users[0].domain != "":
        return None
    add = users[0]
    other = [x for x in add.inputs if x != n.outputs[0]]
    if len(other) != 1:
        return None
    w = np.asarray(consts[layer.w_dq.inputs[0]])
    if other[0] in consts:
        c = np.asarray(consts[other[0]])
        ok = c.dtype == np.float32 and c.ndim == 1 and c.shape[0] == w.shape[1]
    else:
        dq = producer.get(other[0])
        ok = dq is not None and dq.domain == "" and dq.op_type == "DequantizeLinear" and \
            len(dq.outputs) == 1 and all(x in consts for x in dq.inputs if x) and \
            not dq.attr("block_size", 0) and \
            dq.attr("output_dtype", 0) in (0, TensorProto.FLOAT) and \
            np.asarray(consts[dq.inputs[0]]).ndim == 1 and \
            np.asarray(consts[dq.inputs[0]]).shape[0] == w.shape[1] and \
            np.asarray(consts[dq.inputs[1]]).dtype == np.float32
    return add if ok else None


_HEAP_TUNED = False


def _steady_heap() -> None:
    """Keep freed activation buffers in the process heap (glibc only; once per process).

    The executor frees every intermediate after its last consumer; with glibc's defaults the
    MiB-sized ones are mmapped or trimmed back to the OS on free, so each run page-faults them
    in again -- measured at about a fifth of an int8 ResNet block's time. A fixed mmap
    threshold of 32 MiB (glibc's own dynamic maximum) and a trim threshold of 128 MiB keep
    them, as ONNX Runtime's arena does. Peak memory is unchanged; other libcs are left alone.
    """
    global _HEAP_TUNED
    if _HEAP_TUNED:
        return
    _HEAP_TUNED = True
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
            return
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 32 << 20)
        libc.mallopt(m_trim_threshold, 128 << 20)
    except OSError:
        pass


def _producers_consumers(nodes: List[Node]) -> Tuple[Dict[str, Node], Dict[str, List[Node]]]:
    """Tensor name -> its producing node, and -> the nodes reading it (in node order)."""
    producer = {o: n for n in nodes for o in n.outputs if o}
    consumers: Dict[str, List[Node]] = {}
    for n in nodes:
        for x in n.inputs:
            if x:
                consumers.setdefault(x, []).append(n)
    return producer, consumers


def _q_scalar(x: float, q: Node, consts) -> int:
    """QuantizeLinear(x) of one float32 value with q's constant scalar parameters (the
    session's own C++ QuantizeLinear: ±inf saturate)."""
    z = np.asarray(consts[q.inputs[2]]).reshape(())
    y = _core.quantize_f32(np.array([x], np.float32), _scalar(consts[q.inputs[1]]), int(z),
                           z.dtype == np.int8)
    return int(y[0])


def _absorb_activations(nodes: List[Node], consts, ctx: OpContext) -> List[Node]:
    """``Relu|Clip -> QuantizeLinear`` whose activation the quantizer's saturation already
    performs: dropped, the QuantizeLinear reads the activation's input. Exact, not an
    approximation: Q is monotone, so Q(clip(x, a, b)) = clamp(Q(x), Q(a), Q(b)), which is Q(x)
    whenever Q(a) is the type's minimum and Q(b) its maximum (a Relu before a quantizer whose
    zero point is the minimum, as after every calibrated ReLU). This is ONNX Runtime's own
    Relu/Clip-QuantizeLinear fusion; it lets ``DQ -> Conv -> Relu -> Q`` run as one requantized
    int8 layer, as QLinearConv does there."""
    from .float_fusion import _act_bounds, _implicit
    pinned = set(ctx.graph_outputs) | _implicit(nodes)
    _, consumers = _producers_consumers(nodes)
    rename: Dict[str, str] = {}
    dropped = set()
    for n in nodes:
        if n.domain != "" or n.op_type not in ("Relu", "Clip") or n.outputs[0] in pinned:
            continue
        users = consumers.get(n.outputs[0], [])
        if len(users) != 1 or users[0].op_type != "QuantizeLinear" or \
                users[0].inputs[0] != n.outputs[0] or not _scalar_q(consts, users[0]):
            continue
        bounds = _act_bounds(n, consts)
        if bounds is None:
            continue
        q = users[0]
        info = np.iinfo(np.asarray(consts[q.inputs[2]]).dtype)
        lo, hi = info.min, info.max
        if _q_scalar(bounds[0], q, consts) == lo and _q_scalar(bounds[1], q, consts) == hi:
            dropped.add(id(n))
            rename[n.outputs[0]] = n.inputs[0]
    if not dropped:
        return nodes
    ctx.rewrites.setdefault("absorbed_activations", []).extend(
        n.name for n in nodes if id(n) in dropped)
    ctx.rewrites.setdefault("fused_away", set()).update(rename)
    out = []
    for n in nodes:
        if id(n) in dropped:
            continue
        if n.op_type == "QuantizeLinear" and n.inputs and n.inputs[0] in rename:
            n = Node(n.name, n.op_type, n.domain, n.version, n.opset, n.attrs,
                     (rename[n.inputs[0]],) + tuple(n.inputs[1:]), n.outputs, None)
        out.append(n)
    return out


def qdq_layer_stage(nodes: List[Node], consts: Dict[str, np.ndarray], ctx: OpContext
                    ) -> List[Node]:
    """GRAPH_REWRITES stage: fuse QDQ layers when the session has an arith."""
    if ctx.arith is None:
        return nodes
    _steady_heap()
    nodes = _absorb_activations(nodes, consts, ctx)
    fused_rec = ctx.rewrites.setdefault("int8_layers", [])
    skip_rec = ctx.rewrites.setdefault("unfused_qdq_layers", [])
    swap: Dict[int, Node] = {}
    dq_candidates = set()
    matched = set()
    dropped = set()
    producer, consumers = _producers_consumers(nodes)
    for layer in find_qdq_layers(nodes, consts):
        matched.add(id(layer.layer))
        try:
            f = _fuse(layer, consts, ctx, producer)
        except _Skip as e:
            skip_rec.append(LayerRecord(layer.layer.name, layer.layer.op_type, None, str(e),
                                        ctx.arith))
            continue
        add = _bias_add(layer, f, consts, consumers, producer, ctx)
        if add is not None:   # MatMul + Add(constant [N]): the Add becomes the layer's bias
            c = add.inputs[1] if add.inputs[0] == layer.layer.outputs[0] else add.inputs[0]
            f = Node(f.name, f.op_type, f.domain, f.version, f.opset, f.attrs,
                     f.inputs[:5] + (c,) + f.inputs[6:], add.outputs, None)
            # in the Add's place: its bias (a DequantizeLinear's output) may come after the
            # MatMul in node order
            dropped.add(id(layer.layer))
            swap[id(add)] = f
        else:
            swap[id(layer.layer)] = f
        dq_candidates.update((id(layer.x_dq), id(layer.w_dq)))
        if f.attrs["requant"]:
            dropped.add(id(layer.y_q))
        fused_rec.append(LayerRecord(f.name, layer.layer.op_type, f.op_type, "", ctx.arith,
                                     f.attrs.get("pairing"),
                                     "int8" if f.attrs["requant"] else "float"))
    out: List[Node] = []
    for n in nodes:
        if id(n) in dropped:
            continue
        if id(n) in swap:
            out.append(swap[id(n)])
            continue
        if n.domain == "" and n.op_type in LAYER_OPS and id(n) not in matched:
            srcs = [producer.get(x) for x in n.inputs[:2]]
            if len(srcs) == 2 and all(s is not None and s.op_type == "DequantizeLinear"
                                      for s in srcs):
                skip_rec.append(LayerRecord(n.name, n.op_type, None,
                                            "weight input is not a constant", ctx.arith))
        out.append(n)
    out = _fuse_adds(out, consts, ctx, dq_candidates)
    # drop the DequantizeLinear nodes only the fused layers read
    used = {x for n in out for x in n.inputs if x} | set(ctx.graph_outputs)
    out = [n for n in out if id(n) not in dq_candidates or any(o in used for o in n.outputs
                                                                if o)]
    return [_native(n, consts, ctx) for n in out]


def _fuse_adds(nodes: List[Node], consts, ctx: OpContext, dq_candidates: set) -> List[Node]:
    """``QuantizeLinear([Relu](Add(DequantizeLinear(a), DequantizeLinear(b))))`` of per-tensor
    constant scalar parameters -> one ``QdqAdd`` node (the residual Adds between int8 layers):
    the same float32 steps in one pass over the quantized tensors (``_core.qdq_add``) instead
    of four passes over float ones; ``QuantizeLinear(Concat(DequantizeLinear(x_i)...))`` ->
    ``QdqConcat`` (each input requantized by the same two steps, then concatenated in u8).
    The Add's, Relu's and Concat's outputs must have no other reader."""
    producer, consumers = _producers_consumers(nodes)

    def only_user(name: str) -> Optional[Node]:
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in ctx.graph_outputs else None

    swap: Dict[int, Node] = {}
    drop = set()
    for n in nodes:
        if n.domain == "" and n.op_type == "Concat" and len(n.inputs) > 1:
            dqs = [producer.get(x) for x in n.inputs]
            q = only_user(n.outputs[0])
            if all(d is not None and d.domain == "" and d.op_type == "DequantizeLinear"
                   and _scalar_q(consts, d) and d.inputs[0] not in consts for d in dqs) and \
                    q is not None and q.domain == "" and q.op_type == "QuantizeLinear" and \
                    _scalar_q(consts, q):
                ins = tuple(x for d in dqs for x in d.inputs[:3]) + tuple(q.inputs[1:3])
                swap[id(n)] = Node(n.name, "QdqConcat", DOMAIN, n.version, n.opset, n.attrs,
                                   ins, q.outputs, None)
                drop.add(id(q))
                dq_candidates.update(id(d) for d in dqs)
            continue
        if n.domain != "" or n.op_type != "Add" or len(n.inputs) != 2 or n.attr("broadcast", 0):
            continue
        dqs = [producer.get(x) for x in n.inputs]
        bias = [x for x in n.inputs if x in consts]
        if len(bias) == 1 and n.inputs[0] != n.inputs[1]:
            d = producer.get(n.inputs[1] if bias[0] == n.inputs[0] else n.inputs[0])
            c = np.asarray(consts[bias[0]])
            if d is not None and d.domain == "" and d.op_type == "DequantizeLinear" and \
                    _scalar_q(consts, d) and d.inputs[0] not in consts and \
                    only_user(d.outputs[0]) is n and c.dtype == np.float32 and c.ndim == 1:
                # DequantizeLinear + Add of a bias row (after an int8 MatMul): one pass
                swap[id(n)] = Node(n.name, "DequantizeAdd", DOMAIN, 1, 1, {},
                                   tuple(d.inputs[:3]) + (bias[0],), n.outputs, None)
                dq_candidates.add(id(d))
            continue
        if not all(d is not None and d.domain == "" and d.op_type == "DequantizeLinear"
                   and _scalar_q(consts, d) and d.inputs[0] not in consts for d in dqs):
            continue
        relu, q = None, only_user(n.outputs[0])
        if q is not None and q.domain == "" and q.op_type == "Relu":
            relu, q = q, only_user(q.outputs[0])
        if q is None or q.domain != "" or q.op_type != "QuantizeLinear" or \
                not _scalar_q(consts, q):
            continue
        a, b = dqs
        swap[id(n)] = Node(n.name, "QdqAdd", DOMAIN, 1, 1, {"relu": int(relu is not None)},
                           tuple(a.inputs[:3]) + tuple(b.inputs[:3]) + tuple(q.inputs[1:3]),
                           q.outputs, None)
        drop.update(id(x) for x in (q, relu) if x is not None)
        dq_candidates.update((id(a), id(b)))
    return [swap.get(id(n), n) for n in nodes if id(n) not in drop]


def _native(n: Node, consts, ctx: OpContext) -> Node:
    """Per-tensor Q/DQ -> the C++ ops; int8 conv ops carry the session's conv pairing."""
    if n.domain == "" and n.op_type in ("QuantizeLinear", "DequantizeLinear") \
            and _scalar_q(consts, n):
        op = "QuantizeF32" if n.op_type == "QuantizeLinear" else "DequantizeF32"
        return Node(n.name, op, DOMAIN, 1, 1, {}, n.inputs, n.outputs, None)
    if n.domain == "" and n.op_type in ("QLinearConv", "ConvInteger"):
        return Node(n.name, n.op_type, n.domain, n.version, n.opset,
                    dict(n.attrs, _fastq_pairing=ctx.conv_pairing), n.inputs, n.outputs,
                    n.proto)
    return n


graph.GRAPH_REWRITES.append(qdq_layer_stage)


# -- fused ops --------------------------------------------------------------------------------

def memory_order(x: np.ndarray):
    """(buffer, nhwc): ``x`` itself when C-contiguous (nhwc False); for a 4-D NCHW array
    that is a transposed view of a C-contiguous NHWC buffer -- what the fused convs return --
    that buffer (nhwc True); otherwise a C-contiguous copy."""
    if x.flags.c_contiguous:
        return x, False
    if x.ndim == 4:
        t = x.transpose(0, 2, 3, 1)
        if t.flags.c_contiguous:
            return t, True
    return np.ascontiguousarray(x), False


def _elementwise(fn, x: np.ndarray) -> np.ndarray:
    """fn over the memory of x, the result viewed in x's logical order (keeps NHWC views)."""
    buf, nhwc = memory_order(x)
    y = fn(buf)
    return y.transpose(0, 3, 1, 2) if nhwc else y


def _scalar(v) -> float:
    return float(np.asarray(v).reshape(()))


def _bias_vec(b, n: int) -> Optional[np.ndarray]:
    """A (n,) float32 bias if ``b`` broadcasts as one, else None."""
    b = np.asarray(b, np.float32)
    if b.size == 1:
        return np.full(n, b.reshape(()), np.float32)
    if b.size == n and (b.ndim == 1 or b.ndim == 2 and b.shape[0] == 1):
        return np.ascontiguousarray(b.reshape(n))
    return None


class _Layer:
    """What both fused ops share: the activation's quantization, the arith/impl, and the
    output requantization (``requant`` nodes) or the float epilogue."""

    def __init__(self, node: Node, xs, xz, ws, n_out: int, colsum: np.ndarray, bias, ys, yz,
                 ctx: OpContext):
        self.node = node
        self.arith = ctx.int_arith
        self.impl = kernels._resolve_impl(ctx.impl, self.arith)
        self.zp, self.scale = int(np.asarray(xz).reshape(())), _scalar(xs)
        self.xdt = np.asarray(xz).dtype
        self.zp_u = self.zp + (128 if self.xdt == np.int8 else 0)   # zero point of u8 input
        self.ws = np.ascontiguousarray(np.broadcast_to(
            np.asarray(ws, np.float32).reshape(-1), (n_out,)), np.float32)
        self.requant = bool(node.attr("requant", 0))
        if self.requant:
            bq = np.zeros(n_out, np.int64) if bias is None else \
                np.asarray(bias).astype(np.int64).reshape(-1)
            if bq.shape != (n_out,):
                raise fail(node, f"bias has shape {np.shape(bias)}, expected ({n_out},)")
            self.zcomp = np.ascontiguousarray(self.zp_u * colsum.astype(np.int64) - bq)
            # ONNX Runtime: output_scale[c] = x_scale * w_scale[c] / y_scale in float32
            self.mult = np.ascontiguousarray(
                (np.float32(self.scale) * self.ws) / np.float32(_scalar(ys)), np.float32)
            self.yz = int(np.asarray(yz).reshape(()))
            self.ysigned = np.asarray(yz).dtype == np.int8

    def u8(self, x: np.ndarray) -> np.ndarray:
        if x.dtype != self.xdt:
            raise fail(self.node, f"quantized input has dtype {x.dtype}, its zero point "
                                  f"{self.xdt}")
        if x.dtype == np.int8:
            return np.ascontiguousarray(x).view(np.uint8) ^ np.uint8(0x80)
        return np.ascontiguousarray(x)

    def requantize(self, acc: np.ndarray, axis: int) -> np.ndarray:
        return _core.requantize(acc, axis, self.zcomp, self.mult, self.yz, self.ysigned)


class _ConvLayer(_Layer):
    def __init__(self, node: Node, xs, xz, wq, ws, bias, ys, yz, ctx: OpContext):
        w = np.asarray(wq)
        self.nd = w.ndim - 2
        self.kernel = list(w.shape[2:])
        self.oc, cg = w.shape[:2]
        self.group = int(node.attr("group", 1))
        self.packed = kernels.pack_conv_weights(np.ascontiguousarray(w), group=self.group,
                                                pairing=node.attr("pairing", "per_tap"))
        self.cin = cg * self.group
        super().__init__(node, xs, xz, ws, self.oc, self.packed.colsum, bias, ys, yz, ctx)
        self.bias = None
        if bias is not None and not self.requant:
            self.bias = np.ascontiguousarray(np.asarray(bias, np.float32).reshape(-1))
            if self.bias.shape != (self.oc,):
                raise fail(node, f"bias has shape {np.shape(bias)}, expected ({self.oc},)")
        self.strides = ints_attr(node, "strides", self.nd, 1)
        self.dil = ints_attr(node, "dilations", self.nd, 1)
        self._geo: Dict[tuple, tuple] = {}

    def geometry(self, x: np.ndarray):
        g = self._geo.get(x.shape)
        if g is None:
            node = self.node
            if x.ndim != self.nd + 2:
                raise fail(node, f"input X has shape {x.shape}; the weights need rank "
                                 f"{self.nd + 2}")
            if x.shape[1] != self.cin:
                raise fail(node, f"input channel mismatch: X has {x.shape[1]} channels, the "
                                 f"weights expect {self.cin}")
            ks = node.attr("kernel_shape")
            if ks is not None and [int(k) for k in ks] != self.kernel:
                raise fail(node, f"kernel_shape={list(ks)} does not match the weights "
                                 f"{self.kernel}")
            out, pb, pe = window_geometry(node, list(x.shape[2:]), self.kernel, self.strides,
                                          self.dil)
            if self.nd == 1:
                g = ((1, self.strides[0]), (0, pb[0], 0, pe[0]), (1, self.dil[0]))
            else:
                g = (tuple(self.strides), (pb[0], pb[1], pe[0], pe[1]), tuple(self.dil))
            self._geo[x.shape] = g
        return g

    def __call__(self, x, xs=None, xz=None, wq=None, ws=None, bias=None, ys=None, yz=None):
        st, pd, dl = self.geometry(x)
        if self.nd == 2:  # u8/s8 in, NHWC out (a transposed view): u8/s8, or qconv's floats
            if x.dtype != self.xdt:
                self.u8(x)  # raises the dtype error
            buf, nhwc = memory_order(x)
            if self.xdt == np.int8:
                buf = buf.view(np.uint8) ^ np.uint8(0x80)
            layout = "nhwc" if nhwc else "nchw"
            if self.requant:
                y = _core.qconv_requant_nhwc(buf, self.packed, st, pd, dl, self.zp_u, layout,
                                             self.zcomp, self.mult, self.yz, self.ysigned,
                                             self.arith, self.impl)
                return y.transpose(0, 3, 1, 2)
            y = _core.qconv_dequant_nhwc(buf, self.packed, st, pd, dl, self.zp_u, layout,
                                         self.scale, self.ws, self.bias, self.arith,
                                         self.impl).transpose(0, 3, 1, 2)
            if self.bias is None and bias is not None:  # bias not constant at prepare
                y += np.asarray(bias, np.float32).reshape((1, -1, 1, 1))
            return y
        x4 = x[:, :, None, :] if self.nd == 1 else x
        if self.requant:
            acc = _core.conv_u8s8(self.u8(x4), self.packed, st, pd, dl, self.zp_u,
                                  self.arith, self.impl)
            y = self.requantize(acc, 1)
        else:
            if x.dtype != self.xdt:
                self.u8(x)  # raises the dtype error
            y = _core.qconv(np.ascontiguousarray(x4), self.packed, st, pd, dl, self.zp,
                            self.scale, self.ws, self.bias, self.arith, self.impl)
            if self.bias is None and bias is not None:  # bias not constant at prepare
                y += np.asarray(bias, np.float32).reshape((1, -1) + (1,) * self.nd)
        return y[:, :, 0, :] if self.nd == 1 else y


class _LinearLayer(_Layer):
    def __init__(self, node: Node, xs, xz, wq, ws, c, ys, yz, ctx: OpContext):
        self.gemm = node.attr("kind") == "Gemm"
        w = np.asarray(wq)
        if self.gemm and node.attr("transB", 0):
            w = w.T
        self.k, self.n = w.shape
        self.packed = kernels.pack_weights(np.ascontiguousarray(w))
        super().__init__(node, xs, xz, ws, self.n, w.sum(axis=0, dtype=np.int64), c, ys, yz,
                         ctx)
        alpha = np.float32(node.attr("alpha", 1.0)) if self.gemm else np.float32(1)
        if alpha != 1:
            self.ws = np.ascontiguousarray(self.ws * alpha, np.float32)
        self.beta = np.float32(node.attr("beta", 1.0)) if self.gemm else np.float32(1)
        self.bias, self.late = None, None
        if c is not None and not self.requant:
            bc = np.asarray(c, np.float32) * self.beta if self.beta != 1 else c
            self.bias = _bias_vec(bc, self.n)
            if self.bias is None:
                self.late = np.asarray(bc, np.float32)

    def __call__(self, x, xs=None, xz=None, wq=None, ws=None, c=None, ys=None, yz=None):
        node = self.node
        if self.gemm and x.ndim != 2:
            raise fail(node, f"Gemm input A must be 2-D, got shape {x.shape}")
        if x.ndim < 1 or x.shape[-1] != self.k:
            raise fail(node, f"input has shape {x.shape}; the weights need K={self.k} in the "
                             "last dimension")
        a2 = x.reshape(-1, self.k)
        if self.requant:
            acc = _core.gemm_u8s8(self.u8(a2), self.packed, self.arith, self.impl)
            return self.requantize(acc, 1).reshape(x.shape[:-1] + (self.n,))
        if x.dtype != self.xdt:
            self.u8(x)  # raises the dtype error
        y = _core.qlinear(np.ascontiguousarray(a2), self.packed, self.zp, self.scale, self.ws,
                          self.bias, self.arith, self.impl)
        y = y.reshape(x.shape[:-1] + (self.n,))
        if self.late is not None:
            y += self.late
        elif self.bias is None and c is not None:
            y += np.asarray(c, np.float32) * self.beta
        return y


def _prepare(cls):
    def prep(node, consts, ctx):
        return cls(node, *consts[1:8], ctx or OpContext())
    return prep


def _run(cls):
    def op(node, x, xs, xz, wq, ws, b=None, ys=None, yz=None, *, ctx=None):
        return cls(node, xs, xz, wq, ws, b, ys, yz, ctx or OpContext())(x, c=b) \
            if cls is _LinearLayer else cls(node, xs, xz, wq, ws, b, ys, yz,
                                            ctx or OpContext())(x, bias=b)
    return op


register("QdqConv", DOMAIN, context=True, prepare=_prepare(_ConvLayer))(_run(_ConvLayer))
register("QdqLinear", DOMAIN, context=True, prepare=_prepare(_LinearLayer))(_run(_LinearLayer))


def _prep_quantize(node, consts, ctx=None):
    """Once per session: the constant scale / zero point as Python numbers, so a run costs one
    C++ call (per-node Python overhead matters on the small tensors of an encoder)."""
    if consts[1] is None or consts[2] is None:
        return None
    sc, z = _scalar(consts[1]), np.asarray(consts[2])
    zi, signed = int(z.reshape(())), z.dtype == np.int8

    def run(x, scale=None, zp=None):
        if x.dtype == np.float32 and x.flags.c_contiguous:
            return _core.quantize_f32(x, sc, zi, signed)
        return quantize_f32(node, x, consts[1], consts[2])
    return run


def _prep_dequantize(node, consts, ctx=None):
    """As _prep_quantize, for DequantizeF32."""
    if consts[1] is None or consts[2] is None:
        return None
    sc, z = _scalar(consts[1]), np.asarray(consts[2])
    zi = int(z.reshape(()))

    def run(x, scale=None, zp=None):
        if x.dtype == z.dtype and x.flags.c_contiguous:
            return _core.dequantize_f32(x, sc, zi)
        return dequantize_f32(node, x, consts[1], consts[2])
    return run


@register("QuantizeF32", DOMAIN, prepare=_prep_quantize)
def quantize_f32(node, x, scale, zp):
    """Per-tensor QuantizeLinear (the rewrite only makes these for constant scalar scale/zp);
    non-float32 inputs (float16/64) go the numpy way for ONNX's rounding of their division."""
    z = np.asarray(zp)
    if x.dtype != np.float32:
        from .ops.quant import quantize_linear
        return quantize_linear(node, x, scale, zp)
    sc, zi, signed = _scalar(scale), int(z.reshape(())), z.dtype == np.int8
    return _elementwise(lambda b: _core.quantize_f32(b, sc, zi, signed), x)


@register("DequantizeF32", DOMAIN, prepare=_prep_dequantize)
def dequantize_f32(node, x, scale, zp):
    """Per-tensor DequantizeLinear of u8/s8 with a float32 scale (constant scalar scale/zp):
    (float(x) - float(zp)) * scale, the numpy op's float32 steps."""
    z = np.asarray(zp)
    if x.dtype != z.dtype:
        raise fail(node, f"input has dtype {x.dtype}, its zero point {z.dtype}")
    sc, zi = _scalar(scale), int(z.reshape(()))
    return _elementwise(lambda b: _core.dequantize_f32(b, sc, zi), x)


@register("QdqAdd", DOMAIN)
def qdq_add(node, a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp):
    """QuantizeLinear([Relu](DequantizeLinear(a) + DequantizeLinear(b))) (see _fuse_adds),
    in the memory order of its inputs (NHWC views stay NHWC); broadcasting Adds run the three
    ops' own steps."""
    za, zb, zy = (np.asarray(z) for z in (a_zp, b_zp, y_zp))
    for x, z, what in ((a, za, "A"), (b, zb, "B")):
        if x.dtype != z.dtype:
            raise fail(node, f"input {what} has dtype {x.dtype}, its zero point {z.dtype}")
    relu = bool(node.attr("relu", 0))
    if a.shape != b.shape:
        v = np.add(dequantize_f32(node, a, a_scale, a_zp), dequantize_f32(node, b, b_scale, b_zp))
        return quantize_f32(node, np.maximum(v, 0) if relu else v, y_scale, y_zp)
    (ba, na), (bb, nb) = memory_order(a), memory_order(b)
    if na != nb:
        (ba, na), bb = (np.ascontiguousarray(a), False), np.ascontiguousarray(b)
    y = _core.qdq_add(ba, _scalar(a_scale), int(za.reshape(())), bb, _scalar(b_scale),
                      int(zb.reshape(())), relu, _scalar(y_scale), int(zy.reshape(())),
                      zy.dtype == np.int8)
    return y.transpose(0, 3, 1, 2) if na else y


@register("QdqConcat", DOMAIN)
def qdq_concat(node, *args):
    """QuantizeLinear(Concat(DequantizeLinear(x_i), ...)) (see _fuse_adds): each input through
    the DequantizeF32 and QuantizeF32 steps in its own memory order, then one u8 Concat."""
    from .ops.shape import concat
    *ins, y_scale, y_zp = args
    ys, yz = np.float32(_scalar(y_scale)), np.asarray(y_zp)
    parts = []
    for x, s, z in zip(ins[0::3], ins[1::3], ins[2::3]):
        z = np.asarray(z)
        if np.float32(_scalar(s)) == ys and z.dtype == yz.dtype and x.dtype == z.dtype \
                and int(z.reshape(())) == int(yz.reshape(())):
            # same parameters: round((x - z) * s / s) == x - z exactly (|relative error| <=
            # 2^-23 on |x - z| <= 255), so the two steps are the identity
            parts.append(x)
        else:
            parts.append(quantize_f32(node, dequantize_f32(node, x, s, z), y_scale, y_zp))
    return concat(node, *parts)


def _prep_dequantize_add(node, consts, ctx=None):
    """Once per session: constant scale / zero point / bias (see _prep_quantize)."""
    if any(c is None for c in consts[1:4]):
        return None
    sc, z, b = _scalar(consts[1]), np.asarray(consts[2]), np.asarray(consts[3])
    zi = int(z.reshape(()))

    def run(x, scale=None, zp=None, bias=None):
        if x.dtype == z.dtype and x.flags.c_contiguous and x.ndim >= 1 and \
                x.shape[-1] == b.shape[0]:
            return _core.dequantize_add_f32(x, sc, zi, b)
        return dequantize_add(node, x, *consts[1:4])
    return run


@register("DequantizeAdd", DOMAIN, prepare=_prep_dequantize_add)
def dequantize_add(node, x, scale, zp, bias):
    """DequantizeLinear(x) + bias (float32 [N], see _fuse_adds): one C++ pass when the bias
    runs along x's last (contiguous) axis, else the two ops' own steps."""
    b = np.asarray(bias)
    if x.ndim >= 1 and x.shape[-1] == b.shape[0] and x.flags.c_contiguous:
        z = np.asarray(zp)
        if x.dtype != z.dtype:
            raise fail(node, f"input has dtype {x.dtype}, its zero point {z.dtype}")
        return _core.dequantize_add_f32(x, _scalar(scale), int(z.reshape(())), b)
    y = dequantize_f32(node, x, scale, zp)
    return np.add(y, b).astype(y.dtype, copy=False)
