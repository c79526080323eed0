"""Executor benchmarks: fastq.InferenceSession against onnxruntime (1 thread) on the same model
in one run, per group: a compute-bound elementwise chain (large tensors) and a per-node
overhead chain (tiny tensors). Each benchmark asserts equal outputs before timing; the ratio
test prints fastq/ORT time ratios from one run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

import fastq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _runtime_models import F, model, vi  # noqa: E402
from _timing import best_time  # noqa: E402

ort = pytest.importorskip("onnxruntime")

CASES = {"chain_32x4096": (60, (32, 4096)), "overhead_200_nodes": (200, (4, 4))}


def chain_model(n_nodes: int, shape):
    ops = ["Add", "Mul", "Tanh", "Relu", "Sigmoid"]
    nodes, prev = [], "x"
    for i in range(n_nodes):
        op = ops[i % len(ops)]
        out = f"t{i}" if i < n_nodes - 1 else "y"
        ins = [prev, "c"] if op in ("Add", "Mul") else [prev]
        nodes.append(helper.make_node(op, ins, [out]))
        prev = out
    return model(nodes, [vi("x", F, list(shape))], [vi("y", F, list(shape))],
                 {"c": np.full(shape[-1], 0.5, np.float32)})


def sessions(case):
    n, shape = CASES[case]
    m = chain_model(n, shape)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    o = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    f = fastq.InferenceSession(m)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(f.run(None, {"x": x})[0], o.run(None, {"x": x})[0], rtol=1e-5,
                               atol=1e-6)
    return f, o, {"x": x}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("engine", ["fastq", "onnxruntime"])
def test_bench_chain(benchmark, case, engine):
    f, o, feeds = sessions(case)
    sess = f if engine == "fastq" else o
    benchmark.group = case
    benchmark(sess.run, None, feeds)


@pytest.mark.parametrize("case", list(CASES))
def test_ratio_report(case):
    f, o, feeds = sessions(case)
    tf = best_time(lambda: f.run(None, feeds), 20)
    to = best_time(lambda: o.run(None, feeds), 20)
    print(f"\n{case}: fastq {tf * 1e3:.3f} ms, onnxruntime {to * 1e3:.3f} ms, "
          f"ratio fastq/ort {tf / to:.2f}")
