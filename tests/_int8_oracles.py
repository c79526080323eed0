"""Independent numpy statements of the int8 conv / matmul contracts (DESIGN.md section 3) for
the int8 op and fused-layer tests: products listed in reduction order (kh, kw, c) per group,
summed exactly (exact32) or in saturating s16 pairs (sat16pair, per-tap or flat pairing)."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def patches(xp: np.ndarray, kernel, strides, dil) -> np.ndarray:
    """[N, C, *out, *k] windows of an already padded input."""
    nd = len(kernel)
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
    win = sliding_window_view(xp, eff, axis=tuple(range(2, 2 + nd)))
    sl = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides) + \
        tuple(slice(None, None, d) for d in dil)
    return win[sl]


def pair_sum(p: np.ndarray, arith: str) -> np.ndarray:
    """Sum the last axis: exactly, or in adjacent saturating s16 pairs (odd -> one zero)."""
    if arith == "exact32":
        return p.sum(axis=-1)
    if p.shape[-1] % 2:
        p = np.concatenate([p, np.zeros(p.shape[:-1] + (1,), p.dtype)], axis=-1)
    return np.clip(p[..., 0::2] + p[..., 1::2], -32768, 32767).sum(axis=-1)


def raw_conv(xu: np.ndarray, ws: np.ndarray, pad_value: int, strides, pads, dil, group: int,
             arith: str, pairing: str = "per_tap") -> np.ndarray:
    """int64 [N, OC, *out] raw sums of u8 x (int64 values) with s8 w (int64 values)."""
    nd = xu.ndim - 2
    kernel = ws.shape[2:]
    pw = [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)]
    xp = np.pad(xu, pw, constant_values=pad_value)
    pt = patches(xp, kernel, strides, dil)                        # [N, C, *out, *k]
    n, c = pt.shape[:2]
    out = pt.shape[2:2 + nd]
    cg, oc = c // group, ws.shape[0]
    taps = int(np.prod(kernel))
    xg = pt.reshape((n, group, cg) + tuple(out) + (taps,))
    xg = np.moveaxis(xg, 2, -1).reshape(n, group, 1, -1, taps, cg)  # [N, G, 1, P, T, cg]
    wg = np.moveaxis(ws.reshape(group, oc // group, cg, taps), 2, -1)[None, :, :, None]
    prods = xg * wg                                                # [N, G, OCg, P, T, cg]
    if arith == "sat16pair" and pairing == "flat":
        acc = pair_sum(prods.reshape(prods.shape[:4] + (-1,)), arith)
    else:
        acc = pair_sum(prods, arith).sum(axis=-1)
    return acc.reshape((n, oc) + tuple(out))


def conv_integer(x, w, xzp, wzp, strides, pads, dil, group, arith, pairing="per_tap"):
    """ConvInteger: sum (x - xzp)(w - wzp[oc]); in sat16pair the raw u8 (x, +128 if int8) x
    s8 (w, -128 if uint8) products saturate in pairs and the zero points are removed exactly."""
    xu = x.astype(np.int64) + (128 if x.dtype == np.int8 else 0)
    zx = int(xzp) + (128 if x.dtype == np.int8 else 0)
    ws = w.astype(np.int64) - (128 if w.dtype == np.uint8 else 0)
    oc = w.shape[0]
    zw = np.broadcast_to(np.asarray(wzp, np.int64), (oc,)) - (128 if w.dtype == np.uint8 else 0)
    if arith == "exact32":
        return raw_conv(xu - zx, ws - zw.reshape((oc,) + (1,) * (w.ndim - 1)), 0, strides,
                        pads, dil, group, arith).astype(np.int32)
    raw = raw_conv(xu, ws, zx, strides, pads, dil, group, arith, pairing)
    ones = np.ones((group,) + w.shape[1:], np.int64)
    sx = raw_conv(xu - zx, ones, 0, strides, pads, dil, group, "exact32")
    sx = np.repeat(sx, oc // group, axis=1)
    bs = (1, oc) + (1,) * (x.ndim - 2)
    colsum = ws.reshape(oc, -1).sum(axis=1)
    acc = raw - zx * colsum.reshape(bs) - zw.reshape(bs) * sx
    return acc.astype(np.int32)


def matmul_raw(au: np.ndarray, ws: np.ndarray, arith: str) -> np.ndarray:
    """int64 [M, N] raw sums over k of u8 a[M, K] x s8 w[K, N] (pairs (0,1), (2,3), ...)."""
    p = au.astype(np.int64)[:, None, :] * ws.astype(np.int64).T[None, :, :]
    return pair_sum(p, arith)


def epilogue(acc: np.ndarray, colsum: np.ndarray, zp: int, xs, ws, bias, axis: int = 1):
    """The qlinear epilogue in float32, in the kernel's operation order."""
    shape = [1] * acc.ndim
    shape[axis] = -1
    d = (acc.astype(np.int64) - zp * colsum.reshape(shape)).astype(np.float32)
    s = (np.float32(xs) * np.asarray(ws, np.float32)).astype(np.float32)
    y = d * (s.reshape(shape) if s.ndim else s)
    if bias is not None:
        y = y + np.asarray(bias, np.float32).reshape(shape)
    return y.astype(np.float32)
