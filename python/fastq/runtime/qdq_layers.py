"""Fused int8 layers for sessions with an arith: each QDQ ``DequantizeLinear(x) -> Conv | MatMul
| Gemm <- DequantizeLinear(w)`` becomes one node in domain "fastq" (``QdqConv`` / ``QdqLinear``)
that runs ``kernels.qconv`` / ``kernels.qlinear`` on the quantized input in the session's arith
and returns the float output; the weights are packed once (prepare hook). A following
QuantizeLinear stays a float QuantizeLinear node (exact ONNX rounding, nothing re-derived here).

Fused: int8 weights with zero point 0, per tensor or per output channel (axis 0 for Conv and
Gemm transB=1, axis 1 for MatMul [K, N] and Gemm transB=0); uint8/int8 per-tensor activations;
float bias (a constant, or DequantizeLinear(int32) folded to float); Gemm alpha folded into
the weight scales, beta into the bias. Anything else (uint8 or nonzero-zero-point weights,
3-D conv, transA, non-constant weights, ...) stays unfused and runs in float, so sat16pair is
not emulated for it: ``unfused_layers(ctx)`` lists those with the reason, ``fused_layers``
the fused ones. Float sessions (arith None) are never rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

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


def _fuse(layer: QdqLayer, consts, ctx: OpContext) -> Node:
    n = layer.layer
    _activation(layer, consts)
    xq, xs, xz = layer.x_dq.inputs[:3]
    wq, ws = layer.w_dq.inputs[:2]
    bias = layer.bias or ""
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
    return Node(name=n.name, op_type=op, domain=DOMAIN, version=1, opset=1, attrs=attrs,
                inputs=(xq, xs, xz, wq, ws, bias), outputs=n.outputs, proto=None)


def qdq_layer_stage(nodes: List[Node], consts: Dict[str, np.ndarray], ctx: OpContext
                    ) -> List[Node]:
    """GRAPH_REWRITES stage: fuse QDQ layers when the session has an arith."""
    if ctx.arith is None:
        return nodes
    fused_rec = ctx.rewrites.setdefault("int8_layers", [])
    skip_rec = ctx.rewrites.setdefault("unfused_qdq_layers", [])
    swap: Dict[int, Node] = {}
    dq_candidates = set()
    matched = set()
    for layer in find_qdq_layers(nodes, consts):
        matched.add(id(layer.layer))
        try:
            f = _fuse(layer, consts, ctx)
        except _Skip as e:
            skip_rec.append(LayerRecord(layer.layer.name, layer.layer.op_type, None, str(e),
                                        ctx.arith))
            continue
        swap[id(layer.layer)] = f
        dq_candidates.update((id(layer.x_dq), id(layer.w_dq)))
        fused_rec.append(LayerRecord(f.name, layer.layer.op_type, f.op_type, "", ctx.arith,
                                     f.attrs.get("pairing")))
    producer = {o: n for n in nodes for o in n.outputs if o}
    out: List[Node] = []
    for n in nodes:
        if id(n) in swap:
            out.append(swap[id(n)])
            continue
        if n.domain == "" and n.op_type in LAYER_OPS and id(n) not in matched:
            srcs = [producer.get(x) for x in n.inputs[:2]]
            if len(srcs) == 2 and all(s is not None and s.op_type == "DequantizeLinear"
                                      for s in srcs):
                skip_rec.append(LayerRecord(n.name, n.op_type, None,
                                            "weight input is not a constant", ctx.arith))
        if n.domain == "" and n.op_type in ("QLinearConv", "ConvInteger"):
            n = Node(n.name, n.op_type, n.domain, n.version, n.opset,
                     dict(n.attrs, _fastq_pairing=ctx.conv_pairing), n.inputs, n.outputs,
                     n.proto)
        out.append(n)
    # drop the DequantizeLinear nodes only the fused layers read
    used = {x for n in out for x in n.inputs if x} | set(ctx.graph_outputs)
    return [n for n in out if id(n) not in dq_candidates
            or any(o in used for o in n.outputs if o)]


graph.GRAPH_REWRITES.append(qdq_layer_stage)


# -- fused ops --------------------------------------------------------------------------------

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


class _ConvLayer:
    def __init__(self, node: Node, xs, xz, wq, ws, bias, ctx: OpContext):
        self.node = node
        self.arith = ctx.int_arith
        self.impl = kernels._resolve_impl(ctx.impl, self.arith)
        self.zp, self.scale = int(np.asarray(xz).reshape(())), _scalar(xs)
        self.xdt = np.asarray(xz).dtype
        w = np.asarray(wq)
        self.nd = w.ndim - 2
        self.kernel = list(w.shape[2:])
        self.oc, cg = w.shape[:2]
        self.group = int(node.attr("group", 1))
        self.packed = kernels.pack_conv_weights(np.ascontiguousarray(w), group=self.group,
                                                pairing=node.attr("pairing", "per_tap"))
        self.cin = cg * self.group
        self.ws = np.ascontiguousarray(np.atleast_1d(np.asarray(ws, np.float32)).reshape(-1))
        self.bias = None if bias is None else np.ascontiguousarray(
            np.asarray(bias, np.float32).reshape(-1))
        if self.bias is not None and self.bias.shape != (self.oc,):
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

    def __call__(self, x, xs=None, xz=None, wq=None, ws=None, bias=None):
        if x.dtype != self.xdt:
            raise fail(self.node, f"quantized input has dtype {x.dtype}, its zero point "
                                  f"{self.xdt}")
        st, pd, dl = self.geometry(x)
        x4 = np.ascontiguousarray(x[:, :, None, :] if self.nd == 1 else x)
        b = self.bias
        late = None
        if b is None and bias is not None:
            late = np.asarray(bias, np.float32)
        y = _core.qconv(x4, self.packed, st, pd, dl, self.zp, self.scale, self.ws, b,
                        self.arith, self.impl)
        if self.nd == 1:
            y = y[:, :, 0, :]
        if late is not None:
            y += late.reshape((1, -1) + (1,) * self.nd)
        return y


class _LinearLayer:
    def __init__(self, node: Node, xs, xz, wq, ws, c, ctx: OpContext):
        self.node = node
        self.arith = ctx.int_arith
        self.impl = kernels._resolve_impl(ctx.impl, self.arith)
        self.zp, self.scale = int(np.asarray(xz).reshape(())), _scalar(xs)
        self.xdt = np.asarray(xz).dtype
        self.gemm = node.attr("kind") == "Gemm"
        w = np.asarray(wq)
        if self.gemm and node.attr("transB", 0):
            w = w.T
        self.k, self.n = w.shape
        self.packed = kernels.pack_weights(np.ascontiguousarray(w))
        ws = np.atleast_1d(np.asarray(ws, np.float32)).reshape(-1)
        alpha = np.float32(node.attr("alpha", 1.0)) if self.gemm else np.float32(1)
        self.ws = np.ascontiguousarray(ws * alpha if alpha != 1 else ws, np.float32)
        self.beta = np.float32(node.attr("beta", 1.0)) if self.gemm else np.float32(1)
        self.bias, self.late = None, None
        if c is not None:
            bc = np.asarray(c, np.float32) * self.beta if self.beta != 1 else c
            self.bias = _bias_vec(bc, self.n)
            if self.bias is None:
                self.late = np.asarray(bc, np.float32)

    def __call__(self, x, xs=None, xz=None, wq=None, ws=None, c=None):
        node = self.node
        if x.dtype != self.xdt:
            raise fail(node, f"quantized input has dtype {x.dtype}, its zero point {self.xdt}")
        if self.gemm and x.ndim != 2:
            raise fail(node, f"Gemm input A must be 2-D, got shape {x.shape}")
        if x.ndim < 1 or x.shape[-1] != self.k:
            raise fail(node, f"input has shape {x.shape}; the weights need K={self.k} in the "
                             "last dimension")
        a2 = np.ascontiguousarray(x.reshape(-1, self.k))
        y = _core.qlinear(a2, self.packed, self.zp, self.scale, self.ws, self.bias,
                          self.arith, self.impl)
        y = y.reshape(x.shape[:-1] + (self.n,))
        if self.late is not None:
            y += self.late
        elif self.bias is None and c is not None:
            y += np.asarray(c, np.float32) * self.beta
        return y


def _prepare(cls):
    def prep(node, consts, ctx):
        xs, xz, wq, ws, b = consts[1:6]
        return cls(node, xs, xz, wq, ws, b, ctx or OpContext())
    return prep


def _run(cls):
    def op(node, x, xs, xz, wq, ws, b=None, *, ctx=None):
        return cls(node, xs, xz, wq, ws, b, ctx or OpContext())(x, c=b) if cls is _LinearLayer \
            else cls(node, xs, xz, wq, ws, b, ctx or OpContext())(x)
    return op


register("QdqConv", DOMAIN, context=True, prepare=_prepare(_ConvLayer))(_run(_ConvLayer))
register("QdqLinear", DOMAIN, context=True, prepare=_prepare(_LinearLayer))(_run(_LinearLayer))
