"""int8 ops in the executor against independent numpy oracles: MatMulInteger / QLinearMatMul
under each arith and impl (integer results compared exactly), QuantizeLinear /
DequantizeLinear per tensor, per axis and per block, DynamicQuantizeLinear."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

import fastq
from fastq import kernels

from _runtime_models import single

IMPLS = kernels.available_impls()
RNG = np.random.default_rng(42)


def oracle_matmul_int(a, b, azp, bzp, arith):
    """sum_k (a-azp)(b-bzp); in sat16pair the raw u8 x s8 products (int8 a shifted by +128,
    uint8 b shifted by -128) are summed in saturating pairs, zero points removed exactly."""
    a64, b64 = a.astype(np.int64), b.astype(np.int64)
    if arith == "exact32":
        za = np.asarray(azp, np.int64).reshape(-1, 1) if np.ndim(azp) else np.int64(azp)
        return ((a64 - za) @ (b64 - np.asarray(bzp, np.int64))).astype(np.int32)
    au = a64 + (128 if a.dtype == np.int8 else 0)
    bs = b64 - (128 if b.dtype == np.uint8 else 0)
    za = np.asarray(azp, np.int64) + (128 if a.dtype == np.int8 else 0)
    zb = np.asarray(bzp, np.int64) - (128 if b.dtype == np.uint8 else 0)
    p = au[:, :, None] * bs[None, :, :]
    p = np.pad(p, ((0, 0), (0, p.shape[1] % 2), (0, 0)))
    raw = np.clip(p[:, 0::2] + p[:, 1::2], -32768, 32767).sum(axis=1)
    k = a.shape[1]
    za_col = za.reshape(-1, 1) if za.ndim else za
    acc = raw - za_col * bs.sum(0)[None, :] - au.sum(1)[:, None] * zb + k * za_col * zb
    return acc.astype(np.int32)


def _mmi_model(a, b, azp, bzp, b_const):
    ins = {"a": a}
    consts = {}
    (consts if b_const else ins)["b"] = b
    consts["azp"] = np.asarray(azp, a.dtype)
    consts["bzp"] = np.asarray(bzp, b.dtype)
    return single("MatMulInteger", ins, consts=consts), ins


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("arith", ["exact32", "sat16pair"])
@pytest.mark.parametrize("adt,bdt", [(np.uint8, np.int8), (np.int8, np.int8),
                                     (np.uint8, np.uint8)])
@pytest.mark.parametrize("b_const", [True, False])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 7, 5), (16, 33, 17)])
def test_matmul_integer_matches_oracle(impl, arith, adt, bdt, b_const, m, k, n):
    lo_a, hi_a = np.iinfo(adt).min, np.iinfo(adt).max
    lo_b, hi_b = np.iinfo(bdt).min, np.iinfo(bdt).max
    a = RNG.integers(lo_a, hi_a + 1, (m, k)).astype(adt)
    b = RNG.integers(lo_b, hi_b + 1, (k, n)).astype(bdt)
    azp, bzp = adt(RNG.integers(lo_a, hi_a)), bdt(RNG.integers(lo_b, hi_b))
    mdl, feeds = _mmi_model(a, b, azp, bzp, b_const)
    got = fastq.InferenceSession(mdl, arith=arith, impl=impl).run(None, feeds)[0]
    assert got.dtype == np.int32
    want = oracle_matmul_int(a, b, azp, bzp, arith)
    assert np.array_equal(got, want), f"impl={impl} arith={arith} shape=({m},{k},{n})"


@pytest.mark.parametrize("impl", IMPLS)
def test_sat16pair_saturates_where_exact32_does_not(impl):
    a = np.full((2, 8), 255, np.uint8)
    b = np.full((8, 3), 127, np.int8)
    mdl, feeds = _mmi_model(a, b, 0, 0, True)
    ex = fastq.InferenceSession(mdl, arith="exact32", impl=impl).run(None, feeds)[0]
    sat = fastq.InferenceSession(mdl, arith="sat16pair", impl=impl).run(None, feeds)[0]
    assert np.all(ex == 8 * 255 * 127)
    assert np.all(sat == 4 * 32767)  # each pair 2*255*127 = 64770 clips to 32767
    float_sess = fastq.InferenceSession(mdl).run(None, feeds)[0]
    assert np.array_equal(float_sess, ex)  # arith None: the ONNX semantics (exact)


def test_matmul_integer_per_row_and_per_column_zero_points_batched():
    a = RNG.integers(0, 256, (2, 3, 4, 6)).astype(np.uint8)
    b = RNG.integers(-128, 128, (6, 5)).astype(np.int8)
    azp = RNG.integers(0, 256, 4).astype(np.uint8)        # per row (M = 4)
    bzp = RNG.integers(-128, 128, 5).astype(np.int8)      # per column (N = 5)
    mdl = single("MatMulInteger", {"a": a}, consts={"b": b, "azp": azp, "bzp": bzp})
    got = fastq.InferenceSession(mdl).run(None, {"a": a})[0]
    want = np.einsum("...mk,kn->...mn", a.astype(np.int64) - azp[:, None].astype(np.int64),
                     b.astype(np.int64) - bzp.astype(np.int64)).astype(np.int32)
    assert np.array_equal(got, want)


def test_matmul_integer_batched_b_broadcast():
    a = RNG.integers(0, 256, (3, 1, 4, 6)).astype(np.uint8)
    b = RNG.integers(-128, 128, (2, 6, 5)).astype(np.int8)
    mdl = single("MatMulInteger", {"a": a, "b": b})
    got = fastq.InferenceSession(mdl, arith="exact32").run(None, {"a": a, "b": b})[0]
    want = np.matmul(a.astype(np.int64), b.astype(np.int64)).astype(np.int32)
    assert got.shape == (3, 2, 4, 5) and np.array_equal(got, want)


def oracle_qlinear_matmul(a, sa, za, b, sb, zb, sy, zy):
    acc = (a.astype(np.int64) - int(za)) @ (b.astype(np.int64) - np.asarray(zb, np.int64))
    mult = (np.float32(sa) * np.asarray(sb, np.float32) / np.float32(sy)).astype(np.float32)
    y = np.rint(acc.astype(np.float32) * mult) + np.float32(zy)
    info = np.iinfo(zy.dtype)
    return np.clip(y, info.min, info.max).astype(zy.dtype)


@pytest.mark.parametrize("ydt", [np.uint8, np.int8])
@pytest.mark.parametrize("per_column", [False, True])
def test_qlinear_matmul_matches_oracle(ydt, per_column):
    m, k, n = 5, 19, 7
    a = RNG.integers(0, 256, (m, k)).astype(np.uint8)
    b = RNG.integers(-127, 128, (k, n)).astype(np.int8)
    sb = (RNG.random(n) * 0.02 + 0.001).astype(np.float32) if per_column else np.float32(0.01)
    zb = np.zeros(n, np.int8) if per_column else np.int8(0)
    sa, za = np.float32(0.05), np.uint8(120)
    sy, zy = np.float32(0.3), ydt(3)
    consts = {"sa": np.asarray(sa), "za": np.asarray(za), "b": b, "sb": np.asarray(sb),
              "zb": np.asarray(zb), "sy": np.asarray(sy), "zy": np.asarray(zy)}
    mdl = single("QLinearMatMul", {"a": a}, consts=consts)
    # input order of QLinearMatMul: a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp
    got = fastq.InferenceSession(mdl).run(None, {"a": a})[0]
    want = oracle_qlinear_matmul(a, sa, za, b, sb, zb, sy, zy)
    assert got.dtype == ydt and np.array_equal(got, want)


# -- Quantize / Dequantize -------------------------------------------------------------------

def oracle_quantize(x, scale, zp, dt):
    info = np.iinfo(dt)
    return np.clip(np.rint(x / scale) + zp.astype(np.float32), info.min, info.max).astype(dt)


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_quantize_per_tensor_rounds_half_to_even_and_saturates(dt):
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 1000, -1000, 0.26], np.float32)
    s, z = np.float32(1.0), np.asarray(dt(0) if dt == np.int8 else dt(10))
    y = fastq.InferenceSession(single("QuantizeLinear", {"x": x},
                                      consts={"s": np.asarray(s), "z": z})).run(None, {"x": x})[0]
    assert y.dtype == dt
    assert np.array_equal(y, oracle_quantize(x, s, z, dt))
    if dt == np.int8:
        assert list(y[:5]) == [0, 2, 2, 0, -2]


def test_quantize_dequantize_per_axis():
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    s = np.array([0.01, 0.02, 0.05], np.float32)
    z = np.array([0, 5, -3], np.int8)
    q = fastq.InferenceSession(single("QuantizeLinear", {"x": x}, consts={"s": s, "z": z},
                                      axis=1)).run(None, {"x": x})[0]
    want = oracle_quantize(x, s[None, :, None], z[None, :, None], np.int8)
    assert np.array_equal(q, want)
    d = fastq.InferenceSession(single("DequantizeLinear", {"q": q}, consts={"s": s, "z": z},
                                      axis=1)).run(None, {"q": q})[0]
    np.testing.assert_array_equal(
        d, (q.astype(np.float32) - z[None, :, None].astype(np.float32)) * s[None, :, None])


def test_quantize_dequantize_blocked_opset21():
    x = RNG.standard_normal((4, 6)).astype(np.float32)
    s = (RNG.random((4, 2)) * 0.05 + 0.01).astype(np.float32)   # blocks of 3 along axis 1
    z = RNG.integers(0, 20, (4, 2)).astype(np.uint8)
    q = fastq.InferenceSession(single("QuantizeLinear", {"x": x}, consts={"s": s, "z": z},
                                      opset=21, axis=1, block_size=3)).run(None, {"x": x})[0]
    se, ze = np.repeat(s, 3, axis=1), np.repeat(z, 3, axis=1)
    assert np.array_equal(q, oracle_quantize(x, se, ze, np.uint8))
    d = fastq.InferenceSession(single("DequantizeLinear", {"q": q}, consts={"s": s, "z": z},
                                      opset=21, axis=1, block_size=3)).run(None, {"q": q})[0]
    np.testing.assert_array_equal(d, (q.astype(np.float32) - ze.astype(np.float32)) * se)


def test_quantize_output_dtype_attribute_opset21():
    x = np.array([-300.0, 0.4, 70000.0], np.float32)
    mdl = single("QuantizeLinear", {"x": x}, consts={"s": np.asarray(np.float32(1))}, opset=21,
                 output_dtype=TensorProto.INT16)
    y = fastq.InferenceSession(mdl).run(None, {"x": x})[0]
    assert y.dtype == np.int16 and list(y) == [-300, 0, 32767]


def test_dynamic_quantize_linear():
    x = np.array([[-1.0, 0.0, 2.5, 0.7]], np.float32)
    y, s, z = fastq.InferenceSession(single("DynamicQuantizeLinear", {"x": x}, n_out=3)).run(
        None, {"x": x})
    want_s = np.float32(3.5) / np.float32(255)
    want_z = np.uint8(np.rint(np.float32(1.0) / want_s))
    assert s == want_s and z == want_z
    assert np.array_equal(y, np.clip(np.rint(x / want_s) + np.float32(want_z), 0, 255)
                          .astype(np.uint8))


def test_qdq_float_session_is_fake_quant():
    """arith=None: Q->DQ runs as written, i.e. float fake quantisation."""
    from onnx import helper
    from _runtime_models import model, vi, F
    x = RNG.standard_normal((3, 5)).astype(np.float32)
    s, z = np.float32(0.02), np.uint8(128)
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    m = model(nodes, [vi("x", F, [3, 5])], [vi("y", F, [3, 5])],
              {"s": np.asarray(s), "z": np.asarray(z)})
    y = fastq.InferenceSession(m).run(None, {"x": x})[0]
    q = oracle_quantize(x, s, np.asarray(z), np.uint8)
    np.testing.assert_array_equal(y, (q.astype(np.float32) - np.float32(128)) * s)
