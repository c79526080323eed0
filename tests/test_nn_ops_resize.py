"""Resize and Upsample: sweeps over every mode, nearest_mode, coordinate transformation,
cubic_coeff_a, exclude_outside, extrapolation, antialias, axes and keep_aspect_ratio_policy
against the ONNX reference evaluator (an independent, spec-literal implementation), float32
and float64; the opset-10/11 and Upsample forms against ONNX Runtime."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest

from test_nn_ops_util import one_node_model, run_fastq, run_ort, run_reference

RNG = np.random.default_rng(7)
COORDS = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
          "asymmetric", "tf_crop_and_resize"]
NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
SCALES = [[1, 1, 2.0, 1.5], [1, 1, 0.5, 0.75], [1, 1, 0.6, 2.3], [1, 1, 3.0, 1.0]]


def _compare(attrs, x, roi, scales, sizes, opset=19, tol=1e-5):
    feeds = [x, roi, scales, sizes]
    (got,) = run_fastq("Resize", feeds, opset, **attrs)
    named = [("X", x), ("roi", roi if roi is not None else np.zeros(0, np.float32)),
             ("scales", scales if scales is not None else np.zeros(0, np.float32))]
    if sizes is not None:
        named.append(("sizes", sizes))
    model = one_node_model("Resize", named, opset, out_types=[
        onnx.helper.np_dtype_to_tensor_dtype(x.dtype)], **attrs)
    (want,) = run_reference(model, dict(named))
    assert got.shape == want.shape and got.dtype == x.dtype
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def _roi(coord):
    if coord == "tf_crop_and_resize":
        return np.array([0, 0, 0.1, -0.2, 1, 1, 0.8, 1.1], np.float32)
    return None


@pytest.mark.parametrize("scales", range(len(SCALES)))
@pytest.mark.parametrize("coord", COORDS)
@pytest.mark.parametrize("nearest_mode", NEAREST)
def test_resize_nearest(nearest_mode, coord, scales):
    x = RNG.standard_normal((2, 3, 5, 6)).astype(np.float32)
    _compare(dict(mode="nearest", nearest_mode=nearest_mode,
                  coordinate_transformation_mode=coord, extrapolation_value=-3.0),
             x, _roi(coord), np.array(SCALES[scales], np.float32), None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scales", range(len(SCALES)))
@pytest.mark.parametrize("coord", COORDS)
@pytest.mark.parametrize("mode,extra", [
    ("linear", {}), ("linear", {"exclude_outside": 1}), ("cubic", {}),
    ("cubic", {"cubic_coeff_a": -0.5, "exclude_outside": 1}), ("cubic", {"cubic_coeff_a": -0.6}),
])
def test_resize_linear_cubic(mode, extra, coord, scales, dtype):
    # 8 rows, not 7: at 7 x 0.5 a half_pixel_symmetric coordinate lands 2e-16 from an
    # integer, where the reference picks its taps and its weights on opposite sides of it.
    x = RNG.standard_normal((1, 2, 8, 5)).astype(dtype)
    # The reference evaluates cubic weights in float32 (cubic_coeff_a is a float32 attribute
    # and NumPy 2 keeps float32 * float in float32), so float64 cubic agrees to ~1e-6 only.
    tol = 1e-5 if dtype == np.float32 or mode == "cubic" else 1e-12
    _compare(dict(mode=mode, coordinate_transformation_mode=coord, **extra), x, _roi(coord),
             np.array(SCALES[scales], np.float32), None, tol=tol)


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("sizes", [[1, 2, 3, 4], [1, 2, 5, 2], [1, 2, 9, 3], [1, 2, 20, 30]])
def test_resize_antialias(mode, sizes):
    x = RNG.standard_normal((1, 2, 13, 11)).astype(np.float32)
    _compare(dict(mode=mode, antialias=1), x, None, None, np.array(sizes, np.int64))


@pytest.mark.parametrize("policy", ["stretch", "not_larger", "not_smaller"])
@pytest.mark.parametrize("axes", [[2, 3], [3, 2], [3], [1, 3]])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_axes_and_aspect_policy(mode, axes, policy):
    x = RNG.standard_normal((2, 3, 6, 7)).astype(np.float32)
    sizes = np.array([9, 4][:len(axes)], np.int64)
    _compare(dict(mode=mode, axes=axes, keep_aspect_ratio_policy=policy), x, None, None, sizes)


def test_resize_negative_axes_equal_positive():
    x = RNG.standard_normal((2, 3, 6, 7)).astype(np.float32)
    sizes = np.array([4, 9], np.int64)
    (a,) = run_fastq("Resize", [x, None, None, sizes], 19, mode="linear", axes=[-1, -2])
    (b,) = run_fastq("Resize", [x, None, None, sizes], 19, mode="linear", axes=[3, 2])
    assert a.shape == (2, 3, 9, 4) and np.array_equal(a, b)


@pytest.mark.parametrize("axes", [[2, 3], [3, 2]])
def test_resize_axes_with_scales_and_roi(axes):
    x = RNG.standard_normal((1, 2, 6, 7)).astype(np.float32)
    _compare(dict(mode="linear", axes=axes, coordinate_transformation_mode="tf_crop_and_resize",
                  extrapolation_value=9.0),
             x, np.array([0.2, -0.1, 0.9, 1.2], np.float32), np.array([1.5, 0.7], np.float32),
             None)


@pytest.mark.parametrize("rank", [1, 3, 5])
def test_resize_other_ranks(rank):
    shape = [4, 5, 3, 2, 3][:rank]
    x = RNG.standard_normal(shape).astype(np.float32)
    scales = np.array([2.0, 0.5, 1.5, 3.0, 1.0][:rank], np.float32)
    for mode in ("nearest", "linear", "cubic"):
        _compare(dict(mode=mode), x, None, scales, None)


def test_resize_uint8_rounds_and_saturates():
    x = RNG.integers(0, 256, size=(1, 1, 4, 4)).astype(np.uint8)
    (y,) = run_fastq("Resize", [x, None, np.array([1, 1, 2, 2], np.float32)], 19,
                     mode="linear")
    named = [("X", x), ("roi", np.zeros(0, np.float32)),
             ("scales", np.array([1, 1, 2, 2], np.float32))]
    (want,) = run_ort(one_node_model("Resize", named, 19, mode="linear",
                                     out_types=[onnx.TensorProto.UINT8]), dict(named))
    assert y.dtype == np.uint8
    assert np.max(np.abs(y.astype(int) - want.astype(int))) <= 1   # rounding of .5 ties


OLD = [  # (opset, op, attrs, scales)
    (10, "Resize", dict(mode="nearest"), [1, 1, 2.0, 3.0]),
    (10, "Resize", dict(mode="nearest"), [1, 1, 0.5, 0.7]),
    (10, "Resize", dict(mode="linear"), [1, 1, 1.5, 2.0]),
    (10, "Resize", dict(mode="linear"), [1, 1, 0.6, 0.5]),
    (9, "Upsample", dict(mode="nearest"), [1, 1, 2.0, 3.0]),
    (9, "Upsample", dict(mode="linear"), [1, 1, 2.0, 1.5]),
    (7, "Upsample", dict(mode="nearest"), [1, 1, 2.0, 2.0]),
]


@pytest.mark.parametrize("opset,op,attrs,scales", OLD)
def test_legacy_resize_matches_onnxruntime(opset, op, attrs, scales):
    x = RNG.standard_normal((1, 2, 5, 4)).astype(np.float32)
    s = np.array(scales, np.float32)
    if opset == 7:
        (got,) = run_fastq(op, [x], opset, scales=scales, **attrs)
        model = one_node_model(op, [("X", x)], opset, scales=scales, **attrs)
        (want,) = run_ort(model, {"X": x})
    else:
        (got,) = run_fastq(op, [x, s], opset, **attrs)
        (want,) = run_ort(one_node_model(op, [("X", x), ("scales", s)], opset, **attrs),
                          {"X": x, "scales": s})
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("coord,mode", list(itertools.product(
    ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"],
    ["nearest", "linear", "cubic"])))
def test_resize_11_with_sizes_matches_onnxruntime(coord, mode):
    x = RNG.standard_normal((1, 2, 6, 5)).astype(np.float32)
    sizes = np.array([1, 2, 9, 3], np.int64)
    roi = np.zeros(0, np.float32)
    scales = np.zeros(0, np.float32)
    attrs = dict(mode=mode, coordinate_transformation_mode=coord)
    (got,) = run_fastq("Resize", [x, roi, scales, sizes], 11, **attrs)
    named = [("X", x), ("roi", roi), ("scales", scales), ("sizes", sizes)]
    (want,) = run_ort(one_node_model("Resize", named, 11, **attrs), dict(named))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
