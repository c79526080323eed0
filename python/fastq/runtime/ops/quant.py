"""int8 ops: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, MatMulInteger,
QLinearMatMul.

Quantize divides in float32 and rounds half to even, then saturates to the output type
(per tensor, per axis, or per block from opset 21). The integer product-sums run in
``fastq.kernels.gemm_u8s8`` under the session's arith (exact32 when the session is float): the
kernel sees u8 activations (int8 ones shifted by +128) and s8 weights (uint8 ones shifted by
-128); the zero points and shifts are then removed exactly with row/column sums, so in
``sat16pair`` only the raw u8 x s8 pair sums saturate, as vpmaddubsw does. Weights that are
constant are packed once per session (prepare hook).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from onnx import helper

from ... import kernels
from ...errors import DataError
from ..registry import register
from .shape import cast_to

_RANGE = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127),
          np.dtype(np.uint16): (0, 65535), np.dtype(np.int16): (-32768, 32767),
          np.dtype(np.int32): (-2**31, 2**31 - 1)}


def _range(dt: np.dtype):
    if dt in _RANGE:
        return _RANGE[dt]
    name = dt.name
    if name == "int4":
        return -8, 7
    if name == "uint4":
        return 0, 15
    if name == "int2":
        return -2, 1
    if name == "uint2":
        return 0, 3
    return None  # float types: saturate in the cast


def _expand(p: np.ndarray, x: np.ndarray, axis: int, block: int) -> np.ndarray:
    """Broadcastable view of a scale/zero-point for x (per tensor, per axis or per block)."""
    p = np.asarray(p)
    if p.ndim == 0 or p.size == 1 and not block:
        return p.reshape(())
    axis %= x.ndim
    if block:
        p = np.repeat(p, block, axis=axis)
        return np.take(p, np.arange(x.shape[axis]), axis=axis)
    if p.ndim != 1 or p.shape[0] != x.shape[axis]:
        raise DataError(f"per-axis parameter of shape {p.shape} does not match axis {axis} "
                        f"of input shape {x.shape}")
    shape = [1] * x.ndim
    shape[axis] = p.shape[0]
    return p.reshape(shape)


@register("QuantizeLinear")
def quantize_linear(node, x, scale, zp=None):
    axis, block = node.attr("axis", 1), node.attr("block_size", 0)
    if zp is not None:
        dt = zp.dtype
    elif node.attr("output_dtype", 0):
        dt = np.dtype(helper.tensor_dtype_to_np_dtype(node.attr("output_dtype")))
    else:
        dt = np.dtype(np.uint8)
    s = _expand(scale, x, axis, block)
    if x.dtype != s.dtype and x.dtype.kind == "f":
        s = s.astype(x.dtype)
    y = x / s
    lim = _range(dt)
    if lim is None:  # float8 and friends: the cast rounds (and saturates if asked)
        if zp is not None:
            y = y + _expand(zp, x, axis, block).astype(np.float32)
        return cast_to(y, dt, bool(node.attr("saturate", 1)))
    y = np.rint(y)
    if zp is not None:
        y = y + _expand(zp, x, axis, block).astype(np.float32)
    return np.clip(y, lim[0], lim[1]).astype(dt)


@register("DequantizeLinear")
def dequantize_linear(node, x, scale, zp=None):
    axis, block = node.attr("axis", 1), node.attr("block_size", 0)
    s = _expand(scale, x, axis, block)
    dx = x.astype(np.float32)
    if zp is not None and _range(zp.dtype) is not None:
        dx = dx - _expand(zp, x, axis, block).astype(np.float32)
    y = dx * s
    out = node.attr("output_dtype", 0)
    dt = np.dtype(helper.tensor_dtype_to_np_dtype(out)) if out else np.asarray(scale).dtype
    return y.astype(dt, copy=False)


@register("DynamicQuantizeLinear")
def dynamic_quantize_linear(node, x):
    hi = np.float32(max(0.0, float(np.max(x)))) if x.size else np.float32(0)
    lo = np.float32(min(0.0, float(np.min(x)))) if x.size else np.float32(0)
    scale = np.float32(1.0 if hi == lo else hi - lo) / np.float32(255)
    zp = np.rint(np.clip(np.float32(0) - lo / scale, 0, 255))
    y = np.clip(np.rint(x / scale) + zp, 0, 255).astype(np.uint8)
    return y, np.array(scale, dtype=x.dtype), np.array(zp, dtype=np.uint8)


# -- integer matmul -------------------------------------------------------------------------

class _Weights:
    """B as the kernel wants it: s8 [K, N] packed, its column sums and the zero-point shift."""

    def __init__(self, b: np.ndarray):
        if b.dtype == np.uint8:
            self.shift = 128  # b_s8 = b - 128
            b = (b.astype(np.int16) - 128).astype(np.int8)
        else:
            self.shift = 0
        self.k, self.n = b.shape
        self.colsum = b.sum(axis=0, dtype=np.int64)
        self.packed = kernels.pack_weights(np.ascontiguousarray(b))


def _acc(a2: np.ndarray, azp, w: _Weights, bzp, arith: str, impl: str) -> np.ndarray:
    """int32 [M, N] = sum_k (a - azp)(b - bzp) with the raw products under ``arith``."""
    if a2.dtype == np.int8:
        a_u = (a2.astype(np.int16) + 128).astype(np.uint8)
        azp = azp + 128
    else:
        a_u = a2
    raw = kernels.gemm_u8s8(np.ascontiguousarray(a_u), w.packed, arith=arith, impl=impl)
    # b = b_s8 + shift: sum (a_u - azp)(b_s8 + shift - bzp)
    bz = bzp - w.shift                                      # zero point of b_s8, per column
    rowsum = a_u.sum(axis=1, dtype=np.int64)[:, None]
    acc = (raw.astype(np.int64) - azp * w.colsum[None, :] - rowsum * bz
           + w.k * azp * bz)
    return acc.astype(np.int32)


def _zp(z: Optional[np.ndarray]) -> np.ndarray:
    """Zero point as int64: a scalar, or a vector (per row of a / per column of b)."""
    if z is None:
        return np.int64(0)
    z = np.asarray(z).astype(np.int64)
    if z.ndim == 0 or z.size == 1:
        return z.reshape(())
    return z.reshape(-1)


def _matmul_int(a, b, azp, bzp, ctx, w: Optional[_Weights] = None) -> np.ndarray:
    arith = ctx.int_arith if ctx is not None else "exact32"
    impl = ctx.impl if ctx is not None else "auto"
    azp, bzp = _zp(azp), _zp(bzp)
    a_vec, b_vec = a.ndim == 1, b.ndim == 1
    if a_vec:
        a = a[None, :]
    if b_vec:
        b = b[:, None]
    m, k = a.shape[-2:]
    if b.ndim == 2:  # one GEMM over all rows of a (batch dims folded into M)
        w = w or _Weights(b)
        a2 = a.reshape(-1, k)
        za = azp if azp.ndim == 0 else np.tile(azp, a2.shape[0] // m)[:, None]
        out = _acc(a2, za, w, bzp, arith, impl).reshape(a.shape[:-1] + (b.shape[1],))
    else:
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        ab = np.broadcast_to(a, batch + a.shape[-2:])
        bb = np.broadcast_to(b, batch + b.shape[-2:])
        out = np.empty(batch + (m, b.shape[-1]), dtype=np.int32)
        za = azp if azp.ndim == 0 else azp[:, None]
        for i in np.ndindex(*batch):
            out[i] = _acc(np.ascontiguousarray(ab[i]), za, _Weights(bb[i]), bzp, arith, impl)
    if a_vec:
        out = out[..., 0, :]
    if b_vec:
        out = out[..., 0]
    return out


def _const_weights(consts, index: int) -> Optional[_Weights]:
    """Packed weights when input ``index`` (B) is a constant 2-D matrix, else None."""
    b = consts[index] if index < len(consts) else None
    if b is None or b.ndim != 2:
        return None
    return _Weights(b)


def _prep_matmul_integer(node, consts, ctx):
    w = _const_weights(consts, 1)
    if w is None:
        return None
    return lambda a, b, azp=None, bzp=None: _matmul_int(a, b, azp, bzp, ctx, w)


@register("MatMulInteger", context=True, prepare=_prep_matmul_integer)
def matmul_integer(node, a, b, azp=None, bzp=None, *, ctx=None):
    return _matmul_int(a, b, azp, bzp, ctx)


def _requant(acc, a_scale, b_scale, y_scale, y_zp, out_dtype):
    # float32 multiplier and product, round half to even: what ONNX Runtime's requantize does
    mult = (np.asarray(a_scale, np.float32) * np.asarray(b_scale, np.float32)
            / np.asarray(y_scale, np.float32)).astype(np.float32)
    y = np.rint(acc.astype(np.float32) * mult)
    if y_zp is not None:
        y = y + np.asarray(y_zp).astype(np.float32)
    lo, hi = _RANGE[np.dtype(out_dtype)]
    return np.clip(y, lo, hi).astype(out_dtype)


def _qlinear_matmul(a, a_scale, azp, b, b_scale, bzp, y_scale, y_zp, ctx, w=None):
    acc = _matmul_int(a, b, azp, bzp, ctx, w)
    bs = np.asarray(b_scale)
    if bs.ndim == 2 and bs.shape[0] == 1:
        bs = bs.reshape(-1)
    dt = y_zp.dtype if y_zp is not None else a.dtype
    return _requant(acc, a_scale, bs, y_scale, y_zp, dt)


def _prep_qlinear_matmul(node, consts, ctx):
    w = _const_weights(consts, 3)
    if w is None:
        return None
    return lambda *xs: _qlinear_matmul(*xs, ctx=ctx, w=w)


@register("QLinearMatMul", context=True, prepare=_prep_qlinear_matmul)
def qlinear_matmul(node, a, a_scale, azp, b, b_scale, bzp, y_scale, y_zp=None, *, ctx=None):
    return _qlinear_matmul(a, a_scale, azp, b, b_scale, bzp, y_scale, y_zp, ctx)
