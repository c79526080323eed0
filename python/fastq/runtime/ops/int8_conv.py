"""int8 convolution ops: ConvInteger and QLinearConv, every attribute (auto_pad, pads, strides,
dilations, group, kernel_shape), 1-D / 2-D / 3-D, uint8 or int8 x and w, per-tensor or
per-output-channel weight scales and zero points.

The raw product-sums run in ``kernels.conv_u8s8`` under the session's arith (a float session
runs exact32, the ONNX semantics): x enters as u8 (int8 x shifted by +128), w as s8 (uint8 w
shifted by -128, so only the raw u8 x s8 pair sums saturate in sat16pair, as vpmaddubsw does).
The zero points and shifts are removed exactly afterwards with the weights' column sums and the
window sums of x (a conv of x with all-ones weights, exact32, C++), computed only when a weight
zero point is nonzero; a symmetric int8 weight (zero point 0) is the fast path. 3-D convs run
as one 2-D conv per kernel depth tap, summed; that is exact in exact32 and in per-tap sat16pair
(pairs never cross taps), so only sat16pair with flat pairing and an odd C/group is refused.
QLinearConv requantizes as ONNX Runtime does: float32 multiplier x_scale*w_scale/y_scale, float32
product, round half to even, + y_zero_point, saturate.
"""

from __future__ import annotations

from typing import List

import numpy as np

from ... import kernels
from ...errors import UnsupportedOpError
from ..registry import Node, register
from .nn_common import fail, ints_attr, need, window_geometry

_LIM = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}


def _pairing(node: Node, ctx) -> str:
    # Rewrite stage bakes the session's pairing into the node (qdq_layers.annotate_pairing).
    return node.attr("_fastq_pairing") or getattr(ctx, "conv_pairing", None) or "per_tap"


def _int8(node: Node, a: np.ndarray, what: str) -> np.ndarray:
    a = need(node, a, what)
    if a.dtype not in _LIM:
        raise fail(node, f"input {what} must be uint8 or int8, got {a.dtype}")
    return a


def _zero_point(node: Node, z, dtype, what: str, n: int) -> np.ndarray:
    """Zero point as int64: shape () or (n,) (per output channel)."""
    if z is None or np.size(z) == 0:
        return np.zeros((), np.int64)
    z = np.asarray(z)
    if z.dtype != dtype:
        raise fail(node, f"{what} has dtype {z.dtype} but its tensor is {np.dtype(dtype)}")
    if z.size == 1:
        return z.reshape(()).astype(np.int64)
    if z.ndim != 1 or z.shape[0] != n:
        raise fail(node, f"{what} must be a scalar or have {n} entries (one per output "
                         f"channel), got shape {z.shape}")
    return z.astype(np.int64)


class ConvWeights:
    """Constant conv weights prepared once: s8 packed per 2-D kernel slice, sums for the
    zero-point algebra. ``shift`` is 128 for uint8 weights (w_s8 = w - 128), else 0."""

    def __init__(self, node: Node, w: np.ndarray, group: int, pairing: str):
        w = _int8(node, w, "W")
        if w.ndim < 3:
            raise fail(node, f"weight W must be (M, C/group, k...), got shape {w.shape}")
        nd = w.ndim - 2
        if nd > 3:
            raise UnsupportedOpError(f"{node.where()}: {nd} spatial dims; 1 to 3 supported")
        if group < 1 or w.shape[0] % group:
            raise fail(node, f"group={group} must divide the output channels {w.shape[0]}")
        self.shift = 128 if w.dtype == np.uint8 else 0
        ws = (w.astype(np.int16) - self.shift).astype(np.int8) if self.shift else w
        self.dtype, self.nd, self.group, self.pairing = w.dtype, nd, group, pairing
        self.shape = w.shape
        self.oc, self.cg = w.shape[:2]
        self.kvol = int(np.prod(w.shape[2:]))
        self.colsum = ws.reshape(self.oc, -1).sum(axis=1, dtype=np.int64)
        # 3-D: one packed 2-D slice per kernel depth tap
        slices = [ws] if nd < 3 else [ws[:, :, d] for d in range(w.shape[2])]
        self.packed = [kernels.pack_conv_weights(np.ascontiguousarray(s), group=group,
                                                 pairing=pairing) for s in slices]
        self._ones = None

    def ones(self):
        """All-ones weights, one output per group: window sums of x per group (exact32)."""
        if self._ones is None:
            shape = (self.group, self.cg) + tuple(self.shape[3:] if self.nd == 3
                                                  else self.shape[2:])
            self._ones = kernels.pack_conv_weights(np.ones(shape, np.int8), group=self.group)
        return self._ones


def _geometry(node: Node, x: np.ndarray, cw: ConvWeights):
    nd = cw.nd
    if x.ndim != nd + 2:
        raise fail(node, f"input X has shape {x.shape} but weight W has rank {cw.nd + 2} "
                         f"({cw.shape})")
    if x.shape[1] != cw.cg * cw.group:
        raise fail(node, f"input channel mismatch: X has {x.shape[1]} channels, W expects "
                         f"{cw.cg} x group {cw.group} = {cw.cg * cw.group}")
    ks = node.attr("kernel_shape")
    if ks is not None and [int(k) for k in ks] != list(cw.shape[2:]):
        raise fail(node, f"kernel_shape={list(ks)} does not match the weight's spatial shape "
                         f"{list(cw.shape[2:])}")
    strides = ints_attr(node, "strides", nd, 1)
    dil = ints_attr(node, "dilations", nd, 1)
    out, pb, pe = window_geometry(node, list(x.shape[2:]), list(cw.shape[2:]), strides, dil)
    return strides, dil, pb, pe, out


def _conv_sum(x_u: np.ndarray, packed: List, zp: int, geo, arith: str, impl: str) -> np.ndarray:
    """Raw int32 sums of u8 x with s8 slices; 3-D runs one 2-D conv per kernel depth tap."""
    strides, dil, pb, pe, out = geo
    if x_u.ndim < 5:
        return kernels.conv_u8s8(x_u, packed[0], strides=strides, pads=pb + pe,
                                 dilations=dil, x_zero_point=zp, arith=arith, impl=impl)
    n, c, d = x_u.shape[:3]
    od = out[0]
    total = None
    for kd, pk in enumerate(packed):
        src = np.arange(od) * strides[0] - pb[0] + kd * dil[0]     # input depth per od
        inside = (src >= 0) & (src < d)
        xs = np.full((n, od, c) + x_u.shape[3:], zp, np.uint8)
        if inside.any():
            xs[:, inside] = np.moveaxis(x_u[:, :, src[inside]], 2, 1)
        y = kernels.conv_u8s8(xs.reshape((n * od, c) + x_u.shape[3:]), pk,
                              strides=strides[1:], pads=pb[1:] + pe[1:], dilations=dil[1:],
                              x_zero_point=zp, arith=arith, impl=impl)
        y = y.reshape((n, od) + y.shape[1:]).astype(np.int64)
        total = y if total is None else total + y
    return np.moveaxis(total, 1, 2)


def conv_integer(node: Node, x, xzp, cw: ConvWeights, wzp, arith: str, impl: str) -> np.ndarray:
    """int32 [N, M, out...] = sum (x - xzp)(w - wzp[m]) with raw products under ``arith``."""
    x = _int8(node, x, "X")
    if cw.nd == 3 and arith == "sat16pair" and cw.pairing == "flat" and cw.cg % 2:
        raise UnsupportedOpError(f"{node.where()}: 3-D conv with flat pairing and odd C/group "
                                 "is not emulated in sat16pair (per_tap is)")
    zx = _zero_point(node, xzp, x.dtype, "x_zero_point", 1)
    if zx.ndim:
        raise fail(node, "x_zero_point must be a scalar (per-tensor)")
    zw = _zero_point(node, wzp, cw.dtype, "w_zero_point", cw.oc)
    geo = _geometry(node, x, cw)
    if x.dtype == np.int8:
        x_u = (x.view(np.uint8) ^ np.uint8(0x80))
        zx_u = int(zx) + 128
    else:
        x_u, zx_u = x, int(zx)
    x_u = np.ascontiguousarray(x_u)
    raw = _conv_sum(x_u, cw.packed, zx_u, geo, arith, impl)
    bshape = (1, cw.oc) + (1,) * cw.nd
    zw_s = zw - cw.shift                                   # zero point of the s8 weights
    acc = raw.astype(np.int64) - zx_u * cw.colsum.reshape(bshape)
    if np.any(zw_s != 0):
        # (x - zx)(w - zw) = (x - zx) w_s - (x - zx) zw_s: window sums of (x - zx) are
        # window sums of x minus zx per tap (padding reads zx, so it contributes 0)
        sx = _conv_sum(x_u, [cw.ones()] * len(cw.packed), zx_u, geo, "exact32", impl)
        sx = sx.astype(np.int64) - zx_u * cw.cg * cw.kvol
        sx = np.repeat(sx, cw.oc // cw.group, axis=1)
        acc -= sx * (zw_s.reshape(bshape[:2] + (1,) * cw.nd) if zw_s.ndim else zw_s)
    return acc.astype(np.int32)


def _ctx_arith(ctx):
    return (ctx.int_arith if ctx is not None else "exact32",
            ctx.impl if ctx is not None else "auto")


def _prep(w_index: int):
    def prepare(node, consts, ctx):
        w = consts[w_index] if w_index < len(consts) else None
        if w is None:
            return None
        cw = ConvWeights(node, np.asarray(w), int(node.attr("group", 1)), _pairing(node, ctx))
        fn = conv_integer_op if node.op_type == "ConvInteger" else qlinear_conv_op
        return lambda *xs: fn(node, *xs, ctx=ctx, cw=cw)
    return prepare


@register("ConvInteger", context=True, prepare=_prep(1))
def conv_integer_op(node: Node, x, w, xzp=None, wzp=None, *, ctx=None, cw=None):
    arith, impl = _ctx_arith(ctx)
    cw = cw or ConvWeights(node, np.asarray(need(node, w, "w")), int(node.attr("group", 1)),
                           _pairing(node, ctx))
    return conv_integer(node, x, xzp, cw, wzp, arith, impl)


def _scale(node: Node, s, what: str, n: int) -> np.ndarray:
    s = need(node, s, what)
    if s.size == 1:
        return s.reshape(()).astype(np.float32)
    if s.ndim != 1 or s.shape[0] != n:
        raise fail(node, f"{what} must be a scalar or have {n} entries, got shape {s.shape}")
    return s.astype(np.float32)


@register("QLinearConv", context=True, prepare=_prep(3))
def qlinear_conv_op(node: Node, x, xs, xzp, w, ws, wzp, ys, yzp=None, b=None, *, ctx=None,
                    cw=None):
    arith, impl = _ctx_arith(ctx)
    cw = cw or ConvWeights(node, np.asarray(need(node, w, "w")), int(node.attr("group", 1)),
                           _pairing(node, ctx))
    acc = conv_integer(node, x, xzp, cw, wzp, arith, impl).astype(np.int64)
    bshape = (1, cw.oc) + (1,) * cw.nd
    if b is not None and b.size:
        if b.shape != (cw.oc,):
            raise fail(node, f"bias B has shape {b.shape}, expected ({cw.oc},)")
        acc += b.astype(np.int64).reshape(bshape)
    xs_, ys_ = _scale(node, xs, "x_scale", 1), _scale(node, ys, "y_scale", 1)
    ws_ = _scale(node, ws, "w_scale", cw.oc)
    mult = (xs_ * ws_ / ys_).astype(np.float32)
    mult = mult.reshape(bshape) if mult.ndim else mult
    y = np.rint(acc.astype(np.int32).astype(np.float32) * mult)
    out_dt = np.dtype(yzp.dtype) if yzp is not None else np.dtype(np.uint8)
    if out_dt not in _LIM:
        raise fail(node, f"y_zero_point must be uint8 or int8, got {out_dt}")
    if yzp is not None:
        z = np.asarray(yzp)
        if z.size != 1:
            raise fail(node, "y_zero_point must be a scalar (per-tensor)")
        y += np.float32(z.reshape(()))
    lo, hi = _LIM[out_dt]
    return np.clip(y, lo, hi).astype(out_dt)


