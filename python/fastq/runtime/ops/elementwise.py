"""Elementwise math and activations: numpy ufuncs, dtype-preserving, ONNX broadcasting.

Each op computes in the input's dtype (float32 stays float32; numpy's weak Python scalars keep
it so). Integer Div truncates toward zero and integer Mod follows ``fmod``, as ONNX specifies.
Clip reads min/max from attributes before opset 11 and from inputs after.
"""

from __future__ import annotations

import math

import numpy as np

from ... import _core
from ..registry import register

try:  # scipy's erf is vectorised C; the fallback is exact but slower
    from scipy.special import erf as _erf_other
except ImportError:  # pragma: no cover - scipy is present where the tests run
    _erf_vec = np.vectorize(math.erf, otypes=[np.float64])

    def _erf_other(x):
        return _erf_vec(x)


def _erf(x):
    """float32: the C++ kernel (rational approximation, <= 4.5e-7 relative error, SIMD); other
    dtypes: scipy (float64 accuracy)."""
    if isinstance(x, np.ndarray) and x.dtype == np.float32:
        from .nn_common import float_impl
        return _core.nn_erf(np.ascontiguousarray(x), float_impl())
    return _erf_other(x)


def _same(fn):
    """Wrap a float ufunc so the result keeps the input dtype."""
    def op(node, x):
        y = fn(x)
        if type(y) is np.ndarray and y.dtype == x.dtype:
            return y   # the common case (what the generic line below returns, minus 2 calls)
        return np.asarray(y).astype(x.dtype, copy=False)
    return op


_UNARY = {
    "Abs": np.abs, "Neg": np.negative, "Floor": np.floor, "Ceil": np.ceil,
    "Round": np.round,  # half to even, as ONNX
    "Sqrt": np.sqrt, "Exp": np.exp, "Log": np.log, "Sin": np.sin, "Cos": np.cos,
    "Tan": np.tan, "Asin": np.arcsin, "Acos": np.arccos, "Atan": np.arctan, "Sinh": np.sinh,
    "Cosh": np.cosh, "Asinh": np.arcsinh, "Acosh": np.arccosh, "Atanh": np.arctanh,
    "Tanh": np.tanh, "Sign": np.sign, "Erf": _erf,
}
for _name, _fn in _UNARY.items():
    register(_name)(_same(_fn))


@register("Reciprocal")
def reciprocal(node, x):
    return (1 / x).astype(x.dtype, copy=False)


@register("Relu")
def relu(node, x):
    return np.maximum(x, 0).astype(x.dtype, copy=False)


@register("Sigmoid")
def sigmoid(node, x):
    return _sigmoid(x)


def _sigmoid(x):
    # 1/(1+exp(-x)) is exact in the limits (exp overflow gives 0, not NaN).
    if type(x) is np.ndarray and x.dtype.kind == "f" and x.ndim:
        t = np.negative(x)          # the same operations in place: one buffer, not four
        np.exp(t, out=t)
        np.add(t, 1, out=t)
        return np.divide(1, t, out=t)
    return (1 / (1 + np.exp(-x))).astype(x.dtype, copy=False)


@register("LeakyRelu")
def leaky_relu(node, x):
    a = node.attr("alpha", 0.01)
    return np.where(x >= 0, x, x * np.asarray(a, x.dtype)).astype(x.dtype, copy=False)


@register("PRelu")
def prelu(node, x, slope):
    if node.version < 7 and slope.ndim == 1 and x.ndim > 2 and slope.size == x.shape[1]:
        slope = slope.reshape((-1,) + (1,) * (x.ndim - 2))  # one slope per channel
    return np.where(x >= 0, x, x * slope).astype(x.dtype, copy=False)


@register("Elu")
def elu(node, x):
    a = node.attr("alpha", 1.0)
    return np.where(x > 0, x, a * np.expm1(x)).astype(x.dtype, copy=False)


@register("Selu")
def selu(node, x):
    a = node.attr("alpha", 1.67326319217681884765625)
    g = node.attr("gamma", 1.05070102214050292968750)
    return (g * np.where(x > 0, x, a * np.expm1(x))).astype(x.dtype, copy=False)


@register("Celu")
def celu(node, x):
    a = node.attr("alpha", 1.0)
    return (np.maximum(x, 0) + np.minimum(0, a * np.expm1(x / a))).astype(x.dtype, copy=False)


@register("HardSigmoid")
def hard_sigmoid(node, x):
    a, b = node.attr("alpha", 0.2), node.attr("beta", 0.5)
    return np.clip(a * x + b, 0, 1).astype(x.dtype, copy=False)


@register("HardSwish")
def hard_swish(node, x):
    return (x * np.clip(x / 6 + 0.5, 0, 1)).astype(x.dtype, copy=False)


@register("Softplus")
def softplus(node, x):
    return np.logaddexp(0, x).astype(x.dtype, copy=False)


@register("Softsign")
def softsign(node, x):
    return (x / (1 + np.abs(x))).astype(x.dtype, copy=False)


@register("Mish")
def mish(node, x):
    return (x * np.tanh(np.logaddexp(0, x))).astype(x.dtype, copy=False)


@register("Gelu")
def gelu(node, x):
    if node.attr("approximate", "none") == "tanh":
        xd = x.astype(np.float64)
        y = 0.5 * xd * (1 + np.tanh(math.sqrt(2 / math.pi) * (xd + 0.044715 * xd ** 3)))
    else:
        y = 0.5 * x * (1 + _erf(x.astype(np.float64) / math.sqrt(2)))
    return y.astype(x.dtype, copy=False)


@register("ThresholdedRelu")
def thresholded_relu(node, x):
    a = node.attr("alpha", 1.0)
    return np.where(x > a, x, 0).astype(x.dtype, copy=False)


@register("Shrink")
def shrink(node, x):
    lambd, bias = node.attr("lambd", 0.5), node.attr("bias", 0.0)
    return np.where(x < -lambd, x + bias, np.where(x > lambd, x - bias, 0)).astype(x.dtype)


@register("Swish")
def swish(node, x):
    a = node.attr("alpha", 1.0)
    return (x * _sigmoid(x * np.asarray(a, x.dtype))).astype(x.dtype, copy=False)


@register("Clip")
def clip(node, x, lo=None, hi=None):
    if node.version < 11:
        lo, hi = node.attr("min", None), node.attr("max", None)
    y = x
    if lo is not None:
        y = np.maximum(y, lo)
    if hi is not None:
        y = np.minimum(y, hi)
    return np.asarray(y).astype(x.dtype, copy=False)


# -- binary --------------------------------------------------------------------------------

def legacy_b(node, a, b):
    """Before opset 7, ``broadcast=1`` with ``axis`` aligns b with a starting at ``axis``
    (numpy aligns at the end, which is the no-axis case)."""
    if node.version < 7 and node.attr("broadcast", 0) and node.attr("axis") is not None:
        axis = node.attr("axis") % a.ndim
        return b.reshape(b.shape + (1,) * (a.ndim - axis - b.ndim))
    return b


@register("Add")
def add(node, a, b):
    if node.version < 7:
        b = legacy_b(node, a, b)
    return np.add(a, b).astype(a.dtype, copy=False)


@register("Sub")
def sub(node, a, b):
    if node.version < 7:
        b = legacy_b(node, a, b)
    return np.subtract(a, b).astype(a.dtype, copy=False)


@register("Mul")
def mul(node, a, b):
    if node.version < 7:
        b = legacy_b(node, a, b)
    return np.multiply(a, b).astype(a.dtype, copy=False)


@register("Div")
def div(node, a, b):
    b = legacy_b(node, a, b)
    if a.dtype.kind in "iu":
        # C semantics: the quotient truncates toward zero; x/0 is undefined (we give 0).
        with np.errstate(all="ignore"):
            safe = np.where(b == 0, 1, b)
            q = np.floor_divide(a, safe)
            fix = (np.remainder(a, safe) != 0) & ((a < 0) != (safe < 0))
            return np.where(b == 0, 0, q + fix).astype(a.dtype, copy=False)
    return np.divide(a, b).astype(a.dtype, copy=False)


@register("Pow")
def pow_(node, a, b):
    b = legacy_b(node, a, b)
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        return np.power(a.astype(np.int64), b.astype(np.int64)).astype(a.dtype)
    if a.dtype.kind == "f" and b.dtype.kind == "f" and a.dtype != b.dtype:
        b = b.astype(a.dtype)
    return np.power(a, b).astype(a.dtype, copy=False)


@register("Mod")
def mod(node, a, b):
    if node.attr("fmod", 0):
        return np.fmod(a, b).astype(a.dtype, copy=False)
    if a.dtype.kind == "f":  # sign of the divisor; x mod +-inf keeps x or gives +-inf
        r = np.fmod(a, b)
        return np.where((r != 0) & ((r < 0) != (b < 0)), r + b, r).astype(a.dtype, copy=False)
    return np.mod(a, b).astype(a.dtype, copy=False)  # sign of the divisor, like Python


def _variadic(fn):
    def op(node, *xs):
        y = xs[0]
        for x in xs[1:]:
            y = fn(y, x)
        return np.asarray(y).astype(xs[0].dtype, copy=False)
    return op


register("Sum")(_variadic(np.add))
register("Max")(_variadic(np.maximum))
register("Min")(_variadic(np.minimum))


@register("Mean")
def mean(node, *xs):
    y = xs[0]
    for x in xs[1:]:
        y = y + x
    return (y / len(xs)).astype(xs[0].dtype, copy=False)


@register("BitShift")
def bit_shift(node, a, b):
    if node.attr("direction") == "LEFT":
        return np.left_shift(a, b).astype(a.dtype)
    return np.right_shift(a, b).astype(a.dtype)


for _name, _fn in {"BitwiseAnd": np.bitwise_and, "BitwiseOr": np.bitwise_or,
                   "BitwiseXor": np.bitwise_xor}.items():
    register(_name)(lambda node, a, b, _fn=_fn: _fn(a, b))


@register("BitwiseNot")
def bitwise_not(node, x):
    return np.invert(x)
