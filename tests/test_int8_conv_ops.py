"""ConvInteger and QLinearConv in the executor against the numpy oracle (_int8_oracles.py):
every attribute, uint8/int8 x and w, per-tensor and per-channel zero points, 1-D/2-D/3-D,
both ariths and pairings, every impl (integer results compared exactly); QLinearConv's
requantization (round half to even, saturate); bad inputs raise errors naming the node."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

import fastq
from fastq import kernels

import _int8_oracles as O
from _runtime_models import model, single, vi

IMPLS = kernels.available_impls()
RNG = np.random.default_rng(7)


def _rand(dt, shape, lo=None, hi=None):
    info = np.iinfo(dt)
    return RNG.integers(info.min if lo is None else lo, (info.max if hi is None else hi) + 1,
                        shape).astype(dt)


CASES = [  # (x shape, w shape, attrs)
    ((1, 3, 7, 6), (4, 3, 3, 3), dict(pads=[1, 1, 1, 1])),
    ((2, 4, 9, 8), (6, 2, 3, 2), dict(group=2, strides=[2, 1], dilations=[1, 2],
                                      pads=[0, 1, 2, 1])),
    ((1, 6, 8, 8), (6, 1, 3, 3), dict(group=6, auto_pad="SAME_UPPER", strides=[2, 2])),
    ((1, 5, 6, 7), (3, 5, 2, 3), dict(auto_pad="SAME_LOWER")),
    ((1, 2, 5, 5), (3, 2, 2, 2), dict(auto_pad="VALID", kernel_shape=[2, 2])),
    ((2, 3, 11), (5, 3, 3), dict(pads=[2, 1], strides=[2], dilations=[2])),
    ((1, 3, 4, 5, 5), (2, 3, 2, 3, 3), dict(pads=[1, 0, 1, 0, 1, 1], strides=[1, 2, 1])),
]


def _geom(xs, ws, attrs):
    nd = len(xs) - 2
    k = ws[2:]
    st = attrs.get("strides", [1] * nd)
    dl = attrs.get("dilations", [1] * nd)
    ap = attrs.get("auto_pad", "NOTSET")
    if ap in ("SAME_UPPER", "SAME_LOWER"):
        out = [-(-i // s) for i, s in zip(xs[2:], st)]
        tot = [max(0, (o - 1) * s + (kk - 1) * d + 1 - i)
               for o, s, kk, d, i in zip(out, st, k, dl, xs[2:])]
        b = [t // 2 if ap == "SAME_UPPER" else t - t // 2 for t in tot]
        pads = b + [t - bb for t, bb in zip(tot, b)]
    elif ap == "VALID":
        pads = [0] * (2 * nd)
    else:
        pads = attrs.get("pads", [0] * (2 * nd))
    return st, pads, dl, attrs.get("group", 1)


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("xdt,wdt", [(np.uint8, np.int8), (np.int8, np.int8),
                                     (np.uint8, np.uint8), (np.int8, np.uint8)])
@pytest.mark.parametrize("arith", [None, "exact32", "sat16pair"])
def test_conv_integer_matches_oracle(case, xdt, wdt, arith):
    xs, wsh, attrs = CASES[case]
    x, w = _rand(xdt, xs), _rand(wdt, wsh)
    xzp = _rand(xdt, ())
    wzp = _rand(wdt, (wsh[0],)) if case % 2 else _rand(wdt, ())
    m = single("ConvInteger", {"x": x}, consts={"w": w, "xzp": np.asarray(xzp),
                                                "wzp": np.asarray(wzp)}, opset=10, **attrs)
    st, pads, dl, g = _geom(xs, wsh, attrs)
    want = O.conv_integer(x, w, xzp, wzp, st, pads, dl, g, arith or "exact32")
    for impl in IMPLS:
        got = fastq.InferenceSession(m, arith=arith, impl=impl).run(None, {"x": x})[0]
        assert got.dtype == np.int32
        assert np.array_equal(got, want), (impl, arith, case)


@pytest.mark.parametrize("pairing", ["per_tap", "flat"])
def test_conv_integer_pairings_on_saturating_fill(pairing):
    # C = 3 (odd): flat pairs cross taps, per_tap does not; x = 255, w = +-127 saturate
    x = np.full((1, 3, 5, 5), 255, np.uint8)
    w = np.where(RNG.random((4, 3, 3, 3)) < 0.8, 127, -127).astype(np.int8)
    m = single("ConvInteger", {"x": x}, consts={"w": w}, opset=10, pads=[1, 1, 1, 1])
    want = O.conv_integer(x, w, 0, 0, [1, 1], [1] * 4, [1, 1], 1, "sat16pair", pairing)
    exact = O.conv_integer(x, w, 0, 0, [1, 1], [1] * 4, [1, 1], 1, "exact32")
    other = O.conv_integer(x, w, 0, 0, [1, 1], [1] * 4, [1, 1], 1, "sat16pair",
                           "flat" if pairing == "per_tap" else "per_tap")
    assert not np.array_equal(want, exact) and not np.array_equal(want, other)
    for impl in IMPLS:
        s = fastq.InferenceSession(m, arith="sat16pair", impl=impl, conv_pairing=pairing)
        assert np.array_equal(s.run(None, {"x": x})[0], want), impl


def _qlinear_conv_oracle(x, xs, xz, w, wsc, wz, ys, yz, b, st, pads, dl, g, arith):
    acc = O.conv_integer(x, w, xz, wz, st, pads, dl, g, arith).astype(np.int64)
    bs = (1, w.shape[0]) + (1,) * (x.ndim - 2)
    if b is not None:
        acc = acc + b.astype(np.int64).reshape(bs)
    mult = (np.float32(xs) * np.asarray(wsc, np.float32) / np.float32(ys)).astype(np.float32)
    y = np.rint(acc.astype(np.float32) * (mult.reshape(bs) if mult.ndim else mult))
    y = y + np.float32(yz)
    info = np.iinfo(yz.dtype)
    return np.clip(y, info.min, info.max).astype(yz.dtype)


@pytest.mark.parametrize("case", [0, 1, 2, 5, 6])
@pytest.mark.parametrize("ydt", [np.uint8, np.int8])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("arith", [None, "sat16pair"])
def test_qlinear_conv_matches_oracle(case, ydt, per_channel, arith):
    xs_, wsh, attrs = CASES[case]
    x, w = _rand(np.uint8, xs_), _rand(np.int8, wsh, -127, 127)
    oc = wsh[0]
    xs, xz = np.float32(0.02), np.uint8(RNG.integers(0, 256))
    wsc = (RNG.random(oc) * 0.01 + 0.001).astype(np.float32) if per_channel \
        else np.float32(0.004)
    wz = np.zeros(oc, np.int8) if per_channel else np.int8(0)
    ys, yz = np.float32(0.37), ydt(RNG.integers(np.iinfo(ydt).min, np.iinfo(ydt).max))
    b = RNG.integers(-5000, 5000, oc).astype(np.int32)
    consts = {"xs": np.asarray(xs), "xz": np.asarray(xz), "w": w, "ws": np.asarray(wsc),
              "wz": np.asarray(wz), "ys": np.asarray(ys), "yz": np.asarray(yz), "b": b}
    m = single("QLinearConv", {"x": x}, consts=consts, opset=10, **attrs)
    st, pads, dl, g = _geom(xs_, wsh, attrs)
    want = _qlinear_conv_oracle(x, xs, xz, w, wsc, wz, ys, yz, b, st, pads, dl, g,
                                arith or "exact32")
    got = fastq.InferenceSession(m, arith=arith).run(None, {"x": x})[0]
    assert got.dtype == ydt
    assert np.array_equal(got, want)


def test_qlinear_conv_rounds_half_to_even():
    # 1x1 conv, w = 1, scales chosen so acc * mult lands exactly on .5
    x = np.array([[[[1, 3, 5, 7]]]], np.uint8)
    w = np.ones((1, 1, 1, 1), np.int8)
    consts = {"xs": np.asarray(np.float32(0.5)), "xz": np.asarray(np.uint8(0)), "w": w,
              "ws": np.asarray(np.float32(1.0)), "wz": np.asarray(np.int8(0)),
              "ys": np.asarray(np.float32(1.0)), "yz": np.asarray(np.uint8(0))}
    m = single("QLinearConv", {"x": x}, consts=consts, opset=10)
    got = fastq.InferenceSession(m).run(None, {"x": x})[0]
    assert got.ravel().tolist() == [0, 2, 2, 4]


def _sym_model(op, consts, x_dt=TensorProto.UINT8, rank=4, **attrs):
    from onnx import helper
    names = ["x"] + list(consts)
    node = helper.make_node(op, names, ["y"], name="the_conv", **attrs)
    dims = ["N", "C", "H", "W", "D"][:rank]
    y_dt = TensorProto.INT32 if op == "ConvInteger" else TensorProto.UINT8
    return model([node], [vi("x", x_dt, dims)], [vi("y", y_dt, [f"o{i}" for i in range(rank)])],
                 consts, opset=10)


def test_conv_integer_bad_inputs_name_the_node():
    w = _rand(np.int8, (4, 3, 3, 3))
    s = fastq.InferenceSession(_sym_model("ConvInteger", {"w": w}))
    with pytest.raises(fastq.ModelError, match="the_conv.*channel mismatch"):
        s.run(None, {"x": _rand(np.uint8, (1, 5, 6, 6))})
    s3 = fastq.InferenceSession(_sym_model("ConvInteger", {"w": w}, rank=3))
    with pytest.raises(fastq.ModelError, match="the_conv.*rank"):
        s3.run(None, {"x": _rand(np.uint8, (1, 3, 6))})
    with pytest.raises(fastq.ModelError, match="the_conv.*kernel extent"):
        s.run(None, {"x": _rand(np.uint8, (1, 3, 2, 2))})
    bad_zp = {"w": w, "xzp": np.zeros(2, np.uint8)}
    with pytest.raises(fastq.ModelError, match="the_conv.*x_zero_point"):
        fastq.InferenceSession(_sym_model("ConvInteger", bad_zp)).run(
            None, {"x": _rand(np.uint8, (1, 3, 6, 6))})


def test_qlinear_conv_bad_inputs_name_the_node():
    w = _rand(np.int8, (4, 3, 3, 3))
    consts = {"xs": np.asarray(np.float32(0.1)), "xz": np.asarray(np.uint8(0)), "w": w,
              "ws": np.full(3, 0.1, np.float32), "wz": np.asarray(np.int8(0)),
              "ys": np.asarray(np.float32(0.1)), "yz": np.asarray(np.uint8(0))}
    s = fastq.InferenceSession(_sym_model("QLinearConv", consts))
    with pytest.raises(fastq.ModelError, match="the_conv.*w_scale"):
        s.run(None, {"x": _rand(np.uint8, (1, 3, 6, 6))})
    consts["ws"] = np.asarray(np.float32(0.1))
    consts["b"] = np.zeros(3, np.int32)
    s = fastq.InferenceSession(_sym_model("QLinearConv", consts))
    with pytest.raises(fastq.ModelError, match="the_conv.*bias"):
        s.run(None, {"x": _rand(np.uint8, (1, 3, 6, 6))})
