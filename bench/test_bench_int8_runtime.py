"""int8 executor benchmarks: ONNX Runtime running a QDQ model (its int8 kernels, 1 thread)
against fastq running the same model with fused int8 layers in exact32 and in sat16pair
(1 thread), per model: a ResNet-style CNN (3x3 conv blocks with residual Adds at 56x56), a
MobileNet-style depthwise CNN (56x56 after the stem) and a 6-layer BERT-style encoder
(sequence 128, hidden 256; MatMuls quantized, as model_type=transformer does). Random
weights, quantize_static (QDQ, per-channel). Every case asserts fastq exact32 equals ORT
within one output quantization step before anything is timed; ``test_ratio_report`` prints
fastq/ORT time ratios from one run (targets: exact32 <= 1.2x, sat16pair <= 2.5x)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest

import fastq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import _qdq_models as M  # noqa: E402
from _timing import best_time  # noqa: E402

ort = pytest.importorskip("onnxruntime")
logging.getLogger().setLevel(logging.ERROR)

MODELS = {
    "resnet56": (lambda: M.cnn_model(hw=56, c=64, blocks=3), {}),
    "mobilenet56": (lambda: M.depthwise_model(hw=112, c=64, blocks=6), {}),
    "bert6x128": (lambda: M.bert_model(seq=128, hidden=256, heads=4, layers=6),
                  {"op_types_to_quantize": ["MatMul"]}),
}
ENGINES = ["onnxruntime", "exact32", "sat16pair"]
_CACHE: dict = {}


def _output_step(q) -> float:
    from onnx import numpy_helper
    prod = {o: n for n in q.graph.node for o in n.output}
    n = prod[q.graph.output[0].name]
    if n.op_type != "DequantizeLinear":
        return 1e-4  # a float output (LayerNormalization): float rounding only
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    return float(inits[n.input[1]]) * 1.0001


def sessions(name, tmp_path_factory):
    if name not in _CACHE:
        build, kw = MODELS[name]
        m = build()
        q = M.quantize(m, M.calibration(m, 2), tmp_path_factory.mktemp(name), **kw)
        feeds = M.calibration(m, 1, seed=99)[0]
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        o = ort.InferenceSession(q.SerializeToString(), so, providers=["CPUExecutionProvider"])
        e = fastq.InferenceSession(q, arith="exact32")
        s = fastq.InferenceSession(q, arith="sat16pair")
        want = o.run(None, feeds)[0]
        got = e.run(None, feeds)[0]
        np.testing.assert_allclose(got, want, rtol=0 if _output_step(q) > 1e-4 else 1e-4,
                                   atol=_output_step(q))
        s.run(None, feeds)
        _CACHE[name] = ({"onnxruntime": o, "exact32": e, "sat16pair": s}, feeds)
    return _CACHE[name]


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("engine", ENGINES)
def test_bench_int8_model(benchmark, tmp_path_factory, name, engine):
    sess, feeds = sessions(name, tmp_path_factory)
    benchmark.group = f"int8 {name}"
    benchmark.pedantic(sess[engine].run, args=(None, feeds), rounds=5, iterations=1,
                       warmup_rounds=1)


@pytest.mark.parametrize("name", list(MODELS))
def test_ratio_report(tmp_path_factory, name):
    sess, feeds = sessions(name, tmp_path_factory)
    t = {k: best_time(lambda k=k: sess[k].run(None, feeds)) for k in ENGINES}
    o = t["onnxruntime"]
    print(f"\n{name}: onnxruntime {o * 1e3:.2f} ms, fastq exact32 {t['exact32'] * 1e3:.2f} ms "
          f"(ratio {t['exact32'] / o:.2f}, target 1.2), sat16pair {t['sat16pair'] * 1e3:.2f} ms "
          f"(ratio {t['sat16pair'] / o:.2f}, target 2.5)")
