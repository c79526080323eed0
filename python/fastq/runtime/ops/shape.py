"""Shape and layout ops: Shape, Reshape, Squeeze/Unsqueeze, Transpose, Concat, Split, Expand,
Tile, Pad, Depth/SpaceToDepth, Constant*, Range, Cast*, Identity, Dropout (inference), EyeLike.

Versions: Squeeze/Unsqueeze/Split take axes/split from attributes before opset 13 and from
inputs after; Pad from attributes before 11; Shape slices (start/end) from 15; Reshape's
``allowzero`` from 14. Outputs never alias a caller's feed except Identity/Dropout/Reshape views.
"""

from __future__ import annotations

import math

import ml_dtypes

import numpy as np
from onnx import helper

from ...errors import DataError, UnsupportedOpError
from ..registry import register


def _ints(x) -> list:
    return [int(v) for v in np.asarray(x).reshape(-1)]


@register("Shape")
def shape(node, x):
    s = np.array(x.shape, dtype=np.int64)
    if node.version >= 15:
        r = len(s)
        start = node.attr("start", 0)
        end = node.attr("end", r)
        return s[slice(start, end)]
    return s


@register("Size")
def size(node, x):
    return np.array(x.size, dtype=np.int64)


@register("Reshape")
def reshape(node, x, shape):
    s = _ints(shape)
    if not node.attr("allowzero", 0):
        s = [x.shape[i] if d == 0 else d for i, d in enumerate(s)]
    return x.reshape(s)


@register("Flatten")
def flatten(node, x):
    axis = node.attr("axis", 1)
    if axis < 0:
        axis += x.ndim
    # math.prod on the int shape tuple: ~0.4 us where np.prod costs ~3 us per call
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


@register("Squeeze")
def squeeze(node, x, axes=None):
    axes = node.attr("axes") if node.version < 13 else (None if axes is None else _ints(axes))
    if axes is None or len(axes) == 0:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(a % x.ndim for a in axes))


@register("Unsqueeze")
def unsqueeze(node, x, axes=None):
    axes = node.attr("axes") if node.version < 13 else _ints(axes)
    out_rank = x.ndim + len(axes)
    return np.expand_dims(x, tuple(a % out_rank for a in axes))


@register("Transpose")
def transpose(node, x):
    perm = node.attr("perm")
    return np.transpose(x, perm)


@register("Concat")
def concat(node, *xs):
    axis = node.attr("axis")
    if len(xs) > 1 and axis % 4 == 1 and all(x.ndim == 4 and not x.flags.c_contiguous
                                             for x in xs):
        # channel concat of NHWC-ordered views (fused int8 layers' outputs): in memory order
        ts = [x.transpose(0, 2, 3, 1) for x in xs]
        if all(t.flags.c_contiguous for t in ts):
            return np.concatenate(ts, axis=3).transpose(0, 3, 1, 2)
    return np.concatenate(xs, axis=axis)


@register("Split")
def split(node, x, split=None):
    axis = node.attr("axis", 0) % max(x.ndim, 1)
    n = len(node.outputs)
    sizes = node.attr("split") if node.version < 13 else (None if split is None
                                                          else _ints(split))
    if not sizes:
        num = node.attr("num_outputs", n)
        d = x.shape[axis]
        chunk = -(-d // num)  # ceil: the last chunk is the smaller one (opset 18)
        sizes = [chunk] * (num - 1) + [d - chunk * (num - 1)]
    cuts = np.cumsum(sizes)[:-1]
    return tuple(np.split(x, cuts, axis=axis))


@register("Expand")
def expand(node, x, shape):
    out = np.broadcast_shapes(x.shape, tuple(_ints(shape)))
    return np.ascontiguousarray(np.broadcast_to(x, out))


@register("Tile")
def tile(node, x, repeats):
    return np.tile(x, _ints(repeats))


@register("Identity")
def identity(node, x):
    return (x,)  # x may be a sequence (a list): the tuple keeps it one value


@register("Dropout")
def dropout(node, x, ratio=None, training_mode=None):
    if node.version < 12:
        ratio = node.attr("ratio", 0.5)
    train = training_mode is not None and bool(np.asarray(training_mode))
    if train and ratio is not None and float(np.asarray(ratio)) > 0:
        raise DataError(f"{node.where()}: training-mode Dropout (random) is not supported; "
                        "export the model for inference")
    if len(node.outputs) > 1:
        return x, np.ones(x.shape, dtype=bool)
    return x


@register("Constant")
def constant(node):
    a = node.attrs
    if "value" in a:
        return np.asarray(a["value"])
    if "value_float" in a:
        return np.array(a["value_float"], dtype=np.float32)
    if "value_floats" in a:
        return np.array(a["value_floats"], dtype=np.float32)
    if "value_int" in a:
        return np.array(a["value_int"], dtype=np.int64)
    if "value_ints" in a:
        return np.array(a["value_ints"], dtype=np.int64)
    if "value_string" in a:
        return np.array(a["value_string"], dtype=object)
    if "value_strings" in a:
        return np.array(a["value_strings"], dtype=object)
    if "sparse_value" in a:
        from onnx import numpy_helper
        sp = a["sparse_value"]
        vals = numpy_helper.to_array(sp.values)
        idx = numpy_helper.to_array(sp.indices)
        out = np.zeros(tuple(sp.dims), dtype=vals.dtype)
        if idx.ndim == 1:
            out.reshape(-1)[idx] = vals
        else:
            out[tuple(idx.T)] = vals
        return out
    raise DataError(f"{node.where()}: Constant without a value attribute")


@register("ConstantOfShape")
def constant_of_shape(node, shape):
    v = node.attr("value")
    v = np.zeros(1, np.float32) if v is None else np.asarray(v).reshape(-1)
    return np.full(tuple(_ints(shape)), v[0], dtype=v.dtype)


@register("Range")
def range_(node, start, limit, delta):
    s, l, d = (np.asarray(v).reshape(()) for v in (start, limit, delta))
    n = max(int(np.ceil((l.astype(np.float64) - s) / d)), 0)
    return (s + np.arange(n, dtype=s.dtype) * d).astype(s.dtype)


def _np_type(elem_type: int):
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


def is_float8(dt: np.dtype) -> bool:
    return dt.name.startswith("float8")


def cast_to(x, dt, saturate: bool = True):
    """ONNX Cast: float -> int truncates; float -> float8 saturates to the largest finite
    value when ``saturate`` (inf included), else out-of-range becomes NaN/inf."""
    if x.dtype.kind == "f" and dt.kind in "iu":
        # NaN/out-of-range are implementation defined (numpy's)
        return np.trunc(x).astype(dt)
    if is_float8(dt):
        x32 = x.astype(np.float32)
        if saturate:
            big = float(ml_dtypes.finfo(dt).max)
            x32 = np.clip(x32, -big, big)
        return x32.astype(dt)
    return x.astype(dt)


@register("Cast")
def cast(node, x):
    return cast_to(x, _np_type(node.attr("to")), bool(node.attr("saturate", 1)))


@register("CastLike")
def cast_like(node, x, like):
    return cast_to(x, like.dtype, bool(node.attr("saturate", 1)))


@register("EyeLike")
def eye_like(node, x):
    dt = _np_type(node.attr("dtype")) if node.attr("dtype") is not None else x.dtype
    return np.eye(x.shape[0], x.shape[1], k=node.attr("k", 0), dtype=dt)


@register("DepthToSpace")
def depth_to_space(node, x):
    b = node.attr("blocksize")
    n, c, h, w = x.shape
    if node.attr("mode", "DCR") == "CRD":
        y = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    else:
        y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    return y.reshape(n, c // (b * b), h * b, w * b)


@register("SpaceToDepth")
def space_to_depth(node, x):
    b = node.attr("blocksize")
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // b, b, w // b, b)
    if node.attr("mode", "DCR") == "CRD":
        y = y.transpose(0, 1, 3, 5, 2, 4)
    else:
        y = y.transpose(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)


def _prep_pad(node, consts, ctx):
    mode = node.attr("mode", "constant")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise UnsupportedOpError(f"{node.where()}: Pad mode {mode!r} is not supported")
    return None


@register("Pad", prepare=_prep_pad)
def pad(node, x, pads=None, value=None, axes=None):
    mode = node.attr("mode", "constant")
    if node.version < 11:
        pads, value = node.attr("pads"), node.attr("value", 0.0)
    pads = _ints(pads)
    r = x.ndim
    ax = list(range(r)) if axes is None else [a % r for a in _ints(axes)]
    k = len(ax)
    before, after = [0] * r, [0] * r
    for i, a in enumerate(ax):
        before[a], after[a] = pads[i], pads[i + k]
    # Negative pads crop first; positive ones pad.
    sl = tuple(slice(-min(b, 0), x.shape[i] + min(e, 0)) for i, (b, e) in
               enumerate(zip(before, after)))
    x = x[sl]
    width = [(max(b, 0), max(e, 0)) for b, e in zip(before, after)]
    if mode == "constant":
        cv = 0 if value is None else np.asarray(value).reshape(-1)
        cv = cv if np.isscalar(cv) else (cv[0] if cv.size else 0)
        return np.pad(x, width, mode="constant", constant_values=cv)
    if mode == "reflect":
        return np.pad(x, width, mode="reflect")
    if mode == "edge":
        return np.pad(x, width, mode="edge")
    if mode == "wrap":
        return np.pad(x, width, mode="wrap")
    raise DataError(f"{node.where()}: unknown Pad mode {mode!r}")
