"""AccuracyAwareQuantization benchmark on a CNN and a BERT-style encoder where
DefaultQuantization misses a tight drop: a 6-conv CNN whose conv3 input has one outlier channel
(x400, unused downstream), top-1 against the float labels; a 2-block encoder whose first FFN
output has one outlier channel (x1000, unused by the second FFN linear), mean cosine
similarity to the float output. One run each of:
- fastq (stacked-batch evaluations, cached-suffix ranking, float outputs cached),
- fastq again (the float baseline now comes from the cache), and fastq unbatched,
- fastq with rerank="every_iteration" (fastq extension: re-rank after every kept revert),
- a naive re-implementation of the same POT loop (every evaluation and every ranking
  candidate runs the whole model sample by sample; no activation cache, no batching, no
  float cache).
Reported: wall times, ratios, reverted layers (fastq must revert the same ones as naive).
When nncf is installed (`pip install ".[compare]"`), test_bench_vs_nncf_accuracy_control runs
fastq's AccuracyAware and nncf.quantize_with_accuracy_control on the same problems (the BERT
one with and without model_type transformer) in one test each: wall-time ratio, reverted ops
counted the same way on both outputs, final drops re-validated with one ORT function. The tiny
problems measure fixed per-call overheads; BIG_PROBLEMS are realistic sizes: "mobilenet"
(mobilenet_v2_like 112x112, 29 convs, fragile 1x1 conv56, 256 validation / 128
calibration images, top-1) and "bert6" / "bert6_tight" (bert_like 6x128x256 with the
outlier, 64 validation / 32 calibration samples, cosine; without / with model_type
transformer).
Targets (issue 6): fastq <= 0.2x NNCF's time, no more reverted layers than NNCF.
"""

from __future__ import annotations

import os
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import fastq
from fastq import metrics
from fastq.algorithms import aa_eval
from fastq.algorithms import accuracy_aware as aa_mod
from fastq.config import load as load_config
from fastq.metrics import Metric, as_metric
from fastq.quantize import run_default

from _models import bert_like, mobilenet_v2_like
from _timing import blas_threads

N_CALIB = 64


def outlier_cnn(seed=0):
    rng = np.random.default_rng(seed)
    chans = [3, 16, 16, 24, 24, 32, 32]
    nodes, inits = [], []
    x = "input"
    ws = []
    for i in range(6):
        cin, cout = chans[i], chans[i + 1]
        w = (rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))).astype(
            np.float32)
        b = rng.normal(0, 0.1, cout).astype(np.float32)
        ws.append((w, b))
    ws[1][0][0] = np.abs(ws[1][0][0]) * 400.0        # conv2 channel 0: huge and positive
    ws[1][1][0] = 400.0
    ws[2][0][:, 0] = 0.0                             # conv3 ignores it
    for i, (w, b) in enumerate(ws):
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i + 1}",
                                   pads=[1] * 4, strides=[2 if i in (2, 4) else 1] * 2,
                                   kernel_shape=[3, 3]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i + 1}")]
        x = f"r{i}"
    wg = (rng.standard_normal((10, 32)) * np.sqrt(1 / 32)).astype(np.float32)
    inits += [numpy_helper.from_array(wg, "wg"),
              numpy_helper.from_array(np.zeros(10, np.float32), "bg")]
    nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"),
              helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
              helper.make_node("Gemm", ["flat", "wg", "bg"], ["logits"], name="fc", transB=1)]
    g = helper.make_graph(nodes, "outlier_cnn",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                         ["N", 3, 16, 16])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                         ["N", 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def outlier_bert(layers=2, seq=32, hidden=64, heads=2):
    """bench/_models.bert_like (dynamic batch); block 1's FFN-up output channel 0 is x1000
    and the FFN-down weight ignores it (its row 0 is zero)."""
    m = bert_like(layers=layers, seq=seq, hidden=hidden, heads=heads, dynamic_batch=True)
    inits = {t.name: t for t in m.graph.initializer}
    up = next(n for n in m.graph.node if n.op_type == "MatMul" and n.input[1] in inits
              and tuple(inits[n.input[1]].dims) == (hidden, 4 * hidden))
    down = next(n for n in m.graph.node if n.op_type == "MatMul" and n.input[1] in inits
                and tuple(inits[n.input[1]].dims) == (4 * hidden, hidden))
    wu = numpy_helper.to_array(inits[up.input[1]]).copy()
    wu[:, 0] *= 1000.0
    wd = numpy_helper.to_array(inits[down.input[1]]).copy()
    wd[0] = 0.0
    inits[up.input[1]].CopyFrom(numpy_helper.from_array(wu, up.input[1]))
    inits[down.input[1]].CopyFrom(numpy_helper.from_array(wd, down.input[1]))
    onnx.checker.check_model(m)
    return m, down.name


def cosine(outputs, target) -> float:
    a = np.asarray(outputs[0], np.float64).ravel()
    b = np.asarray(target, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def _cnn_problem():
    m = outlier_cnn()
    rng = np.random.default_rng(1)
    img = lambda: rng.uniform(-2, 2, (1, 3, 16, 16)).astype(np.float32)  # noqa: E731
    calib = [{"input": img()} for _ in range(N_CALIB)]
    sess = fastq.InferenceSession(m)
    val = []
    for _ in range(300):
        f = {"input": img()}
        val.append((f, int(np.argmax(sess.run(None, f)[0]))))
    return m, calib, val, metrics.top1, 0.005, "conv3"


def _bert_data(m, seq, hidden, padded, n_val):
    """32 calibration feeds, then ``n_val`` validation (feed, float output) pairs: x ~ N(0, 1)
    [1, seq, hidden], the mask's last ``padded`` positions 0."""
    rng = np.random.default_rng(2)

    def feed():
        mask = np.ones((1, 1, 1, seq), np.float32)
        mask[..., seq - padded:] = 0
        return {"x": rng.standard_normal((1, seq, hidden)).astype(np.float32), "mask": mask}
    calib = [feed() for _ in range(32)]
    sess = fastq.InferenceSession(m)
    val = [(f, sess.run(None, f)[0]) for f in (feed() for _ in range(n_val))]
    return calib, val


def _bert_problem():
    m, fragile = outlier_bert()
    calib, val = _bert_data(m, 32, 64, 4, 100)
    return m, calib, val, cosine, 0.002, fragile


def outlier_mobilenet(scale=400.0, classes=4, src="conv52", dst="conv56", seed=5):
    """bench/_models.mobilenet_v2_like (112x112) with one fragile layer: the depthwise conv
    of the second 32-channel block (``src``) has output channel 0 x``scale`` (|weights|,
    bias ``scale``: huge and positive after its Relu) and the 1x1 project conv after it
    (``dst``) ignores that channel (zero weight column), so only ``dst``'s input quantizer
    is hurt. (Not a depthwise consumer: NNCF quantizes a depthwise conv's input per channel,
    which such an outlier does not hurt.) Head: a random-weight net maps every input to
    nearly the same 100 logits (one class wins everywhere), so the classifier is replaced by
    the top ``classes`` principal directions of the (centered) pooled features on
    ``seed``'s random images, whitened -- balanced float labels."""
    import onnxruntime as ort
    m = mobilenet_v2_like()
    inits = {t.name: t for t in m.graph.initializer}
    nodes = {n.name: n for n in m.graph.node}
    ws, bs = (numpy_helper.to_array(inits[nodes[src].input[i]]).copy() for i in (1, 2))
    ws[0] = np.abs(ws[0]) * scale
    bs[0] = scale
    wd = numpy_helper.to_array(inits[nodes[dst].input[1]]).copy()
    wd[:, 0] = 0.0
    for name, a in ((nodes[src].input[1], ws), (nodes[src].input[2], bs),
                    (nodes[dst].input[1], wd)):
        inits[name].CopyFrom(numpy_helper.from_array(a, name))
    head = m.graph.node[-1]                              # MatMul(pooled features, W)
    probe = onnx.ModelProto.FromString(m.SerializeToString())
    probe.graph.output[0].name = head.input[0]
    probe.graph.output[0].type.tensor_type.shape.dim[1].dim_value = inits[head.input[1]].dims[0]
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    f = sess.run(None, {"x": rng.standard_normal((256, 3, 112, 112)).astype(np.float32)})[0]
    mu = f.mean(0)
    _, sv, vt = np.linalg.svd(f - mu, full_matrices=False)
    w = (vt[:classes].T / (sv[:classes] / np.sqrt(len(f)))).astype(np.float32)
    inits[head.input[1]].CopyFrom(numpy_helper.from_array(w, head.input[1]))
    m.graph.initializer.append(numpy_helper.from_array((-mu @ w).astype(np.float32), "head_b"))
    m.graph.node.append(helper.make_node("Add", [head.output[0], "head_b"], ["logits"],
                                         name="head_bias"))
    m.graph.output[0].name = "logits"
    m.graph.output[0].type.tensor_type.shape.dim[1].dim_value = classes
    onnx.checker.check_model(m)
    return m


def _mobilenet_problem():
    """256 validation images, labels = float top-1 (4 balanced classes), 128 calibration
    images. maximal_drop 0.2: this random-weight net's int8 model disagrees with float on
    ~15% of the images even without the outlier (~11% noise on the whitened features); the
    outlier makes it miss, reverting the fragile project conv gets back within it."""
    m = outlier_mobilenet()
    rng = np.random.default_rng(3)
    img = lambda: rng.standard_normal((1, 3, 112, 112)).astype(np.float32)  # noqa: E731
    calib = [{"x": img()} for _ in range(128)]
    sess = fastq.InferenceSession(m)
    val = []
    for _ in range(256):
        f = {"x": img()}
        val.append((f, int(np.argmax(sess.run(None, f)[0]))))
    return m, calib, val, metrics.top1, 0.2, "conv56"


def _bert6_problem(max_drop=0.03):
    """bench/_models.bert_like at its bench size (6 blocks, seq 128, hidden 256, 4 heads) with
    the outlier of ``outlier_bert``; 64 validation and 32 calibration samples (mask: last 16
    positions padded), cosine to the float output. Without model_type the int8 model's drop
    is ~0.022 even without the outlier (quantized Softmax/attention MatMuls), so its
    maximal_drop is 0.03; with model_type transformer it is ~0.0008 (0.0026 with the
    outlier), so 0.002 there. (Figures from before first_layer stopped halving the FFN and
    later blocks' MatMul weight grids -- only block 1's Q/K/V get the fix now: fastq's
    transformer int8 model meets 0.002 with the outlier, 0.0010, so bert6_tight reverts
    nothing on fastq's side; NNCF's loop still runs.)"""
    m, fragile = outlier_bert(layers=6, seq=128, hidden=256, heads=4)
    calib, val = _bert_data(m, 128, 256, 16, 64)
    return m, calib, val, cosine, max_drop, fragile


PROBLEMS = {"cnn": _cnn_problem, "bert": _bert_problem}
# realistic sizes, compared with NNCF only (test_bench_vs_nncf_accuracy_control)
BIG_PROBLEMS = {"mobilenet": _mobilenet_problem, "bert6": _bert6_problem,
                "bert6_tight": lambda: _bert6_problem(0.002)}


def config(max_drop, n_calib=N_CALIB, **params):
    return {"algorithms": [{"name": "AccuracyAwareQuantization",
                            "params": {"maximal_drop": max_drop, "stat_subset_size": n_calib,
                                       **params}}]}


def naive_accuracy_aware(model, calib, cfg_dict, val, metric):
    """The same POT loop (accuracy_aware_common/algorithm.py _change_quantization_scope with
    its step back; ranking subset and scores as fastq computes them) written the
    straightforward way: the float baseline, every full evaluation and every ranking
    candidate run the whole model one sample at a time; nothing is cached."""
    cfg = load_config(cfg_dict)
    aa = cfg.main.params
    m: Metric = as_metric(metric)
    t0 = time.perf_counter()
    res, state = run_default(model, calib, cfg, aa.base_algorithm, aa.base, False)
    feeds = [f for f, _ in val]
    ann = [a for _, a in val]
    ev = aa_eval.Evaluator(feeds, ann, m, str(aa.target_arith.value), None, batched=False)
    idx = list(range(len(feeds)))
    fouts = aa_eval.run_outputs(model, None, feeds, batched=False)
    f_vals = ev.values(fouts, idx)
    base = m.aggregate(f_vals)

    def evaluate(model_):
        outs, vals = ev.run(model_, idx)
        met = m.aggregate(vals)
        return outs, vals, m.drop(base, met, False)

    q_model = res.model
    q_outs, q_vals, drop = evaluate(q_model)
    groups = aa_mod.quantizer_groups(state.plan)
    reverted: set = set()
    acc_drop, step_back, ranked, it = drop, True, None, 0
    k = aa.effective_ranking_subset_size(len(feeds))
    while drop > aa.maximal_drop:
        if ranked is None:
            left = [g for g in groups if not set(g) <= reverted]
            if not left:
                break
            worse = f_vals - q_vals
            dist = np.array([aa_eval.out_distance(fouts[i], q_outs[i]) for i in idx])
            subset = sorted(np.lexsort((-dist, -worse))[:k].tolist())
            scores = {}
            for g in left:
                cand, _ = aa_mod.export(state, reverted | set(g))
                outs = aa_eval.run_outputs(cand, ev.arith, [feeds[i] for i in subset], False)
                d = np.mean([aa_eval.out_distance(fouts[i], o) for i, o in zip(subset, outs)])
                scores[g] = (m.aggregate(ev.values(outs, subset)), d)
            ranked = sorted(sorted(left, key=lambda g: g[0], reverse=True),
                            key=lambda g: (-scores[g][0], scores[g][1]))
        if not ranked:
            break
        g = ranked.pop(0)
        it += 1
        prev = (set(reverted), q_model, q_outs, q_vals, drop)
        reverted |= set(g)
        q_model, _ = aa_mod.export(state, reverted)
        q_outs, q_vals, drop = evaluate(q_model)
        if drop <= aa.maximal_drop or all(set(x) <= reverted for x in groups):
            break
        if aa.maximal_drop < drop <= acc_drop or (drop > acc_drop and step_back):
            step_back, acc_drop = False, drop
            continue
        if drop > acc_drop:
            reverted, q_model, q_outs, q_vals, drop_prev = prev
            step_back = True
            acc_drop = drop
            drop = drop_prev
        else:
            acc_drop = drop
        ranked = None
    order = [n for g in groups for n in g]
    return {"seconds": time.perf_counter() - t0, "reverted": [n for n in order if n in reverted],
            "final_drop": drop, "iterations": it}


def _fastq_result(problem, params=None, **kw):
    m, calib, val, metric, max_drop, _ = problem
    t = time.perf_counter()
    r = aa_mod.accuracy_aware(m, calib, load_config(config(max_drop, len(calib),
                                                           **(params or {}))),
                              validation_data=val, metric=metric, progress=False, **kw)
    return r, time.perf_counter() - t


def _fastq(problem, params=None, **kw):
    r, sec = _fastq_result(problem, params, **kw)
    return r.report, sec


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_bench_accuracy_aware(benchmark, name):
    problem = PROBLEMS[name]()
    m, calib, val, metric, max_drop, fragile = problem
    aa_eval.clear_float_cache()
    # POT's loop (rerank="drop_increase") as the naive one; fastq's default every_iteration
    # is the rep_r run
    pot = "drop_increase"
    rep, sec = benchmark.pedantic(lambda: _fastq(problem, rerank=pot), rounds=1, iterations=1)
    rep2, sec2 = _fastq(problem, rerank=pot)             # float outputs from the cache
    rep_nb, sec_nb = _fastq(problem, batched=False, rerank=pot)
    rep_t, sec_t = _fastq(problem, {"tune_hyperparams": True, "max_iter_num": 0})
    rep_r, sec_r = _fastq(problem, rerank="every_iteration")
    assert rep_r.accuracy_aware["reached"]
    aa_eval.clear_float_cache()
    naive = naive_accuracy_aware(m, calib, config(max_drop), val, metric)
    a = rep.accuracy_aware
    assert a["batched_evaluation"] and a["int8_drop"] > max_drop      # Default misses it
    assert a["reached"] and a["reverts"][0]["layers"] == [fragile]
    assert rep2.accuracy_aware["float_from_cache"]
    assert naive["reverted"] == a["reverted_layers"] == rep_nb.accuracy_aware["reverted_layers"]
    stats_s = rep.timings.get("statistics", 0.0)
    out = {"model": name, "validation_samples": len(val), "maximal_drop": max_drop,
           "int8_drop": a["int8_drop"], "final_drop": a["final_drop"],
           "reverted": a["reverted_layers"], "iterations": a["iterations"],
           "fastq_s": sec, "fastq_float_cached_s": sec2, "fastq_unbatched_s": sec_nb,
           "naive_s": naive["seconds"], "speedup_vs_naive": naive["seconds"] / sec,
           "batching_speedup": sec_nb / sec,
           "float_eval_s": rep.timings["float_evaluation"],
           "float_eval_cached_s": rep2.timings["float_evaluation"],
           "int8_eval_s": rep.timings["int8_evaluation"],
           "int8_eval_unbatched_s": rep_nb.timings["int8_evaluation"],
           "ranking_s": a["ranking_seconds"], "statistics_s": stats_s,
           "nodes_run": a["ranking_runs"]["nodes_run"],
           "nodes_whole": a["ranking_runs"]["nodes_whole"],
           "rerank_every_iteration_s": sec_r,
           "rerank_every_iteration_reverted": rep_r.accuracy_aware["reverted_layers"],
           # tune_hyperparams: one statistics pass with every trial's reductions, then
           # per trial placement/QParams/bias correction/export + a subset evaluation
           "tune_trials": len(rep_t.accuracy_aware["trials"]),
           "tune_statistics_s": rep_t.timings.get("statistics", 0.0),
           "tune_s": rep_t.timings["accuracy_aware_tuning"],
           "tune_drop": rep_t.accuracy_aware["tuned_drop"],
           "note": "vs naive re-implementation; vs NNCF: test_bench_vs_nncf_*"}
    benchmark.extra_info.update(out)
    print(f"\nfastq AA {name}:", {k: (round(v, 4) if isinstance(v, float) else v)
                                 for k, v in out.items()})


# ------------------------------------------------------------------------------------------
# Against nncf.quantize_with_accuracy_control (issue 6)

# ops that only move data: a quantizer passes through them unchanged (NNCF puts Q/DQ before a
# Transpose feeding a MatMul, fastq after it), so they are looked through, not counted
MOVE_OPS = {"Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Concat",
            "Split", "Slice", "Gather", "MaxPool", "Pad", "Resize", "Tile", "Expand"}


def quantized_inputs(model: onnx.ModelProto) -> dict:
    """node name -> number of its inputs that come from a DequantizeLinear (directly or
    through MOVE_OPS nodes), for every node that computes (not Q/DQ, not a MOVE_OPS node)
    and has at least one: the ops a runtime can run in int8."""
    prod = {o: n for n in model.graph.node for o in n.output}
    memo: dict = {}

    def dequantized(t: str) -> bool:
        if t not in memo:
            n = prod.get(t)
            memo[t] = n is not None and (n.op_type == "DequantizeLinear" or (
                n.op_type in MOVE_OPS and bool(n.input) and dequantized(n.input[0])))
        return memo[t]
    out = {}
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") or n.op_type in MOVE_OPS:
            continue
        k = sum(dequantized(i) for i in n.input if i)
        if k:
            out[n.name] = k
    return out


def reverted_ops(int8: onnx.ModelProto, final: onnx.ModelProto) -> dict:
    """The same count for both tools: ops with a DQ-fed input in the tool's own full int8
    model that have none in its accuracy-controlled model (``reverted``), and ops that lost
    some but not all of them (``partial``)."""
    a, b = quantized_inputs(int8), quantized_inputs(final)
    return {"reverted": sorted(n for n in a if n not in b),
            "partial": sorted(n for n in a if n in b and b[n] < a[n])}


def _ort_session(model: onnx.ModelProto):
    import onnxruntime as ort
    # ORT's default threads, as NNCF's own sessions and a user's validation function use them
    # (fastq runs at its default, every core, in the comparison too)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


class OrtValidation:
    """NNCF's ``validation_fn(model, items)``: ONE ORT session per call, each (inputs,
    annotation) item run once; returns (mean metric, per-item values) -- the per-item values
    stop NNCF from re-validating item by item. Counts its calls and model runs."""

    def __init__(self, metric):
        self.metric, self.calls, self.runs = metric, 0, 0

    def __call__(self, model, items):
        s = _ort_session(model)
        vals = [float(self.metric(s.run(None, feed), ann)) for feed, ann in items]
        self.calls += 1
        self.runs += len(vals)
        return float(np.mean(vals)), vals


def _default_cfg(params: dict, n_calib: int = N_CALIB) -> dict:
    return {"name": "DefaultQuantization", "params": {"stat_subset_size": n_calib, **params}}


ONE_RUN = {"mobilenet"}        # no second fastq run (one revert: both reranks are the same)
COMPARE = [("cnn", None), ("bert", None), ("bert", "transformer"), ("mobilenet", None),
           ("bert6", None), ("bert6_tight", "transformer")]


@pytest.mark.parametrize("name,model_type", COMPARE)
def test_bench_vs_nncf_accuracy_control(benchmark, monkeypatch, name, model_type):
    """fastq's AccuracyAware and NNCF's quantize_with_accuracy_control in one test, same
    float model, calibration data (all samples), validation data, metric, absolute
    ``maximal_drop``, preset PERFORMANCE, target ANY, fast bias correction, ``model_type``,
    ranking subset size (NNCF's ONNX default: its calibration subset_size).
    Both run at their defaults on every core: NNCF's statistics/ranking sessions and
    ``OrtValidation`` (one ORT session per call, each sample run once, per-item values
    returned) at ORT's default threads, fastq at fastq.get_num_threads() = os.cpu_count() with
    OpenBLAS likewise (this test lifts conftest's single thread). Both compute their float
    baseline (fastq's float cache is cleared). Reverted layers, counted the same way on both sides by
    ``reverted_ops`` (compute ops that lost every dequantized input) against each tool's own
    full int8 model -- NNCF's from nncf.quantize with the same arguments, fastq's from
    DefaultQuantization with the AA's base params -- next to each tool's own account: fastq's
    ``reverted_layers`` (it also lists data-movement consumers such as Flatten) and NNCF's
    report (``reverted_operations``, taken from the call that logs it). Final drops: each
    tool's own, and both outputs re-validated with the same ORT function. fastq's timed run
    uses its default rerank="every_iteration" (re-rank after every kept revert); it is also
    run with POT's/NNCF's rerank="drop_increase" (untimed against the target; not on
    mobilenet, whose one revert makes both the same)."""
    nncf = pytest.importorskip("nncf", reason="nncf is not installed (pip install "
                                              "'.[compare]'); no comparison run")
    from nncf.quantization.algorithms.accuracy_control.algorithm import \
        QuantizationAccuracyRestorer as Restorer
    cores = os.cpu_count() or 1
    fastq.set_num_threads(cores)                   # conftest's fixture restores 1 after
    blas_threads(cores)
    problem = {**PROBLEMS, **BIG_PROBLEMS}[name]()
    m, calib, val, metric, max_drop, _ = problem
    params = {"model_type": model_type} if model_type else {}
    # NNCF's ONNX quantize_with_accuracy_control ranks on subset_size (= all calibration
    # samples here) validation items unless told otherwise; fastq's default is POT's
    # min(N, 300): fastq gets NNCF's number, so both rank on equally many samples
    aa_params = {**params, "ranking_subset_size": min(len(calib), len(val))}
    nncf_kw = dict(preset=nncf.QuantizationPreset.PERFORMANCE,
                   target_device=nncf.TargetDevice.ANY, subset_size=len(calib),
                   fast_bias_correction=True,
                   model_type=nncf.ModelType.TRANSFORMER if model_type else None)
    # the full int8 models (untimed; also warms both tools' code paths)
    fq_int8 = fastq.quantize(m, calib, _default_cfg(params, len(calib)), progress=False).model
    nn_int8 = nncf.quantize(m, nncf.Dataset(calib), **nncf_kw)
    # NNCF's own account of what it reverted: the report it passes to its log printer
    # (not called when the int8 model already meets the drop)
    seen = {}
    printer = Restorer._print_report

    def spy(report, max_num_iterations):
        seen["report"] = report
        return printer(report, max_num_iterations)
    monkeypatch.setattr(Restorer, "_print_report", staticmethod(spy))

    aa_eval.clear_float_cache()                     # fastq computes its float baseline too
    r, fq_s = benchmark.pedantic(lambda: _fastq_result(problem, aa_params), rounds=1,
                                 iterations=1)
    vfn = OrtValidation(metric)
    t = time.perf_counter()
    nn_error = None
    try:
        nn_final = nncf.quantize_with_accuracy_control(
            m, nncf.Dataset(calib), nncf.Dataset(val, lambda item: item[0]), vfn,
            max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE, **nncf_kw)
    except Exception as e:                          # record exactly what NNCF raised
        nn_final, nn_error = None, f"{type(e).__name__}: {e}"
    nn_s = time.perf_counter() - t
    rr = None
    if name not in ONE_RUN:                         # POT's / NNCF's loop, for reference
        aa_eval.clear_float_cache()
        rr, rr_s = _fastq_result(problem, aa_params, rerank="drop_increase")
    a = r.report.accuracy_aware
    assert a["reached"] and a["final_drop"] <= max_drop
    check = OrtValidation(metric)
    base = check(m, val)[0]
    fq_rev = reverted_ops(fq_int8, r.model)
    out = {"problem": name, "model_type": model_type, "maximal_drop": max_drop,
           "validation_samples": len(val), "calibration_samples": len(calib),
           "ranking_subset_size": aa_params["ranking_subset_size"], "fastq_s": fq_s,
           "fastq_int8_drop": a["int8_drop"], "fastq_final_drop_own": a["final_drop"],
           "fastq_final_drop_ort": base - check(r.model, val)[0],
           "fastq_reverted_layers_own": a["reverted_layers"],
           "fastq_reverted_ops": fq_rev["reverted"], "fastq_partial_ops": fq_rev["partial"],
           "fastq_quantized_ops_int8": len(quantized_inputs(fq_int8)),
           "fastq_iterations": a["iterations"],
           "fastq_trajectory": [(h["layers"], round(h["drop_after"], 4), h["rolled_back"])
                                for h in a["reverts"]],
           "fastq_rerank": a["rerank"],
           "fastq_timings": {k: round(v, 3) for k, v in r.report.timings.items()},
           "fastq_ranking_s": a["ranking_seconds"], "fastq_ranking_runs": a["ranking_runs"],
           "fastq_rerank_drop_increase": None if rr is None else {
               "s": rr_s, "reverted_ops": reverted_ops(fq_int8, rr.model)["reverted"],
               "final_drop_ort": base - check(rr.model, val)[0],
               "ranking_s": rr.report.accuracy_aware["ranking_seconds"]},
           "nncf_s": nn_s, "threads": cores,
           "nncf_int8_drop_ort": base - check(nn_int8, val)[0],
           "nncf_quantized_ops_int8": len(quantized_inputs(nn_int8)),
           "nncf_validation_calls": vfn.calls, "nncf_validation_runs": vfn.runs}
    if nn_error is None:
        rep = seen.get("report")
        nn_rev = reverted_ops(nn_int8, nn_final)
        out.update(
            time_ratio=fq_s / nn_s, nncf_final_drop_ort=base - check(nn_final, val)[0],
            nncf_reverted_ops=nn_rev["reverted"], nncf_partial_ops=nn_rev["partial"],
            nncf_reverted_own=sorted(n.node_name for n in rep.reverted_operations) if rep
            else [],
            nncf_reached_own=bool(rep.reached_required_drop) if rep else True,
            nncf_removed_all=bool(rep.removed_all) if rep else False,
            nncf_iterations=(rep.num_iterations + 1) if rep and rep.num_iterations is not None
            else 0)
        n_fq, n_nn = len(fq_rev["reverted"]), len(nn_rev["reverted"])
        out["targets"] = {"time <= 0.2x NNCF": fq_s / nn_s <= 0.2,
                          "reverted <= NNCF's": n_fq <= n_nn}
        summary = (f"time fastq {fq_s:.2f} s vs NNCF {nn_s:.2f} s (ratio {fq_s / nn_s:.2f}); "
                   f"reverted ops fastq {n_fq} vs NNCF {n_nn}; final drop (ORT) fastq "
                   f"{out['fastq_final_drop_ort']:.4f} vs NNCF {out['nncf_final_drop_ort']:.4f}"
                   f" (max {max_drop})")
    else:
        out["nncf_error"] = nn_error
        summary = f"NNCF raised after {nn_s:.2f} s: {nn_error}"
    benchmark.group = f"accuracy-aware vs nncf {name}"
    benchmark.extra_info.update(out)
    print(f"\nfastq AA vs NNCF, {name} (model_type {model_type}): {summary}\n  ",
          {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()})
