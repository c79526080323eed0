"""AccuracyAware settings search before reverting: tune_hyperparams (POT's range-estimator
grid) picks the quantile estimator on a model whose input carries one huge element per
sample, and convert_to_mixed_preset switches to asymmetric activations when the input sits
far from zero; every trial is in the report; the statistics pass runs once for all trials.
Oracles: numpy quantiles of the calibration data, numpy forward passes.
"""

from __future__ import annotations

import importlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import fastq
from fastq import metrics
from fastq.algorithms import aa_eval, aa_tuning, statistics

T, D, H, C = 64, 16, 32, 10


def mlp(kind: str, seed=0):
    """x[N,64,16] -> mm1 -> Relu -> mm2 -> y[N,64,10]. "outlier": w1's row 0 is zero, so
    x[0,0,0] (1000 in every sample) does not matter. "offset": x = -5 + U(0,1); weights are
    exact int8 levels per channel and w1's columns sum to zero, so the input quantizer's
    step is the error that counts."""
    rng = np.random.default_rng(seed)
    if kind == "outlier":
        w1 = (rng.standard_normal((D, H)) / 4).astype(np.float32)
        w1[0] = 0.0
        w2 = (rng.standard_normal((H, C)) / 4).astype(np.float32)
    else:
        k = rng.integers(-127, 128, (D // 2, H))
        k[0] = 127
        w1 = (np.concatenate([k, -k]) / (127 * 8)).astype(np.float32)
        k2 = rng.integers(-127, 128, (H, C))
        k2[0] = 127
        w2 = (k2 / (127 * 4)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="mm2")]
    g = helper.make_graph(nodes, kind,
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", T, D])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", T, C])],
                          [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m, lambda x: np.maximum(x.astype(np.float64) @ w1, 0) @ w2


def samples(kind: str, n: int, seed: int):
    rng = np.random.default_rng(seed)
    if kind == "outlier":
        xs = [np.abs(rng.standard_normal((1, T, D))).astype(np.float32) for _ in range(n)]
        for x in xs:
            x[0, 0, 0] = 1000.0
        return xs
    return [(-5.0 + rng.uniform(0, 1, (1, T, D))).astype(np.float32) for _ in range(n)]


def cfg(**p):
    return {"algorithms": [{"name": "AccuracyAwareQuantization",
                            "params": {"preset": "performance", "stat_subset_size": 32, **p}}]}


def quantize(kind, **p):
    m, f = mlp(kind)
    calib = samples(kind, 32, 1)
    val = [(x, f(x)) for x in samples(kind, 40, 2)]
    r = fastq.quantize(m, calib, cfg(**p), validation_data=val, metric=metrics.neg_mse,
                       progress=False)
    return r, calib


def test_tune_hyperparams_picks_quantile_range_over_the_outlier(monkeypatch):
    calls = []
    real = statistics.collect

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)
    monkeypatch.setattr(importlib.import_module("fastq.quantize"), "collect", counting)
    plain, _ = quantize("outlier", maximal_drop=1e-3)
    assert plain.report.accuracy_aware["reverts"][0]["layers"] == ["mm1"]
    assert plain.report.accuracy_aware["trials"] == []
    calls.clear()
    r, calib = quantize("outlier", maximal_drop=1e-3, tune_hyperparams=True)
    assert len(calls) == 1                           # one statistics pass serves every trial
    a = r.report.accuracy_aware
    assert a["int8_drop"] > 0.1                      # the outlier wipes the input out
    trials = a["trials"]
    grid = [t for t in trials if t["stage"] == "tune_hyperparams"]
    assert len(grid) == 12                           # 1 weights + 3x3 activations + 2 bias
    for t in trials:
        assert set(t) >= {"stage", "config", "metric", "seconds", "samples"}
    best = trials[-1]
    assert best["stage"] == "tune_hyperparams_best" and best["kept"]
    assert best["config"]["activations"]["max"] == {"type": "quantile", "aggregator": "mean",
                                                    "outlier_prob": 1e-3}
    # the first of the equal bests (POT: strictly lower error replaces), i.e. min side 'min'
    assert best["config"]["activations"]["min"]["type"] == "min"
    assert best["subset_metric"] == max(t["metric"] for t in grid)
    assert a["reached"] and a["reverts"] == [] and a["final_drop"] <= 1e-3
    # oracle: the input scale is the mean over calibration samples of the 1-1e-3 quantile
    # (numpy, linear interpolation) on the unsigned grid [0, 255]
    want = np.mean([np.quantile(x.astype(np.float64), 1 - 1e-3) for x in calib]) / 255
    assert r.report.activations["x"]["scale"] == pytest.approx(want, rel=1e-5)
    assert "tune_hyperparams" in r.report.to_markdown()
    assert r.report.to_dict()["accuracy_aware"]["trials"][0]["config"] == \
        {"weights": {"min": {"type": "min"}, "max": {"type": "max"}}}


def test_convert_to_mixed_preset_switches_when_asymmetric_helps():
    perf, _ = quantize("offset", maximal_drop=3e-6, max_iter_num=0)
    a0 = perf.report.accuracy_aware
    assert a0["int8_drop"] > 3e-6 and not a0["reached"]
    assert perf.report.activations["x"]["zero_point"] == 0        # symmetric, signed
    r, _ = quantize("offset", maximal_drop=3e-6, convert_to_mixed_preset=True)
    a = r.report.accuracy_aware
    (t,) = a["trials"]
    assert t["stage"] == "convert_to_mixed_preset" and t["kept"]
    assert t["metric"] > a["int8_metric"] and t["drop"] < a["int8_drop"] / 2
    assert a["reached"] and a["reverts"] == [] and a["final_metric"] == t["metric"]
    x = r.report.activations["x"]
    assert x["mode"] == "asymmetric" and x["zero_point"] != 0
    # the model is the mixed one: its int8 run gives the reported metric
    m, f = mlp("offset")
    sess = fastq.InferenceSession(r.model, arith="exact32")
    xs = samples("offset", 40, 2)
    mse = np.mean([np.mean((sess.run(None, {"x": v})[0] - f(v)) ** 2) for v in xs])
    assert -mse == pytest.approx(a["final_metric"], rel=1e-4)


def test_mixed_preset_not_kept_when_it_does_not_help_and_not_tried_from_mixed():
    r, _ = quantize("outlier", maximal_drop=1e-3, convert_to_mixed_preset=True,
                    max_iter_num=0)
    (t,) = r.report.accuracy_aware["trials"]
    assert not t["kept"] and t["drop"] >= r.report.accuracy_aware["int8_drop"]
    assert r.report.accuracy_aware["final_drop"] == r.report.accuracy_aware["int8_drop"]
    r, _ = quantize("outlier", maximal_drop=1e-3, convert_to_mixed_preset=True,
                    max_iter_num=0, preset="mixed")
    assert r.report.accuracy_aware["trials"] == []   # POT: only from a performance preset


def test_statistics_serve_several_estimators_exactly():
    """range_for over kept per-sample values equals a pass that requested that estimator."""
    from fastq.config.types import RangeEstimatorConfig
    m, _ = mlp("outlier")
    feeds = [{"x": x} for x in samples("outlier", 8, 3)]
    sess = fastq.InferenceSession(m)
    ests = [RangeEstimatorConfig(min=s_lo, max=s_hi) for s_lo in aa_tuning._ACT_MIN
            for s_hi in aa_tuning._ACT_MAX]
    both = statistics.collect(sess, feeds, [statistics.RangeRequest("r", e, None)
                                            for e in ests], {})
    for e in ests:
        one = statistics.collect(sess, feeds, [statistics.RangeRequest("r", e, None)], {})
        lo, hi = both.range_for("r", e, None)
        assert np.array_equal(lo, one.ranges["r"][0]) and np.array_equal(hi, one.ranges["r"][1])
    assert len(both.per_sample) == 6          # min, max, quantiles 1e-3/1e-4 low/high: once


def test_batched_evaluation_equals_one_by_one_and_float_cache():
    m, _ = mlp("outlier")
    feeds = [{"x": x} for x in samples("outlier", 20, 4)]
    assert aa_eval.batch_verdict(m, feeds)
    one = aa_eval.run_outputs(m, None, feeds, batched=False)
    many = aa_eval.run_outputs(m, None, feeds, batched=True)
    for a, b in zip(one, many):
        assert a[0].shape == b[0].shape == (1, T, C)
        np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-6)
    aa_eval.clear_float_cache()
    o1, hit1 = aa_eval.float_outputs(m, feeds, True)
    o2, hit2 = aa_eval.float_outputs(m, feeds, True)
    assert (hit1, hit2) == (False, True) and o2 is o1
    _, hit3 = aa_eval.float_outputs(m, feeds[:-1], True)
    assert not hit3                                   # other inputs: not the cached entry


def test_batch_verdict_refuses_models_that_mix_samples():
    """A model reducing over the batch axis gives different per-sample outputs stacked."""
    nodes = [helper.make_node("ReduceMean", ["x"], ["mu"], name="mean", axes=[0],
                              keepdims=1),
             helper.make_node("Sub", ["x", "mu"], ["y"], name="sub")]
    g = helper.make_graph(nodes, "mix",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.standard_normal((1, 4)).astype(np.float32)} for _ in range(3)]
    assert not aa_eval.batch_verdict(m, feeds)
