"""Conv and ConvTranspose (float), every attribute: auto_pad, pads, strides, dilations,
group (incl. depthwise), kernel_shape, output_padding/output_shape; 1-D, 2-D and 3-D.

Paths, chosen per node: depthwise (group == C, any channel multiplier) runs the direct C++
kernel (the tap count is far too small a reduction for GEMM); unpadded 1x1 conv is a plain
BLAS matmul on the (strided) input; 3x3 stride-1 undilated 2-D conv with >= 16 channels
(group 1) is Winograd F(2x2, 3x3); everything else is C++ im2col + one batched BLAS matmul
over the groups.
ConvTranspose is the adjoint: BLAS matmul to columns, then C++ col2im.
"""

from __future__ import annotations

import numpy as np

from ... import _core
from ..registry import Node, register
from .nn_common import (fail, float_impl, float_in, ints_attr, need, spatial_rank,
                        window_geometry)


# Winograd pays off once the 16 GEMMs are big enough for BLAS; below this the transforms
# dominate and im2col + one GEMM is as fast.
_WINOGRAD_MIN_CHANNELS = 16
# F(2x2, 3x3) filter transform G (4x3): U = G g G^T.
_WINOGRAD_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def _winograd_f23(x: np.ndarray, w: np.ndarray, b, pb, out) -> np.ndarray:
    """3x3 stride-1 conv as Winograd F(2x2, 3x3): C++ tile transforms around 16 BLAS GEMMs
    (U[xi] (M, C) @ V[xi] (C, tiles)), 2.25x fewer multiplications than im2col + GEMM."""
    n, m = x.shape[0], w.shape[0]
    # U = G g G^T for every (m, c) as two GEMM-backed contractions (not 4096 tiny matmuls).
    t = np.tensordot(w.astype(np.float64), _WINOGRAD_G, axes=([3], [1]))    # (M, C, 3, 4)
    u = np.tensordot(_WINOGRAD_G, t, axes=([1], [2]))                       # (4, M, C, 4)
    u = np.ascontiguousarray(u.transpose(0, 3, 1, 2).reshape(16, m, -1), dtype=x.dtype)
    oh, ow = out
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    y = np.empty((n, m, oh, ow), dtype=x.dtype)
    for i in range(n):
        v = _core.nn_winograd_input(x[i], pb[0], pb[1], th, tw)      # (16, C, tiles)
        y[i] = _core.nn_winograd_output(np.matmul(u, v), th, tw, oh, ow, b)
    return y


def _check_bias(node: Node, b, m: int, dtype) -> np.ndarray | None:
    if b is None or b.size == 0 and m != 0:
        return None
    b = np.asarray(b)
    if b.shape != (m,):
        raise fail(node, f"bias B has shape {b.shape}, expected ({m},)")
    return np.ascontiguousarray(b, dtype=dtype)


def _kernel_shape(node: Node, w: np.ndarray, nd: int):
    ks = node.attr("kernel_shape")
    if ks is not None and [int(k) for k in ks] != list(w.shape[2:]):
        raise fail(node, f"kernel_shape={list(ks)} does not match the weight's spatial shape "
                         f"{list(w.shape[2:])}")
    return list(w.shape[2:])


def _conv_operands(node: Node, x, w):
    """The checks and conversions Conv and ConvTranspose share: (x as float, w contiguous in
    x's dtype, the output dtype, spatial rank, group)."""
    x, w = need(node, x, "X"), need(node, w, "W")
    out_dtype = x.dtype
    nd = spatial_rank(node, x)
    if w.ndim != x.ndim:
        raise fail(node, f"weight W has rank {w.ndim} ({w.shape}) but X has rank {x.ndim} "
                         f"({x.shape})")
    x = float_in(node, x)
    w = np.ascontiguousarray(w, dtype=x.dtype)
    return x, w, out_dtype, nd, int(node.attr("group", 1))


@register("Conv")
def conv(node: Node, x, w, b=None):
    x, w, out_dtype, nd, group = _conv_operands(node, x, w)
    n, c = x.shape[:2]
    m, cg = w.shape[:2]
    if group < 1 or c % group or m % group:
        raise fail(node, f"group={group} must divide input channels {c} and output channels {m}")
    if cg * group != c:
        raise fail(node, f"input channel mismatch: X has {c} channels, W expects "
                         f"{cg} x group {group} = {cg * group}")
    kernel = _kernel_shape(node, w, nd)
    strides = ints_attr(node, "strides", nd, 1)
    dil = ints_attr(node, "dilations", nd, 1)
    out, pb, pe = window_geometry(node, list(x.shape[2:]), kernel, strides, dil)
    b = _check_bias(node, b, m, x.dtype)

    if group == c and cg == 1:
        # Depthwise, also with a channel multiplier: output m reads input channel m // mult,
        # so repeating the input channels makes it a plain depthwise conv.
        xd = x if m == c else np.repeat(x, m // c, axis=1)
        y = _core.nn_conv_depthwise(xd, w, b, strides, dil, pb, out, float_impl())
        return y.astype(out_dtype, copy=False)

    if (nd == 2 and kernel == [3, 3] and strides == [1, 1] and dil == [1, 1] and group == 1
            and min(c, m) >= _WINOGRAD_MIN_CHANNELS):
        return _winograd_f23(x, w, b, pb, out).astype(out_dtype, copy=False)

    mg = m // group
    kvol = int(np.prod(kernel))
    p_out = int(np.prod(out))
    wg = w.reshape(group, mg, cg * kvol)
    if kvol == 1 and not any(pb) and not any(pe):
        # 1x1 unpadded: a strided view of the input is the column matrix already.
        xs = x[(slice(None), slice(None)) +
               tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(out, strides))]
        y = np.matmul(wg, np.ascontiguousarray(xs).reshape(n, group, cg, p_out))  # (N,G,Mg,P)
    else:
        y = np.empty((n, group, mg, p_out), dtype=x.dtype)
        for i in range(n):   # per image: bounds the column buffer to one image
            col = _core.nn_im2col(x[i], kernel, strides, dil, pb, out)
            np.matmul(wg, col.reshape(group, cg * kvol, p_out), out=y[i])
    y = y.reshape((n, m) + tuple(out))
    if b is not None:
        y += b.reshape((1, m) + (1,) * nd)
    return y.astype(out_dtype, copy=False)


def _transpose_geometry(node: Node, in_shape, kernel, strides, dil, out_pad):
    """(output extent, begin pads) of ConvTranspose per the ONNX spec."""
    nd = len(in_shape)
    full = [s * (i - 1) + op + (k - 1) * d + 1
            for s, i, op, k, d in zip(strides, in_shape, out_pad, kernel, dil)]
    ap = node.attr("auto_pad", "NOTSET")
    if ap not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise fail(node, f"auto_pad={ap!r} is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
    out_shape = node.attr("output_shape")
    pads = node.attr("pads")
    if out_shape is not None:
        out_shape = [int(v) for v in out_shape][-nd:]
        if len(out_shape) != nd:
            raise fail(node, f"output_shape={list(node.attr('output_shape'))} needs {nd} "
                             "spatial entries")
    if pads is not None and ap in ("NOTSET", "VALID") or ap == "VALID":
        p = [int(v) for v in pads] if (pads is not None and ap == "NOTSET") else [0] * 2 * nd
        if len(p) != 2 * nd:
            raise fail(node, f"attribute pads={p} must have {2 * nd} entries")
        if out_shape is None:
            out_shape = [f - p[a] - p[nd + a] for a, f in enumerate(full)]
        return out_shape, p[:nd]
    if out_shape is None:
        if ap in ("SAME_UPPER", "SAME_LOWER"):
            out_shape = [i * s for i, s in zip(in_shape, strides)]
        else:
            return full, [0] * nd
    total = [f - o for f, o in zip(full, out_shape)]
    if ap == "SAME_UPPER":
        begin = [t // 2 for t in total]
    else:
        begin = [t - t // 2 for t in total]
    return out_shape, begin


@register("ConvTranspose")
def conv_transpose(node: Node, x, w, b=None):
    x, w, out_dtype, nd, group = _conv_operands(node, x, w)
    n, c = x.shape[:2]
    if w.shape[0] != c:
        raise fail(node, f"input channel mismatch: X has {c} channels, W has {w.shape[0]}")
    if group < 1 or c % group:
        raise fail(node, f"group={group} must divide the input channels {c}")
    mg = w.shape[1]
    m = mg * group
    cg = c // group
    kernel = _kernel_shape(node, w, nd)
    strides = ints_attr(node, "strides", nd, 1)
    dil = ints_attr(node, "dilations", nd, 1)
    out_pad = ints_attr(node, "output_padding", nd, 0)
    in_sp = list(x.shape[2:])
    out, pb = _transpose_geometry(node, in_sp, kernel, strides, dil, out_pad)
    if any(o <= 0 for o in out):
        raise fail(node, f"output spatial shape {out} is empty")
    b = _check_bias(node, b, m, x.dtype)
    kvol = int(np.prod(kernel))
    p_in = int(np.prod(in_sp))
    wt = np.ascontiguousarray(
        w.reshape(group, cg, mg * kvol).transpose(0, 2, 1))          # (G, Mg*K, Cg)
    y = np.empty((n, m) + tuple(out), dtype=x.dtype)
    for i in range(n):
        col = np.matmul(wt, x[i].reshape(group, cg, p_in))          # (G, Mg*K, P_in)
        y[i] = _core.nn_col2im(col.reshape(m * kvol, p_in), m, out, kernel, strides, dil, pb,
                               in_sp)
    if b is not None:
        y += b.reshape((1, m) + (1,) * nd)
    return y.astype(out_dtype, copy=False)
