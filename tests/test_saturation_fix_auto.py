"""``saturation_fix: "auto"``: on a float model whose first conv saturates (inputs near the top
of the u8 grid against same-sign weights) and whose second conv cannot (every other input
channel is a ReLU'd negative channel, so each (2c, 2c+1) pair holds one zero product), auto
fixes exactly the first conv, leaves the second at full 8-bit range (bit-identical to
``saturation_fix: "no"``), after which that layer's sat16pair and exact32 outputs are
identical; the report and decisions carry the measured numbers; targets other than CPU/ANY get
no fix and no saturation figures."""

import unittest.mock as mock

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import fastq
import fastq.saturation as sat_mod


def model_and_data(n=8, seed=0):
    rng = np.random.default_rng(seed)
    sign = np.where(np.arange(8) % 2 == 0, 1.0, -1.0).reshape(8, 1, 1, 1)
    w1 = (sign * rng.uniform(0.9, 1.0, (8, 4, 3, 3))).astype(np.float32)
    w2 = (rng.standard_normal((6, 8, 3, 3)) * 0.2).astype(np.float32)
    b2 = (rng.standard_normal(6) * 0.1).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["y"], name="conv2",
                              pads=[1, 1, 1, 1])]
    g = helper.make_graph(nodes, "sat", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 4, 6, 6])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, 6, 6, 6])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
         numpy_helper.from_array(b2, "b2")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    data = [rng.uniform(0.5, 1.0, (1, 4, 6, 6)).astype(np.float32) for _ in range(n)]
    return m, data


def quantize(m, data, **params):
    return fastq.quantize(m, data, {"name": "DefaultQuantization", "params": params},
                          progress=False)


def int_weights(model, layer):
    """The int8 weight and its scale behind ``layer``'s weight DequantizeLinear."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    prod = {o: n for n in model.graph.node for o in n.output}
    node = next(n for n in model.graph.node if n.name == layer)
    dq = prod[node.input[1]]
    return inits[dq.input[0]], inits[dq.input[1]]


def layer_output(model, tensor, data, arith):
    s = fastq.InferenceSession(model, arith=arith, keep=[tensor])
    return np.concatenate([s.run([tensor], {"x": x})[0] for x in data])


@pytest.fixture(scope="module")
def case():
    m, data = model_and_data()
    return m, data, quantize(m, data, saturation_fix="auto"), \
        quantize(m, data, saturation_fix="no"), quantize(m, data, saturation_fix="all")


def test_auto_fixes_only_the_saturating_layer(case):
    m, data, auto, no, all_ = case
    assert {k: v["saturation_fix"] for k, v in auto.report.layers.items()} == \
        {"conv1": True, "conv2": False}
    w1, s1 = int_weights(auto.model, "conv1")
    assert np.abs(w1.astype(int)).max() <= 64                      # the fix: half range
    w2, s2 = int_weights(auto.model, "conv2")
    w2_no, s2_no = int_weights(no.model, "conv2")
    assert np.abs(w2.astype(int)).max() == 127                     # full 8-bit range kept
    assert np.array_equal(w2, w2_no) and np.array_equal(s2, s2_no)
    assert np.abs(int_weights(all_.model, "conv2")[0].astype(int)).max() <= 64  # "all" halves
    np.testing.assert_array_equal(s1, int_weights(no.model, "conv1")[1] * np.float32(2))


def test_after_the_fix_sat16pair_equals_exact32_for_that_layer(case):
    m, data, auto, no, _ = case
    e, s = (layer_output(auto.model, "c1", data, a) for a in ("exact32", "sat16pair"))
    assert np.array_equal(e, s)
    # without the fix the same layer differs: the test can see saturation
    e, s = (layer_output(no.model, "c1", data, a) for a in ("exact32", "sat16pair"))
    assert not np.array_equal(e, s)
    assert fastq.analyze_saturation(no.model, data).layers[0].name == "conv1"


def test_report_and_decisions_carry_the_measurements(case):
    _, data, auto, no, _ = case
    line = next(d for d in auto.report.decisions if d.startswith("conv1:"))
    assert "saturation fix applied (auto)" in line and "saturation_threshold 0.001" in line
    assert "% of accumulator outputs change under sat16pair" in line
    assert not any(d.startswith("conv2:") and "applied" in d for d in auto.report.decisions)
    sat = auto.report.layers["conv1"]["saturation"]
    assert sat["saturated_pairs"] == 0 and sat["changed_outputs"] == 0
    assert no.report.layers["conv1"]["saturation"]["changed_fraction"] > 0.5
    assert no.report.layers["conv2"]["saturation"]["saturated_pairs"] == 0
    assert "saturation_auto" in auto.report.timings
    assert "saturation_report" in no.report.timings
    md = auto.report.to_markdown()
    assert "## AVX2 saturation" in md and "| conv1 | True | 0 (0%) | 0 (0%) | 0 | inf |" in md
    d = auto.report.to_dict()
    assert d["layers"]["conv1"]["saturation"]["sqnr_db"] == "inf"


def test_threshold_and_target_device():
    m, data = model_and_data(4, seed=1)
    r = quantize(m, data, saturation_fix="auto", saturation_threshold=1.0)
    assert not any(v["saturation_fix"] for v in r.report.layers.values())
    assert any("fix not needed (auto)" in d for d in r.report.decisions)
    gpu = quantize(m, data, saturation_fix="auto", target_device="GPU")
    assert not any(v["saturation_fix"] for v in gpu.report.layers.values())
    assert not any("saturation" in v for v in gpu.report.layers.values())
    assert "saturation_auto" not in gpu.report.timings


def test_auto_with_flat_pairing_config():
    m, data = model_and_data(4, seed=2)
    r = quantize(m, data, saturation_fix="auto", conv_pairing="flat")
    assert r.report.layers["conv1"]["saturation_fix"] is True
    assert r.report.layers["conv2"]["saturation_fix"] is False


def test_report_saturation_uses_a_bounded_subset(monkeypatch):
    """The report's per-layer saturation is measured on at most REPORT_SATURATION_SAMPLES
    calibration samples (it is a report figure; over all samples it dominated quantize
    time), and the report says on how many."""
    import importlib
    qmod = importlib.import_module("fastq.quantize")
    from fastq.algorithms import saturation_fix as sf
    seen = []
    real = sf.measure
    monkeypatch.setattr(sf, "measure", lambda m, s, p, **kw: seen.append(len(s)) or
                        real(m, s, p, **kw))
    monkeypatch.setattr(qmod, "REPORT_SATURATION_SAMPLES", 5)
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="c")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
        [numpy_helper.from_array(
            np.random.default_rng(0).standard_normal((3, 2, 3, 3)).astype(np.float32), "w")]),
        opset_imports=[helper.make_opsetid("", 13)])
    rng = np.random.default_rng(1)
    data = [rng.standard_normal((1, 2, 6, 6)).astype(np.float32) for _ in range(12)]
    r = fastq.quantize(model, data, progress=False)
    assert seen == [5]
    assert "report saturation figures measured on 5 of 12 calibration samples" in \
        r.report.decisions
    assert "saturation" in r.report.layers["c"]


@pytest.mark.parametrize("fixed_batch_reshape", [False, True])
def test_stacked_measure_counts_as_sample_by_sample(fixed_batch_reshape):
    """The report's measurement on concatenated groups (the statistics pass ran batched) gives
    the same counts as sample by sample, SQNR to float rounding; the batch-1 input is made
    symbolic for it. A graph that fixes the batch (Reshape to [1, ...]) makes the groups
    fail: it falls back to one sample per run, same figures."""
    from fastq.algorithms import saturation_fix as sf
    m, data = model_and_data(n=10)
    if fixed_batch_reshape:
        g = m.graph
        g.node[-1].output[0] = "y0"
        g.initializer.append(numpy_helper.from_array(np.array([1, 6, 6, 6], np.int64), "shp"))
        g.node.append(helper.make_node("Reshape", ["y0", "shp"], ["y"], name="fix"))
    q = quantize(m, data, saturation_fix="no").model
    feeds = [{"x": x} for x in data]
    one = sf.measure(q, feeds, "per_tap")
    calls = []
    real = sat_mod.analyze_saturation

    def spy(model, samples, **kw):
        calls.append(len(samples))
        return real(model, samples, **kw)
    with mock.patch.object(sat_mod, "analyze_saturation", spy):
        both = sf.measure(q, feeds, "per_tap", stacked=True)
    assert set(both) == set(one) == {"conv1", "conv2"}
    assert calls[0] == 1                                   # one group of 10 samples
    assert calls[1:] == ([10] if fixed_batch_reshape else [])
    for name in one:
        a, b = one[name].to_dict(), both[name].to_dict()
        del a["sqnr_db"], b["sqnr_db"]            # "inf" in the dict for conv2
        assert a == b
        assert both[name].sqnr_db == pytest.approx(one[name].sqnr_db, rel=1e-12)
    assert one["conv1"].saturated_pairs > 0
