"""Indexing ops: Slice, Gather*, Scatter*, Trilu, OneHot, TopK, ArgMax/ArgMin, NonZero,
CumSum, Compress, ReverseSequence, Einsum.

All index inputs may be negative (counted from the end, as ONNX allows); every op is one
vectorised numpy expression (advanced indexing, ``ufunc.at`` for scatter reductions). TopK
breaks ties by the lower index, as ONNX specifies.
"""

from __future__ import annotations

import numpy as np

from ...errors import DataError
from ..registry import register


def _ints(x) -> list:
    return [int(v) for v in np.asarray(x).reshape(-1)]


def _norm_idx(idx, dim):
    idx = np.asarray(idx).astype(np.int64, copy=False)
    if idx.size and (idx.min() < -dim or idx.max() >= dim):
        raise DataError(f"index out of range [{-dim}, {dim - 1}]: min {idx.min()}, "
                        f"max {idx.max()}")
    return np.where(idx < 0, idx + dim, idx)


@register("Slice")
def slice_(node, x, starts=None, ends=None, axes=None, steps=None):
    if node.version < 10:
        starts, ends, axes = node.attr("starts"), node.attr("ends"), node.attr("axes")
    starts, ends = _ints(starts), _ints(ends)
    axes = list(range(len(starts))) if axes is None else [a % x.ndim for a in _ints(axes)]
    steps = [1] * len(starts) if steps is None else _ints(steps)
    sl = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        d = x.shape[a]
        # Clamp like ONNX: huge sentinels (INT64_MAX) mean "to the end".
        s = max(-d - 1, min(d, s))
        e = max(-d - 1, min(d, e))
        if st > 0:
            s = s + d if s < 0 else s
            e = e + d if e < 0 else e
            sl[a] = slice(max(s, 0), max(e, 0), st)
        else:
            s = s + d if s < 0 else s
            e = e + d if e < 0 else e
            s = min(max(s, 0), d - 1)
            sl[a] = slice(s, e if e >= 0 else None, st)
    return x[tuple(sl)]


@register("Gather")
def gather(node, x, idx):
    axis = node.attr("axis", 0) % x.ndim
    return np.take(x, _norm_idx(idx, x.shape[axis]), axis=axis)


@register("GatherElements")
def gather_elements(node, x, idx):
    axis = node.attr("axis", 0) % x.ndim
    return np.take_along_axis(x, _norm_idx(idx, x.shape[axis]), axis=axis)


@register("GatherND")
def gather_nd(node, x, idx):
    b = node.attr("batch_dims", 0)
    idx = np.asarray(idx, dtype=np.int64)
    k = idx.shape[-1]
    bshape = x.shape[:b]
    nb = int(np.prod(bshape, dtype=np.int64))
    xr = x.reshape((nb,) + x.shape[b:])
    ir = idx.reshape((nb,) + idx.shape[b:])
    bi = np.arange(nb).reshape((nb,) + (1,) * (ir.ndim - 2))
    out = xr[(bi,) + tuple(ir[..., j] for j in range(k))]
    return out.reshape(bshape + idx.shape[b:-1] + x.shape[b + k:])


_SCATTER_UFUNC = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _scatter(node, out, index, updates):
    red = node.attr("reduction", "none")
    if red == "none":
        out[index] = updates
    else:
        _SCATTER_UFUNC[red].at(out, index, updates)
    return out


@register("ScatterElements")
def scatter_elements(node, x, idx, updates):
    axis = node.attr("axis", 0) % x.ndim
    idx = _norm_idx(idx, x.shape[axis])
    grid = list(np.indices(idx.shape, sparse=True))
    grid[axis] = idx
    return _scatter(node, x.copy(), tuple(grid), updates)


register("Scatter")(scatter_elements)  # deprecated alias (opset 9-10)


@register("ScatterND")
def scatter_nd(node, x, idx, updates):
    idx = np.asarray(idx, dtype=np.int64)
    index = tuple(idx[..., j] for j in range(idx.shape[-1]))
    return _scatter(node, x.copy(), index, updates)


@register("Trilu")
def trilu(node, x, k=None):
    k = 0 if k is None else int(np.asarray(k).reshape(()))
    return np.triu(x, k) if node.attr("upper", 1) else np.tril(x, k)


@register("OneHot")
def one_hot(node, indices, depth, values):
    d = int(np.asarray(depth).reshape(-1)[0])
    idx = np.asarray(indices).astype(np.int64)
    idx = np.where(idx < 0, idx + d, idx)
    hot = idx[..., None] == np.arange(d)
    out = np.where(hot, values[1], values[0]).astype(values.dtype)
    axis = node.attr("axis", -1)
    if axis < 0:
        axis += out.ndim
    return np.moveaxis(out, -1, axis)


@register("TopK")
def top_k(node, x, k=None):
    k = node.attr("k") if node.version < 10 else int(np.asarray(k).reshape(-1)[0])
    axis = node.attr("axis", -1) % x.ndim
    largest = node.attr("largest", 1)
    key = x
    if largest:
        key = -x.astype(np.int64) if x.dtype.kind in "ub" else -x
    order = np.argsort(key, axis=axis, kind="stable")
    idx = np.take(order, np.arange(k), axis=axis)
    return np.take_along_axis(x, idx, axis=axis), idx.astype(np.int64)


def _arg(node, x, fn):
    axis = node.attr("axis", 0) % x.ndim
    keep = node.attr("keepdims", 1)
    if node.attr("select_last_index", 0):
        r = x.shape[axis] - 1 - fn(np.flip(x, axis=axis), axis=axis)
    else:
        r = fn(x, axis=axis)
    r = r.astype(np.int64)
    return np.expand_dims(r, axis) if keep else r


@register("ArgMax")
def arg_max(node, x):
    return _arg(node, x, np.argmax)


@register("ArgMin")
def arg_min(node, x):
    return _arg(node, x, np.argmin)


@register("NonZero")
def non_zero(node, x):
    if x.ndim == 0:
        return np.zeros((0, int(bool(x))), dtype=np.int64)
    return np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1)


@register("CumSum")
def cum_sum(node, x, axis):
    a = int(np.asarray(axis).reshape(())) % x.ndim
    y = np.flip(x, a) if node.attr("reverse", 0) else x
    c = np.cumsum(y, axis=a, dtype=x.dtype)
    if node.attr("exclusive", 0):
        c = c - y
    return np.flip(c, a) if node.attr("reverse", 0) else c


@register("Compress")
def compress(node, x, cond):
    axis = node.attr("axis")
    c = np.asarray(cond).astype(bool).reshape(-1)
    if axis is None:
        flat = x.reshape(-1)
        return flat[:len(c)][c[:flat.size]]
    return np.compress(c, x, axis=axis)


@register("ReverseSequence")
def reverse_sequence(node, x, lens):
    ta, ba = node.attr("time_axis", 0), node.attr("batch_axis", 1)
    t = np.arange(x.shape[ta])
    lens = np.asarray(lens, dtype=np.int64)
    # src[t, b] = len[b]-1-t for t < len[b], else t
    src = np.where(t[:, None] < lens[None, :], lens[None, :] - 1 - t[:, None], t[:, None])
    shape = [1] * x.ndim
    shape[ta], shape[ba] = x.shape[ta], x.shape[ba]
    src = src if ta < ba else src.T
    src = np.broadcast_to(src.reshape(shape), x.shape)
    return np.take_along_axis(x, src, axis=ta)


@register("Einsum")
def einsum(node, *xs):
    eq = node.attr("equation").replace(" ", "")
    dt = xs[0].dtype
    if dt.kind not in "biufc":  # ml_dtypes (bfloat16, ...): einsum has no loop for them
        xs = [x.astype(np.float32) for x in xs]
    return np.asarray(np.einsum(eq, *xs)).astype(dt, copy=False)
