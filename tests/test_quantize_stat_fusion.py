"""The statistics pass keeps the executor's float fusions where bias correction needs a conv
output's per-channel mean: Conv(+BN)+Relu/Clip stays one FusedConv that delivers the mean
tensor as per-channel sums of its pre-activation values (registry.ChannelSums), and kept
tensors stay channels-last views. The sums are exactly what MeanCollector gives on the same
values; against a pass with no float fusions at all the statistics agree to float32
rounding (folded BatchNormalization, channels-last kernels) and the integer parts of the
quantized model are identical."""

import importlib
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import fastq
from fastq import stats as fstats
from fastq.algorithms.statistics import collect
from fastq.errors import DataError
from fastq.runtime import InferenceSession, float_fusion, graph
from fastq.runtime.registry import ChannelSums
from models import builders as B

quantize_mod = importlib.import_module("fastq.quantize")
F = TensorProto.FLOAT


def _conv_act_model(act: str, bn: bool, depthwise: bool, seed: int = 0, c: int = 16):
    """x -> Conv [-> BN] -> act -> Conv(1x1): the first conv's (or BN's) output is the mean
    tensor, the activation's output feeds a channels-last 1x1 conv."""
    rng = np.random.default_rng(seed)
    inits = []

    def const(name, a):
        inits.append(numpy_helper.from_array(np.asarray(a, np.float32), name))
        return name
    g = c if depthwise else 1
    cin = c if depthwise else 3
    nodes = [helper.make_node("Conv", ["x", const("w", rng.standard_normal((c, cin // g, 3, 3))
                                                  * 0.3), const("b", rng.standard_normal(c))],
                              ["pre"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=g)]
    pre = "pre"
    if bn:
        nodes.append(helper.make_node(
            "BatchNormalization", ["pre", const("s", rng.uniform(0.5, 2, c)),
                                   const("be", rng.standard_normal(c)),
                                   const("mu", rng.standard_normal(c)),
                                   const("var", rng.uniform(0.5, 2, c))], ["pre_bn"]))
        pre = "pre_bn"
    if act == "Relu":
        nodes.append(helper.make_node("Relu", [pre], ["act"]))
    else:
        nodes.append(helper.make_node("Clip", [pre, const("lo", 0.0), const("hi", 6.0)],
                                      ["act"]))
    nodes.append(helper.make_node("Conv", ["act", const("w2", rng.standard_normal((8, c, 1, 1)))],
                                  ["y"], kernel_shape=[1, 1]))
    m = helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", F, ["N", cin, 12, 12])],
        [helper.make_tensor_value_info("y", F, ["N", 8, 12, 12])], inits),
        opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m, pre, cin


def _steps(sess):
    return [st.node for st in sess._graph.steps]


@pytest.mark.parametrize("act,bn,depthwise", [("Relu", False, False), ("Clip", True, False),
                                              ("Relu", True, True), ("Clip", False, True)])
def test_fused_conv_delivers_exact_sums_of_its_pre_activation(act, bn, depthwise):
    model, pre, cin = _conv_act_model(act, bn, depthwise)
    x = np.random.default_rng(1).standard_normal((5, cin, 12, 12)).astype(np.float32)
    # the same fused conv without a tap: the activation's input kept as a view, not fused
    # with the clamp, so its values are the ones the tapped kernel stores before clamping
    ref = InferenceSession(model, keep=[pre, "act"], keep_views=True)
    got_ref = ref.run_with_intermediates({"x": x}, [pre, "act"])
    fused = InferenceSession(model, keep=[pre, "act"], channel_sums=[pre], keep_views=True)
    nodes = _steps(fused)
    assert [n.op_type for n in nodes] == ["FusedConv", "Conv"]
    assert nodes[0].attr("sums_out") == 1 and nodes[0].outputs == ("act", pre)
    assert nodes[0].attr("nhwc_out") == 1          # the channels-last layout is kept
    got = fused.run_with_intermediates({"x": x}, [pre, "act"])
    tap = got[pre]
    assert isinstance(tap, ChannelSums) and tap.shape == (5, 16, 12, 12)
    want = fstats.MeanCollector(channel_axis=1).update(got_ref[pre])
    assert tap.count == 5 * 12 * 12 and not tap.nonfinite
    assert np.array_equal(tap.sums / tap.count, want.result())      # same values, same order
    np.testing.assert_allclose(tap.sums / tap.count, got_ref[pre].astype(np.float64).mean(
        axis=(0, 2, 3)), rtol=1e-9, atol=1e-12)                        # numpy oracle
    hi = np.inf if act == "Relu" else 6.0
    assert np.array_equal(got["act"], np.clip(got_ref[pre], 0, hi))
    assert np.array_equal(got["act"], got_ref["act"])
    # the graph output is the same as the plain session's (the tap changes nothing else)
    y0, = InferenceSession(model).run(None, {"x": x})
    y1, = fused.run(None, {"x": x})
    np.testing.assert_allclose(y1, y0, rtol=1e-5, atol=1e-5)


def test_tap_only_where_the_tensor_is_mean_only():
    """A tensor kept for its values (not listed in channel_sums) still blocks the fusion;
    a graph output is never delivered as sums."""
    model, pre, _ = _conv_act_model("Relu", False, False)
    sess = InferenceSession(model, keep=[pre, "act"])
    assert [n.op_type for n in _steps(sess)] == ["Conv", "Relu", "Conv"]
    assert not any(n.attr("nhwc_out") for n in _steps(sess))
    m2 = onnx.ModelProto()
    m2.CopyFrom(model)
    m2.graph.output.append(helper.make_tensor_value_info(pre, F, ["N", 16, 12, 12]))
    sess = InferenceSession(m2, keep=[pre, "act"], channel_sums=[pre], keep_views=True)
    assert [n.op_type for n in _steps(sess)] == ["Conv", "Relu", "Conv"]
    x = np.ones((1, 3, 12, 12), np.float32)
    assert isinstance(sess.run(None, {"x": x})[1], np.ndarray)


def test_nonfinite_pre_activation_is_named():
    """Both ways the mean of an infinite conv output fails with the same DataError."""
    model, pre, cin = _conv_act_model("Relu", False, False)
    w = model.graph.initializer[0]
    w.CopyFrom(numpy_helper.from_array(np.abs(numpy_helper.to_array(w)), w.name))
    x = np.full((1, cin, 12, 12), 3e38, np.float32)       # finite feed, infinite conv output
    msgs = []
    for sums in ([pre], []):
        sess = InferenceSession(model, keep=[pre], channel_sums=sums, keep_views=True)
        with pytest.raises(DataError, match=f"{pre!r}.*NaN/Inf") as e:
            collect(sess, [{"x": x}], [], {pre: 1}, batch=1)
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1]


def _bench_models():
    bench = Path(__file__).resolve().parents[1] / "bench"
    if not (bench / "_models.py").exists():
        return []
    sys.path.insert(0, str(bench))
    try:
        import _models as M
    finally:
        sys.path.remove(str(bench))
    m = M.mobilenet_v2_like(32)
    return [("mobilenet_v2_like", m, M.calibration("mobilenet_v2_like", m, 20, seed=1))]


def _cases():
    out = []
    for name, make in (("resnet_like", B.resnet_like), ("mobilenet_like", B.mobilenet_like)):
        m, data = make()
        out.append((name, m, data(16, seed=1)))
    return out + _bench_models()


def _quantize(model, data, fuse: bool, monkeypatch):
    """fastq.quantize with (the default) or without the executor's float fusions; returns
    (result, the statistics pass's Stats, the statistics session's op types)."""
    got = {}
    real_collect, real_session = quantize_mod.collect, quantize_mod._stat_session

    def collect(sess, *a, **k):
        got["ops"] = [n.op_type for n in _steps(sess)]
        got["stats"] = real_collect(sess, *a, **k)
        return got["stats"]
    with monkeypatch.context() as mp:
        mp.setattr(quantize_mod, "collect", collect)
        mp.setattr(quantize_mod, "_stat_session", real_session)
        if not fuse:
            mp.setattr(graph, "GRAPH_REWRITES", [s for s in graph.GRAPH_REWRITES
                                                 if s is not float_fusion.float_fusion_stage])
        r = fastq.quantize(model, data, progress=False)
    return r, got["stats"], got["ops"]


@pytest.mark.parametrize("name,model,data", _cases(), ids=lambda v: v if isinstance(v, str)
                         else "")
def test_statistics_with_fusions_match_the_unfused_pass(name, model, data, monkeypatch):
    r, st, ops = _quantize(model, data, True, monkeypatch)
    r0, st0, ops0 = _quantize(model, data, False, monkeypatch)
    # the fused session has no standalone Relu/Clip left after a conv whose mean is wanted
    assert "FusedConv" in ops and "FusedConv" not in ops0
    assert ops.count("Relu") + ops.count("Clip") < ops0.count("Relu") + ops0.count("Clip")
    assert st.per_sample.keys() == st0.per_sample.keys() and st.means.keys() == st0.means.keys()
    assert st.shapes == st0.shapes and st.means
    # float32 rounding: BatchNormalization folded into W/B and the channels-last kernels sum
    # in another order than the unfused NCHW graph (min/max/sums themselves are exact)
    for k, v in st.per_sample.items():
        np.testing.assert_allclose(v, st0.per_sample[k], rtol=1e-5,
                                   atol=1e-5 * np.max(np.abs(st0.per_sample[k])), err_msg=k)
    for k, v in st.means.items():
        np.testing.assert_allclose(v, st0.means[k], rtol=1e-5,
                                   atol=1e-5 * np.max(np.abs(st0.means[k])), err_msg=k)
    a = {t.name: numpy_helper.to_array(t) for t in r.model.graph.initializer}
    b = {t.name: numpy_helper.to_array(t) for t in r0.model.graph.initializer}
    assert a.keys() == b.keys()
    ints = [k for k in a if a[k].dtype.kind in "iu"]
    assert len(ints) > 5
    for k in a:
        if a[k].dtype.kind in "iu":      # int8 weights, int32 biases, zero points
            assert np.array_equal(a[k], b[k]), k
        else:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, err_msg=k)
