"""Seeded random attribute combinations of Conv, ConvTranspose and the pools, each checked
against ONNX Runtime (a second, independent engine) on the same inputs: covers the paths
(depthwise, Winograd, 1x1, im2col) under combinations no hand-written sweep lists."""

from __future__ import annotations

import numpy as np
import pytest

from test_nn_ops_util import one_node_model, run_fastq, run_ort

N_CASES = 40


def _conv_case(seed):
    rng = np.random.default_rng(seed)
    nd = int(rng.choice([1, 2, 2, 2, 3]))
    kind = rng.choice(["dense", "depthwise", "grouped", "winograd", "pointwise"])
    n = int(rng.integers(1, 3))
    if kind == "depthwise":
        c = int(rng.integers(1, 9))
        group, m = c, c * int(rng.integers(1, 3))
    elif kind == "grouped":
        group = int(rng.integers(2, 4))
        c, m = group * int(rng.integers(1, 4)), group * int(rng.integers(1, 4))
    elif kind == "winograd":
        nd, group, c, m = 2, 1, int(rng.integers(16, 24)), int(rng.integers(16, 24))
    else:
        group, c, m = 1, int(rng.integers(1, 6)), int(rng.integers(1, 6))
    if kind == "pointwise":
        k = [1] * nd
    elif kind == "winograd":
        k = [3, 3]
    else:
        k = [int(v) for v in rng.integers(1, 4, nd)]
    sp = [int(v) for v in rng.integers(3, 12, nd)]
    attrs = dict(kernel_shape=k, group=group)
    if kind != "winograd":
        attrs["strides"] = [int(v) for v in rng.integers(1, 3, nd)]
        attrs["dilations"] = [int(v) for v in rng.integers(1, 3, nd)]
    if rng.random() < 0.3:
        attrs["auto_pad"] = str(rng.choice(["SAME_UPPER", "SAME_LOWER", "VALID"]))
    else:
        attrs["pads"] = [int(v) for v in rng.integers(0, 3, 2 * nd)]
    x = rng.standard_normal([n, c] + sp).astype(np.float32)
    w = rng.standard_normal([m, c // group] + k).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    return x, w, b, attrs


@pytest.mark.parametrize("seed", range(N_CASES))
def test_conv_random_vs_onnxruntime(seed):
    x, w, b, attrs = _conv_case(seed)
    try:
        (want,) = run_ort(one_node_model("Conv", [("X", x), ("W", w), ("B", b)], 13, **attrs),
                          {"X": x, "W": w, "B": b})
    except Exception as e:  # e.g. SAME auto_pad with dilations, which ORT does not take
        pytest.skip(f"ONNX Runtime rejects this configuration: {str(e)[-90:]}")
    (got,) = run_fastq("Conv", [x, w, b], 13, **attrs)
    assert got.shape == want.shape, attrs
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4 * max(1, np.abs(want).max()))


@pytest.mark.parametrize("seed", range(N_CASES))
def test_conv_transpose_random_vs_onnxruntime(seed):
    rng = np.random.default_rng(1000 + seed)
    nd = int(rng.choice([1, 2, 2, 3]))
    group = int(rng.integers(1, 3))
    c, mg = group * int(rng.integers(1, 4)), int(rng.integers(1, 4))
    k = [int(v) for v in rng.integers(1, 4, nd)]
    s = [int(v) for v in rng.integers(1, 4, nd)]
    d = [int(v) for v in rng.integers(1, 3, nd)]
    attrs = dict(kernel_shape=k, strides=s, dilations=d, group=group,
                 pads=[int(v) for v in rng.integers(0, 2, 2 * nd)],
                 output_padding=[int(rng.integers(0, min(si, di))) for si, di in zip(s, d)])
    x = rng.standard_normal([2, c] + [int(v) for v in rng.integers(2, 7, nd)]).astype(np.float32)
    w = rng.standard_normal([c, mg] + k).astype(np.float32)
    b = rng.standard_normal(mg * group).astype(np.float32)
    try:
        (want,) = run_ort(one_node_model("ConvTranspose", [("X", x), ("W", w), ("B", b)], 13,
                                         **attrs), {"X": x, "W": w, "B": b})
    except Exception as e:
        pytest.skip(f"ONNX Runtime rejects this configuration: {str(e)[-90:]}")
    (got,) = run_fastq("ConvTranspose", [x, w, b], 13, **attrs)
    assert got.shape == want.shape, attrs
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4 * max(1, np.abs(want).max()))


@pytest.mark.parametrize("seed", range(N_CASES))
def test_pools_random_vs_onnxruntime(seed):
    rng = np.random.default_rng(2000 + seed)
    nd = int(rng.choice([1, 2, 2, 3]))
    k = [int(v) for v in rng.integers(1, 4, nd)]
    s = [int(v) for v in rng.integers(1, 4, nd)]
    d = [int(v) for v in rng.integers(1, 3, nd)]
    pads = [int(rng.integers(0, kk)) for kk in k] * 2   # ORT requires pad < kernel
    x = rng.standard_normal([2, 3] + [int(v) for v in rng.integers(5, 12, nd)]).astype(
        np.float32)
    ceil = int(rng.integers(0, 2))
    cases = [
        ("MaxPool", 12, dict(kernel_shape=k, strides=s, dilations=d, pads=pads,
                             ceil_mode=ceil), 2),
        ("AveragePool", 19, dict(kernel_shape=k, strides=s, dilations=d, pads=pads,
                                 ceil_mode=ceil, count_include_pad=int(rng.integers(0, 2))),
         1),
        ("AveragePool", 11, dict(kernel_shape=k, strides=s, pads=pads, ceil_mode=ceil,
                                 count_include_pad=int(rng.integers(0, 2))), 1),
    ]
    import onnx
    for op, opset, attrs, nout in cases:
        outs = ("Y", "I")[:nout]
        types = [onnx.TensorProto.FLOAT, onnx.TensorProto.INT64][:nout]
        try:
            want = run_ort(one_node_model(op, [("X", x)], opset, outputs=outs, out_types=types,
                                          **attrs), {"X": x})
        except Exception:
            continue
        got = run_fastq(op, [x], opset, outputs=outs, **attrs)
        for g, w_ in zip(got, want):
            assert g.shape == w_.shape, (op, attrs)
            np.testing.assert_allclose(g, w_, rtol=1e-5, atol=1e-6, err_msg=f"{op} {attrs}")
