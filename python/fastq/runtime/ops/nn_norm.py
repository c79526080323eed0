"""Normalizations, vectorized numpy: BatchNormalization (inference; training_mode outputs
at opset 14+, and the pre-9 ``spatial=0`` per-activation form), InstanceNormalization,
LayerNormalization (with Mean / InvStdDev outputs), GroupNormalization (18: per-group
scale/bias, 21: per-channel) and LRN.

Statistics are computed in the input's float dtype (float32 for float32, as ONNX Runtime's
stash_type 1 does; float64 stays float64). Ops with optional extra outputs return as many
values as the node declares outputs. A float32 LayerNormalization over the last axis (the
transformer case) runs the C++ row kernel (``_core.nn_layernorm_rows``, nn_eltwise.h).
"""

from __future__ import annotations

import numpy as np

from ... import _core
from ..registry import Node, register
from .nn_common import channel_axis_shape, fail, float_impl, need


def _floatish(node: Node, x: np.ndarray, what: str = "X") -> np.ndarray:
    if not np.issubdtype(x.dtype, np.floating):
        raise fail(node, f"input {what} has dtype {x.dtype}; a float tensor is required")
    return x


def _per_channel(node: Node, v, c: int, ndim: int, what: str, dtype) -> np.ndarray:
    v = np.asarray(need(node, v, what))
    if v.size != c:
        raise fail(node, f"input {what} has shape {v.shape}, expected ({c},) for {c} channels")
    return v.reshape(channel_axis_shape(ndim, c)).astype(dtype, copy=False)


@register("BatchNormalization")
def batch_normalization(node: Node, x, scale, b, mean, var):
    x = _floatish(node, need(node, x, "X"))
    if x.ndim < 2:
        raise fail(node, f"input X must be (N, C, ...), got shape {x.shape}")
    eps = np.asarray(node.attr("epsilon", 1e-5), dtype=x.dtype)
    c = x.shape[1]
    training = node.version >= 14 and bool(node.attr("training_mode", 0))
    if node.version < 9 and not node.attr("spatial", 1):
        # Per-activation statistics: scale/B/mean/var are shaped like one sample.
        shp = (1,) + x.shape[1:]
        args = []
        for v, what in ((scale, "scale"), (b, "B"), (mean, "mean"), (var, "var")):
            v = np.asarray(need(node, v, what))
            if v.size != int(np.prod(shp)):
                raise fail(node, f"input {what} has shape {v.shape}; spatial=0 needs "
                                 f"{x.shape[1:]}")
            args.append(v.reshape(shp).astype(x.dtype, copy=False))
        s_, b_, m_, v_ = args
        return ((x - m_) / np.sqrt(v_ + eps) * s_ + b_).astype(x.dtype, copy=False)
    s_ = _per_channel(node, scale, c, x.ndim, "scale", x.dtype)
    b_ = _per_channel(node, b, c, x.ndim, "B", x.dtype)
    m_ = _per_channel(node, mean, c, x.ndim, "input_mean", x.dtype)
    v_ = _per_channel(node, var, c, x.ndim, "input_var", x.dtype)
    if not training:
        a = s_ / np.sqrt(v_ + eps)       # fold to one multiply-add per element
        y = x * a + (b_ - m_ * a)
        return y.astype(x.dtype, copy=False)
    axes = (0,) + tuple(range(2, x.ndim))
    bm = x.mean(axis=axes, keepdims=True)
    bv = x.var(axis=axes, keepdims=True)
    y = (x - bm) / np.sqrt(bv + eps) * s_ + b_
    mom = np.asarray(node.attr("momentum", 0.9), dtype=x.dtype)
    run_mean = (m_ * mom + bm * (1 - mom)).reshape(c)
    run_var = (v_ * mom + bv * (1 - mom)).reshape(c)
    outs = (y.astype(x.dtype, copy=False), run_mean.astype(x.dtype, copy=False),
            run_var.astype(x.dtype, copy=False))
    return outs[:max(1, len(node.outputs))]


def _standardize(x: np.ndarray, axes: tuple, eps: float):
    """(x - mean) * inv_std over axes, plus mean and inv_std (keepdims)."""
    mean = x.mean(axis=axes, keepdims=True)
    d = x - mean
    var = np.mean(d * d, axis=axes, keepdims=True)
    inv = 1.0 / np.sqrt(var + np.asarray(eps, dtype=x.dtype))
    return d * inv, mean, inv


@register("InstanceNormalization")
def instance_normalization(node: Node, x, scale, b):
    x = _floatish(node, need(node, x, "X"))
    if x.ndim < 3:
        raise fail(node, f"input X must be (N, C, spatial...), got shape {x.shape}")
    c = x.shape[1]
    s_ = _per_channel(node, scale, c, x.ndim, "scale", x.dtype)
    b_ = _per_channel(node, b, c, x.ndim, "B", x.dtype)
    z, _, _ = _standardize(x, tuple(range(2, x.ndim)), node.attr("epsilon", 1e-5))
    return (z * s_ + b_).astype(x.dtype, copy=False)


@register("LayerNormalization")
def layer_normalization(node: Node, x, scale, b=None):
    x = _floatish(node, need(node, x, "X"))
    scale = need(node, scale, "Scale")
    r = x.ndim
    axis = int(node.attr("axis", -1))
    if not -r <= axis < r:
        raise fail(node, f"axis={axis} is out of range for rank {r}")
    axis %= r
    norm_shape = x.shape[axis:]
    for v, what in ((scale, "Scale"), (b, "B")):
        if v is not None and v.size and v.shape != norm_shape[len(norm_shape) - v.ndim:]:
            raise fail(node, f"input {what} has shape {v.shape}; it must broadcast to the "
                             f"normalized shape {norm_shape}")
    n_out = max(1, len(node.outputs))
    if x.dtype == np.float32 and axis == r - 1 and x.size:
        # float32 over the last axis (transformers' case): one C++ pass per row
        L = x.shape[-1]
        s32 = np.ascontiguousarray(np.broadcast_to(np.asarray(scale, np.float32), (L,)))
        b32 = None if b is None or not b.size else \
            np.ascontiguousarray(np.broadcast_to(np.asarray(b, np.float32), (L,)))
        y, mean, inv = _core.nn_layernorm_rows(np.ascontiguousarray(x).reshape(-1, L), s32,
                                               b32, float(node.attr("epsilon", 1e-5)),
                                               float_impl())
        stat = x.shape[:-1] + (1,)
        return (y.reshape(x.shape), mean.reshape(stat), inv.reshape(stat))[:n_out]
    z, mean, inv = _standardize(x, tuple(range(axis, r)), node.attr("epsilon", 1e-5))
    y = z * scale.astype(x.dtype, copy=False)
    if b is not None and b.size:
        y = y + b.astype(x.dtype, copy=False)
    return (y.astype(x.dtype, copy=False), mean, inv)[:n_out]


@register("GroupNormalization")
def group_normalization(node: Node, x, scale, b):
    x = _floatish(node, need(node, x, "X"))
    if x.ndim < 2:
        raise fail(node, f"input X must be (N, C, ...), got shape {x.shape}")
    g = int(node.attr("num_groups", 0))
    n, c = x.shape[:2]
    if g < 1 or c % g:
        raise fail(node, f"num_groups={g} must divide the {c} channels")
    xg = x.reshape((n, g, -1))
    z, _, _ = _standardize(xg, (2,), node.attr("epsilon", 1e-5))
    z = z.reshape(x.shape)
    if node.version < 21:   # GroupNormalization-18: scale and bias per group
        s_ = np.repeat(np.asarray(need(node, scale, "scale")).ravel(), c // g)
        b_ = np.repeat(np.asarray(need(node, b, "bias")).ravel(), c // g)
        if s_.size != c or b_.size != c:
            raise fail(node, f"scale/bias must have num_groups={g} values at opset 18")
    else:
        s_, b_ = np.asarray(need(node, scale, "scale")), np.asarray(need(node, b, "bias"))
        if s_.size != c or b_.size != c:
            raise fail(node, f"scale/bias must have {c} values (one per channel)")
    shp = channel_axis_shape(x.ndim, c)
    return (z * s_.reshape(shp).astype(x.dtype) + b_.reshape(shp).astype(x.dtype)).astype(
        x.dtype, copy=False)


@register("LRN")
def lrn(node: Node, x):
    x = _floatish(node, need(node, x, "X"))
    if x.ndim < 3:
        raise fail(node, f"input X must be (N, C, spatial...), got shape {x.shape}")
    size = int(node.attr("size", 0))
    if size < 1:
        raise fail(node, "attribute size is required and must be >= 1")
    alpha = node.attr("alpha", 1e-4)
    beta = node.attr("beta", 0.75)
    bias = node.attr("bias", 1.0)
    c = x.shape[1]
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2   # channels before / after c
    sq = np.pad(x * x, [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2))
    acc = np.zeros_like(x)
    for i in range(size):                 # `size` shifted slices, each a whole-tensor add
        acc += sq[:, i:i + c]
    y = x / np.power(bias + (alpha / size) * acc, beta)
    return y.astype(x.dtype, copy=False)
