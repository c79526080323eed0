"""fastq.analyze_saturation on hand-built QDQ models: a layer built to saturate (u8 inputs near
255 against weights of +-127) is found and ranked first while the layers around it report
zero; a ReLU network with small activations reports zero everywhere; per-layer counts, changed
outputs, errors and SQNR equal a numpy oracle on the layer's quantized input (convs with odd
channels per group in both pairings, stride/pad/dilation/groups/depthwise, MatMul, Gemm, int8
activations); whole-model and metric differences; renderings; errors."""

import importlib.util
import json
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import fastq
from fastq import kernels

from _sat_models import QdqNet, quantize_u8, saturating_net
from _satcount_oracle import conv_oracle, gemm_oracle


def test_saturating_layer_is_found_and_ranked_first():
    net = saturating_net()
    a = fastq.analyze_saturation(net.model(), net.data(4))
    assert [r.name for r in a.layers][0] == "conv_sat"
    assert a.saturating_layers == ["conv_sat"]
    sat = a.layer("conv_sat")
    assert sat.op_type == "Conv" and sat.k == 72 and sat.pairs_per_output == 36
    assert sat.outputs == 4 * 8 * 8 * 8
    assert sat.saturated_pairs == sat.pairs == sat.outputs * 36     # every pair clips
    assert sat.saturated_fraction == 1.0 and sat.changed_fraction == 1.0
    assert sat.saturating_channels == 8
    assert sat.max_abs_error > 0 and math.isfinite(sat.sqnr_db)
    for r in a.layers[1:]:
        assert r.saturated_pairs == 0 and r.changed_outputs == 0 and r.max_abs_error == 0
        assert r.sqnr_db == math.inf
    out = next(iter(a.outputs.values()))
    assert out.elements == 4 * 10 and out.changed > 0 and out.max_abs > 0
    assert a.samples == 4


def test_relu_network_with_small_activations_reports_zero():
    net = QdqNet((1, 5, 9, 9), 3)
    net.conv("c1", 8, qmax=64)
    net.relu()
    net.conv("c2", 12, stride=(2, 2), qmax=64)
    net.relu()
    net.conv("dw", 12, group=12, qmax=64)
    net.relu()
    net.flatten()
    net.matmul("fc", 12 * 5 * 5, 7)
    a = fastq.analyze_saturation(net.model(), net.data(3), conv_pairing="flat")
    assert len(a.layers) == 4 and a.saturating_layers == []
    for r in a.layers:
        assert (r.saturated_pairs, r.changed_outputs, r.max_abs_error) == (0, 0, 0), r.name
        assert r.sqnr_db == math.inf and r.pairs > 0
    assert all(o.changed == 0 and o.sqnr_db == math.inf for o in a.outputs.values())


def _oracle_figures(sat, exact, counts, colsum, zp, xs, ws, bias, axis_shape):
    d = sat.astype(np.int64) - exact
    y = (exact.astype(np.float64) - zp * colsum.reshape(axis_shape)) * (
        np.float64(xs) * ws.reshape(axis_shape)) + bias.reshape(axis_shape)
    noise = np.sum((d * (np.float64(xs) * ws.reshape(axis_shape))) ** 2)
    return dict(saturated=int(counts.sum()), changed=int(np.count_nonzero(d)),
                max_abs=int(np.abs(d).max()), mean_abs=float(np.abs(d).mean()),
                sqnr=math.inf if noise == 0 else 10 * math.log10(np.sum(y * y) / noise))


CONV_CASES = [  # (C, H, W, OC, k, stride, pads, dil, group)
    (5, 7, 7, 6, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),        # odd C
    (6, 9, 8, 4, (3, 2), (2, 1), (0, 1, 2, 0), (1, 2), 2),        # odd C per group
    (3, 8, 8, 3, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2), 3),        # depthwise, dilation
    (4, 6, 6, 8, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),        # 1x1
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"C{c[0]}g{c[8]}k{c[4][0]}{c[4][1]}")
@pytest.mark.parametrize("pairing", ["per_tap", "flat"])
def test_conv_layer_figures_equal_numpy_oracle(case, pairing):
    C, H, W, OC, k, stride, pads, dil, group = case
    net = QdqNet((2, C, H, W), 7)
    net.conv("L", OC, k=k, stride=stride, pads=pads, dil=dil, group=group, zp=230, ws=0.02)
    data = net.data(3, seed=5)
    a = fastq.analyze_saturation(net.model(), data, conv_pairing=pairing)
    r = a.layer("L")
    _, xs, zp, w = net.quantized_inputs["L"]
    bias = onnx.numpy_helper.to_array(net.inits[-1]).astype(np.float64)
    ws = np.full(OC, 0.02, np.float32).astype(np.float64)
    colsum = w.astype(np.int64).reshape(OC, -1).sum(axis=1)
    sats, exacts, counts = [], [], 0
    for x in data:
        xu, zpu = quantize_u8(x, xs, zp)
        s, e, c = conv_oracle(xu, w, group=group, strides=stride, pads=pads, dil=dil, zp=zpu,
                              pairing=pairing)
        sats.append(s)
        exacts.append(e)
        counts = counts + c
    want = _oracle_figures(np.concatenate(sats), np.concatenate(exacts), counts, colsum, zpu,
                           xs, ws, bias, (1, OC, 1, 1))
    oh, ow = sats[0].shape[2:]
    cg = C // group
    ppo = (k[0] * k[1] * (cg + cg % 2 if pairing == "per_tap" else cg) + 1) // 2
    assert r.k == k[0] * k[1] * cg and r.pairs_per_output == ppo
    assert r.outputs == 3 * 2 * OC * oh * ow and r.pairs == r.outputs * ppo
    assert r.saturated_pairs == want["saturated"]
    # depthwise per tap pairs each product with a zero pad: it cannot saturate
    assert (r.saturated_pairs == 0) == (group == C and pairing == "per_tap")
    assert r.changed_outputs == want["changed"]
    assert r.max_abs_error == want["max_abs"]
    assert r.mean_abs_error == pytest.approx(want["mean_abs"], rel=1e-12)
    assert r.sqnr_db == pytest.approx(want["sqnr"], rel=1e-9)


@pytest.mark.parametrize("kind", ["matmul", "gemm", "matmul_int8_act"])
def test_linear_layer_figures_equal_numpy_oracle(kind):
    K, N = 37, 19
    net = QdqNet((4, K), 11)
    signed = kind.endswith("int8_act")
    net.matmul("L", K, N, gemm=kind == "gemm", zp=30 if signed else 230, qmax=64,
               signed=signed)
    data = net.data(2, seed=4)
    a = fastq.analyze_saturation(net.model(), data)
    r = a.layer("L")
    assert r.op_type == ("Gemm" if kind == "gemm" else "MatMul")
    _, xs, zp, w = net.quantized_inputs["L"]
    wk = w.T if kind == "gemm" else w                                # [K, N]
    bias = onnx.numpy_helper.to_array(net.inits[-1]).astype(np.float64) if kind == "gemm" \
        else np.zeros(N)
    outs = [gemm_oracle(quantize_u8(x, xs, zp, signed)[0], wk) for x in data]
    zpu = quantize_u8(data[0], xs, zp, signed)[1]
    want = _oracle_figures(np.concatenate([o[0] for o in outs]),
                           np.concatenate([o[1] for o in outs]), sum(o[2] for o in outs),
                           wk.astype(np.int64).sum(axis=0), zpu, xs,
                           np.full(N, 0.01, np.float32).astype(np.float64), bias, (1, N))
    assert r.k == K and r.pairs_per_output == 19 and r.outputs == 2 * 4 * N
    assert r.saturated_pairs == want["saturated"]
    assert r.changed_outputs == want["changed"]
    assert r.max_abs_error == want["max_abs"]
    assert r.mean_abs_error == pytest.approx(want["mean_abs"], rel=1e-12)
    assert r.sqnr_db == pytest.approx(want["sqnr"], rel=1e-9)
    if not signed:
        assert r.saturated_pairs > 0


def test_swapped_baseline_and_metric():
    net = saturating_net(1)
    data = net.data(5, seed=9)
    model = net.model()
    a = fastq.analyze_saturation(model, data)
    b = fastq.analyze_saturation(model, data, baseline="sat16pair", target="exact32")
    ra, rb = a.layer("conv_sat"), b.layer("conv_sat")
    assert (ra.saturated_pairs, ra.changed_outputs, ra.max_abs_error) == \
        (rb.saturated_pairs, rb.changed_outputs, rb.max_abs_error)
    # labelled data: the metric is computed on both runs, each as the session gives it
    labels = [int(i % 10) for i in range(5)]
    m = fastq.analyze_saturation(model, list(zip(data, labels)), metric="top1")
    want = {}
    for arith in ("exact32", "sat16pair"):
        s = fastq.InferenceSession(model, arith=arith)
        want[arith] = np.mean([fastq.metrics.top1(s.run(None, {"x": x}), y)
                               for x, y in zip(data, labels)])
    assert m.metric["baseline"] == want["exact32"] and m.metric["target"] == want["sat16pair"]
    assert m.metric["drop"] == pytest.approx(want["exact32"] - want["sat16pair"])


def test_renderings():
    net = saturating_net()
    a = fastq.analyze_saturation(net.model(), net.data(2), limit=1)
    assert a.samples == 1
    d = json.loads(a.to_json())
    assert d["layers"][0]["layer"] == "conv_sat" and d["layers"][0]["saturated_fraction"] == 1.0
    assert d["layers"][-1]["sqnr_db"] == "inf" and d["baseline"] == "exact32"
    assert d == a.to_dict() or json.loads(json.dumps(a.to_dict())) == d
    table = a.to_table().splitlines()
    assert table[0].split()[:3] == ["layer", "op", "K"] and table[2].startswith("conv_sat")
    md = a.to_markdown()
    assert "| conv_sat | Conv | 72 |" in md and "SQNR dB" in md


def test_float_model_without_int8_layers_is_a_clear_error():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    w = onnx.numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    m = helper.make_model(helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])],
                                            "f", [x], [y], [w]),
                          opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(fastq.ModelError, match="no int8 layers"):
        fastq.analyze_saturation(m, [np.ones((1, 4), np.float32)])


def test_bad_data_and_options():
    net = saturating_net()
    model = net.model()
    good = net.data(3)
    with pytest.raises(fastq.DataError, match="sample 2: input 'x' expects shape"):
        fastq.analyze_saturation(model, good[:2] + [np.ones((1, 6, 7, 8), np.float32)])
    bad = good[0].copy()
    bad[0, 1, 2, 3] = np.nan
    with pytest.raises(fastq.DataError, match="sample 1: .*NaN"):
        fastq.analyze_saturation(model, [good[0], bad])
    with pytest.raises(fastq.DataError, match="empty"):
        fastq.analyze_saturation(model, [])
    with pytest.raises(fastq.DataError, match="sample 0: .*pair"):
        fastq.analyze_saturation(model, good, metric="top1")
    with pytest.raises(fastq.ConfigError, match="both 'exact32'"):
        fastq.analyze_saturation(model, good, target="exact32")
    with pytest.raises(fastq.ConfigError, match="valid: exact32, sat16pair"):
        fastq.analyze_saturation(model, good, target="avx2")
    with pytest.raises(fastq.ConfigError, match="conv_pairing"):
        fastq.analyze_saturation(model, good, conv_pairing="diagonal")
    with pytest.raises(fastq.ModelError):
        fastq.analyze_saturation("/nonexistent/model.onnx", good)
    with pytest.raises(fastq.ConfigError, match="metric needs the target run"):
        fastq.analyze_saturation(model, good, metric="top1", whole_model=False)
    for limit in (0, "3", 2.5, True):
        with pytest.raises(fastq.ConfigError, match="limit"):
            fastq.analyze_saturation(model, good, limit=limit)
    with pytest.raises(fastq.ConfigError, match="whole_model"):
        fastq.analyze_saturation(model, good, whole_model="no")


def test_per_layer_only_skips_the_target_run():
    net = saturating_net()
    data = net.data(2)
    full = fastq.analyze_saturation(net.model(), data)
    part = fastq.analyze_saturation(net.model(), data, whole_model=False)
    assert part.outputs == {} and part.timings["target_runs"] == 0.0
    assert [r.to_dict() for r in part.layers] == [r.to_dict() for r in full.layers]


def test_ref_impl_gives_the_same_figures():
    net = saturating_net(2)
    data = net.data(2)
    a = fastq.analyze_saturation(net.model(), data).to_dict()
    with kernels.use_impl("ref"):
        b = fastq.analyze_saturation(net.model(), data, impl="ref").to_dict()
    for x, y in zip(a["layers"], b["layers"]):
        assert x == y


def test_onnxruntime_qdq_model_every_layer_equals_oracle(tmp_path):
    """A model quantized by ONNX Runtime (Conv -> QuantizeLinear with int32 biases: every
    fused layer requantizes; 3x3, 1x1 and stride-2 convs): each layer's figures equal the
    numpy oracle on the quantized input the exact32 run hands that layer."""
    pytest.importorskip("onnxruntime.quantization")
    import _qdq_models as M
    from onnx import numpy_helper
    m = M.cnn_model(hw=12, c=8, blocks=1)
    data = M.calibration(m, 3)
    q = M.quantize(m, data, tmp_path)
    a = fastq.analyze_saturation(q, data)
    sess = fastq.InferenceSession(q, arith="exact32")
    kinds = {r.name: r.output for r in sess.int8_layers()}
    assert "int8" in kinds.values() and len(a.layers) == len(kinds) >= 5
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    prod = {o: n for n in q.graph.node for o in n.output}
    for r in a.layers:
        node = next(n for n in q.graph.node if n.name == r.name)
        x_dq, w_dq = prod[node.input[0]], prod[node.input[1]]
        w, ws = inits[w_dq.input[0]], inits[w_dq.input[1]].astype(np.float64)
        xs, xz = inits[x_dq.input[1]], inits[x_dq.input[2]]
        assert xz.dtype == np.uint8
        bias = np.zeros(w.shape[0])
        if len(node.input) > 2 and node.input[2]:
            b_dq = prod[node.input[2]]
            bias = (inits[b_dq.input[0]] * inits[b_dq.input[1]]).astype(np.float64)
        xq = [sess.run_with_intermediates(f, [r.input])[r.input] for f in data]
        at = {a_.name: helper.get_attribute_value(a_) for a_ in node.attribute}
        g = int(at.get("group", 1))
        outs = [conv_oracle(x, w, group=g, strides=tuple(at.get("strides", (1, 1))),
                            pads=tuple(at.get("pads", (0, 0, 0, 0))),
                            dil=tuple(at.get("dilations", (1, 1))), zp=int(xz),
                            pairing="per_tap") for x in xq]
        colsum = w.astype(np.int64).reshape(w.shape[0], -1).sum(axis=1)
        want = _oracle_figures(np.concatenate([o[0] for o in outs]),
                               np.concatenate([o[1] for o in outs]), sum(o[2] for o in outs),
                               colsum, int(xz), xs, np.broadcast_to(ws, colsum.shape), bias,
                               (1, -1, 1, 1))
        where = f"layer {r.name} ({kinds[r.name]} output)"
        assert r.saturated_pairs == want["saturated"], where
        assert r.changed_outputs == want["changed"], where
        assert r.max_abs_error == want["max_abs"], where
        assert r.sqnr_db == pytest.approx(want["sqnr"], rel=1e-6), where


def _models_for_fast_path(tmp_path):
    yield "float outputs", saturating_net().model(), [{"x": x} for x in saturating_net().data(2)]
    net = QdqNet((3, 37), 5)
    net.matmul("mm", 37, 11, zp=40, signed=True)
    net.relu()
    net.matmul("gemm", 11, 6, gemm=True, zp=230)
    yield "int8 act, MatMul, Gemm", net.model(), [{"x": x} for x in net.data(2)]
    net = QdqNet((2, 4, 9), 6)           # 1-D conv, flat pairs, depthwise
    net.conv("c1", 6, k=(3,), stride=(2,), pads=(1, 1), dil=(1,), zp=230)
    net.relu()
    net.conv("dw", 6, k=(3,), stride=(1,), pads=(1, 1), dil=(1,), group=6, zp=230)
    yield "1-D", net.model(), [{"x": x} for x in net.data(2)]
    if importlib.util.find_spec("onnxruntime") is not None:
        import _qdq_models as M
        m = M.cnn_model(hw=10, c=8, blocks=1)
        data = M.calibration(m, 2)
        yield "requantizing (ORT QDQ)", M.quantize(m, data, tmp_path), data


@pytest.mark.parametrize("baseline", ["exact32", "sat16pair"])
@pytest.mark.parametrize("pairing", ["per_tap", "flat"])
def test_counting_layers_return_the_layers_outputs_bit_for_bit(tmp_path, baseline, pairing):
    """The analysis' session runs each layer once (the counting pass gives its output):
    its outputs equal a plain session's, and no layer fell back to its own kernel."""
    from fastq.saturation import layer_counters
    for what, model, data in _models_for_fast_path(tmp_path):
        sess = fastq.InferenceSession(model, arith=baseline, conv_pairing=pairing)
        counters = layer_counters(sess, base_is_exact=baseline == "exact32")
        plain = fastq.InferenceSession(model, arith=baseline, conv_pairing=pairing)
        for feeds in data:
            for got, want in zip(sess.run(None, feeds), plain.run(None, feeds)):
                assert got.dtype == want.dtype and np.array_equal(got, want), what
        assert all(c.inert or (c.fast and c.checked) for c in counters), \
            (what, [c.rec.name for c in counters if not c.fast])
        if what.startswith("requantizing"):   # requantized 2-D convs count in NHWC
            assert any(c.nhwc for c in counters), what
            assert all(c.nhwc for c in counters if c.conv and c.layer.requant), what


def test_samples_on_threads_give_the_same_figures():
    """Samples run on fastq's threads, each adding into its own partial merged in sample
    order: one thread and two give the same figures, outputs and metric, every bit."""
    from models.util import on_threads
    net = saturating_net(3)
    data = net.data(7)
    labelled = [(d, 0) for d in data]

    def run():
        return fastq.analyze_saturation(net.model(), labelled,
                                        metric=lambda out, _: float(np.mean(out[0]))).to_dict()
    one, two = on_threads((1, 2), run)
    assert one["samples"] == two["samples"] == 7
    assert one["layers"] == two["layers"] and one["outputs"] == two["outputs"]
    assert one["metric"] == two["metric"]
    assert any(r["saturated_pairs"] > 0 for r in one["layers"])


def test_layers_that_cannot_saturate_run_plain_with_the_counted_figures(monkeypatch):
    """A layer whose weights cannot bring a pair to an int16 limit (per-tap depthwise here)
    runs its plain kernel: its figures, and every other layer's, equal those of counting it,
    and the model's outputs are unchanged."""
    from fastq import saturation as S
    net = QdqNet((2, 4, 9, 9), 7)
    net.conv("c1", 8, k=(3, 3), stride=(1, 1), pads=(1, 1, 1, 1), dil=(1, 1), zp=230)
    net.relu()
    net.conv("dw", 8, k=(3, 3), stride=(1, 1), pads=(1, 1, 1, 1), dil=(1, 1), group=8, zp=230)
    net.relu()
    net.conv("pw", 5, k=(1, 1), stride=(1, 1), pads=(0, 0, 0, 0), dil=(1, 1), zp=230)
    model, data = net.model(), [{"x": x} for x in net.data(3)]
    sess = fastq.InferenceSession(model, arith="exact32")
    inert = {c.rec.name for c in S.layer_counters(sess) if c.inert}
    assert inert == {"dw"}
    plain = fastq.analyze_saturation(model, data).to_dict()
    plain.pop("timings_s")
    real = S.layer_counters

    def counting_all(*a, **k):
        cs = real(*a, **k)
        for c in cs:
            c.inert = False
        return cs
    monkeypatch.setattr(S, "layer_counters", counting_all)
    counted = fastq.analyze_saturation(model, data).to_dict()
    counted.pop("timings_s")
    assert plain == counted
    dw = next(r for r in plain["layers"] if r["layer"] == "dw")
    assert dw["outputs"] == 3 * 2 * 8 * 9 * 9 and dw["sqnr_db"] == "inf"
    assert any(r["saturated_pairs"] > 0 for r in plain["layers"])


def _without_reuse(monkeypatch, fn):
    """``fn()`` with the target run never skipped."""
    from fastq import saturation as S
    with monkeypatch.context() as m:
        m.setattr(S, "_counters_see_all_int8", lambda *a: False)
        return fn()


def _figures(a):
    d = a.to_dict()
    d.pop("timings_s")
    d.pop("target_runs_skipped")
    return d


def test_samples_without_changed_accumulators_skip_the_target_run(monkeypatch):
    """A sample on which no layer changes an accumulator has the baseline's outputs in the
    target arithmetic: its target run is skipped, and every figure, output difference and
    metric equals the analysis that runs it. Samples that do saturate still run it."""
    net = QdqNet((1, 4, 6, 6), 9)
    net.conv("c", 4, w_int=np.full((4, 4, 3, 3), 127), qmax=255)
    net.relu()
    net.flatten()
    net.matmul("mm", 4 * 6 * 6, 3)
    model = net.model()
    data = net.data(6)
    mixed = [(d * np.float32(0.02) if i % 2 else d, i % 3) for i, d in enumerate(data)]

    def metric(out, label):
        return float(np.argmax(out[0]) == label)
    run = lambda: fastq.analyze_saturation(model, mixed, metric=metric)  # noqa: E731
    a, b = run(), _without_reuse(monkeypatch, run)
    assert _figures(a) == _figures(b)
    assert a.target_runs_skipped == 3 and b.target_runs_skipped == 0
    assert "sat16pair run skipped on 3 of 6 samples" in a.to_markdown()
    assert "skipped" not in b.to_markdown()
    assert a.layer("c").saturated_pairs > 0
    # a network that never saturates skips every target run
    small = QdqNet((1, 5, 9, 9), 3)
    small.conv("c1", 8, qmax=64)
    small.relu()
    small.conv("c2", 12, stride=(2, 2), qmax=64)
    a = fastq.analyze_saturation(small.model(), small.data(3))
    assert a.target_runs_skipped == 3 and a.saturating_layers == []
    assert _figures(a) == _figures(_without_reuse(
        monkeypatch, lambda: fastq.analyze_saturation(small.model(), small.data(3))))


def test_int8_work_the_counters_do_not_see_keeps_the_target_run():
    """A QLinearConv node runs in the session's arith but is no counted layer: no sample may
    skip its target run."""
    from fastq import saturation as S
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 2, 4, 4])
    inits = [helper.make_tensor("xs", TensorProto.FLOAT, [], [0.1]),
             helper.make_tensor("xz", TensorProto.UINT8, [], [0]),
             helper.make_tensor("w", TensorProto.INT8, [2, 2, 1, 1], [127] * 4),
             helper.make_tensor("ws", TensorProto.FLOAT, [], [0.1]),
             helper.make_tensor("wz", TensorProto.INT8, [], [0]),
             helper.make_tensor("ys", TensorProto.FLOAT, [], [10.0]),
             helper.make_tensor("yz", TensorProto.UINT8, [], [0])]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"],
                            ["y"], name="qlc")
    g = helper.make_graph([node], "g", [x], [y], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    sess = fastq.InferenceSession(m, arith="exact32")
    assert not S._counters_see_all_int8(m, sess, [])
