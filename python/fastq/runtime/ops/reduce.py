"""Reductions: ReduceSum/Mean/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare.

Axes come from the ``axes`` attribute, or from the second input from opset 13 (ReduceSum) or
18 (the others); with no axes every axis is reduced unless ``noop_with_empty_axes``. Empty
reductions give the identity (0, 1, -inf/+inf), as ONNX's reference does. Results keep the
input dtype.
"""

from __future__ import annotations

import numpy as np

from ..registry import register

_AXES_INPUT_SINCE = {"ReduceSum": 13}


def _axes(node, x, axes_in):
    if node.version >= _AXES_INPUT_SINCE.get(node.op_type, 18):
        axes = None if axes_in is None else [int(a) for a in np.asarray(axes_in).reshape(-1)]
    else:
        axes = node.attr("axes")
    if not axes:
        if node.attr("noop_with_empty_axes", 0):
            return None
        return tuple(range(x.ndim))
    return tuple(sorted(a % x.ndim for a in axes))


def _lowest(dt):
    if dt.kind in "iu":
        return np.iinfo(dt).min
    return False if dt.kind == "b" else -np.inf  # floats, ml_dtypes floats


def _highest(dt):
    if dt.kind in "iu":
        return np.iinfo(dt).max
    return True if dt.kind == "b" else np.inf


def _reducer(fn):
    def op(node, x, axes=None):
        ax = _axes(node, x, axes)
        if ax is None:
            return fn(x, None, True, noop=True)
        keep = bool(node.attr("keepdims", 1))
        return np.asarray(fn(x, ax, keep, noop=False)).astype(x.dtype, copy=False)
    return op


def _sum(x, ax, keep, noop):
    return x if noop else np.sum(x, axis=ax, keepdims=keep)


def _mean(x, ax, keep, noop):
    return x if noop else np.mean(x, axis=ax, keepdims=keep)


def _max(x, ax, keep, noop):
    return x if noop else np.max(x, axis=ax, keepdims=keep, initial=_lowest(x.dtype))


def _min(x, ax, keep, noop):
    return x if noop else np.min(x, axis=ax, keepdims=keep, initial=_highest(x.dtype))


def _prod(x, ax, keep, noop):
    return x if noop else np.prod(x, axis=ax, keepdims=keep)


def _l1(x, ax, keep, noop):
    return np.abs(x) if noop else np.sum(np.abs(x), axis=ax, keepdims=keep)


def _l2(x, ax, keep, noop):
    if noop:
        return np.abs(x)
    return np.sqrt(np.sum(np.square(x.astype(np.float64) if x.dtype.kind in "iu" else x),
                          axis=ax, keepdims=keep))


def _sumsq(x, ax, keep, noop):
    return np.square(x) if noop else np.sum(np.square(x), axis=ax, keepdims=keep)


def _logsum(x, ax, keep, noop):
    return np.log(x) if noop else np.log(np.sum(x, axis=ax, keepdims=keep))


def _logsumexp(x, ax, keep, noop):
    if noop:
        return x
    if x.size == 0:
        return np.log(np.sum(np.exp(x), axis=ax, keepdims=keep))
    m = np.max(x, axis=ax, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    s = np.log(np.sum(np.exp(x - m), axis=ax, keepdims=True)) + m
    return s if keep else np.squeeze(s, axis=ax)


for _name, _fn in {"ReduceSum": _sum, "ReduceMean": _mean, "ReduceMax": _max,
                   "ReduceMin": _min, "ReduceProd": _prod, "ReduceL1": _l1, "ReduceL2": _l2,
                   "ReduceSumSquare": _sumsq, "ReduceLogSum": _logsum,
                   "ReduceLogSumExp": _logsumexp}.items():
    register(_name)(_reducer(_fn))
