"""Pooling: MaxPool (Indices output, storage_order, ceil_mode, dilations, int8/uint8),
AveragePool (count_include_pad, ceil_mode, dilations), LpPool, and the Global* pools.

Windowed pools run the direct N-D C++ kernel (1-D to 3-D); global pools are single numpy
reductions. Version notes: ceil_mode and dilations exist from MaxPool-10 / AveragePool-19
(ceil_mode from 10) / LpPool-18; LpPool-1 had a float ``p``; default p is 2.
"""

from __future__ import annotations

import numpy as np

from ... import _core
from ...errors import UnsupportedOpError
from ..registry import Node, register
from .nn_common import (fail, float_impl, float_in, ints_attr, need, nhwc_view,
                        spatial_rank, window_geometry)


def _pool(node: Node, x, kind: str, want_indices: bool = False):
    x = need(node, x, "X")
    nd = spatial_rank(node, x)
    out_dtype = x.dtype
    if kind == "max" and x.dtype in (np.int8, np.uint8):
        x = np.ascontiguousarray(x)
    else:
        x = float_in(node, x)
    kernel = node.attr("kernel_shape")
    if kernel is None:
        raise fail(node, "attribute kernel_shape is required")
    kernel = ints_attr(node, "kernel_shape", nd, 1)
    if any(k < 1 for k in kernel):
        raise fail(node, f"kernel_shape={kernel} must be >= 1")
    strides = ints_attr(node, "strides", nd, 1)
    dil = ints_attr(node, "dilations", nd, 1)
    ceil_mode = bool(node.attr("ceil_mode", 0))
    out, pb, pe = window_geometry(node, list(x.shape[2:]), kernel, strides, dil, ceil_mode)
    p = 2
    if kind == "lp":
        p_attr = node.attr("p", 2)
        if float(p_attr) != int(p_attr) or int(p_attr) < 1:
            raise UnsupportedOpError(f"{node.where()}: p={p_attr}; fastq supports integer "
                                     "p >= 1")
        p = int(p_attr)
    storage_order = int(node.attr("storage_order", 0))
    if storage_order not in (0, 1):
        raise fail(node, f"storage_order={storage_order} must be 0 or 1")
    res = _core.nn_pool(x, kind, kernel, strides, dil, pb, pe, out,
                        bool(node.attr("count_include_pad", 0)), p, want_indices, storage_order,
                        float_impl())
    if want_indices:
        y, idx = res
        return y.astype(out_dtype, copy=False), idx
    return res.astype(out_dtype, copy=False)


@register("MaxPool")
def max_pool(node: Node, x):
    want = len(node.outputs) > 1 and bool(node.outputs[1])
    return _pool(node, x, "max", want_indices=want)


@register("AveragePool")
def average_pool(node: Node, x):
    return _pool(node, x, "avg")


@register("LpPool")
def lp_pool(node: Node, x):
    return _pool(node, x, "lp")


def _spatial_axes(node: Node, x) -> tuple:
    x = need(node, x, "X")
    if x.ndim < 3:
        raise fail(node, f"input X must be (N, C, spatial...), got shape {x.shape}")
    return tuple(range(2, x.ndim))


@register("GlobalAveragePool")
def global_average_pool(node: Node, x):
    axes = _spatial_axes(node, x)
    buf = nhwc_view(x)
    if buf is not None:
        # channels-last view (an NHWC conv's output): average the (N, H*W, C) rows, a
        # vectorized sum of whole channel rows; accumulated in float64 for long planes
        n, h, w, c = buf.shape
        acc = np.float64 if h * w > 256 else buf.dtype
        y = np.add.reduce(buf.reshape(n, h * w, c), axis=1, dtype=acc)
        y = (y / (h * w)).astype(x.dtype, copy=False)
        return y.reshape(n, c, 1, 1)
    return np.mean(x, axis=axes, keepdims=True, dtype=x.dtype)


@register("GlobalMaxPool")
def global_max_pool(node: Node, x):
    axes = _spatial_axes(node, x)
    return np.max(x, axis=axes, keepdims=True)


@register("GlobalLpPool")
def global_lp_pool(node: Node, x):
    axes = _spatial_axes(node, x)
    p = node.attr("p", 2)
    a = np.abs(x)
    if p == 2:
        return np.sqrt(np.sum(a * a, axis=axes, keepdims=True)).astype(x.dtype, copy=False)
    if p == 1:
        return np.sum(a, axis=axes, keepdims=True).astype(x.dtype, copy=False)
    s = np.sum(np.power(a, p), axis=axes, keepdims=True)
    return np.power(s, 1.0 / p).astype(x.dtype, copy=False)
