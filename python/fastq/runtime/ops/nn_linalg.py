"""Gemm, MatMul (BLAS through numpy matmul), Softmax, LogSoftmax, Hardmax.

Softmax-family versions before 13 coerce the input to 2-D at ``axis`` (default 1) and
normalize each row of the flattened (prod(shape[:axis]), prod(shape[axis:])) matrix; from 13
on they normalize along the single ``axis`` (default -1). A float32 Softmax over the last axis
(after the coercion) runs the C++ row kernel (``_core.nn_softmax_rows``, nn_eltwise.h: max,
exp, sum and divide per row, about 1 ulp); other axes and dtypes run numpy.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from ... import _core
from ..registry import Node, register
from .nn_common import fail, float_impl, need


@register("MatMul")
def matmul(node: Node, a, b):
    a, b = need(node, a, "A"), need(node, b, "B")
    if a.ndim == 0 or b.ndim == 0:
        raise fail(node, f"MatMul needs inputs of rank >= 1, got shapes {a.shape}, {b.shape}")
    ka = a.shape[-1]
    kb = b.shape[-2] if b.ndim >= 2 else b.shape[0]
    if ka != kb:
        raise fail(node, f"inner dimensions differ: A {a.shape} x B {b.shape}")
    try:
        y = np.matmul(a, b)
    except ValueError as e:
        raise fail(node, f"cannot broadcast A {a.shape} with B {b.shape}: {e}") from None
    # numpy's matmul of ml_dtypes floats (bfloat16) returns float32; ONNX keeps T
    return y if y.dtype == a.dtype else y.astype(a.dtype)


@register("Gemm")
def gemm(node: Node, a, b, c=None):
    a, b = need(node, a, "A"), need(node, b, "B")
    if a.ndim != 2 or b.ndim != 2:
        raise fail(node, f"Gemm needs 2-D A and B, got shapes {a.shape}, {b.shape}")
    if node.attr("transA", 0):
        a = a.T
    if node.attr("transB", 0):
        b = b.T
    if a.shape[1] != b.shape[0]:
        raise fail(node, f"inner dimensions differ: A' {a.shape} x B' {b.shape}")
    alpha, beta = node.attr("alpha", 1.0), node.attr("beta", 1.0)
    y = np.matmul(a, b)
    if y.dtype != a.dtype:  # ml_dtypes floats: numpy computes in float32; ONNX keeps T
        y = y.astype(a.dtype)
    if alpha != 1.0:
        y *= np.asarray(alpha, dtype=y.dtype)
    if c is not None and c.size and beta != 0.0:
        c = np.asarray(c)
        try:
            fits = np.broadcast_shapes(c.shape, y.shape) == y.shape
        except ValueError:
            fits = False
        if not fits:   # unidirectional: C broadcasts to Y, never Y to C
            raise fail(node, f"C {c.shape} does not broadcast to the output {y.shape}")
        y = y + (c if beta == 1.0 else c * np.asarray(beta, dtype=c.dtype)).astype(
            y.dtype, copy=False)
    return y


def _axis_view(node: Node, x: np.ndarray):
    """(view, axis) to normalize along: the 2-D coercion before opset 13, else x itself."""
    r = x.ndim
    if node.version < 13:
        axis = int(node.attr("axis", 1))
        if not -r <= axis <= r:
            raise fail(node, f"axis={axis} is out of range for rank {r}")
        axis %= r if r else 1
        rows = int(np.prod(x.shape[:axis]))
        return x.reshape(rows, -1), 1
    axis = int(node.attr("axis", -1))
    if not -r <= axis < r:
        raise fail(node, f"axis={axis} is out of range for rank {r}")
    return x, axis % r


def _float(node: Node, x) -> np.ndarray:
    """numpy floats, and ml_dtypes floats (bfloat16, float8) whose ufuncs numpy runs as the
    ONNX reference does."""
    x = need(node, x, "input")
    if not (np.issubdtype(x.dtype, np.floating) or _is_ml_float(x.dtype)):
        raise fail(node, f"input has dtype {x.dtype}; a float tensor is required")
    return x


def _is_ml_float(dt: np.dtype) -> bool:
    try:
        ml_dtypes.finfo(dt)
    except (TypeError, ValueError):
        return False
    return True


@register("Softmax")
def softmax(node: Node, x):
    x = _float(node, x)
    v, axis = _axis_view(node, x)
    if x.dtype == np.float32 and axis == v.ndim - 1 and v.size:
        # float32 over the last axis (attention's case): one C++ pass per row (nn_eltwise.h)
        rows = np.ascontiguousarray(v).reshape(-1, v.shape[-1])
        return _core.nn_softmax_rows(rows, float_impl()).reshape(x.shape)
    e = np.exp(v - v.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e.reshape(x.shape)


@register("LogSoftmax")
def log_softmax(node: Node, x):
    x = _float(node, x)
    v, axis = _axis_view(node, x)
    d = v - v.max(axis=axis, keepdims=True)
    y = d - np.log(np.exp(d).sum(axis=axis, keepdims=True))
    return y.reshape(x.shape)


@register("Hardmax")
def hardmax(node: Node, x):
    x = _float(node, x)
    v, axis = _axis_view(node, x)
    am = np.expand_dims(np.argmax(v, axis=axis), axis)   # first maximum wins
    y = np.zeros_like(v)
    np.put_along_axis(y, am, 1, axis=axis)
    return y.reshape(x.shape)
