"""QParams and bias algebra in the export against independent numpy statements: per-channel
weight scales, activation scales from POT's default estimators (min of per-sample min, mean of
per-sample abs max), int32 biases, FastBiasCorrection, the int32 bias-overflow guard, and
ranges shared by Concat inputs and MaxPool input/output."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import fastq
from models import builders as B


def two_convs(w1, b1, seed=0, n=12):
    rng = np.random.default_rng(seed)
    w2 = rng.standard_normal((5, 4, 1, 1)).astype(np.float32)
    b2 = rng.normal(0, .1, 5).astype(np.float32)
    inits = [numpy_helper.from_array(a, k) for a, k in
             ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))]
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="c1"),
         helper.make_node("Relu", ["c1"], ["r1"], name="r1"),
         helper.make_node("Conv", ["r1", "w2", "b2"], ["y"], name="c2")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5, 4, 4])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    data = [(rng.standard_normal((1, 3, 6, 6)) * rng.uniform(0.5, 2)).astype(np.float32)
            for _ in range(n)]
    return m, data


def conv_valid(x, w):
    win = np.lib.stride_tricks.sliding_window_view(x, w.shape[2:], axis=(2, 3))
    return np.einsum("nchwij,ocij->nohw", win.astype(np.float64), w.astype(np.float64))


def fq(x, scale, lo, hi, zp=0):
    return (np.clip(np.rint(np.asarray(x, np.float32) / np.float32(scale)) + zp, lo, hi) - zp
            ) * np.float64(np.float32(scale))


def dq_of(model, tensor_consumer, idx):
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    prod = {o: n for n in model.graph.node for o in n.output}
    n = next(n for n in model.graph.node if n.name == tensor_consumer)
    dq = prod[n.input[idx]]
    assert dq.op_type == "DequantizeLinear"
    return inits.get(dq.input[0]), inits[dq.input[1]], inits[dq.input[2]]


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(1)
    w1 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3
    b1 = rng.normal(0.5, 0.2, 4).astype(np.float32)
    return w1, b1, *two_convs(w1, b1)


NO_FIX = {"saturation_fix": "no"}


def test_weight_and_activation_scales(setup):
    w1, b1, m, data = setup
    res = fastq.quantize(m, data, {"name": "DefaultQuantization",
                                   "params": dict(NO_FIX, threshold=1e-12)}, progress=False)
    wq, ws, wz = dq_of(res.model, "c1", 1)
    want_ws = (np.abs(w1).max(axis=(1, 2, 3)).astype(np.float64) / 127).astype(np.float32)
    np.testing.assert_array_equal(ws, want_ws)
    np.testing.assert_array_equal(wq, np.clip(np.rint(w1 / want_ws[:, None, None, None]),
                                              -127, 127).astype(np.int8))
    assert wz.dtype == np.int8 and not wz.any()
    # x is signed: symmetric int8 grid (written as u8 with zero point 128)
    _, xs, xz = dq_of(res.model, "c1", 0)
    want_xs = np.mean([np.abs(x).max() for x in data]) / 127
    np.testing.assert_allclose(xs, want_xs, rtol=1e-6)
    assert xz.dtype == np.uint8 and int(xz) == 128
    # relu output is non-negative: unsigned grid, zero point 0
    _, rs, rz = dq_of(res.model, "c2", 0)
    r = [np.maximum(conv_valid(x, w1) + b1[None, :, None, None], 0) for x in data]
    np.testing.assert_allclose(rs, np.mean([v.max() for v in r]) / 255, rtol=1e-5)
    assert int(rz) == 0
    # int32 bias: round(b / (x_scale * w_scale)), zero point 0
    bq, bs, bz = dq_of(res.model, "c1", 2)
    np.testing.assert_array_equal(bs, (xs * ws).astype(np.float32))
    np.testing.assert_array_equal(bq, np.rint(b1.astype(np.float64) / bs).astype(np.int32))
    assert bq.dtype == np.int32 and not bz.any()


def test_fast_bias_correction_oracle(setup):
    w1, b1, m, data = setup
    res = fastq.quantize(m, data, {"name": "DefaultQuantization", "params": NO_FIX},
                         progress=False)
    _, xs, _ = dq_of(res.model, "c1", 0)
    ws = res.report.layers["c1"]["weight_scale"]
    xm = np.mean([x.mean(axis=(0, 2, 3)) for x in data], axis=0)
    xq = fq(xm, xs, -128, 127)
    wq = np.clip(np.rint(w1 / ws[:, None, None, None]), -127, 127) * \
        ws[:, None, None, None].astype(np.float64)
    q_out = np.einsum("ocij,c->o", wq, xq)          # valid conv of a per-channel constant
    fp_mean = np.mean([(conv_valid(x, w1) + b1[None, :, None, None]).mean(axis=(0, 2, 3))
                       for x in data], axis=0)
    want = fp_mean - q_out
    rel = np.max(np.abs((want - b1) / b1))
    layer = res.report.layers["c1"]
    assert layer["bias_corrected"] == bool(rel < 2.0)
    np.testing.assert_allclose(layer["bias_relative_change"], rel, rtol=1e-4)
    if layer["bias_corrected"]:
        np.testing.assert_allclose(b1 + layer["bias_shift"], want, rtol=1e-4, atol=1e-5)


def test_bias_overflow_guard_enlarges_weight_scale():
    rng = np.random.default_rng(3)
    w1 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3
    w1[0] = 1e-9                                  # scale floors at ~1% of the largest channel
    b1 = np.array([5e4, .1, .2, .3], np.float32)  # b/(xs*ws) ~ 5e4/(0.03*1e-5) >> 2^31
    m, data = two_convs(w1, b1)
    res = fastq.quantize(m, data, {"name": "DefaultQuantization",
                                   "params": dict(NO_FIX, threshold=1e-12)}, progress=False)
    layer = res.report.layers["c1"]
    assert layer["scale_enlarged_channels"] == [0]
    assert any("c1" in d and "enlarged" in d for d in res.report.decisions)
    bq, bs, _ = dq_of(res.model, "c1", 2)
    assert np.abs(bq.astype(np.int64)).max() <= 2**30
    np.testing.assert_allclose(bq * bs.astype(np.float64), b1, rtol=1e-6, atol=bs.max())
    onnx.checker.check_model(res.model)


def test_shared_ranges_concat_and_maxpool():
    m, make = B.resnet_like()
    res = fastq.quantize(m, make(20, 1), progress=False)
    groups = {}
    for t, a in res.report.activations.items():
        if a["group"]:
            groups.setdefault(a["group"], []).append(a)
    assert groups
    cat = next(n for n in m.graph.node if n.op_type == "Concat")
    assert sorted(k.split(":")[0] for k in groups) == ["concat", "pool"]
    assert all(len(v) == 2 for v in groups.values())    # 2 Concat inputs; MaxPool in/out
    for members in groups.values():
        for a in members[1:]:
            np.testing.assert_array_equal(a["scale"], members[0]["scale"])
            np.testing.assert_array_equal(a["zero_point"], members[0]["zero_point"])
    assert all(t in res.report.activations for t in cat.input)
