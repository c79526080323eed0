"""Helpers shared by the quantization tests: ONNX Runtime sessions, SQNR, fused-op listing,
the quantization step nearest each graph output (the ORT vs exact32 tolerance)."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import onnx
from onnx import numpy_helper


def ort_session(model, optimized_path=None, level="extended"):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    so.intra_op_num_threads = 1
    if optimized_path is not None:
        so.optimized_model_filepath = os.fspath(optimized_path)
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def fused_ops(model, tmp_path) -> Counter:
    """Op types of ONNX Runtime's optimized graph of ``model``."""
    path = tmp_path / "optimized.onnx"
    ort_session(model, path)
    return Counter(n.op_type for n in onnx.load(os.fspath(path)).graph.node)


def run_all(sess, samples):
    return np.concatenate([np.asarray(sess.run(None, s)[0]).ravel() for s in samples])


def sqnr_db(ref, got) -> float:
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    return float(10 * np.log10(np.sum(ref ** 2) / max(np.sum((ref - got) ** 2), 1e-300)))


def output_steps(q: onnx.ModelProto) -> list:
    """Per graph output: the step of the nearest activation quantizer upstream (the output's
    own when it is quantized), walking back through float ops breadth first."""
    prod = {o: n for n in q.graph.node for o in n.output}
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    steps = []
    for out in q.graph.output:
        frontier, seen, step = [out.name], set(), 0.0
        while frontier and not step:
            nxt = []
            for t in frontier:
                n = prod.get(t)
                if n is None or n.name in seen:
                    continue
                seen.add(n.name)
                if n.op_type == "DequantizeLinear" and n.input[0] not in inits:
                    step = max(step, float(np.max(inits[n.input[1]])))
                else:
                    nxt += [x for x in n.input if x and x not in inits]
            frontier = nxt
        steps.append(step)
    return steps


def on_threads(counts, fn):
    """[fn() with fastq.set_num_threads(n) for n in counts]; the thread count is restored."""
    import fastq
    old = fastq.get_num_threads()
    try:
        out = []
        for n in counts:
            fastq.set_num_threads(n)
            out.append(fn())
        return out
    finally:
        fastq.set_num_threads(old)
