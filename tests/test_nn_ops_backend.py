"""The ONNX package's own backend node cases for the heavy float ops, run node by node
through fastq's registry with the suite's tolerances. Cases whose model holds any op outside
this set (e.g. most ``_expanded`` function bodies) run in the full backend test instead."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest

import fastq.runtime.ops  # noqa: F401
from fastq.runtime.registry import make_node, run_node

NN_OPS = {
    "Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "LpPool", "GlobalLpPool", "Resize", "Upsample", "BatchNormalization",
    "InstanceNormalization", "LayerNormalization", "GroupNormalization", "LRN", "Gemm",
    "MatMul", "Softmax", "LogSoftmax", "Hardmax",
}
# Element types fastq's float executor does not take (reason listed per case).
EXOTIC = {
    onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.BFLOAT16: "bfloat16",
    onnx.TensorProto.FLOAT8E4M3FN: "float8", onnx.TensorProto.FLOAT8E4M3FNUZ: "float8",
    onnx.TensorProto.FLOAT8E5M2: "float8", onnx.TensorProto.FLOAT8E5M2FNUZ: "float8",
    onnx.TensorProto.INT4: "int4", onnx.TensorProto.UINT4: "int4",
}


def _cases():
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases()
    mine = []
    for c in cases:
        if c.model is None:
            continue
        if {n.op_type for n in c.model.graph.node} <= NN_OPS:
            mine.append(c)
    return mine


CASES = {c.name: c for c in _cases()}


def _exotic(case):
    g = case.model.graph
    for vi in list(g.input) + list(g.output):
        t = vi.type.tensor_type.elem_type
        if t in EXOTIC:
            return EXOTIC[t]
    return None


def test_backend_case_count():
    """Guard: the selection found the cases (a collection change must not silently empty it)."""
    assert len(CASES) >= 170
    assert {"test_conv_with_autopad_same", "test_maxpool_with_argmax_2d_precomputed_pads",
            "test_resize_downsample_scales_cubic_antialias",
            "test_layer_normalization_4d_axis0", "test_softmax_axis_0"} <= set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_backend_node_case(name):
    case = CASES[name]
    why = _exotic(case)
    if why:
        pytest.skip(f"{why} tensors: not a dtype of fastq's float executor")
    g = case.model.graph
    opsets = {o.domain: o.version for o in case.model.opset_import}
    nodes = [make_node(p, opsets, i) for i, p in enumerate(g.node)]
    rtol = getattr(case, "rtol", 1e-3)
    atol = getattr(case, "atol", 1e-7)
    for inputs, expected in case.data_sets:
        env = {vi.name: v for vi, v in zip(g.input, inputs)}
        for node, proto in zip(nodes, g.node):
            res = run_node(node, [env[n] if n else None for n in proto.input])
            for n, v in zip(proto.output, res):
                if n:
                    env[n] = v
        for vi, want in zip(g.output, expected):
            got = env[vi.name]
            assert got.dtype == want.dtype, (vi.name, got.dtype, want.dtype)
            assert got.shape == want.shape, (vi.name, got.shape, want.shape)
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=vi.name)
