"""fastq's heavy float ops vs ONNX Runtime, one node each, single thread on both sides
(fastq.set_num_threads(1), numpy's OpenBLAS at 1 thread, ORT intra_op_num_threads=1).
Each case first asserts fastq's output equals ORT's, then times both in the same run; the
ratio fastq/ORT (min over rounds) is printed and stored in extra_info["ratio_vs_ort"].

Run: python -m pytest -q bench/test_bench_nn.py -s
"""

from __future__ import annotations


import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import fastq
import fastq.runtime.ops  # noqa: F401
from fastq.runtime.registry import make_node, run_node

from _timing import best_time

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("pytest_benchmark")

RNG = np.random.default_rng(0)
F = np.float32
OPSET = 19
ROUNDS = 15


def _w(*shape):
    return RNG.standard_normal(shape).astype(F)


# name -> (op, input X, initializers [(name, array)], attributes)
CASES = {
    "conv3x3_64x56x56": ("Conv", _w(1, 64, 56, 56), [("W", _w(64, 64, 3, 3)), ("B", _w(64))],
                         dict(pads=[1, 1, 1, 1])),
    "conv1x1_64to256x56x56": ("Conv", _w(1, 64, 56, 56),
                              [("W", _w(256, 64, 1, 1)), ("B", _w(256))], {}),
    "dwconv3x3_144x56x56": ("Conv", _w(1, 144, 56, 56), [("W", _w(144, 1, 3, 3)),
                                                         ("B", _w(144))],
                            dict(pads=[1, 1, 1, 1], group=144)),
    "dwconv3x3s2_144x56x56": ("Conv", _w(1, 144, 56, 56), [("W", _w(144, 1, 3, 3)),
                                                           ("B", _w(144))],
                              dict(pads=[1, 1, 1, 1], group=144, strides=[2, 2])),
    "maxpool3x3s2_64x112x112": ("MaxPool", _w(1, 64, 112, 112), [],
                                dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    "avgpool3x3s2_64x112x112": ("AveragePool", _w(1, 64, 112, 112), [],
                                dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    "resize_linear_x2_64x56x56": ("Resize", _w(1, 64, 56, 56),
                                  [("roi", np.zeros(0, F)), ("scales", np.array([1, 1, 2, 2], F))],
                                  dict(mode="linear")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bench_vs_onnxruntime(benchmark, name):
    op, x, inits, attrs = CASES[name]
    proto = helper.make_node(op, ["X"] + [n for n, _ in inits], ["Y"], name=name, **attrs)
    graph = helper.make_graph([proto], name,
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, n) for n, v in inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    node = make_node(proto, {"": OPSET})
    feeds = [x] + [v for _, v in inits]

    def run_fastq():
        return run_node(node, feeds)[0]

    def run_ort():
        return sess.run(None, {"X": x})[0]

    np.testing.assert_allclose(run_fastq(), run_ort(), rtol=1e-4, atol=1e-4)
    t_ort = best_time(run_ort, ROUNDS, warmup=1)
    benchmark.group = name
    benchmark.extra_info["ort_ms"] = t_ort * 1e3
    benchmark.pedantic(run_fastq, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    if benchmark.stats is not None:
        t_fastq = benchmark.stats.stats.min
        benchmark.extra_info["ratio_vs_ort"] = t_fastq / t_ort
        print(f"\n{name}: fastq {t_fastq * 1e3:.3f} ms, ORT {t_ort * 1e3:.3f} ms, "
              f"fastq/ORT = {t_fastq / t_ort:.2f}")
