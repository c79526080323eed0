"""Normalizations outside the nn set: RMSNormalization (opset 23) and
MeanVarianceNormalization.

RMSNormalization: y = x / sqrt(mean(x^2 over axes [axis, rank)) + eps) * scale, computed in
float32 (``stash_type`` 1, the only one ONNX defines) or float64 for float64 inputs.
MeanVarianceNormalization follows its ONNX function body: (x - E[x]) / (sqrt(E[x^2] - E[x]^2)
+ 1e-9) over ``axes`` (default N, H, W).
"""

from __future__ import annotations

import numpy as np

from ..registry import is_registered, register


def rms_normalization(node, x, scale):
    axis = node.attr("axis", -1) % x.ndim
    eps = node.attr("epsilon", 1e-5)
    xf = x.astype(np.float64 if x.dtype == np.float64 else np.float32, copy=False)
    axes = tuple(range(axis, x.ndim))
    ms = np.mean(np.square(xf), axis=axes, keepdims=True)
    y = xf / np.sqrt(ms + np.asarray(eps, xf.dtype)) * scale
    return y.astype(x.dtype, copy=False)


def mean_variance_normalization(node, x):
    axes = tuple(a % x.ndim for a in node.attr("axes", [0, 2, 3]))
    m = np.mean(x, axis=axes, keepdims=True)
    var = np.mean(np.square(x), axis=axes, keepdims=True) - np.square(m)
    return ((x - m) / (np.sqrt(var) + np.asarray(1e-9, x.dtype))).astype(x.dtype, copy=False)


# Registered unless the nn modules (imported before this one) already implement them.
for _op, _fn in (("RMSNormalization", rms_normalization),
                 ("MeanVarianceNormalization", mean_variance_normalization)):
    if not is_registered(_op):
        register(_op)(_fn)
