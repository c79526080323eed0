"""Resize (opsets 10-19) and Upsample (7, 9): every mode (nearest with each nearest_mode,
linear, cubic with cubic_coeff_a), every coordinate_transformation_mode, exclude_outside,
extrapolation_value, antialias, axes, keep_aspect_ratio_policy.

Resampling is separable, so each resized axis gets a tap table, (index, weight) per output
position, built here in float64 from the spec's formulas, and one C++ pass applies it. Before
opset 11 (Resize-10, Upsample) coordinates are asymmetric and nearest rounds the way ONNX
Runtime's legacy mode does: floor when upsampling, ceil when downsampling.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from ... import _core
from ...errors import UnsupportedOpError
from ..registry import Node, register
from .nn_common import fail, need

_MODES = ("nearest", "linear", "cubic")
_COORD = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
          "asymmetric", "tf_crop_and_resize")
_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "simple")


def _source_coords(mode: str, n_in: int, n_out: int, scale: float,
                   roi: Tuple[float, float]) -> np.ndarray:
    """Input coordinate of each output index along one axis. As in the ONNX reference, the
    resized length in the formulas is scale * n_in, which is n_out only when sizes gave it."""
    y = np.arange(n_out, dtype=np.float64)
    length = scale * n_in
    if mode == "asymmetric":
        return y / scale
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (y + 0.5) / scale - 0.5 if length > 1 else np.zeros(n_out)
    if mode == "half_pixel_symmetric":
        adjustment = n_out / (scale * n_in)
        offset = n_in / 2.0 * (1.0 - adjustment)
        return offset + (y + 0.5) / scale - 0.5
    if mode == "align_corners":
        return y * (n_in - 1) / (length - 1) if length != 1 else np.zeros(n_out)
    # tf_crop_and_resize: roi gives the crop in normalized input coordinates. The roi stays
    # in its own dtype and the terms keep the spec's order, so coordinates that land on a
    # nearest-rounding boundary round the way the ONNX reference does.
    lo, hi = roi
    if length != 1:
        return y * (hi - lo) * (n_in - 1) / (length - 1) + lo * (n_in - 1)
    return np.full(n_out, (hi - lo) * (n_in - 1) / 2 + lo * (n_in - 1))


def _cubic(t: np.ndarray, a: float) -> np.ndarray:
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _taps(x: np.ndarray, n_in: int, scale: float, mode: str, nearest_mode: str, cubic_a: float,
          antialias: bool, exclude_outside: bool) -> Tuple[np.ndarray, np.ndarray]:
    """(idx, w), each (n_out, taps): indices clamped into [0, n_in), weights in float64."""
    if mode == "nearest":
        fl = np.floor(x)
        frac = x - fl
        if nearest_mode == "round_prefer_floor":
            i = np.where(frac <= 0.5, fl, fl + 1)
        elif nearest_mode == "round_prefer_ceil":
            i = np.where(frac < 0.5, fl, fl + 1)
        elif nearest_mode == "floor":
            i = fl
        elif nearest_mode == "ceil":
            i = np.ceil(x)
        else:  # "simple": legacy Upsample / Resize-10
            i = np.ceil(x) if scale < 1 else fl
        idx = np.clip(i, 0, n_in - 1).astype(np.int64)[:, None]
        return idx, np.ones(idx.shape)
    # Linear (support 1) and cubic (support 2) filters. Antialiasing stretches the filter by
    # 1/scale when downsampling, so it covers every input sample under the output's footprint.
    support = 1.0 if mode == "linear" else 2.0
    s = min(scale, 1.0) if antialias else 1.0
    first = int(np.floor(-support / s)) + 1
    n = 2 - 2 * first
    base = np.floor(x).astype(np.int64)
    raw = base[:, None] + (first + np.arange(n))[None, :]
    t = (raw - x[:, None]) * s
    w = np.clip(1 - np.abs(t), 0, 1) if mode == "linear" else _cubic(t, cubic_a)
    if antialias:
        w = w / w.sum(axis=1, keepdims=True)
    if exclude_outside:
        w = np.where((raw < 0) | (raw >= n_in), 0.0, w)
        tot = w.sum(axis=1, keepdims=True)
        w = w / np.where(tot == 0, 1.0, tot)
    return np.clip(raw, 0, n_in - 1), w


def _resize(node: Node, x: np.ndarray, out_shape: List[int], scales: List[float],
            roi: Optional[np.ndarray], mode: str, coord: str, nearest_mode: str,
            cubic_a: float, exclude_outside: bool, extrapolation: float,
            antialias: bool) -> np.ndarray:
    out_dtype = x.dtype
    if x.dtype in (np.float32, np.float64):
        cur = np.ascontiguousarray(x)
    elif np.issubdtype(x.dtype, np.number):
        cur = np.ascontiguousarray(x, dtype=np.float32)
    else:
        raise UnsupportedOpError(f"{node.where()}: Resize of dtype {x.dtype} is not supported")
    r = x.ndim
    masks = []
    # Pass order: shrinking axes first and growing ones last, so the passes touch the least
    # data; on ties the last axis (the gather-like pass with inner == 1) goes first.
    order = sorted(range(r), key=lambda a: (out_shape[a] / max(x.shape[a], 1), -a))
    for axis in order:
        n_in, n_out, scale = x.shape[axis], out_shape[axis], scales[axis]
        lohi = (0.0, 1.0) if roi is None else (roi[axis], roi[r + axis])
        if n_out == n_in and scale == 1.0 and (coord != "tf_crop_and_resize"
                                               or (lohi[0] == 0 and lohi[1] == 1)):
            continue
        if n_in == 0 or n_out == 0:
            shape = list(cur.shape)
            shape[axis] = n_out
            cur = np.zeros(shape, dtype=cur.dtype)
            continue
        xs = _source_coords(coord, n_in, n_out, scale, lohi)
        idx, w = _taps(xs, n_in, scale, mode, nearest_mode, cubic_a, antialias,
                       exclude_outside)
        if coord == "tf_crop_and_resize":
            outside = (xs < 0) | (xs > n_in - 1)
            if outside.any():
                masks.append((axis, outside))
        outer = int(np.prod(cur.shape[:axis]))
        inner = int(np.prod(cur.shape[axis + 1:]))
        y = _core.nn_resize_axis(cur.reshape(outer, n_in, inner), np.ascontiguousarray(idx),
                                 np.ascontiguousarray(w, dtype=cur.dtype))
        cur = y.reshape(cur.shape[:axis] + (n_out,) + cur.shape[axis + 1:])
    for axis, outside in masks:
        cur[(slice(None),) * axis + (outside,)] = extrapolation
    if cur.dtype == out_dtype:
        return cur
    if np.issubdtype(out_dtype, np.integer):
        info = np.iinfo(out_dtype)
        return np.clip(np.rint(cur), info.min, info.max).astype(out_dtype)
    return cur.astype(out_dtype)


def _given(t) -> bool:
    return t is not None and np.asarray(t).size > 0


@register("Resize")
def resize(node: Node, x, roi=None, scales=None, sizes=None):
    x = need(node, x, "X")
    r = x.ndim
    mode = node.attr("mode", "nearest")
    if mode not in _MODES:
        raise fail(node, f"mode={mode!r} is not one of {', '.join(_MODES)}")
    if node.version < 11:  # Resize-10(X, scales): the second input is the scales
        scales, roi = roi, None
        coord, nearest_mode = "asymmetric", "simple"
        if mode == "cubic":
            raise fail(node, "mode='cubic' needs Resize-11 or later")
    else:
        coord = node.attr("coordinate_transformation_mode", "half_pixel")
        nearest_mode = node.attr("nearest_mode", "round_prefer_floor")
    if coord not in _COORD or (coord == "half_pixel_symmetric" and node.version < 19):
        raise fail(node, f"coordinate_transformation_mode={coord!r} is not supported at "
                         f"opset {node.opset}")
    if nearest_mode not in _NEAREST:
        raise fail(node, f"nearest_mode={nearest_mode!r} is not one of {', '.join(_NEAREST)}")
    axes = node.attr("axes") if node.version >= 18 else None
    if axes is None:
        axes = list(range(r))
    else:
        axes = [int(a) + r if int(a) < 0 else int(a) for a in axes]
        if any(a < 0 or a >= r for a in axes) or len(set(axes)) != len(axes):
            raise fail(node, f"axes={node.attr('axes')} are not distinct axes of a rank-{r} "
                             "input")
    k = len(axes)
    full_roi = None
    if coord == "tf_crop_and_resize":
        if not _given(roi):
            raise fail(node, "tf_crop_and_resize needs the roi input")
        roi = np.asarray(roi).ravel()
        if roi.size != 2 * k:
            raise fail(node, f"roi has {roi.size} values, expected {2 * k}")
        full_roi = np.array([0] * r + [1] * r, dtype=roi.dtype)
        for i, a in enumerate(axes):
            full_roi[a], full_roi[r + a] = roi[i], roi[k + i]
    in_shape = list(x.shape)
    out_shape, scale_list = list(in_shape), [1.0] * r
    if _given(sizes):
        if _given(scales):
            raise fail(node, "only one of scales and sizes may be given")
        sizes = np.asarray(sizes).astype(np.int64).ravel()
        if sizes.size != k:
            raise fail(node, f"sizes has {sizes.size} values, expected {k}")
        policy = node.attr("keep_aspect_ratio_policy", "stretch") if node.version >= 18 \
            else "stretch"
        if policy not in ("stretch", "not_larger", "not_smaller"):
            raise fail(node, f"keep_aspect_ratio_policy={policy!r} is not one of stretch, "
                             "not_larger, not_smaller")
        if policy == "stretch":
            for i, a in enumerate(axes):
                out_shape[a] = int(sizes[i])
                scale_list[a] = sizes[i] / in_shape[a] if in_shape[a] else 1.0
        else:
            ratios = [sizes[i] / in_shape[a] for i, a in enumerate(axes)]
            s = min(ratios) if policy == "not_larger" else max(ratios)
            for a in axes:
                out_shape[a] = int(np.floor(s * in_shape[a] + 0.5))
                scale_list[a] = s
    elif _given(scales):
        scales = np.asarray(scales, dtype=np.float64).ravel()
        if scales.size != k:
            raise fail(node, f"scales has {scales.size} values, expected {k} (rank {r})")
        if np.any(scales <= 0):
            raise fail(node, f"scales {scales.tolist()} must be > 0")
        for i, a in enumerate(axes):
            scale_list[a] = float(scales[i])
            out_shape[a] = int(np.floor(in_shape[a] * scales[i]))
    else:
        raise fail(node, "one of scales and sizes is required")
    return _resize(node, x, out_shape, scale_list, full_roi, mode, coord, nearest_mode,
                   float(node.attr("cubic_coeff_a", -0.75)),
                   bool(node.attr("exclude_outside", 0)),
                   float(node.attr("extrapolation_value", 0.0)),
                   bool(node.attr("antialias", 0)) if node.version >= 18 else False)


@register("Upsample")
def upsample(node: Node, x, scales=None):
    x = need(node, x, "X")
    mode = node.attr("mode", "nearest")
    if mode not in ("nearest", "linear", "bilinear"):
        raise fail(node, f"mode={mode!r} is not one of nearest, linear")
    if node.version < 9:
        scales = node.attr("scales")
        if scales is None:
            raise fail(node, "attribute scales is required")
    elif scales is None:
        raise fail(node, "input scales is required")
    scales = np.asarray(scales, dtype=np.float64).ravel()
    if scales.size != x.ndim or np.any(scales < 1):
        raise fail(node, f"scales {scales.tolist()} must have {x.ndim} values >= 1")
    out_shape = [int(np.floor(n * s)) for n, s in zip(x.shape, scales)]
    return _resize(node, x, out_shape, scales.tolist(), None,
                   "nearest" if mode == "nearest" else "linear", "asymmetric", "simple",
                   -0.75, False, 0.0, False)
