"""Comparisons, boolean logic, Where, IsNaN/IsInf: bool results, ONNX broadcasting."""

from __future__ import annotations

import numpy as np

from ..registry import register

for _name, _fn in {"Equal": np.equal, "Less": np.less, "Greater": np.greater,
                   "LessOrEqual": np.less_equal, "GreaterOrEqual": np.greater_equal,
                   "And": np.logical_and, "Or": np.logical_or,
                   "Xor": np.logical_xor}.items():
    register(_name)(lambda node, a, b, _fn=_fn: np.asarray(_fn(a, b)))


@register("Not")
def not_(node, x):
    return np.logical_not(x)


@register("Where")
def where(node, c, a, b):
    return np.where(c, a, b).astype(a.dtype, copy=False)


@register("IsNaN")
def is_nan(node, x):
    return np.isnan(x)


@register("IsInf")
def is_inf(node, x):
    pos, neg = node.attr("detect_positive", 1), node.attr("detect_negative", 1)
    return (np.isposinf(x) & bool(pos)) | (np.isneginf(x) & bool(neg))
