"""Helpers shared by the quantization tests: ONNX Runtime sessions, SQNR, fused-op listing."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import onnx


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
