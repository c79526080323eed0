"""Helpers (no tests) for the nn op tests: build one-node models/Nodes and run them through
fastq's registry, ONNX Runtime or the ONNX reference evaluator."""

from __future__ import annotations

from onnx import TensorProto, helper, numpy_helper

import fastq.runtime.ops  # noqa: F401  (registers every op)
from fastq.runtime.registry import make_node, run_node


def node_proto(op, inputs, outputs=("Y",), name="n0", **attrs):
    return helper.make_node(op, list(inputs), list(outputs), name=name, **attrs)


def run_fastq(op, feeds, opset, outputs=("Y",), **attrs):
    """Run op on the feeds (a list; None leaves an optional input empty)."""
    names = [f"in{i}" if v is not None else "" for i, v in enumerate(feeds)]
    while names and names[-1] == "":
        names.pop()
    proto = node_proto(op, names, outputs, **attrs)
    node = make_node(proto, {"": opset})
    return run_node(node, list(feeds[:len(names)]))


def one_node_model(op, feeds, opset, outputs=("Y",), initializers=(), out_types=None,
                   **attrs):
    """A one-node model; feeds and initializers are (name, array) pairs; outputs are float32
    unless out_types (TensorProto element types) says otherwise."""
    proto = node_proto(op, [n for n, _ in feeds] + [n for n, _ in initializers], outputs,
                       **attrs)
    ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
           for n, v in feeds]
    out_types = out_types or [TensorProto.FLOAT] * len(outputs)
    outs = [helper.make_tensor_value_info(o, t, None) for o, t in zip(outputs, out_types)]
    graph = helper.make_graph([proto], "g", ins, outs,
                              [numpy_helper.from_array(v, n) for n, v in initializers])
    ir = 7 if opset <= 12 else 8 if opset <= 14 else 9 if opset <= 20 else 10
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                             ir_version=ir)


def run_ort(model, feeds, threads=1):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, dict(feeds))


def run_reference(model, feeds):
    from onnx.reference import ReferenceEvaluator
    return ReferenceEvaluator(model).run(None, dict(feeds))


def impls():
    from fastq import kernels
    return kernels.available_impls()
