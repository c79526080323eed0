"""AccuracyAwareQuantization: the loop reverts the known fragile layer first and reaches the
drop; max_iter_num, relative drops, rollback (use_prev_if_drop_increase), annotation_free,
metric errors, an unreachable drop; cached-suffix ranking equals whole-model ranking.
Models are small MLPs built with onnx.helper; labels come from a numpy forward pass.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import fastq
from fastq import metrics
from fastq.algorithms import accuracy_aware as aa_mod

from models.util import on_threads

D, H, C = 16, 32, 10
OUTLIER = 2000.0


def fragile_mlp(seed=0, outlier=OUTLIER):
    """x[1,16] -> mm1 -> Relu -> mm2 (fragile: its input's channel 0 is ~2000x the others, so
    a per-tensor int8 range wipes out the rest) -> Relu -> mm3 -> logits[1,10]."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((D, H)).astype(np.float32) / 4
    w1[:, 0] = np.abs(w1[:, 0]) * outlier          # channel 0 huge, positive for x >= 0
    w2 = rng.standard_normal((H, H)).astype(np.float32) / 4
    w2[0, :] = 0.0                                 # the outlier channel does not matter
    w3 = rng.standard_normal((H, C)).astype(np.float32) / 2
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h1"], name="mm1"),
             helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
             helper.make_node("MatMul", ["r1", "w2"], ["h2"], name="mm2"),
             helper.make_node("Relu", ["h2"], ["r2"], name="relu2"),
             helper.make_node("MatMul", ["r2", "w3"], ["y"], name="mm3")]
    g = helper.make_graph(nodes, "fragile",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, D])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, C])],
                          [numpy_helper.from_array(w, n) for w, n in
                           ((w1, "w1"), (w2, "w2"), (w3, "w3"))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)

    def forward(x):
        r1 = np.maximum(x.astype(np.float64) @ w1, 0)
        return np.maximum(r1 @ w2, 0) @ w3
    return m, forward


def data(n, seed):
    rng = np.random.default_rng(seed)
    return [np.abs(rng.standard_normal((1, D))).astype(np.float32) for _ in range(n)]


def aa_config(**params):
    base = {"preset": "performance", "stat_subset_size": 40}
    return {"algorithms": [{"name": "AccuracyAwareQuantization",
                            "params": {**base, **params}}]}


@pytest.fixture(scope="module")
def setup():
    m, fwd = fragile_mlp()
    calib = data(40, 1)
    xs = data(60, 2)
    val = [(x, int(np.argmax(fwd(x)))) for x in xs]
    return m, fwd, calib, val


def run(setup, metric=metrics.top1, val=None, **params):
    m, _, calib, v = setup
    return fastq.quantize(m, calib, aa_config(**params), validation_data=v if val is None
                          else val, metric=metric, progress=False)


def test_default_quantization_misses_and_first_revert_is_the_fragile_layer(setup):
    r = run(setup, maximal_drop=0.25)
    a = r.report.accuracy_aware
    assert a["float_metric"] == 1.0
    assert a["int8_drop"] > 0.4                    # the outlier really breaks mm2
    assert a["reverts"][0]["layers"] == ["mm2"] and len(a["reverts"]) == 1
    assert a["reached"] and a["final_drop"] <= 0.25
    assert a["reverted_layers"] == ["mm2"]
    # mm2 is float in the exported model: no DequantizeLinear feeds it
    prod = {o: n for n in r.model.graph.node for o in n.output}
    mm2 = next(n for n in r.model.graph.node if n.name == "mm2")
    assert all(x in ("r1", "w2") for x in mm2.input)
    assert all(p.op_type != "DequantizeLinear" for p in
               (prod.get(x) for x in mm2.input) if p is not None)
    # the other layers stay int8
    mm3 = next(n for n in r.model.graph.node if n.name == "mm3")
    assert all(prod[x].op_type == "DequantizeLinear" for x in mm3.input)
    # the final metric is the model's own accuracy, recomputed here
    sess = fastq.InferenceSession(r.model, arith="exact32")
    acc = np.mean([int(np.argmax(sess.run(None, {"x": x})[0])) == y for x, y in setup[3]])
    assert acc == pytest.approx(a["final_metric"])
    assert "mm2" not in r.report.layers and "mm2" in r.report.ignored
    md = r.report.to_markdown()
    assert "Accuracy-aware" in md and "mm2" in md and "reached" in md
    assert r.report.to_dict()["accuracy_aware"]["reverted_layers"] == ["mm2"]


def test_relative_drop(setup):
    r = run(setup, maximal_drop=0.25, drop_type="relative")
    a = r.report.accuracy_aware
    assert a["drop_type"] == "relative"
    assert a["final_drop"] == pytest.approx((a["float_metric"] - a["final_metric"])
                                            / abs(a["float_metric"]))
    assert a["reverts"][0]["layers"] == ["mm2"]


def int8_targets(setup):
    """Annotations = the DefaultQuantization model's own outputs: int8 is perfect under
    neg_mse, every revert makes it worse."""
    m, _, calib, val = setup
    cfg = {"algorithms": [{"name": "DefaultQuantization",
                           "params": {"preset": "performance", "stat_subset_size": 40}}]}
    q = fastq.quantize(m, calib, cfg, progress=False).model
    sess = fastq.InferenceSession(q, arith="exact32")
    return [(x, sess.run(None, {"x": x})[0]) for x, _ in val]


def test_unreachable_drop_reverts_everything_and_says_so(setup):
    val = int8_targets(setup)
    r = run(setup, metric=metrics.neg_mse, val=val, maximal_drop=0.0,
            use_prev_if_drop_increase=False,
            metrics=[{"name": "neg_mse", "baseline_value": 1.0}])
    a = r.report.accuracy_aware
    assert not a["reached"] and a["all_reverted"]
    assert a["stop_reason"] == "nothing left to revert"
    assert sorted(a["reverted_layers"]) == ["mm1", "mm2", "mm3"]
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear")
                   for n in r.model.graph.node)
    assert "NOT reached" in r.report.to_markdown()
    assert a["float_metric"] == 1.0                 # the given baseline, not measured


def test_use_prev_if_drop_increase_follows_pot_step_back():
    """POT _change_quantization_scope on a benign MLP whose annotations are its own int8
    outputs (every revert raises the drop): the first revert is kept although it worsens
    (is_step_back starts true); the next worsening one is rolled back and the groups are
    re-ranked; the group stepped back from is not excluded, and right after a step back a
    worsening revert is kept. Without use_prev_if_drop_increase nothing is rolled back.
    (POT's re-ranking rule, rerank="drop_increase"; fastq's default re-ranks every time.)"""
    m, fwd = fragile_mlp(outlier=1.0)
    calib, xs = data(40, 1), data(60, 2)
    s = (m, fwd, calib, [(x, 0) for x in xs])
    val = int8_targets(s)
    kw = dict(metric=metrics.neg_mse, val=val, maximal_drop=0.0, rerank="drop_increase",
              metrics=[{"name": "neg_mse", "baseline_value": 1.0}])
    res = run(s, **kw)
    a = res.report.accuracy_aware
    r = a["reverts"]
    assert [x["layers"] for x in r] == [["mm2"], ["mm1"], ["mm1"], ["mm3"]]
    assert r[0]["drop_after"] > r[0]["drop_before"] and not r[0]["rolled_back"]
    assert r[1]["rolled_back"] and r[1]["reranked_after"]
    assert r[1]["drop_after"] > r[1]["drop_before"]
    assert not r[2]["rolled_back"] and r[2]["drop_before"] == r[1]["drop_before"]
    assert r[2]["drop_after"] == r[1]["drop_after"]         # the same group, kept this time
    assert [x["rolled_back"] for x in r] == [False, True, False, False]
    assert a["ranking_runs"]["rankings"] == 2                # once, then after the step back
    assert a["stop_reason"] == "nothing left to revert" and a["all_reverted"]
    assert "no (rolled back)" in res.report.to_markdown()
    b = run(s, use_prev_if_drop_increase=False, **kw).report.accuracy_aware
    assert [x["layers"] for x in b["reverts"]] == [["mm2"], ["mm1"], ["mm3"]]
    assert not any(x["rolled_back"] for x in b["reverts"])
    assert b["reverts"][1]["reranked_after"]                 # the drop grew: re-rank


def test_max_iter_num_stops(setup):
    val = int8_targets(setup)
    r = run(setup, metric=metrics.neg_mse, val=val, maximal_drop=0.0, max_iter_num=1,
            use_prev_if_drop_increase=False,
            metrics=[{"name": "neg_mse", "baseline_value": 1.0}])
    a = r.report.accuracy_aware
    assert a["iterations"] == 1 and len(a["reverted_layers"]) == 1
    assert a["stop_reason"] == "max_iter_num reached"


def test_annotation_free(setup):
    m, fwd, calib, val = setup
    unlabeled = [(x, None) for x, _ in val]
    conf = []
    for x, _ in val:
        z = fwd(x).ravel()
        e = np.exp(z - z.max())
        conf.append(e.max() / e.sum())
    thr = float(np.median(conf))
    r = run(setup, val=unlabeled, metric=None, annotation_free=True,
            annotation_conf_threshold=thr, maximal_drop=0.25)
    a = r.report.accuracy_aware
    want = [i for i, c in enumerate(conf) if c <= thr]     # kept: confidence > threshold
    assert 0 < len(want) < len(val)
    assert a["skipped_samples"] == want
    assert a["float_metric"] == 1.0 and a["reverts"][0]["layers"] == ["mm2"]


def test_metric_that_raises_names_the_sample(setup):
    calls = []

    def bad(outputs, label):          # the float pass calls it for samples 0, 1, 2, 3, ...
        calls.append(label)
        if len(calls) == 4:
            raise ValueError("boom")
        return 1.0
    with pytest.raises(fastq.DataError, match=r"validation sample 3\b.*boom"):
        run(setup, metric=bad)


def test_validation_data_errors(setup):
    with pytest.raises(fastq.DataError, match="validation dataset is empty"):
        run(setup, val=[])  # empty list is falsy but given
    m, _, calib, _ = setup
    with pytest.raises(fastq.DataError, match="needs validation_data"):
        fastq.quantize(m, calib, aa_config(), metric=metrics.top1, progress=False)
    with pytest.raises(fastq.ConfigError, match="needs a metric"):
        fastq.quantize(m, calib, aa_config(), validation_data=setup[3], progress=False)
    val = setup[3]
    nan = np.full((1, D), np.nan, np.float32)
    with pytest.raises(fastq.DataError, match=r"^validation sample 2: input 'x' expects shape"):
        run(setup, val=val[:2] + [(np.zeros((1, 5), np.float32), 0)])
    with pytest.raises(fastq.DataError, match=r"^validation sample 1: input 'x' holds NaN"):
        run(setup, val=val[:1] + [(nan, 0)])


@pytest.mark.parametrize("batch", [1, "N"])
def test_a_node_error_names_the_validation_sample(batch):
    """An embedding index out of range in validation sample 7 (calibration is clean): the
    float evaluation names that sample, stacked ("N": batched evaluation) or not."""
    rng = np.random.default_rng(0)
    g = helper.make_graph(
        [helper.make_node("Gather", ["emb", "ids"], ["e"], name="gather"),
         helper.make_node("MatMul", ["e", "w"], ["h"], name="mm"),
         helper.make_node("ReduceMean", ["h"], ["y"], name="mean", axes=[1], keepdims=0)],
        "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [batch, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 8])],
        [numpy_helper.from_array(rng.standard_normal((50, 16)).astype(np.float32), "emb"),
         numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    calib = [rng.integers(0, 50, (1, 6)) for _ in range(8)]
    val = [(rng.integers(0, 50, (1, 6)), 1) for _ in range(12)]
    val[7][0][0, 2] = 77
    own = rf"min {val[7][0].min()}, max 77$"
    with pytest.raises(fastq.DataError, match=r"^validation sample 7: node 'gather' .*" + own):
        fastq.quantize(m, calib, aa_config(maximal_drop=0.0), validation_data=val,
                       metric=metrics.top1, progress=False)


def test_bad_options_fail_before_any_work(setup, tmp_path):
    m, _, calib, val = setup
    calls = []

    def metric(outputs, label):
        calls.append(label)
        return 1.0
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    for kw, match in [({"memory_budget": -5}, "memory_budget"),
                      ({"memory_budget": "1G"}, "memory_budget"),
                      ({"executor": 42}, "executor: .*submit"),
                      ({"intermediate_dir": a_file}, "intermediate_dir: .* not a directory"),
                      ({"intermediate_dir": 3.5}, "intermediate_dir: a directory path")]:
        with pytest.raises(fastq.ConfigError, match=match):
            fastq.quantize(m, calib, aa_config(), validation_data=val, metric=metric,
                           progress=False, **kw)
    assert calls == []          # no evaluation ran
    assert a_file.read_text() == ""
    done = ThreadPoolExecutor(1)
    done.shutdown()
    with pytest.raises(fastq.ConfigError, match="executor refused the ranking work"):
        fastq.quantize(m, calib, aa_config(maximal_drop=0.0), validation_data=val,
                       metric=metrics.top1, progress=False, executor=done)


def test_cached_suffix_ranking_equals_whole_model_and_executor(setup, tmp_path):
    m, _, calib, val = setup
    ref = run(setup, maximal_drop=0.0).report.accuracy_aware
    cfg = aa_config(maximal_drop=0.0)
    with ThreadPoolExecutor(2) as ex:
        par = fastq.quantize(m, calib, cfg, validation_data=val, metric=metrics.top1,
                             progress=False, executor=ex, intermediate_dir=tmp_path)
    nocache = fastq.quantize(m, calib, cfg, validation_data=val, metric=metrics.top1,
                             progress=False, memory_budget=0)
    for other in (par.report.accuracy_aware, nocache.report.accuracy_aware):
        assert [x["layers"] for x in other["reverts"]] == [x["layers"] for x in ref["reverts"]]
        assert [x["subset_score"] for x in other["reverts"]] == \
            [x["subset_score"] for x in ref["reverts"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        [f"iteration_{i:03d}.onnx" for i in range(1, ref["iterations"] + 1)]


def test_suffix_model_outputs_equal_full_model(setup):
    """The cut-and-feed path itself: the suffix of a candidate run on cached activations of
    the current model gives the candidate's outputs exactly."""
    m, _, calib, val = setup
    cfg = fastq.config.load(aa_config())
    from fastq.quantize import run_default
    res, state = run_default(m, calib, cfg, cfg.main.params.base_algorithm,
                             cfg.main.params.base, False)
    cur = res.model
    known = {o for n in cur.graph.node for o in n.output} | {"x"}
    cand, _ = aa_mod.export(state, {"mm3"})
    sub, cut, passthrough = aa_mod._suffix_model(cand, {"mm3"}, known)
    assert len(sub.graph.node) < len(cand.graph.node) and passthrough == []
    q_outs = {o for n in cur.graph.node if n.op_type == "QuantizeLinear" for o in n.output}
    assert cut and all(x in q_outs or x == "x" for x in cut), cut   # quantized cut points
    sess = fastq.InferenceSession(cur, arith="exact32", keep=cut)   # as aa_eval does
    plain = fastq.InferenceSession(cur, arith="exact32")
    assert [r.output for r in sess.int8_layers()] == [r.output for r in plain.int8_layers()]
    feeds = [{"x": x} for x, _ in val[:5]]
    cached = [sess.run_with_intermediates(f, cut) for f in feeds]
    got = aa_mod.run_suffix(sub.SerializeToString(), "exact32", cut, cached)
    want = aa_mod.run_outputs(cand, "exact32", feeds)
    for g_, w in zip(got, want):
        assert np.array_equal(g_["y"], w[0])


def test_groups_merge_shared_ranges():
    from fastq.algorithms.placement import ActivationQuantizer, Plan
    p = Plan(layers=["a", "b", "c"])
    p.activations = {"t1": ActivationQuantizer("t1", None, [("a", 0)]),
                     "t2": ActivationQuantizer("t2", None, [("cat", 0)], group="concat:cat"),
                     "t3": ActivationQuantizer("t3", None, [("cat", 1), ("b", 0)],
                                               group="concat:cat"),
                     "t4": ActivationQuantizer("t4", None, [("c", 0)])}
    assert aa_mod.quantizer_groups(p) == [("a",), ("b", "cat"), ("c",)]
    rp = aa_mod.reverted_plan(p, {"b", "cat"})
    assert set(rp.activations) == {"t1", "t4"} and rp.layers == ["a", "c"]


def _npz_setup(setup, tmp_path):
    m, _, calib, val = setup
    mp = tmp_path / "m.onnx"
    onnx.save(m, mp)
    np.savez(tmp_path / "calib.npz", x=np.concatenate(calib))
    np.savez(tmp_path / "val.npz", x=np.concatenate([x for x, _ in val]),
             labels=np.array([y for _, y in val]))
    (tmp_path / "aa.json").write_text(__import__("json").dumps(aa_config(maximal_drop=0.25)))
    return mp


def test_cli_accuracy_aware(setup, tmp_path, capsys):
    from fastq import cli
    mp = _npz_setup(setup, tmp_path)
    args = ["quantize", str(mp), "-o", str(tmp_path / "q.onnx"),
            "--data", str(tmp_path / "calib.npz"),
            "--config", str(tmp_path / "aa.json"), "--validation", str(tmp_path / "val.npz"),
            "--report", str(tmp_path / "r.json"), "--no-progress"]
    assert cli.main(args + ["--metric", "top1"]) == 0
    rep = __import__("json").loads((tmp_path / "r.json").read_text())
    assert rep["accuracy_aware"]["reverted_layers"] == ["mm2"]
    assert "left in float: mm2" in capsys.readouterr().err
    assert cli.main(args + ["--metric", "fastq.metrics:top1"]) == 0
    assert cli.main(args + ["--metric", "nosuch"]) == 2
    assert "unknown metric 'nosuch'" in capsys.readouterr().err
    np.savez(tmp_path / "val.npz", x=np.zeros((3, 1, D), np.float32))
    assert cli.main(args + ["--metric", "top1"]) == 2
    assert "no array named 'labels'" in capsys.readouterr().err


def test_lower_is_better_metric_object_and_progress_bar(setup, capsys):
    m, fwd, calib, val = setup
    pytest.importorskip("tqdm")

    class Mse:
        higher_is_better = False

        def per_sample(self, outputs, target):
            return float(np.mean((outputs[0].astype(np.float64) - target) ** 2))

        def aggregate(self, values):
            return float(np.max(values))          # worst sample, to see it is used

    targets = [(x, fwd(x)) for x, _ in val]
    r = fastq.quantize(m, calib, aa_config(maximal_drop=1.0), validation_data=targets,
                       metric=Mse(), progress=True)
    a = r.report.accuracy_aware
    assert a["higher_is_better"] is False and a["float_metric"] < 1e-8
    sess = fastq.InferenceSession(r.model, arith="exact32")
    worst = max(np.mean((sess.run(None, {"x": x})[0] - t) ** 2) for x, t in targets)
    assert a["final_metric"] == pytest.approx(worst, rel=1e-6)
    assert a["final_drop"] == pytest.approx(a["final_metric"] - a["float_metric"])
    assert a["reverts"][0]["layers"] == ["mm2"] and a["reached"]
    assert "fastq accuracy-aware" in capsys.readouterr().err


def test_annotation_free_metric_error_names_the_callers_index(setup):
    m, fwd, calib, val = setup
    conf = []
    for x, _ in val:
        z = fwd(x).ravel()
        e = np.exp(z - z.max())
        conf.append(e.max() / e.sum())
    thr = float(np.median(conf))
    kept = [i for i, c in enumerate(conf) if c >= thr]
    calls = []

    def bad(outputs, label):
        calls.append(1)
        if len(calls) == 2:
            raise KeyError("x")
        return 1.0
    with pytest.raises(fastq.DataError, match=rf"validation sample {kept[1]}\b"):
        run(setup, val=[(x, None) for x, _ in val], metric=bad, annotation_free=True,
            annotation_conf_threshold=thr)


def test_second_output_upstream_of_the_revert_comes_from_the_cache(setup):
    """Outputs (y, r1): reverting mm2/mm3 leaves r1 unchanged, so the suffix run takes it
    from the cache; scores equal whole-model runs; sat16pair is the evaluation arith."""
    m, fwd, calib, val = setup
    m2 = onnx.ModelProto()
    m2.CopyFrom(m)
    m2.graph.output.append(helper.make_tensor_value_info("r1", TensorProto.FLOAT, [1, H]))

    def both(outputs, label):
        assert outputs[1].shape == (1, H)
        return float(int(np.argmax(outputs[0])) == label) - 1e-6 * float(outputs[1].sum())
    cfg = aa_config(maximal_drop=0.0, target_arith="sat16pair")
    kw = dict(validation_data=val, metric=both, progress=False)
    a = fastq.quantize(m2, calib, cfg, **kw).report.accuracy_aware
    b = fastq.quantize(m2, calib, cfg, memory_budget=0, **kw).report.accuracy_aware
    assert a["target_arith"] == "sat16pair"
    assert a["ranking_runs"]["from_cache"] > 0 and b["ranking_runs"]["from_cache"] == 0
    assert [x["subset_score"] for x in a["reverts"]] == \
        [x["subset_score"] for x in b["reverts"]]
    assert a["reverts"][0]["layers"] == ["mm2"]


def test_metric_subset_ratio_is_a_seeded_random_subset(setup, monkeypatch):
    """POT __init__ _diff_subset_indices: with baselines given, a random
    int(N * metric_subset_ratio) of the samples; only those run the float model and feed the
    ranking subset. fastq draws them with the config's seed, so runs repeat."""
    from fastq.algorithms import aa_eval
    seen = []
    real = aa_eval.float_outputs

    def spy(model, feeds, batched, *where):
        seen.append([f["x"] for f in feeds])
        return real(model, feeds, batched, *where)
    monkeypatch.setattr("fastq.algorithms.accuracy_aware.float_outputs", spy)
    kw = dict(maximal_drop=0.25, metric_subset_ratio=0.3, ranking_subset_size=10,
              metrics=[{"name": "top1", "baseline_value": 1.0}])
    a = run(setup, **kw).report.accuracy_aware
    assert a["metric_subset"] == 18 and len(seen[-1]) == 18          # int(60 * 0.3)
    xs = [x for x, _ in setup[3]]
    idx = [next(i for i, x in enumerate(xs) if np.array_equal(x, f)) for f in seen[-1]]
    assert idx == sorted(idx) and idx != list(range(18))              # random, in order
    assert a["reverts"][0]["ranking_subset"] == 10 and a["reverts"][0]["layers"] == ["mm2"]
    run(setup, **kw)
    assert [f.tobytes() for f in seen[-1]] == [f.tobytes() for f in seen[-2]]   # seeded
    b = run(setup, maximal_drop=0.25, metric_subset_ratio=0.3).report.accuracy_aware
    assert b["metric_subset"] == 60                   # no baseline: every sample (POT too)


def test_rerank_every_iteration_extension(setup):
    """rerank="every_iteration" (the default: DESIGN.md §4 and the issue's loop re-rank after
    each revert) ranks again after every kept revert; POT's "drop_increase" only after the
    drop grew; a bad value is a ConfigError."""
    m, fwd = fragile_mlp(outlier=1.0)
    s = (m, fwd, data(40, 1), [(x, 0) for x in data(60, 2)])
    val = int8_targets(s)
    r = fastq.quantize(m, s[2], aa_config(maximal_drop=0.0, use_prev_if_drop_increase=False,
                                          metrics=[{"name": "neg_mse", "baseline_value": 1.0}]),
                       validation_data=val, metric=metrics.neg_mse, progress=False,
                       rerank="every_iteration")
    a = r.report.accuracy_aware
    assert a["rerank"] == "every_iteration" and a["iterations"] == 3
    assert a["ranking_runs"]["rankings"] == 3                 # before each revert
    assert [x["reranked_after"] for x in a["reverts"]] == [True, True, False]
    with pytest.raises(fastq.ConfigError, match="rerank"):
        fastq.quantize(m, s[2], aa_config(), validation_data=val, metric=metrics.neg_mse,
                       progress=False, rerank="always")
    # the same as a config key (so the CLI's --config reaches it); the keyword overrides it
    cfg = aa_config(maximal_drop=0.0, use_prev_if_drop_increase=False, rerank="every_iteration",
                    metrics=[{"name": "neg_mse", "baseline_value": 1.0}])
    r2 = fastq.quantize(m, s[2], cfg, validation_data=val, metric=metrics.neg_mse,
                        progress=False)
    a2 = r2.report.accuracy_aware
    assert a2["rerank"] == "every_iteration"
    assert [x["layers"] for x in a2["reverts"]] == [x["layers"] for x in a["reverts"]]
    r3 = fastq.quantize(m, s[2], cfg, validation_data=val, metric=metrics.neg_mse,
                        progress=False, rerank="drop_increase")
    assert r3.report.accuracy_aware["rerank"] == "drop_increase"
    assert r3.report.accuracy_aware["ranking_runs"]["rankings"] < 3
    default = fastq.quantize(m, s[2], aa_config(
        maximal_drop=0.0, use_prev_if_drop_increase=False,
        metrics=[{"name": "neg_mse", "baseline_value": 1.0}]), validation_data=val,
        metric=metrics.neg_mse, progress=False).report.accuracy_aware
    assert default["rerank"] == "every_iteration" and \
        default["reverted_layers"] == a["reverted_layers"]
    with pytest.raises(fastq.ConfigError, match=r"params\.rerank.*every_iteration"):
        fastq.config.load(aa_config(rerank="always"))


def test_minmax_base_algorithm_skips_bias_correction(setup, monkeypatch):
    """base_algorithm MinMaxQuantization (as in POT's annotation-free sample): the same
    revert of the fragile layer, and bias correction never runs; with DefaultQuantization
    as the base it does."""
    from fastq.algorithms import bias_correction as bc
    calls = []
    real = bc.find_sites
    monkeypatch.setattr(bc, "find_sites", lambda *a, **k: calls.append(1) or real(*a, **k))
    r = run(setup, maximal_drop=0.25, base_algorithm="MinMaxQuantization")
    a = r.report.accuracy_aware
    assert a["reverted_layers"] == ["mm2"] and a["reached"]
    assert calls == []
    run(setup, maximal_drop=0.25)
    assert calls


def test_ranking_after_a_step_back_is_reused(monkeypatch):
    """rerank="every_iteration" with use_prev_if_drop_increase: a step back returns to a model
    ranked before; its ranking (same model, subset, candidates) is reused instead of computed
    again, and the loop takes the same path: the group stepped back from is reverted again and
    kept. Every computed ranking is on a different reverted set."""
    m, fwd = fragile_mlp(outlier=1.0)
    calib, xs = data(40, 1), data(60, 2)
    s = (m, fwd, calib, [(x, 0) for x in xs])
    val = int8_targets(s)
    seen = []
    real = aa_mod.rank

    def spy(ev, export, current, reverted, *a, **k):
        seen.append(frozenset(reverted))
        return real(ev, export, current, reverted, *a, **k)
    monkeypatch.setattr(aa_mod, "rank", spy)
    a = run(s, metric=metrics.neg_mse, val=val, maximal_drop=0.0, rerank="every_iteration",
            metrics=[{"name": "neg_mse", "baseline_value": 1.0}]).report.accuracy_aware
    r = a["reverts"]
    back = [i for i, x in enumerate(r) if x["rolled_back"]]
    assert back and a["ranking_runs"]["rankings_reused"] == len(back)
    for i in back:                       # the same group again, kept: the reused ranking
        assert r[i + 1]["layers"] == r[i]["layers"] and not r[i + 1]["rolled_back"]
        assert r[i + 1]["drop_after"] == r[i]["drop_after"]
    assert len(seen) == len(set(seen)) == a["ranking_runs"]["rankings"]
    assert a["all_reverted"]


def test_reexport_weight_cache_gives_the_same_model(setup):
    """AccuracyAware's re-exports quantize each weight once (DefaultState.wq_cache): every
    candidate model equals a build without the cache byte for byte, and other QParams for a
    weight (a new scale) quantize it again."""
    from dataclasses import replace

    from fastq.export.qdq import build
    from fastq.quantize import run_default
    m, _, calib, _ = setup
    cfg = fastq.config.load(aa_config())
    _, state = run_default(m, calib, cfg, cfg.main.params.base_algorithm,
                           cfg.main.params.base, False)
    for nodes in (set(), {"mm2"}, {"mm1", "mm3"}, {"mm2"}):
        cached, _ = aa_mod.export(state, nodes)
        plan = aa_mod.reverted_plan(state.plan, nodes)
        plain, _ = build(state.graph, plan, state.act_qp, dict(state.w_qp))
        assert cached.SerializeToString() == plain.SerializeToString(), nodes
    assert len(state.wq_cache) == 3                      # one entry per weight
    w_qp = dict(state.w_qp)
    w_qp["mm2"] = replace(w_qp["mm2"], scale=(w_qp["mm2"].scale * 2).astype(np.float32))
    a, _ = build(state.graph, state.plan, state.act_qp, dict(w_qp), qcache=state.wq_cache)
    b, _ = build(state.graph, state.plan, state.act_qp, dict(w_qp))
    assert a.SerializeToString() == b.SerializeToString()
    assert len(state.wq_cache) == 4


def test_ranking_cache_paths_agree(setup):
    """The ranking's cache paths give the same reverts and scores: the cut tensors of every
    candidate cached (default budget), of only some candidates (a small budget: the rest run
    the whole model), and none."""
    m, _, calib, val = setup
    got = {}
    for budget in (None, 3000, 0):
        a = fastq.quantize(m, calib, aa_config(maximal_drop=0.0), validation_data=val,
                           metric=metrics.top1, progress=False,
                           memory_budget=budget).report.accuracy_aware
        got[budget] = a
    runs = {b: a["ranking_runs"] for b, a in got.items()}
    assert runs[None]["whole_model"] == 0 and runs[None]["from_cache"] > 0
    assert runs[3000]["whole_model"] > 0 and runs[3000]["from_cache"] > 0
    assert 0 < runs[3000]["cached_bytes"] <= 3000 < runs[None]["cached_bytes"]
    assert runs[0]["from_cache"] == 0
    for b in (3000, 0):
        assert [x["layers"] for x in got[b]["reverts"]] == \
            [x["layers"] for x in got[None]["reverts"]]
        assert [x["subset_score"] for x in got[b]["reverts"]] == \
            [x["subset_score"] for x in got[None]["reverts"]]


def test_threads_give_the_same_ranking(setup):
    """Without an executor the candidates and evaluation batches run on fastq's threads:
    one thread and two give the same reverts, scores and final model."""
    m, _, calib, val = setup
    got = on_threads((1, 2), lambda: fastq.quantize(
        m, calib, aa_config(maximal_drop=0.0), validation_data=val, metric=metrics.top1,
        progress=False))
    a, b = (r.report.accuracy_aware for r in got)
    assert [x["layers"] for x in a["reverts"]] == [x["layers"] for x in b["reverts"]]
    assert [x["subset_score"] for x in a["reverts"]] == [x["subset_score"] for x in b["reverts"]]
    assert got[0].model.SerializeToString() == got[1].model.SerializeToString()
