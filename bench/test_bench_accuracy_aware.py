"""AccuracyAwareQuantization benchmark: a 6-conv CNN whose conv3 input has one outlier
channel (x400, unused downstream) so DefaultQuantization misses a tight top-1 drop (0.5%).
One run each: fastq AA with the cached-suffix ranking, and with ``memory_budget=0`` (every
candidate runs the whole model) — the ratio is the ranking's speed-up from caching — and with
a 2-thread executor for the candidates. Reported:
wall time, reverted layers, evaluations, nodes run. ``nncf.quantize_with_accuracy_control``
at the same drop when nncf is importable (it is not a dependency: skipped otherwise).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import fastq
from fastq import metrics

N_CALIB, N_VAL = 64, 300
MAX_DROP = 0.005


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


def images(n, seed):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-2, 2, (1, 3, 16, 16)).astype(np.float32) for _ in range(n)]


def config():
    return {"algorithms": [{"name": "AccuracyAwareQuantization",
                            "params": {"maximal_drop": MAX_DROP, "stat_subset_size": N_CALIB}}]}


@pytest.fixture(scope="module")
def problem():
    m = outlier_cnn()
    sess = fastq.InferenceSession(m)
    val = [(x, int(np.argmax(sess.run(None, {"input": x})[0]))) for x in images(N_VAL, 2)]
    return m, images(N_CALIB, 1), val


def _run(problem, **kw):
    m, calib, val = problem
    t = time.perf_counter()
    r = fastq.quantize(m, calib, config(), validation_data=val, metric=metrics.top1,
                       progress=False, **kw)
    return r, time.perf_counter() - t


def test_bench_fastq_accuracy_aware(benchmark, problem):
    r, sec = benchmark.pedantic(lambda: _run(problem), rounds=1, iterations=1)
    r0, sec0 = _run(problem, memory_budget=0)
    with ThreadPoolExecutor(2) as ex:
        r2, sec2 = _run(problem, executor=ex)
    a, a0 = r.report.accuracy_aware, r0.report.accuracy_aware
    assert r2.report.accuracy_aware["reverted_layers"] == a["reverted_layers"]
    assert a["int8_drop"] > MAX_DROP                 # DefaultQuantization misses it
    assert a["reached"] and a["reverts"][0]["layers"] == ["conv3"]
    assert a["reverted_layers"] == a0["reverted_layers"]
    out = {"seconds": sec, "seconds_whole_model_ranking": sec0,
           "ranking_s": a["ranking_seconds"], "ranking_s_whole": a0["ranking_seconds"],
           "ranking_speedup": a0["ranking_seconds"] / a["ranking_seconds"],
           "ranking_s_2_threads": r2.report.accuracy_aware["ranking_seconds"],
           "int8_drop": a["int8_drop"], "final_drop": a["final_drop"],
           "reverted": a["reverted_layers"], "evaluations": a["evaluations"],
           "nodes_run": a["ranking_runs"]["nodes_run"],
           "nodes_whole": a["ranking_runs"]["nodes_whole"]}
    benchmark.extra_info.update(out)
    print("\nfastq AA:", out)


def test_bench_nncf_accuracy_control(problem):
    nncf = pytest.importorskip("nncf", reason="nncf is not installed (not a fastq "
                                              "dependency); no comparison run")
    m, calib, val = problem
    t = time.perf_counter()
    q = nncf.quantize_with_accuracy_control(
        m, nncf.Dataset([{"input": x} for x in calib]),
        nncf.Dataset(val, lambda item: {"input": item[0]}),
        validation_fn=lambda model, data: float(np.mean(
            [int(np.argmax(_ort_run(model, d)[0])) == y for d, y in
             zip(data, [y for _, y in val])])),
        max_drop=MAX_DROP)
    print(f"\nnncf quantize_with_accuracy_control: {time.perf_counter() - t:.2f} s", q)


def _ort_run(model, feed):
    import onnxruntime as ort
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, feed)
