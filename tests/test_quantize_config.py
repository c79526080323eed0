"""Each config key changes what it should in the exported QDQ model: preset (zero points),
ignored scope/operations/patterns (float inputs kept), saturation_fix (weight grids), weight
granularity, model_type transformer (symmetric two-activation MatMuls, SmoothQuant), bias
correction flavours and threshold."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
import pytest

import fastq
from fastq.config.types import Mode
from models import builders as B
from models.util import ort_session, run_all, sqnr_db


def dq_params(model):
    """tensor read through a DequantizeLinear -> (quantized initializer or None, scale, zp)."""
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear":
            out[n.output[0]] = (inits.get(n.input[0]), inits[n.input[1]], inits[n.input[2]])
    return out


def node(model, name):
    return next(n for n in model.graph.node if n.name == name)


def cfg(**params):
    return {"name": "DefaultQuantization", "params": params}


@pytest.fixture(scope="module")
def resnet():
    m, make = B.resnet_like()
    return m, make(40, seed=1)


def q(resnet, **params):
    return fastq.quantize(resnet[0], resnet[1], cfg(**params), progress=False)


def act_zero_points(result):
    return {t: int(np.max(a["zero_point"])) for t, a in result.report.activations.items()}


def test_performance_is_symmetric_mixed_is_asymmetric(resnet):
    perf, mixed = q(resnet), q(resnet, preset="mixed")
    for t, (_, scale, zp) in dq_params(perf.model).items():
        if zp.dtype == np.uint8:                         # activations: u8, zp 0 or 128
            assert int(zp) in (0, 128), t
    assert all(a["mode"] == "symmetric" for a in perf.report.activations.values())
    zps = [int(zp) for _, _, zp in dq_params(mixed.model).values() if zp.dtype == np.uint8]
    assert any(z not in (0, 128) for z in zps)
    assert all(a["mode"] == "asymmetric" for a in mixed.report.activations.values())
    # accuracy is renamed to mixed on ANY, as POT does
    acc = q(resnet, preset="accuracy")
    assert all(a["mode"] == "asymmetric" for a in acc.report.activations.values())


def test_ignored_scope_keeps_float_inputs(resnet):
    base = q(resnet)
    layer = base.plan.layers[1]
    res = q(resnet, ignored={"scope": [layer]})
    dqs = dq_params(res.model)
    n = node(res.model, layer)
    assert n.input[0] not in dqs and n.input[1] not in dqs     # float activation and weight
    assert layer in res.report.ignored and layer not in res.report.layers
    other = base.plan.layers[2]
    assert node(res.model, other).input[1] in dqs


def test_ignored_scope_unknown_name_lists_near_matches(resnet):
    layer = q(resnet).plan.layers[1]
    with pytest.raises(fastq.ConfigError, match=f"no node named '{layer}x'.*{layer}"):
        q(resnet, ignored={"scope": [layer + "x"]})


def test_ignored_operations_and_patterns(resnet):
    res = q(resnet, ignored={"operations": [{"type": "Concat"}]})
    cat = next(n for n in res.model.graph.node if n.op_type == "Concat")
    dqs = dq_params(res.model)
    assert not any(x in dqs for x in cat.input)
    res = q(resnet, ignored={"patterns": ["conv.*"]})
    assert not any(n.op_type == "Conv" and n.input[1] in dq_params(res.model)
                   for n in res.model.graph.node)
    assert "gemm" in " ".join(res.report.layers)


def weight_scales(result):
    return {k: np.asarray(v["weight_scale"]) for k, v in result.report.layers.items()}


def int_weights(result):
    dqs = dq_params(result.model)
    return {k: dqs[node(result.model, k).input[1]][0] for k in result.report.layers}


def test_saturation_fix_all_first_layer_no(resnet):
    no, all_, first = q(resnet, saturation_fix="no"), q(resnet, saturation_fix="all"), \
        q(resnet)
    s_no, s_all, s_first = weight_scales(no), weight_scales(all_), weight_scales(first)
    stem = no.plan.layers[0]
    for k in s_no:
        np.testing.assert_array_equal(s_all[k], s_no[k] * np.float32(2))
        np.testing.assert_array_equal(s_first[k], s_no[k] * np.float32(2) if k == stem
                                      else s_no[k])
    for k, w in int_weights(all_).items():
        assert np.abs(w.astype(int)).max() <= 64, k          # 127/2 rounded: |q| <= 64
    assert [k for k, v in first.report.layers.items() if v["saturation_fix"]] == [stem]
    # the fix is for CPU/ANY only
    gpu = q(resnet, saturation_fix="all", target_device="GPU")
    assert not any(v["saturation_fix"] for v in gpu.report.layers.values())
    # auto measures (tests/test_saturation_fix_auto.py): here the stem saturates most
    auto = q(resnet, saturation_fix="auto")
    assert stem in [k for k, v in auto.report.layers.items() if v["saturation_fix"]]


def first_layer_fixed(res):
    return sorted(k for k, v in res.report.layers.items() if v["saturation_fix"])


def test_saturation_fix_first_layer_transformer_qkv():
    # DESIGN.md section 3: the first Conv/MatMul reached from the input. In an encoder that is
    # the first block's Q/K/V MatMuls (they read the first LayerNorm's output); the residual
    # stream, which joins the attention output, does not carry the walk to the FFN or to
    # later blocks (before: every block's Q/K/V and FFN-up MatMuls were fixed)
    m, make = B.bert_like()
    producers = {o: n for n in m.graph.node for o in n.output}
    nodes = {n.name: n for n in m.graph.node}

    def upstream_ops(t, seen=None):
        seen = set() if seen is None else seen
        n = producers.get(t)
        if n is not None and n.name not in seen:
            seen.add(n.name)
            for i in n.input:
                upstream_ops(i, seen)
        return {nodes[k].op_type for k in seen}

    for mt in ("transformer", None):
        res = fastq.quantize(m, make(10, 1), cfg(model_type=mt), progress=False)
        fixed = first_layer_fixed(res)
        assert len(fixed) == 3 and len(res.report.layers) > 3, fixed
        # all three read one tensor, computed by no MatMul
        ins = {nodes[k].input[0] for k in fixed}
        assert len(ins) == 1 and "MatMul" not in upstream_ops(ins.pop()), fixed


def test_saturation_fix_first_layer_stops_at_the_first_weighted_layer_per_input():
    # x -> MatMul (fixed: first on its path) -> Reshape -> depthwise Conv -> Conv; the residual
    # Add joining the MatMul's branch with z's Conv output ends the walk from z too
    rng = np.random.default_rng(0)
    W = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    inits = [numpy_helper.from_array(a, n) for n, a in (
        ("wm", W(48, 48)), ("shape", np.array([1, 3, 4, 4], np.int64)),
        ("wd", W(3, 1, 3, 3)), ("w1", W(3, 3, 3, 3)), ("w2", W(3, 3, 1, 1)),
        ("wz", W(3, 3, 1, 1)))]
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "wm"], ["m"], name="mm"),
         helper.make_node("Reshape", ["m", "shape"], ["r"], name="rs"),
         helper.make_node("Conv", ["r", "wd"], ["d"], name="dw", group=3, pads=[1] * 4),
         helper.make_node("Conv", ["d", "w1"], ["c1"], name="c1", pads=[1] * 4),
         helper.make_node("Relu", ["z"], ["zr"], name="zrelu"),
         helper.make_node("Add", ["zr", "r"], ["s"], name="res"),
         helper.make_node("Conv", ["s", "w2"], ["y"], name="c2"),
         helper.make_node("Conv", ["zr", "wz"], ["y2"], name="cz")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 48]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4]),
         helper.make_tensor_value_info("y2", TensorProto.FLOAT, [1, 3, 4, 4]),
         helper.make_tensor_value_info("c1", TensorProto.FLOAT, [1, 3, 4, 4])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    data = [{"x": W(1, 48), "z": W(1, 3, 4, 4)} for _ in range(8)]
    res = fastq.quantize(m, data, progress=False)
    assert {"mm", "dw", "c1", "c2", "cz"} <= set(res.report.layers)
    assert first_layer_fixed(res) == ["cz", "mm"]


def test_weights_per_tensor(resnet):
    res = q(resnet, weights={"granularity": "pertensor"})
    for k, w in res.report.layers.items():
        assert np.ndim(w["weight_scale"]) == 0, k


def test_transformer_symmetric_two_activation_matmul_and_smoothquant():
    m, make = B.bert_like()
    data = make(30, 1)
    res = fastq.quantize(m, data, cfg(model_type="transformer", preset="mixed"),
                         progress=False)
    scores = next(n for n in m.graph.node if n.name.startswith("scores"))
    for t in scores.input:
        assert res.report.activations[t]["mode"] == "symmetric"
    others = [a for t, a in res.report.activations.items() if t not in scores.input]
    assert any(a["mode"] == "asymmetric" for a in others)
    # transformer ops stay float, including the attention-mask Add
    assert res.report.ignored.get("maskadd26") == "model_type transformer"
    sq = res.report.transforms["smooth_quant"]
    assert sq and all(v["scale_max"] > 0 for v in sq.values())
    off = fastq.quantize(m, data, cfg(model_type="transformer", smooth_quant_alpha=None),
                         progress=False)
    assert "smooth_quant" not in off.report.transforms


def test_smoothquant_preserves_float_outputs():
    from fastq.algorithms.smooth_quant import smooth_quant
    from fastq.config import IgnoredScope
    from fastq.graph import Graph, prepare
    m, make = B.bert_like()
    data = make(8, 3)
    g = Graph(m)
    prepare(g)
    done = smooth_quant(g, data, 0.95, IgnoredScope())
    assert done
    a = run_all(ort_session(m), data)
    b = run_all(ort_session(g.to_model()), data)
    assert np.max(np.abs(a - b)) <= 1e-4 * np.max(np.abs(a))


def test_smoothquant_one_pass_equals_its_own_pass(monkeypatch):
    """SmoothQuant's scales and the smoothed tensors' ranges come from the statistics pass
    (per-channel min/max, derived per tensor); forcing SmoothQuant's own float pass first (the
    fallback for figures that cannot be derived) gives the same model: identical integer
    weights/biases and zero points, scales within float rounding."""
    import fastq.quantize as _  # noqa: F401  (the module, not the function)
    import sys
    qmod = sys.modules["fastq.quantize"]
    m, make = B.bert_like()
    data = make(12, 2)
    c = cfg(model_type="transformer")
    one = fastq.quantize(m, data, c, progress=False)
    monkeypatch.setattr(qmod, "_sq_derivable", lambda *a: False)
    two = fastq.quantize(m, data, c, progress=False)
    assert one.report.transforms["smooth_quant"].keys() == \
        two.report.transforms["smooth_quant"].keys() != set()
    a = {t.name: onnx.numpy_helper.to_array(t) for t in one.model.graph.initializer}
    b = {t.name: onnx.numpy_helper.to_array(t) for t in two.model.graph.initializer}
    assert a.keys() == b.keys()
    for k, v in a.items():
        if v.dtype.kind == "f":
            np.testing.assert_allclose(v, b[k], rtol=1e-5, atol=1e-6 * np.abs(v).max(),
                                       err_msg=k)
        else:
            assert np.array_equal(v, b[k]), k


def test_smoothquant_with_a_quantile_estimator_takes_its_own_pass(monkeypatch):
    from fastq.algorithms import smooth_quant as sq
    calls = []
    real = sq.own_pass
    monkeypatch.setattr(sq, "own_pass", lambda *a: calls.append(1) or real(*a))
    m, make = B.bert_like()
    data = make(10, 4)
    fastq.quantize(m, data, cfg(model_type="transformer"), progress=False)
    assert calls == []               # min/abs_max estimators: derived from the one pass
    res = fastq.quantize(m, data, cfg(model_type="transformer", activations={
        "range_estimator": {"max": {"type": "quantile", "outlier_prob": 1e-3}}}),
        progress=False)
    assert res.report.transforms["smooth_quant"] and calls == [1]
    ref = run_all(ort_session(m), data)
    assert sqnr_db(ref, run_all(ort_session(res.model), data)) > 15


def test_bias_correction_flavours_and_threshold(resnet):
    fast = q(resnet)
    full = q(resnet, use_fast_bias=False)
    none = q(resnet, threshold=1e-12)
    assert any(v["bias_corrected"] for v in fast.report.layers.values())
    assert not any(v["bias_corrected"] for v in none.report.layers.values())
    assert any(v["bias_corrected"] for v in full.report.layers.values())
    assert "bias_correction" in full.report.timings
    # both corrections keep the model close to float
    m, make = B.resnet_like()
    ev = make(20, seed=5)
    ref = run_all(ort_session(m), ev)
    for r in (fast, full, none):
        assert sqnr_db(ref, run_all(ort_session(r.model), ev)) > 25


def test_apply_for_all_nodes_adds_bias():
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((5, 4, 1, 1)).astype(np.float32), "w2")
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1"], ["c1"], name="c1", pads=[1] * 4),
         helper.make_node("Relu", ["c1"], ["r1"], name="r1"),
         helper.make_node("Conv", ["r1", "w2"], ["y"], name="c2")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5, 6, 6])], [w1, w2])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    data = [rng.standard_normal((1, 3, 6, 6)).astype(np.float32) for _ in range(10)]
    plain = fastq.quantize(m, data, progress=False)
    assert not any(v["bias_corrected"] for v in plain.report.layers.values())
    allnodes = fastq.quantize(m, data, cfg(apply_for_all_nodes=True), progress=False)
    assert all(v["bias_corrected"] for v in allnodes.report.layers.values())
    assert all(len(node(allnodes.model, k).input) == 3 for k in ("c1", "c2"))


def test_mode_enum_in_plan(resnet):
    res = q(resnet)
    summary = res.plan.summary()
    assert summary["weights"] and summary["activations"]
    assert all(w["mode"] == Mode.SYMMETRIC.value for w in summary["weights"].values())
    assert all(a["range_estimator"]["max"]["aggregator"] == "mean"
               for a in summary["activations"].values())


def test_attention_mask_add_not_quantized_without_model_type():
    # no model_type: the Add of scores and mask is an Add of two activations, but its only
    # reader (Softmax) computes in float, so placement leaves it in float before the
    # statistics (whose -3.4e38 mask sentinels would also have kept its inputs float)
    m, make = B.bert_like()
    res = fastq.quantize(m, make(20, 1), progress=False)
    add = next(n for n in m.graph.node if n.name.startswith("maskadd"))
    assert not any(t in res.report.activations for t in add.input)
    assert any(d.startswith(f"{add.name}: left in float: no reader of its output computes "
                            "in int8") for d in res.report.decisions)
    dqs = dq_params(res.model)
    assert not any(x in dqs for x in node(res.model, add.name).input)
    ref = run_all(ort_session(m), make(10, seed=7))
    assert sqnr_db(ref, run_all(ort_session(res.model), make(10, seed=7))) > 20


@pytest.mark.parametrize("params", [
    {"weights": {"mode": "asymmetric"}},
    {"activations": {"bits": 7}, "weights": {"bits": 7}},
    {"range_estimator": {"preset": "quantile"}},
    {"activations": {"range_estimator": {"max": {"aggregator": "hl_estimator"},
                                         "min": {"aggregator": "mean_no_outliers"}}}},
    {"stat_subset_size": 5, "shuffle_data": True, "seed": 3},
    {"target_device": "CPU_SPR"},
], ids=["w_asym", "bits7", "quantile", "hl_est", "subset", "cpu_spr"])
def test_config_keys_export_runs(resnet, params):
    res = q(resnet, **params)
    onnx.checker.check_model(res.model)
    m, make = B.resnet_like()
    ev = make(8, seed=9)
    assert sqnr_db(run_all(ort_session(m), ev), run_all(ort_session(res.model), ev)) > 25
    if "stat_subset_size" in params:
        assert res.report.samples == 5
    if "weights" in params and params["weights"].get("bits") == 7:
        for w in int_weights(res).values():
            assert np.abs(w.astype(int)).max() <= 63
    if params.get("weights", {}).get("mode") == "asymmetric":
        assert any(np.any(dq_params(res.model)[node(res.model, k).input[1]][2])
                   for k in res.report.layers)


def test_perchannel_activations_rejected(resnet):
    with pytest.raises(fastq.ConfigError, match="activations.granularity"):
        q(resnet, activations={"granularity": "perchannel"})


def test_full_bias_correction_removes_output_bias():
    # BiasCorrection (use_fast_bias false) matches each layer's quantized output mean to the
    # float one, upstream layers already corrected: the int8 model's systematic per-logit
    # error shrinks well below the uncorrected model's on unseen data of the same kind.
    m, make = B.resnet_like()
    data, ev = make(100, seed=1), make(60, seed=2)
    ref = np.stack([ort_session(m).run(None, e)[0][0] for e in ev])

    def mean_err(params):
        r = fastq.quantize(m, data, cfg(**params), progress=False)
        got = np.stack([ort_session(r.model).run(None, e)[0][0] for e in ev])
        return np.abs((got - ref).mean(axis=0)).mean()
    assert mean_err({"use_fast_bias": False}) < 0.6 * mean_err({"threshold": 1e-12})


def test_ignored_reasons_and_algorithm_choice(resnet):
    layer = q(resnet).plan.layers[0]
    res = q(resnet, ignored={"scope": [layer], "operations": [{"type": "Concat"}],
                             "patterns": ["gemm.*"]})
    why = res.report.ignored
    assert why[layer] == "ignored.scope"
    assert next(v for k, v in why.items() if k.startswith("concat")) == "ignored.operations"
    assert next(v for k, v in why.items() if k.startswith("gemm")) == "ignored.patterns"
    mm = fastq.quantize(resnet[0], resnet[1], {"name": "MinMaxQuantization", "params": {}},
                        progress=False)
    assert not any(v["bias_corrected"] for v in mm.report.layers.values())
    # AccuracyAwareQuantization runs now (tests/test_accuracy_aware.py); without a metric
    # it is a ConfigError
    with pytest.raises(fastq.ConfigError, match="needs a metric"):
        fastq.quantize(resnet[0], resnet[1], {"name": "AccuracyAwareQuantization",
                                              "params": {}}, progress=False)


def test_smoothquant_scales_down_a_channel_with_zero_weights():
    """A channel read only through all-zero weight rows contributes nothing to X @ W: its
    outlier is scaled to the largest ordinary smoothed channel (not left at s = 1 to set the
    activation's range), and X @ W is unchanged."""
    from fastq.algorithms.smooth_quant import Site, scales
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 4)).astype(np.float32)
    w[2] = 0.0
    site = Site(source="x", tensor="x", layers=[], weights={"w": w})
    a_max = np.array([1.0, 2.0, 1000.0, 0.5, 1.5, 0.0])
    s = scales(site, a_max, 0.95)
    ordinary = [0, 1, 3, 4]
    top = np.max(a_max[ordinary] / s[ordinary])
    assert np.isclose(a_max[2] / s[2], top)            # the outlier lands on the top
    assert s[5] == 1.0                                 # an all-zero activation: untouched
    x = rng.standard_normal((5, 6)) * a_max
    np.testing.assert_allclose((x / s) @ (w * s[:, None]), x @ w, rtol=1e-5, atol=1e-6)
