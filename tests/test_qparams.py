"""fastq.qparams: range -> (scale, zero_point) against independent statements of POT's rules,
and the quantize/dequantize references against ONNX Runtime's QuantizeLinear."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import fastq
from fastq import qparams as Q

RNG_SEED = 1234


def random_ranges(n, seed=RNG_SEED):
    """Ranges of every shape: straddling zero, all positive, all negative, tiny, huge."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n) * 10.0 ** rng.integers(-4, 4, size=n)
    b = rng.normal(size=n) * 10.0 ** rng.integers(-4, 4, size=n)
    return np.minimum(a, b), np.maximum(a, b)


def asym_oracle(lo, hi, n=255):
    """POT asymmetric rule, stated directly: widen ranges <= 8e-4 by 8e-4 per side, include 0,
    zero level q0 = round-half-even(-lo * (n / (hi - lo))) -- POT's tune_range order, which
    decides float ties such as [-a, a] at n = 127 -- and the smallest scale whose grid
    with zero at q0 covers [lo, hi] (one end widened, never shrunk)."""
    small = hi - lo <= 8e-4
    lo = np.minimum(np.where(small, lo - 8e-4, lo), 0.0)
    hi = np.maximum(np.where(small, hi + 8e-4, hi), 0.0)
    q0 = np.rint(-lo * (n / (hi - lo)))
    with np.errstate(divide="ignore", invalid="ignore"):
        need_lo = np.where(q0 > 0, -lo / q0, 0.0)
        need_hi = np.where(q0 < n, hi / (n - q0), 0.0)
    interior = (q0 > 0) & (q0 < n)
    scale = np.where(interior, np.maximum(need_lo, need_hi), (hi - lo) / n)
    return scale, q0


# ------------------------------------------------------------------------------ asymmetric


def test_asymmetric_matches_pot_rule_per_channel():
    lo, hi = random_ranges(2000)
    qp = Q.compute_qparams(lo, hi, mode="asymmetric")
    want_scale, want_zp = asym_oracle(lo, hi)
    assert qp.dtype is np.uint8 and (qp.qmin, qp.qmax) == (0, 255) and not qp.signed
    assert qp.scale.shape == (2000,) and qp.scale.dtype == np.float32
    np.testing.assert_allclose(qp.scale, want_scale, rtol=2e-6)
    assert np.array_equal(qp.zero_point, want_zp.astype(np.int32))


def test_asymmetric_zero_exact_and_range_covered():
    lo, hi = random_ranges(500, seed=7)
    for i in range(lo.size):
        qp = Q.compute_qparams(lo[i], hi[i], mode="asymmetric")
        assert qp.scale.shape == () and qp.zero_point.dtype == np.int32
        assert Q.dequantize(Q.quantize(0.0, qp), qp) == 0.0
        assert Q.dequantize(Q.quantize(np.float32(0.0), qp), qp).dtype == np.float32
        grid_lo = (qp.qmin - int(qp.zero_point)) * float(qp.scale)
        grid_hi = (qp.qmax - int(qp.zero_point)) * float(qp.scale)
        tol = 1e-6 * max(abs(lo[i]), abs(hi[i]), 1e-3) + float(qp.scale) / 2
        assert grid_lo <= min(lo[i], 0.0) + tol and grid_hi >= max(hi[i], 0.0) - tol


def test_asymmetric_example_by_hand():
    # [-1.3, 2.7]: q0 = rint(1.3 * 255 / 4.0) = rint(82.875) = 83; keeping 2.7 needs
    # lo = -83 * 2.7 / 172 (wider than moving hi), scale = 2.7 / 172.
    qp = Q.compute_qparams(-1.3, 2.7, mode="asymmetric")
    assert int(qp.zero_point) == 83
    assert qp.scale == np.float32(2.7 / 172)


def test_asymmetric_one_sided_ranges():
    pos = Q.compute_qparams(0.5, 4.0, mode="asymmetric")      # extended to [0, 4]
    assert int(pos.zero_point) == 0 and pos.scale == np.float32(4.0 / 255)
    neg = Q.compute_qparams(-4.0, -0.5, mode="asymmetric")    # extended to [-4, 0]
    assert int(neg.zero_point) == 255 and neg.scale == np.float32(4.0 / 255)


def test_asymmetric_weights_are_int8_with_zero_point():
    qp = Q.compute_qparams(-0.2, 1.0, mode="asymmetric", role="weights")
    assert qp.dtype is np.int8 and (qp.qmin, qp.qmax) == (-128, 127) and qp.signed
    scale, q0 = asym_oracle(np.array(-0.2), np.array(1.0))
    assert int(qp.zero_point) == -128 + int(q0)
    np.testing.assert_allclose(qp.scale, scale, rtol=2e-6)
    assert Q.dequantize(Q.quantize(0.0, qp), qp) == 0.0


# ------------------------------------------------------------------------------ symmetric


def test_symmetric_activation_unsigned_when_min_nonnegative():
    qp = Q.compute_qparams(0.0, 6.0)
    assert qp.dtype is np.uint8 and (qp.qmin, qp.qmax) == (0, 255)
    assert int(qp.zero_point) == 0 and qp.scale == np.float32(6.0 / 255)


def test_symmetric_activation_signed_when_min_negative():
    qp = Q.compute_qparams(-0.01, 6.0)
    assert qp.dtype is np.int8 and (qp.qmin, qp.qmax) == (-128, 127)
    assert int(qp.zero_point) == 0 and qp.scale == np.float32(6.0 / 127)
    # POT: FakeQuantize [-max * L/(L-2), max] with L = 256 levels -> same step
    pot_step = (6.0 + 6.0 * 256 / 254) / 255
    np.testing.assert_allclose(float(qp.scale), pot_step, rtol=1e-7)


def test_symmetric_per_channel_sign_is_decided_for_the_whole_tensor():
    qp = Q.compute_qparams(np.array([0.0, 0.1, -0.1]), np.array([1.0, 2.0, 3.0]))
    assert qp.dtype is np.int8
    assert np.array_equal(qp.scale, (np.array([1.0, 2.0, 3.0]) / 127).astype(np.float32))
    qp = Q.compute_qparams(np.array([0.0, 0.1]), np.array([1.0, 2.0]))
    assert qp.dtype is np.uint8


def test_symmetric_weights_narrow_range():
    m = np.array([0.5, 1.0, 2.0])
    qp = Q.compute_qparams(None, m, role="weights")
    assert qp.dtype is np.int8 and (qp.qmin, qp.qmax) == (-127, 127)
    assert np.array_equal(qp.scale, (m / 127).astype(np.float32))
    assert np.array_equal(qp.zero_point, np.zeros(3, np.int32))
    w = np.stack([np.linspace(-mi, mi, 9) for mi in m])
    q = Q.quantize(w, qp, axis=0)
    assert np.array_equal(q[:, 0], [-127] * 3) and np.array_equal(q[:, -1], [127] * 3)
    wide = Q.compute_qparams(None, m, role="weights", narrow_range=False)
    assert (wide.qmin, wide.qmax) == (-128, 127) and np.array_equal(wide.scale, qp.scale)
    # min is ignored for symmetric weights (POT: min = -max)
    assert np.array_equal(Q.compute_qparams(-m * 5, m, role="weights").scale, qp.scale)


def test_symmetric_activations_narrow_range():
    qp = Q.compute_qparams(-1.0, 1.0, narrow_range=True)
    assert (qp.qmin, qp.qmax) == (-127, 127) and qp.scale == np.float32(1.0 / 127)
    qp = Q.compute_qparams(0.0, 1.0, narrow_range=True)
    assert (qp.qmin, qp.qmax) == (0, 254) and qp.scale == np.float32(1.0 / 254)


def test_per_channel_equals_per_tensor_channel_by_channel():
    rng = np.random.default_rng(3)                        # channels within 1:100, so the
    lo = -rng.uniform(0.05, 5.0, 64) * rng.integers(0, 2, 64)    # 1%-of-largest floor is idle
    hi = rng.uniform(0.05, 5.0, 64)
    for mode in ("symmetric", "asymmetric"):
        mag = np.maximum(np.abs(lo), np.abs(hi)) if mode == "symmetric" else hi
        pc = Q.compute_qparams(lo, mag, mode=mode, role="weights")
        for c in range(64):
            pt = Q.compute_qparams(lo[c], mag[c], mode=mode, role="weights")
            assert pc.scale[c] == pt.scale and pc.zero_point[c] == pt.zero_point


def test_custom_levels():
    qp = Q.compute_qparams(None, 1.4, role="weights", bits=4, level_low=-7, level_high=7)
    assert (qp.qmin, qp.qmax) == (-7, 7) and qp.scale == np.float32(0.2)
    qp = Q.compute_qparams(-1.0, 3.0, mode="asymmetric", bits=4)
    assert (qp.qmin, qp.qmax) == (0, 15)
    scale, q0 = asym_oracle(np.array(-1.0), np.array(3.0), n=15)
    assert int(qp.zero_point) == q0 and np.isclose(qp.scale, scale, rtol=2e-6)
    # an unsigned grid forced on signed data: POT's [-max*L/(L-2), max] on L=256 levels
    qp = Q.compute_qparams(-1.0, 2.0, level_low=0, level_high=255)
    assert qp.dtype is np.uint8 and int(qp.zero_point) == 128
    np.testing.assert_allclose(float(qp.scale), (2.0 + 2.0 * 256 / 254) / 255, rtol=1e-7)
    assert Q.dequantize(Q.quantize(0.0, qp), qp) == 0.0


# ------------------------------------------------------------------------------ degenerate


@pytest.mark.parametrize("mode", ["symmetric", "asymmetric"])
@pytest.mark.parametrize("role", ["weights", "activations"])
@pytest.mark.parametrize("lo,hi", [(0.0, 0.0), (3.0, 3.0), (-2.0, -2.0), (-1e-30, 1e-30),
                                   (5e-5, 5e-5), (0.0, 1e-38)])
def test_degenerate_ranges_give_finite_positive_scales(mode, role, lo, hi):
    mag = max(abs(lo), abs(hi)) if mode == "symmetric" else hi
    qp = Q.compute_qparams(lo, mag, mode=mode, role=role)
    assert np.isfinite(qp.scale) and qp.scale > 0
    assert qp.qmin <= int(qp.zero_point) <= qp.qmax
    assert Q.dequantize(Q.quantize(0.0, qp), qp) == 0.0


def test_symmetric_floor_is_pot_fix_zero_filters():
    # max(8e-5, 1% of the largest channel) per channel
    qp = Q.compute_qparams(None, np.array([0.0, 1e-6, 2.0, 0.5]), role="weights")
    want = np.maximum(np.array([0.0, 1e-6, 2.0, 0.5]), 0.02) / 127
    assert np.array_equal(qp.scale, want.astype(np.float32))
    qp = Q.compute_qparams(0.0, 0.0)
    assert qp.scale == np.float32(8e-5 / 255)


def test_asymmetric_floor_widens_tiny_ranges_by_8e_4():
    qp = Q.compute_qparams(1.0, 1.0, mode="asymmetric")       # -> [0, 1.0008]
    assert int(qp.zero_point) == 0 and qp.scale == np.float32(1.0008 / 255)


# ------------------------------------------------------------------------------ saturation fix


def test_saturation_fix_halves_the_weight_grid():
    rng = np.random.default_rng(RNG_SEED)
    w = rng.normal(size=(16, 3, 3, 3)).astype(np.float32)
    m = np.abs(w).reshape(16, -1).max(axis=1)
    qp = Q.compute_qparams(None, m, role="weights")
    fixed = Q.apply_saturation_fix(qp)
    assert np.array_equal(fixed.scale, (qp.scale.astype(np.float64) * 2).astype(np.float32))
    assert np.array_equal(fixed.zero_point, qp.zero_point)
    assert (fixed.qmin, fixed.qmax, fixed.dtype) == (qp.qmin, qp.qmax, qp.dtype)
    q = Q.quantize(w, fixed, axis=0).astype(np.int32)
    assert q.min() >= -64 and q.max() <= 64
    assert np.abs(q).reshape(16, -1).max(axis=1).min() >= 63    # every channel uses the grid
    # worst u8 x s8 pair sum stays under the s16 limit (what the fix is for)
    assert 2 * 255 * np.abs(q).max() <= 32767
    # POT's form: weights / 2 through the original FakeQuantize, output range doubled
    q_pot = np.clip(np.rint((w / 2) / qp.scale[:, None, None, None]), -127, 127)
    assert np.array_equal(q, q_pot)
    with pytest.raises(fastq.ConfigError, match="weight"):
        Q.apply_saturation_fix(Q.compute_qparams(0.0, 1.0))


# ------------------------------------------------------------------------------ references


def test_quantize_rounds_half_to_even():
    qp = Q.compute_qparams(-63.5, 63.5)                     # scale exactly 0.5
    assert qp.scale == np.float32(0.5)
    x = np.array([0.25, 0.75, 1.25, -0.25, -0.75, 63.75, -64.25, 1000.0, -1000.0], np.float32)
    assert np.array_equal(Q.quantize(x, qp), [0, 2, 2, 0, -2, 127, -128, 127, -128])


def test_per_channel_needs_axis():
    qp = Q.compute_qparams(None, np.array([1.0, 2.0]), role="weights")
    with pytest.raises(ValueError, match="axis"):
        Q.quantize(np.zeros((2, 3)), qp)


def _ort_qdq(x, qp, axis):
    scale = numpy_helper.from_array(np.asarray(qp.scale, np.float32), "s")
    zp = numpy_helper.from_array(np.asarray(qp.zero_point_typed), "z")
    elem = TensorProto.UINT8 if qp.dtype is np.uint8 else TensorProto.INT8
    kw = {} if axis is None else {"axis": axis}
    g = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], **kw),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], **kw)],
        "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("q", elem, list(x.shape)),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape))],
        initializer=[scale, zp])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})


@pytest.mark.parametrize("case", ["u8_tensor", "s8_tensor", "asym_u8", "s8_channel"])
def test_quantize_dequantize_match_onnxruntime(case):
    rng = np.random.default_rng(RNG_SEED)
    x = (rng.normal(size=(4, 5, 6)) * 3).astype(np.float32)
    axis = None
    if case == "u8_tensor":
        x = np.abs(x)
        qp = Q.compute_qparams(0.0, float(x.max()) * 0.8)
    elif case == "s8_tensor":
        qp = Q.compute_qparams(float(x.min()), float(np.abs(x).max()) * 0.7)
    elif case == "asym_u8":
        qp = Q.compute_qparams(float(x.min()) * 0.9, float(x.max()) * 0.9, mode="asymmetric")
    else:
        axis = 1
        mags = np.abs(x).max(axis=(0, 2))
        qp = Q.compute_qparams(None, mags, role="weights", narrow_range=False)
    q_ort, y_ort = _ort_qdq(x, qp, axis)
    q = Q.quantize(x, qp, axis)
    assert q.dtype == qp.dtype and np.array_equal(q, q_ort)
    assert np.array_equal(Q.dequantize(q, qp, axis), y_ort)
    assert np.array_equal(Q.fake_quantize(x, qp, axis), y_ort)


# ------------------------------------------------------------------------------ errors


def test_bad_inputs():
    with pytest.raises(fastq.DataError, match="max_val is not finite at index 1"):
        Q.compute_qparams(np.zeros(3), np.array([1.0, np.inf, 2.0]))
    with pytest.raises(fastq.DataError, match="min_val is not finite"):
        Q.compute_qparams(np.nan, 1.0)
    with pytest.raises(fastq.DataError, match="min_val > max_val at index 0"):
        Q.compute_qparams(2.0, 1.0, mode="asymmetric")
    with pytest.raises(fastq.DataError, match="min_val is required"):
        Q.compute_qparams(None, 1.0)
    with pytest.raises(fastq.ConfigError, match="bits"):
        Q.compute_qparams(0.0, 1.0, bits=9)
    with pytest.raises(fastq.ConfigError, match="bits"):
        Q.compute_qparams(0.0, 1.0, bits=True)
    with pytest.raises(fastq.ConfigError, match="level_low/level_high"):
        Q.compute_qparams(0.0, 1.0, level_low=-128, level_high=200)
    with pytest.raises(ValueError):
        Q.compute_qparams(0.0, 1.0, mode="symetric")


def test_from_resolved_layer():
    from fastq import config as C
    p = C.load({"name": "DefaultQuantization", "params": {"preset": "mixed"}}).main.params
    a = Q.from_layer(C.resolve_layer(p, "activations"), -1.0, 3.0)
    assert a.mode is C.Mode.ASYMMETRIC and a.dtype is np.uint8
    w = Q.from_layer(C.resolve_layer(p, "weights"), None, np.array([1.0, 2.0]))
    assert w.mode is C.Mode.SYMMETRIC and (w.qmin, w.qmax) == (-127, 127)


def test_clipping_values_apply_before_the_grid():
    from fastq import config as C
    p = C.load({"name": "DefaultQuantization", "params": {"preset": "mixed", "activations": {
        "range_estimator": {"max": {"clipping_value": 6.0}, "min": {"clipping_value": -1.0}}}}}
               ).main.params
    layer = C.resolve_layer(p, "activations")
    lo, hi = Q.clip_range(np.array([-3.0, -0.5]), np.array([2.0, 9.0]), layer.range_estimator)
    assert np.array_equal(lo, [-1.0, -0.5]) and np.array_equal(hi, [2.0, 6.0])
    qp = Q.from_layer(layer, -3.0, 9.0)
    want = Q.compute_qparams(-1.0, 6.0, mode="asymmetric")
    assert qp.scale == want.scale and qp.zero_point == want.zero_point
    assert Q.dequantize(Q.quantize(0.0, qp), qp) == 0.0


def test_asymmetric_zero_level_on_a_float_tie_follows_pot_order():
    """[-a, a] on 127 steps: 0.0 sits at level 63.5 in exact arithmetic; POT computes
    -lo * (n / (hi - lo)) = 63.4999... and takes level 63 (the property test below found the
    oracle rounding -lo * n / (hi - lo) = 63.5 to 64 instead)."""
    qp = Q.compute_qparams(-999998.0, 999998.0, mode="asymmetric", role="weights", bits=7)
    scale, q0 = asym_oracle(np.array(-999998.0), np.array(999998.0), n=qp.qmax - qp.qmin)
    assert int(q0) == 63 and int(qp.zero_point) == qp.qmin + 63
    np.testing.assert_allclose(float(qp.scale), float(scale), rtol=2e-6)
    assert Q.dequantize(Q.quantize(0.0, qp), qp) == 0.0


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None, database=None)
@given(_finite, _finite, st.sampled_from(["weights", "activations"]),
       st.sampled_from([4, 7, 8]))
def test_property_asymmetric_zero_exact_scale_positive(a, b, role, bits):
    lo, hi = min(a, b), max(a, b)
    qp = Q.compute_qparams(lo, hi, mode="asymmetric", role=role, bits=bits)
    assert np.isfinite(qp.scale) and qp.scale > 0
    assert qp.qmin <= int(qp.zero_point) <= qp.qmax
    assert Q.dequantize(Q.quantize(0.0, qp), qp) == 0.0
    scale, q0 = asym_oracle(np.array(lo), np.array(hi), n=qp.qmax - qp.qmin)
    assert int(qp.zero_point) == qp.qmin + int(q0)
    np.testing.assert_allclose(float(qp.scale), float(scale), rtol=2e-6)


@settings(max_examples=200, deadline=None, database=None)
@given(_finite, st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_property_symmetric_scale_and_sign(lo, mag):
    qp = Q.compute_qparams(lo, mag)
    want_unsigned = lo >= 0
    assert (qp.dtype is np.uint8) == want_unsigned
    step = max(mag, 8e-5) / (255 if want_unsigned else 127)
    assert qp.scale == np.float32(step) and int(qp.zero_point) == 0
