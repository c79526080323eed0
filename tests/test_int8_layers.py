"""Fused QDQ int8 layers (runtime/qdq_layers.py) on models quantized by ONNX Runtime's
quantize_static (QDQ, per-channel int8 weights, u8 activations) and on hand-built QDQ layers:
exact32 matches ONNX Runtime's int8 kernels on this CPU within one output quantization step;
sat16pair equals the numpy oracle of the saturating layer (and differs from exact32 there);
every impl gives identical bits; a float session still runs the QDQ model; layers the fused
path cannot represent stay in float and are reported with a reason."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import fastq
from fastq import kernels

import _int8_oracles as O
import _qdq_models as M
from _runtime_models import model, vi

ort = pytest.importorskip("onnxruntime")
IMPLS = kernels.available_impls()
RNG = np.random.default_rng(11)
logging.getLogger().setLevel(logging.ERROR)   # quantize_static's pre-processing advice

BUILDERS = {"cnn": M.cnn_model, "depthwise": M.depthwise_model, "mlp": M.mlp_model}


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """name -> (float model, QDQ model, feeds)."""
    out = {}
    for name, build in BUILDERS.items():
        m = build()
        q = M.quantize(m, M.calibration(m), tmp_path_factory.mktemp(name))
        out[name] = (m, q, M.calibration(m, 1, seed=99)[0])
    m = M.bert_model()
    out["bert_matmul"] = (m, M.quantize(m, M.calibration(m), tmp_path_factory.mktemp("bm"),
                                        op_types_to_quantize=["MatMul"]),
                          M.calibration(m, 1, seed=99)[0])
    out["bert_all"] = (m, M.quantize(m, M.calibration(m), tmp_path_factory.mktemp("ba")),
                       M.calibration(m, 1, seed=99)[0])
    return out


def ort_run(q, feeds, level=None):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    if level is not None:
        so.graph_optimization_level = level
    return ort.InferenceSession(q.SerializeToString(), so,
                                providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def output_scale(q) -> float:
    """Scale of the DequantizeLinear producing the graph output (one quantization step)."""
    prod = {o: n for n in q.graph.node for o in n.output}
    n = prod[q.graph.output[0].name]
    assert n.op_type == "DequantizeLinear"
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    return float(inits[n.input[1]])


def n_layers(q) -> int:
    return sum(n.op_type in ("Conv", "MatMul", "Gemm") for n in q.graph.node)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_exact32_matches_ort_int8_within_one_step(quantized, name):
    _, q, feeds = quantized[name]
    want = ort_run(q, feeds)       # ORT fuses the QDQ pattern into its int8 kernels
    s = fastq.InferenceSession(q, arith="exact32")
    assert len(s.int8_layers()) == n_layers(q) and s.unfused_qdq_layers() == []
    step = output_scale(q)
    got = s.run(None, feeds)[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=step * 1.0001)


def test_bert_matmul_block_matches_ort(quantized):
    # MatMuls quantized (ORT runs QLinearMatMul); the output is LayerNormalization's float
    _, q, feeds = quantized["bert_matmul"]
    s = fastq.InferenceSession(q, arith="exact32")
    recs = s.unfused_qdq_layers()
    assert len(s.int8_layers()) == 6
    assert {r.reason for r in recs} == {"weight input is not a constant"}  # Q K^T, P V
    np.testing.assert_allclose(s.run(None, feeds)[0], ort_run(q, feeds), rtol=1e-4, atol=1e-4)


def test_bert_all_ops_quantized_matches_ort_qdq_semantics(quantized):
    # With Add/Softmax/Mul quantized too, ORT's extended optimizations swap in its own
    # approximations (QLinearSoftmax tables, QLinearAdd); its basic level keeps ONNX QDQ
    # semantics, which fastq's exact32 must match within one output step.
    _, q, feeds = quantized["bert_all"]
    want = ort_run(q, feeds, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
    got = fastq.InferenceSession(q, arith="exact32").run(None, feeds)[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=output_scale(q) * 1.0001)


@pytest.mark.parametrize("name", list(BUILDERS) + ["bert_all"])
def test_float_session_runs_the_qdq_model(quantized, name):
    _, q, feeds = quantized[name]
    s = fastq.InferenceSession(q)
    assert s.int8_layers() == [] and s.unfused_qdq_layers() == []
    want = ort_run(q, feeds, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
    np.testing.assert_allclose(s.run(None, feeds)[0], want, rtol=0,
                               atol=output_scale(q) * 1.0001)


@pytest.mark.parametrize("name", list(BUILDERS) + ["bert_all"])
@pytest.mark.parametrize("arith", ["exact32", "sat16pair"])
def test_every_impl_gives_identical_bits(quantized, name, arith):
    _, q, feeds = quantized[name]
    outs = [fastq.InferenceSession(q, arith=arith, impl=i).run(None, feeds)[0] for i in IMPLS]
    for i, o in zip(IMPLS[1:], outs[1:]):
        assert np.array_equal(o, outs[0]), (name, arith, i)


@pytest.mark.parametrize("name", ["cnn", "mlp"])
def test_sat16pair_differs_from_exact32_on_ort_models(quantized, name):
    _, q, feeds = quantized[name]
    big = {k: v * 50 for k, v in feeds.items()}   # inputs at the calibrated range's ends
    e = fastq.InferenceSession(q, arith="exact32").run(None, big)[0]
    s = fastq.InferenceSession(q, arith="sat16pair").run(None, big)[0]
    assert not np.array_equal(e, s)


# -- hand-built QDQ layers against the oracle --------------------------------------------------

def _qdq_conv(xq_dt, x_shape, wq, ws, xz, xs=0.02, bias_q=None, **attrs):
    oc = wq.shape[0]
    inits = {"xs": np.float32(xs), "xz": xz, "wq": wq, "ws": ws,
             "wz": np.zeros(oc, np.int8) if np.ndim(ws) else np.int8(0)}
    nodes = [helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["x"], name="dqx"),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], name="dqw",
                              axis=0)]
    ins = ["x", "w"]
    if bias_q is not None:
        inits["bq"] = bias_q
        inits["bs"] = (np.float32(xs) * np.asarray(ws, np.float32)).astype(np.float32)
        inits["bz"] = np.zeros(np.shape(inits["bs"]), np.int32)
        nodes.append(helper.make_node("DequantizeLinear", ["bq", "bs", "bz"], ["b"], axis=0))
        ins.append("b")
    nodes.append(helper.make_node("Conv", ins, ["y"], name="conv", **attrs))
    nd = len(x_shape) - 2
    return model(nodes, [vi("xq", xq_dt, ["N", "C"] + [f"s{i}" for i in range(nd)])],
                 [vi("y", TensorProto.FLOAT, [f"o{i}" for i in range(nd + 2)])],
                 {k: np.asarray(v) for k, v in inits.items()}, opset=13)


def _saturating(shape_x, shape_w, x_dt=np.uint8):
    lo, hi = (230, 255) if x_dt == np.uint8 else (100, 127)
    x = RNG.integers(lo, hi + 1, shape_x).astype(x_dt)
    mag = RNG.integers(100, 128, shape_w)
    sign = np.where(RNG.random((shape_w[0],) + (1,) * (len(shape_w) - 1)) < 0.5, 1, -1)
    flip = np.where(RNG.random(shape_w) < 0.1, -1, 1)
    return x, (mag * sign * flip).astype(np.int8)


CONV_CASES = [
    ((1, 4, 6, 6), (5, 4, 3, 3), dict(pads=[1, 1, 1, 1])),
    ((2, 3, 7, 7), (4, 3, 3, 3), dict(strides=[2, 2], pads=[1, 0, 1, 2])),
    ((1, 6, 8, 8), (6, 1, 3, 3), dict(group=6, pads=[1, 1, 1, 1])),
    ((1, 4, 9, 9), (4, 2, 3, 3), dict(group=2, dilations=[2, 2], auto_pad="SAME_UPPER")),
    ((2, 5, 12), (3, 5, 3), dict(pads=[1, 1], strides=[2])),
]


@pytest.mark.parametrize("case", range(len(CONV_CASES)))
@pytest.mark.parametrize("x_dt", [np.uint8, np.int8])
@pytest.mark.parametrize("pairing", ["per_tap", "flat"])
def test_fused_conv_sat16pair_matches_oracle(case, x_dt, pairing):
    xs_, wsh, attrs = CONV_CASES[case]
    xq, wq = _saturating(xs_, wsh, x_dt)
    oc = wsh[0]
    ws = (RNG.random(oc) * 0.01 + 0.002).astype(np.float32)
    xz = x_dt(3)
    bq = RNG.integers(-3000, 3000, oc).astype(np.int32)
    m = _qdq_conv(helper.np_dtype_to_tensor_dtype(np.dtype(x_dt)), xs_, wq, ws, xz,
                  bias_q=bq, **attrs)
    nd = len(xs_) - 2
    st = attrs.get("strides", [1] * nd)
    dl = attrs.get("dilations", [1] * nd)
    pads = attrs.get("pads", [0] * 2 * nd)
    if attrs.get("auto_pad") == "SAME_UPPER":
        pads = [2, 2, 2, 2]
    g = attrs.get("group", 1)
    shift = 128 if x_dt == np.int8 else 0
    xu = xq.astype(np.int64) + shift
    raw = O.raw_conv(xu, wq.astype(np.int64), int(xz) + shift, st, pads, dl, g, "sat16pair",
                     pairing)
    bias = bq.astype(np.float32) * (np.float32(0.02) * ws)
    want = O.epilogue(raw, wq.reshape(oc, -1).sum(1, dtype=np.int64), int(xz) + shift,
                      np.float32(0.02), ws, bias)
    exact = fastq.InferenceSession(m, arith="exact32").run(None, {"xq": xq})[0]
    for impl in IMPLS:
        s = fastq.InferenceSession(m, arith="sat16pair", impl=impl, conv_pairing=pairing)
        assert [r.op_type for r in s.int8_layers()] == ["Conv"]
        got = s.run(None, {"xq": xq})[0]
        assert np.array_equal(got, want), (impl, case)
    if attrs.get("group") == wsh[0] == xs_[1] and pairing == "per_tap":
        # depthwise, per tap: one channel per tap, each product stands alone (no pair)
        assert np.array_equal(got, exact)
    else:
        assert not np.array_equal(got, exact)
    # exact32 is the float QDQ model up to float rounding
    ref = fastq.InferenceSession(m).run(None, {"xq": xq})[0]
    np.testing.assert_allclose(exact, ref, rtol=1e-5, atol=1e-3)


def _qdq_linear(op, xq, wq, ws, xz, c=None, ws_axis=1, **attrs):
    inits = {"xs": np.float32(0.03), "xz": xz, "wq": wq, "ws": ws}
    nodes = [helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["x"], name="dqx"),
             helper.make_node("DequantizeLinear", ["wq", "ws"], ["w"], name="dqw",
                              axis=ws_axis)]
    ins = ["x", "w"]
    if c is not None:
        inits["c"] = c
        ins.append("c")
    nodes.append(helper.make_node(op, ins, ["y"], name="lin", **attrs))
    shape = ["N"] + [f"d{i}" for i in range(xq.ndim - 1)]
    return model(nodes, [vi("xq", TensorProto.UINT8, shape)],
                 [vi("y", TensorProto.FLOAT, [f"o{i}" for i in range(xq.ndim)])],
                 {k: np.asarray(v) for k, v in inits.items()}, opset=13)


@pytest.mark.parametrize("k", [7, 32, 33])
def test_fused_matmul_sat16pair_matches_oracle(k):
    xq, wq = _saturating((2, 5, k), (9, k))
    wq = np.ascontiguousarray(wq.T)                               # [K, N], signs per column
    ws = (RNG.random(9) * 0.01 + 0.001).astype(np.float32)
    m = _qdq_linear("MatMul", xq, wq, ws, np.uint8(7))
    raw = O.matmul_raw(xq.reshape(-1, k), wq, "sat16pair")
    want = O.epilogue(raw, wq.sum(0, dtype=np.int64), 7, np.float32(0.03), ws, None)
    want = want.reshape(2, 5, 9)
    for impl in IMPLS:
        s = fastq.InferenceSession(m, arith="sat16pair", impl=impl)
        assert np.array_equal(s.run(None, {"xq": xq})[0], want), impl
    e = fastq.InferenceSession(m, arith="exact32").run(None, {"xq": xq})[0]
    assert not np.array_equal(e, want)


def test_fused_gemm_transb_alpha_beta_matches_oracle():
    xq, wq = _saturating((4, 20), (6, 20))                        # B is [N, K] (transB=1)
    ws = (RNG.random(6) * 0.01 + 0.001).astype(np.float32)
    c = RNG.standard_normal(6).astype(np.float32)
    m = _qdq_linear("Gemm", xq, wq, ws, np.uint8(0), c=c, ws_axis=0, transB=1, alpha=0.5,
                    beta=2.0)
    raw = O.matmul_raw(xq, wq.T, "sat16pair")
    want = O.epilogue(raw, wq.sum(1, dtype=np.int64), 0, np.float32(0.03),
                      (ws * np.float32(0.5)).astype(np.float32), c * np.float32(2))
    s = fastq.InferenceSession(m, arith="sat16pair")
    assert [r.fused_as for r in s.int8_layers()] == ["QdqLinear"]
    assert np.array_equal(s.run(None, {"xq": xq})[0], want)
    ref = fastq.InferenceSession(m).run(None, {"xq": xq})[0]
    e = fastq.InferenceSession(m, arith="exact32").run(None, {"xq": xq})[0]
    np.testing.assert_allclose(e, ref, rtol=1e-5, atol=1e-3)


def test_unrepresentable_layers_stay_float_with_reasons():
    x = RNG.integers(0, 256, (1, 3, 4, 6, 6)).astype(np.uint8)
    w3 = RNG.integers(-127, 128, (2, 3, 2, 3, 3)).astype(np.int8)
    m3 = _qdq_conv(TensorProto.UINT8, x.shape, w3, np.float32(0.01), np.uint8(0))
    s = fastq.InferenceSession(m3, arith="sat16pair")
    (rec,) = s.unfused_qdq_layers()
    assert rec.name == "conv" and "rank 5" in rec.reason and s.int8_layers() == []
    np.testing.assert_array_equal(s.run(None, {"xq": x})[0],
                                  fastq.InferenceSession(m3).run(None, {"xq": x})[0])
    # uint8 weights with a nonzero zero point (per tensor)
    wu = RNG.integers(0, 256, (4, 3, 3, 3)).astype(np.uint8)
    mu = _qdq_conv(TensorProto.UINT8, (1, 3, 6, 6), wu, np.float32(0.01), np.uint8(0))
    mu.graph.initializer[[t.name for t in mu.graph.initializer].index("wz")].CopyFrom(
        numpy_helper.from_array(np.uint8(120), "wz"))
    s = fastq.InferenceSession(mu, arith="exact32")
    (rec,) = s.unfused_qdq_layers()
    assert "uint8" in rec.reason
    # per-channel scales on the wrong axis for MatMul [K, N]
    xq = RNG.integers(0, 256, (3, 8)).astype(np.uint8)
    wq = RNG.integers(-127, 128, (8, 8)).astype(np.int8)
    mm = _qdq_linear("MatMul", xq, wq, np.full(8, 0.01, np.float32), np.uint8(0), ws_axis=0)
    (rec,) = fastq.InferenceSession(mm, arith="exact32").unfused_qdq_layers()
    assert "axis 0" in rec.reason


def test_fused_layer_bad_inputs_name_the_node():
    wq = RNG.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8)
    m = _qdq_conv(TensorProto.UINT8, (1, 3, 6, 6), wq, np.full(4, 0.01, np.float32),
                  np.uint8(0), pads=[1, 1, 1, 1])
    s = fastq.InferenceSession(m, arith="exact32")
    with pytest.raises(fastq.ModelError, match="'conv'.*channel mismatch"):
        s.run(None, {"xq": np.zeros((1, 5, 6, 6), np.uint8)})
    xq = RNG.integers(0, 256, (3, 8)).astype(np.uint8)
    mm = _qdq_linear("MatMul", xq, RNG.integers(-127, 128, (8, 5)).astype(np.int8),
                     np.float32(0.01), np.uint8(0))
    s = fastq.InferenceSession(mm, arith="exact32")
    with pytest.raises(fastq.ModelError, match="'lin'.*K=8"):
        s.run(None, {"xq": np.zeros((3, 7), np.uint8)})
    with pytest.raises(fastq.ConfigError, match="conv_pairing"):
        fastq.InferenceSession(mm, arith="exact32", conv_pairing="pairs")


# -- output requantization (QuantizeLinear absorbed) and the C++ QuantizeLinear ---------------

def _requant_oracle(acc, zcomp, mult, yz, dt):
    """ONNX Runtime's QLinearConv/QLinearMatMul output: float32(acc - zcomp) * mult, round half
    to even, + y_zero_point, saturate (channel axis 1)."""
    shape = (1, -1) + (1,) * (acc.ndim - 2)
    v = (acc.astype(np.int64) - zcomp.reshape(shape)).astype(np.float32) * mult.reshape(shape)
    info = np.iinfo(dt)
    return np.clip(np.rint(v) + yz, info.min, info.max).astype(dt)


@pytest.mark.parametrize("ydt", [np.uint8, np.int8])
@pytest.mark.parametrize("x_dt", [np.uint8, np.int8])
@pytest.mark.parametrize("arith", ["exact32", "sat16pair"])
def test_conv_with_quantize_after_requantizes_like_ort(ydt, x_dt, arith):
    xs_, wsh, attrs = CONV_CASES[1]
    xq, wq = _saturating(xs_, wsh, x_dt)
    oc = wsh[0]
    ws = (RNG.random(oc) * 0.01 + 0.002).astype(np.float32)
    bq = RNG.integers(-3000, 3000, oc).astype(np.int32)
    m = _qdq_conv(helper.np_dtype_to_tensor_dtype(np.dtype(x_dt)), xs_, wq, ws, x_dt(3),
                  bias_q=bq, **attrs)
    sh = 128 if x_dt == np.int8 else 0
    yz = ydt(-5 if ydt == np.int8 else 120)
    m.graph.node.append(helper.make_node("QuantizeLinear", ["y", "ys", "yz"], ["yq"],
                                         name="q"))
    m.graph.initializer.extend([numpy_helper.from_array(np.asarray(np.float32(0.7)), "ys"),
                                numpy_helper.from_array(np.asarray(yz), "yz")])
    del m.graph.output[:]
    m.graph.output.append(vi("yq", helper.np_dtype_to_tensor_dtype(np.dtype(ydt)),
                             ["a", "b", "c", "d"]))
    raw = O.raw_conv(xq.astype(np.int64) + sh, wq.astype(np.int64), 3 + sh, attrs["strides"],
                     attrs["pads"], [1, 1], 1, arith)
    zcomp = (3 + sh) * wq.reshape(oc, -1).sum(1, dtype=np.int64) - bq
    mult = (np.float32(0.02) * ws / np.float32(0.7)).astype(np.float32)
    want = _requant_oracle(raw, zcomp, mult, int(yz), ydt)
    for impl in IMPLS:
        s = fastq.InferenceSession(m, arith=arith, impl=impl)
        assert [r.output for r in s.int8_layers()] == ["int8"]
        got = s.run(None, {"xq": xq})[0]
        assert got.dtype == ydt and np.array_equal(got, want), impl
    # the float QDQ model agrees up to float rounding: at most one step apart
    ref = fastq.InferenceSession(m).run(None, {"xq": xq})[0]
    if arith == "exact32":
        assert np.abs(got.astype(np.int32) - ref.astype(np.int32)).max() <= 1


def test_kept_tensor_stays_produced_and_float():
    """A layer output the session is asked to keep is not fused away with its QuantizeLinear:
    run_with_intermediates can read it, and it equals the float epilogue of the int8 layer."""
    xs_, wsh, attrs = CONV_CASES[1]
    xq, wq = _saturating(xs_, wsh, np.uint8)
    ws = (RNG.random(wsh[0]) * 0.01 + 0.002).astype(np.float32)
    m = _qdq_conv(helper.np_dtype_to_tensor_dtype(np.dtype(np.uint8)), xs_, wq, ws, np.uint8(3),
                  **attrs)
    m.graph.node.append(helper.make_node("QuantizeLinear", ["y", "ys", "yz"], ["yq"], name="q"))
    m.graph.initializer.extend([numpy_helper.from_array(np.asarray(np.float32(0.7)), "ys"),
                                numpy_helper.from_array(np.asarray(np.uint8(120)), "yz")])
    del m.graph.output[:]
    m.graph.output.append(vi("yq", helper.np_dtype_to_tensor_dtype(np.dtype(np.uint8)),
                             ["a", "b", "c", "d"]))
    fused = fastq.InferenceSession(m, arith="exact32")
    assert [r.output for r in fused.int8_layers()] == ["int8"]
    with pytest.raises(fastq.ModelError, match="no tensor named 'y'"):
        fused.run_with_intermediates({"xq": xq}, ["y"])
    kept = fastq.InferenceSession(m, arith="exact32", keep=["y"])
    assert [r.output for r in kept.int8_layers()] == ["float"]
    y = kept.run_with_intermediates({"xq": xq}, ["y"])["y"]
    want = kernels.qconv(xq, wq, x_zero_point=3, x_scale=0.02, w_scales=ws,
                         strides=attrs["strides"], pads=attrs["pads"])
    assert y.dtype == np.float32 and np.array_equal(y, want)


def _conv_act_q(act, yz, ydt=np.uint8, ys=0.05):
    """DQ -> Conv -> act -> Q(ys, yz): act is ("Relu",) or ("Clip", lo, hi)."""
    xs_, wsh, attrs = CONV_CASES[1]
    xq, wq = _saturating(xs_, wsh, np.uint8)
    ws = (RNG.random(wsh[0]) * 0.01 + 0.002).astype(np.float32)
    m = _qdq_conv(TensorProto.UINT8, xs_, wq, ws, np.uint8(3), **attrs)
    ins = ["y"]
    if act[0] == "Clip":
        m.graph.initializer.extend([numpy_helper.from_array(np.asarray(np.float32(v)), k)
                                    for k, v in (("lo", act[1]), ("hi", act[2]))])
        ins += ["lo", "hi"]
    m.graph.node.extend([helper.make_node(act[0], ins, ["a"], name="act"),
                         helper.make_node("QuantizeLinear", ["a", "ys", "yz"], ["yq"], name="q")])
    m.graph.initializer.extend([numpy_helper.from_array(np.asarray(np.float32(ys)), "ys"),
                                numpy_helper.from_array(np.asarray(ydt(yz)), "yz")])
    del m.graph.output[:]
    m.graph.output.append(vi("yq", helper.np_dtype_to_tensor_dtype(np.dtype(ydt)),
                             ["a", "b", "c", "d"]))
    return m, xq


@pytest.mark.parametrize("act, yz, ydt, absorbed", [
    (("Relu",), 0, np.uint8, True),            # zero point at the type minimum
    (("Relu",), -128, np.int8, True),
    (("Relu",), 7, np.uint8, False),           # Q(0) = 7 > 0: the Relu clamps, kept
    (("Clip", -1e9, 1e9), 100, np.uint8, True),   # bounds outside what Q can represent
    (("Clip", 0.0, 6.0), 0, np.uint8, False),  # Q(6) = 120 < 255: the clip bites, kept
    (("Clip", 0.0, 1e9), 0, np.uint8, True),
])
@pytest.mark.parametrize("arith", ["exact32", "sat16pair"])
def test_activation_before_quantize_is_absorbed_only_when_exact(act, yz, ydt, absorbed, arith):
    """Relu/Clip -> QuantizeLinear is dropped exactly when Q's saturation performs it (as ONNX
    Runtime's Relu/Clip-Q fusion), making Conv -> act -> Q one requantized int8 layer; the
    outputs are bit-identical to the session that keeps the activation (pinned via keep)."""
    m, xq = _conv_act_q(act, yz, ydt)
    s = fastq.InferenceSession(m, arith=arith)
    kept = fastq.InferenceSession(m, arith=arith, keep=["a"])
    assert [r.output for r in s.int8_layers()] == ["int8" if absorbed else "float"]
    assert [r.output for r in kept.int8_layers()] == ["float"]
    got, want = s.run(None, {"xq": xq})[0], kept.run(None, {"xq": xq})[0]
    assert got.dtype == ydt and np.array_equal(got, want)
    # the activation had negatives to remove: they land on Q(lower bound)
    assert want.min() == (np.iinfo(ydt).min if absorbed else yz)


def test_matmul_with_quantize_after_requantizes_like_ort():
    xq, wq = _saturating((3, 4, 16), (6, 16))
    wq = np.ascontiguousarray(wq.T)
    ws = (RNG.random(6) * 0.01 + 0.001).astype(np.float32)
    m = _qdq_linear("MatMul", xq, wq, ws, np.uint8(9))
    m.graph.node.append(helper.make_node("QuantizeLinear", ["y", "ys", "yz"], ["yq"]))
    m.graph.initializer.extend([numpy_helper.from_array(np.asarray(np.float32(0.9)), "ys"),
                                numpy_helper.from_array(np.asarray(np.uint8(128)), "yz")])
    del m.graph.output[:]
    m.graph.output.append(vi("yq", TensorProto.UINT8, ["a", "b", "c"]))
    for arith in ("exact32", "sat16pair"):
        raw = O.matmul_raw(xq.reshape(-1, 16), wq, arith)
        mult = (np.float32(0.03) * ws / np.float32(0.9)).astype(np.float32)
        want = _requant_oracle(raw, 9 * wq.sum(0, dtype=np.int64), mult, 128, np.uint8)
        got = fastq.InferenceSession(m, arith=arith).run(None, {"xq": xq})[0]
        assert np.array_equal(got, want.reshape(3, 4, 6)), arith


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_quantize_f32_equals_onnx_quantize_linear(dt):
    from fastq import _core
    from fastq.runtime.ops.quant import quantize_linear
    from fastq.runtime.registry import Node
    x = np.concatenate([RNG.standard_normal(5000).astype(np.float32) * 40,
                        np.arange(-300, 300, dtype=np.float32) * np.float32(0.5),  # halves
                        np.array([1e30, -1e30, np.inf, -np.inf, 0.0, -0.0], np.float32)])
    for scale, zp in [(0.25, 3), (0.1, 0), (1.0, -7 if dt == np.int8 else 255)]:
        want = quantize_linear(Node("q", "QuantizeLinear", "", 19, 19), x, np.float32(scale),
                               np.asarray(dt(zp)))
        got = _core.quantize_f32(x, scale, zp, dt == np.int8)
        assert got.dtype == dt and np.array_equal(got, want), (scale, zp)


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_dequantize_f32_equals_onnx_dequantize_linear(dt):
    from fastq import _core
    from fastq.runtime.ops.quant import dequantize_linear
    from fastq.runtime.registry import Node
    info = np.iinfo(dt)
    x = np.arange(info.min, info.max + 1).astype(dt).reshape(16, 16)
    for scale, zp in [(0.0371, 3), (1e-3, int(info.max)), (7.5, int(info.min))]:
        want = dequantize_linear(Node("dq", "DequantizeLinear", "", 19, 19), x,
                                 np.float32(scale), np.asarray(dt(zp)))
        got = _core.dequantize_f32(x, scale, zp)
        assert got.dtype == np.float32 and np.array_equal(got, want), (scale, zp)


def test_matmul_bias_add_is_folded_into_the_layer():
    xq, wq = _saturating((2, 3, 12), (5, 12))
    wq = np.ascontiguousarray(wq.T)
    ws = (RNG.random(5) * 0.01 + 0.001).astype(np.float32)
    b = RNG.standard_normal(5).astype(np.float32)
    m = _qdq_linear("MatMul", xq, wq, ws, np.uint8(4))
    m.graph.node[-1].output[0] = "h"
    m.graph.node.append(helper.make_node("Add", ["b", "h"], ["y"], name="bias_add"))
    m.graph.initializer.append(numpy_helper.from_array(b, "b"))
    raw = O.matmul_raw(xq.reshape(-1, 12), wq, "sat16pair")
    want = O.epilogue(raw, wq.sum(0, dtype=np.int64), 4, np.float32(0.03), ws, b)
    s = fastq.InferenceSession(m, arith="sat16pair")
    assert [n.node.op_type for n in s._graph.steps] == ["QdqLinear"]
    assert np.array_equal(s.run(None, {"xq": xq})[0], want.reshape(2, 3, 5))
    ref = fastq.InferenceSession(m).run(None, {"xq": xq})[0]
    e = fastq.InferenceSession(m, arith="exact32").run(None, {"xq": xq})[0]
    np.testing.assert_allclose(e, ref, rtol=1e-5, atol=1e-4)


def test_matmul_bias_add_of_a_dequantized_int32_bias_is_folded_into_the_layer():
    """A QDQ export writes the MatMul's bias as DequantizeLinear(int32 constant): the layer
    takes it as its bias too (constant folding makes it the float vector the Add would add),
    with the unfused graph's bits; a bias DequantizeLinear of a non-constant stays an Add."""
    xq, wq = _saturating((2, 3, 12), (5, 12))
    wq = np.ascontiguousarray(wq.T)
    ws = (RNG.random(5) * 0.01 + 0.001).astype(np.float32)
    bq = RNG.integers(-2000, 2000, 5).astype(np.int32)
    bs = (np.float32(0.03) * ws).astype(np.float32)
    m = _qdq_linear("MatMul", xq, wq, ws, np.uint8(4))
    m.graph.node[-1].output[0] = "h"
    m.graph.node.extend([
        helper.make_node("DequantizeLinear", ["bq", "bs", "bz"], ["b"], name="b_dq", axis=0),
        helper.make_node("Add", ["h", "b"], ["y"], name="bias_add")])
    m.graph.initializer.extend([numpy_helper.from_array(bq, "bq"),
                                numpy_helper.from_array(bs, "bs"),
                                numpy_helper.from_array(np.zeros(5, np.int32), "bz")])
    for arith in ("exact32", "sat16pair"):
        s = fastq.InferenceSession(m, arith=arith)
        assert [n.node.op_type for n in s._graph.steps] == ["QdqLinear"], arith
        plain = fastq.InferenceSession(m, arith=arith, keep=["h"])   # h kept: Add unfused
        assert "Add" in [n.node.op_type for n in plain._graph.steps]
        assert np.array_equal(s.run(None, {"xq": xq})[0], plain.run(None, {"xq": xq})[0])
    raw = O.matmul_raw(xq.reshape(-1, 12), wq, "exact32")
    want = O.epilogue(raw, wq.sum(0, dtype=np.int64), 4, np.float32(0.03), ws,
                      bq.astype(np.float32) * bs)
    got = fastq.InferenceSession(m, arith="exact32").run(None, {"xq": xq})[0]
    assert np.array_equal(got, want.reshape(2, 3, 5))
