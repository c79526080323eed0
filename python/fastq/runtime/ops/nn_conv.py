"""Conv and ConvTranspose (float), every attribute: auto_pad, pads, strides, dilations,
group (incl. depthwise), kernel_shape, output_padding/output_shape; 1-D, 2-D and 3-D.

Paths, chosen per node: depthwise (group == C, any channel multiplier) runs the direct C++
kernel (the tap count is far too small a reduction for GEMM) with the bias and a fused
Relu/Clip applied as it stores each output; unpadded 1x1 conv is a plain
BLAS matmul on the (strided) input; 3x3 stride-1 undilated 2-D conv with >= 16 channels
(group 1) and >= 32 output tiles is Winograd F(2x2, 3x3); everything else is C++ im2col + one
batched BLAS matmul over the groups; there bias and a fused Relu/Clip are one C++ epilogue pass.
With constant weights (the prepare hook) the weight layouts (BatchNormalization folded,
Winograd filter transform) are built once per session and the geometry once per input shape.
ConvTranspose is the adjoint: BLAS matmul to columns, then C++ col2im.

Channels-last: a float32 2-D depthwise (multiplier 1), 1x1 or other group-1 non-Winograd conv
also has an NHWC path (``_core.nn_depthwise_nhwc`` / ``nn_conv1x1_nhwc`` / ``nn_conv_nhwc``,
bias and clamp in the store, weights packed once). It runs when the input is an NHWC-backed
view (``nhwc_view``) or the node carries ``nhwc_out`` (float_fusion.py sets it when every
consumer is known to take strided views); with ``nhwc_out`` the result is returned as the
NCHW-shaped view ``y_nhwc.transpose(0, 3, 1, 2)``, otherwise as a contiguous NCHW array.
"""

from __future__ import annotations

import numpy as np

from ... import _core
from ...stats._tensor import resolve_impl
from ..registry import ChannelSums, Node, register
from .nn_common import (fail, float_impl, float_in, ints_attr, need, nhwc_impls,
                        nhwc_view, spatial_rank, window_geometry)


# Winograd pays off once the 16 GEMMs are big enough for BLAS; below this the transforms
# dominate and im2col + one GEMM is as fast.
_WINOGRAD_MIN_CHANNELS = 16
# ... and enough 2x2 output tiles: on 7x7 maps (16 tiles) the 16 thin GEMMs run at a third of
# BLAS speed and im2col + one GEMM was measured 2.5x faster (512 channels).
_WINOGRAD_MIN_TILES = 32
# F(2x2, 3x3) filter transform G (4x3): U = G g G^T.
_WINOGRAD_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def winograd_filter(w: np.ndarray) -> np.ndarray:
    """U = G g G^T for every (m, c), as (16, M, C) in w's dtype: computed once per session for
    a constant weight (two GEMM-backed contractions, in float64)."""
    m = w.shape[0]
    t = np.tensordot(w.astype(np.float64), _WINOGRAD_G, axes=([3], [1]))    # (M, C, 3, 4)
    u = np.tensordot(_WINOGRAD_G, t, axes=([1], [2]))                       # (4, M, C, 4)
    return np.ascontiguousarray(u.transpose(0, 3, 1, 2).reshape(16, m, -1), dtype=w.dtype)


def _winograd_f23(x: np.ndarray, u: np.ndarray, b, pb, out) -> np.ndarray:
    """3x3 stride-1 conv as Winograd F(2x2, 3x3): C++ tile transforms around 16 BLAS GEMMs
    (U[xi] (M, C) @ V[xi] (C, tiles)), 2.25x fewer multiplications than im2col + GEMM."""
    n, m = x.shape[0], u.shape[1]
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


def _conv_operands(node: Node, x, w, convert: bool = True):
    """The checks and conversions Conv and ConvTranspose share: (x as float, w contiguous in
    x's dtype, the output dtype, spatial rank, group). ``convert=False`` (a plan that only
    reads x's shape and dtype) returns a zero-strided array of x's shape and compute dtype
    instead of a contiguous copy of x."""
    x, w = need(node, x, "X"), need(node, w, "W")
    out_dtype = x.dtype
    nd = spatial_rank(node, x)
    if w.ndim != x.ndim:
        raise fail(node, f"weight W has rank {w.ndim} ({w.shape}) but X has rank {x.ndim} "
                         f"({x.shape})")
    if convert:
        x = float_in(node, x)
    else:   # the compute dtype (and its errors) on one element; a zero-strided stand-in
        x = np.broadcast_to(float_in(node, np.zeros(1, x.dtype)), x.shape)
    w = np.ascontiguousarray(w, dtype=x.dtype)
    return x, w, out_dtype, nd, int(node.attr("group", 1))


def activation_bounds(node: Node):
    """(lo, hi) clamp of a fused activation (the fastq FusedConv op), or None."""
    act = node.attr("activation")
    if act is None:
        return None
    return float(node.attr("act_min", -np.inf)), float(node.attr("act_max", np.inf))


class _ConvPlan:
    """Everything a Conv needs besides X, for one input shape: the checked geometry, the chosen
    path and the weight in that path's layout (Winograd U, grouped GEMM matrix)."""
    __slots__ = ("path", "out_dtype", "n", "m", "c", "group", "strides", "dil", "kernel",
                 "out", "pb", "pe", "b", "wmat", "nd", "act", "mult", "cg", "p_out", "w2d",
                 "strided", "nhwc", "nhwc_out", "wcache", "wfull", "nhwc_fns", "sums")

    def __init__(self, node: Node, x: np.ndarray, w: np.ndarray, b, wcache: dict):
        x, w, self.out_dtype, nd, group = _conv_operands(node, x, w, convert=False)
        n, c = x.shape[:2]
        m, cg = w.shape[:2]
        if group < 1 or c % group or m % group:
            raise fail(node, f"group={group} must divide input channels {c} and output "
                             f"channels {m}")
        if cg * group != c:
            raise fail(node, f"input channel mismatch: X has {c} channels, W expects "
                             f"{cg} x group {group} = {cg * group}")
        kernel = _kernel_shape(node, w, nd)
        strides = ints_attr(node, "strides", nd, 1)
        dil = ints_attr(node, "dilations", nd, 1)
        out, pb, pe = window_geometry(node, list(x.shape[2:]), kernel, strides, dil)
        self.b = _check_bias(node, b, m, x.dtype)
        self.n, self.m, self.c, self.group, self.nd = n, m, c, group, nd
        self.kernel, self.strides, self.dil, self.out, self.pb, self.pe = (
            kernel, strides, dil, out, pb, pe)
        self.act = activation_bounds(node)
        # sums_out: the kernels store the pre-activation values, which are summed per channel
        # before the clamp runs in place (_with_sums)
        self.sums = self.act if node.attr("sums_out", 0) and self.act is not None else None
        if self.sums is not None:
            self.act = None
        self.mult = 1
        key = (x.dtype.str,)
        if group == c and cg == 1:
            # Depthwise, also with a channel multiplier: output m reads input channel
            # m // mult, so repeating the input channels makes it a plain depthwise conv.
            self.path, self.wmat, self.mult = "dw", w, m // c
        elif (nd == 2 and kernel == [3, 3] and strides == [1, 1] and dil == [1, 1]
              and group == 1 and min(c, m) >= _WINOGRAD_MIN_CHANNELS
              and ((out[0] + 1) // 2) * ((out[1] + 1) // 2) >= _WINOGRAD_MIN_TILES):
            self.path = "winograd"
            if ("wino",) + key not in wcache:
                wcache[("wino",) + key] = winograd_filter(w)
            self.wmat = wcache[("wino",) + key]
        else:
            kvol = int(np.prod(kernel))
            self.wmat = w.reshape(group, m // group, cg * kvol)
            self.path = "1x1" if kvol == 1 and not any(pb) and not any(pe) else "im2col"
        self.cg, self.p_out = cg, int(np.prod(out))
        # one plain 2-D GEMM when there is one group (numpy's broadcasting matmul costs more)
        self.w2d = self.wmat[0] if self.path in ("1x1", "im2col") and group == 1 else None
        self.strided = any(s_ != 1 for s_ in strides)
        # the channels-last kind of this conv, if it has one (float32, 2-D)
        self.nhwc = None
        if x.dtype == np.float32 and nd == 2:
            if self.path == "dw" and self.mult == 1 and max(kernel) <= 64:   # kernel's limit
                self.nhwc = "dw"
            elif self.path in ("1x1", "im2col") and group == 1:
                self.nhwc = self.path
        self.nhwc_out = bool(node.attr("nhwc_out", 0))
        self.wcache, self.wfull, self.nhwc_fns = wcache, w, {}

    def _nhwc_weights(self, impl: str):
        """The NHWC path's weight layout, built once per session (and impl): depthwise
        (KH, KW, C); GEMM panels of W as (KH*KW*C, M) with the bias row (nn_nhwc_pack)."""
        key = ("nhwc", impl) if self.nhwc != "dw" else ("nhwc_dw",)
        got = self.wcache.get(key)
        if got is None:
            w = self.wfull
            if self.nhwc == "dw":
                got = np.ascontiguousarray(w[:, 0].transpose(1, 2, 0))
            else:
                got = _core.nn_nhwc_pack(np.ascontiguousarray(
                    w.transpose(2, 3, 1, 0).reshape(-1, self.m)), self.b, impl)
            self.wcache[key] = got
        return got

    def _nhwc_fn(self, impls: tuple):
        """fn(x, buf) -> y for the channels-last path in impls (nhwc_impls()), everything but
        the input bound (a run pays one call): buf is x's NHWC buffer, or None when x is
        NCHW. The depthwise conv takes the wide impl only for whole 16-channel vectors (its
        channel tail is scalar)."""
        impl = impls[1] if self.nhwc == "dw" and self.c % 16 == 0 else impls[0]
        wts = self._nhwc_weights(impl)
        lo, hi = self.act if self.act is not None else (-np.inf, np.inf)
        m, st, dl, pb, out, keep = (self.m, list(self.strides), list(self.dil), list(self.pb),
                                    list(self.out), self.nhwc_out)
        kind, b, k = self.nhwc, self.b, list(self.kernel)
        conv, conv1, dw = _core.nn_conv_nhwc, _core.nn_conv1x1_nhwc, _core.nn_depthwise_nhwc

        def fn(x, buf):
            if kind == "im2col":   # reads an NCHW input (the model input) directly
                y = (conv(buf, "nhwc", wts, m, k, st, dl, pb, out, lo, hi, impl) if buf is not None
                     else conv(np.ascontiguousarray(x), "nchw", wts, m, k, st, dl, pb, out, lo,
                               hi, impl))
            else:
                if buf is None:
                    buf = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
                y = (dw(buf, wts, b, st, dl, pb, out, lo, hi, impl) if kind == "dw"
                     else conv1(buf, wts, m, st, out, lo, hi, impl))
            y = y.transpose(0, 3, 1, 2)
            return y if keep else np.ascontiguousarray(y)
        self.nhwc_fns[impls] = fn
        return fn

    def run(self, x: np.ndarray):
        if self.sums is None:
            return self._run(x)
        return self._with_sums(self._run(x))

    def _with_sums(self, y: np.ndarray) -> tuple:
        """(clamped y, ChannelSums of y before the clamp): the per-channel sums in stats_sum's
        order over the buffer as stored (NHWC: [N*H*W, C, 1]; NCHW: [N, C, H*W]), as
        fastq.stats.MeanCollector(channel_axis=1) sums that buffer, then the activation clamp
        in place over the same buffer."""
        buf = nhwc_view(y)
        if buf is None:
            y = buf = np.ascontiguousarray(y)
            x3 = buf.reshape(buf.shape[0], buf.shape[1], -1)
        else:
            x3 = buf.reshape(-1, buf.shape[3], 1)
        if x3.dtype != np.float32:
            x3 = x3.astype(np.float32)
        count = x3.shape[0] * x3.shape[2]
        sums, nf = (np.zeros(x3.shape[1]), False) if count == 0 else \
            _core.stats_sum(x3, resolve_impl("auto"))
        tap = ChannelSums(sums, count, tuple(y.shape), bool(nf),
                          np.array(y, np.float32) if nf else None)
        _core.nn_bias_act(buf, None, self.sums[0], self.sums[1], float_impl())
        return y, tap

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self.nhwc is not None and x.dtype == np.float32:
            buf = nhwc_view(x)
            # a stack of images takes the channels-last GEMM in one call, not im2col + one
            # BLAS call per image
            if buf is not None or self.nhwc_out or (self.nhwc == "im2col" and x.shape[0] > 1):
                impls = nhwc_impls()
                fn = self.nhwc_fns.get(impls)
                return (fn or self._nhwc_fn(impls))(x, buf)
        n, m, group, out = x.shape[0], self.m, self.group, self.out
        if x.dtype != self.wmat.dtype or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=self.wmat.dtype)
        impl = float_impl()
        if self.path == "dw":
            xd = x if self.mult == 1 else np.repeat(x, self.mult, axis=1)
            lo, hi = self.act if self.act is not None else (-np.inf, np.inf)
            y = _core.nn_conv_depthwise(xd, self.wmat, self.b, self.strides, self.dil, self.pb,
                                        out, impl, lo, hi)   # bias + Relu/Clip in its store
        elif self.path == "winograd":
            y = _winograd_f23(x, self.wmat, self.b, self.pb, out)
            _activate(y, None, self.act, impl)
        else:
            wg, cg, p_out = self.wmat, self.cg, self.p_out
            if self.path == "1x1":
                # 1x1 unpadded: a strided view of the input is the column matrix already.
                if self.strided:
                    x = np.ascontiguousarray(x[(slice(None), slice(None)) + tuple(
                        slice(0, (o - 1) * s + 1, s) for o, s in zip(out, self.strides))])
                if self.w2d is not None and n == 1:
                    y = np.matmul(self.w2d, x.reshape(cg, p_out))
                else:
                    y = np.matmul(wg, x.reshape(n, group, cg, p_out))     # (N, G, Mg, P)
            else:
                y = np.empty((n, group, m // group, p_out), dtype=x.dtype)
                for i in range(n):   # per image: bounds the column buffer to one image
                    col = _core.nn_im2col(x[i], self.kernel, self.strides, self.dil, self.pb,
                                          out)
                    if self.w2d is not None:
                        np.matmul(self.w2d, col, out=y[i, 0])
                    else:
                        np.matmul(wg, col.reshape(group, wg.shape[2], p_out), out=y[i])
            y = y.reshape((n, m) + tuple(out))
            _activate(y, self.b, self.act, impl)
        return y.astype(self.out_dtype, copy=False)


def _activate(y: np.ndarray, b, act, impl: str) -> None:
    """In place, one C++ pass: y += b (per channel, axis 1), then clamp to the fused
    activation's range."""
    if b is None and act is None:
        return
    lo, hi = act if act is not None else (-np.inf, np.inf)
    _core.nn_bias_act(y, b, lo, hi, impl)


def fold_batchnorm(node: Node, w, b, bn) -> tuple:
    """(W', B') of this conv followed by inference BatchNormalization(scale, beta, mean, var)
    with epsilon ``bn_epsilon``: W' = W * s, B' = (B - mean) * s + beta, s = scale /
    sqrt(var + eps), computed in float64 and stored in W's float dtype."""
    w = need(node, w, "W")
    m = w.shape[0]
    params = []
    for v, what in zip(bn, ("scale", "B", "input_mean", "input_var")):
        v = need(node, v, f"BatchNormalization {what}")
        if v.size != m:
            raise fail(node, f"folded BatchNormalization {what} has shape {v.shape}, "
                             f"expected ({m},)")
        params.append(v.reshape(m).astype(np.float64))
    scale, beta, mean, var = params
    b64 = np.zeros(m) if b is None or b.size == 0 else np.asarray(b, np.float64).reshape(-1)
    if b64.size != m:
        raise fail(node, f"bias B has shape {np.shape(b)}, expected ({m},)")
    sc = scale / np.sqrt(var + float(node.attr("bn_epsilon", 1e-5)))
    dt = w.dtype if w.dtype in (np.float32, np.float64) else np.dtype(np.float32)
    w2 = (w.astype(np.float64) * sc.reshape((m,) + (1,) * (w.ndim - 1))).astype(dt)
    return w2, ((b64 - mean) * sc + beta).astype(dt)


def conv(node: Node, x, w, b=None, *bn):
    """Conv; as fastq FusedConv also with a folded BatchNormalization (inputs 3..6) and an
    activation clamp."""
    if bn:
        w, b = fold_batchnorm(node, w, b, bn)
    return _ConvPlan(node, x, w, b, {}).run(x)


def _prep_conv(node: Node, consts, ctx):
    """Constant W (and B, BatchNormalization parameters): the weight layouts are built once
    and the checked geometry is cached per input shape, so a run only executes the chosen
    path."""
    w = consts[1] if len(consts) > 1 else None
    if w is None or any(consts[k] is None for k in range(2, len(consts))
                        if node.inputs[k]):
        return None
    b = consts[2] if len(consts) > 2 else None
    if len(consts) > 3:
        w, b = fold_batchnorm(node, w, b, consts[3:])
    wcache: dict = {}
    plans: dict = {}
    # (shape, plan) of the last float32 call, one tuple so concurrent runs read a matching pair
    last: list = [None]

    def kernel(x, *_):
        lp = last[0]
        if lp is not None and type(x) is np.ndarray and x.shape == lp[0] \
                and x.dtype == np.float32:
            return lp[1].run(x)
        key = (x.shape, x.dtype.str) if isinstance(x, np.ndarray) else None
        plan = plans.get(key) if key is not None else None
        if plan is None:
            plan = _ConvPlan(node, x, w, b, wcache)
            if key is not None:
                if len(plans) >= 16:
                    plans.clear()
                plans[key] = plan
        if key is not None and x.dtype == np.float32:
            last[0] = (x.shape, plan)
        return plan.run(x)
    kernel.runtime_inputs = 1   # W, B and the BN parameters live in the closure
    return kernel


register("Conv", prepare=_prep_conv)(conv)
# Conv with an optional BatchNormalization folded into W/B (inputs 3..6, attr bn_epsilon) and
# an optional Relu/Clip epilogue (attrs activation, act_min, act_max): float_fusion.py.
register("FusedConv", domain="fastq", prepare=_prep_conv)(conv)


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
