"""Tiny ONNX models for the runtime tests, built with onnx.helper (no files on disk)."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT


def vi(name: str, elem=F, shape: Optional[Sequence] = None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def model(nodes: List[onnx.NodeProto], inputs: List[onnx.ValueInfoProto],
          outputs: List[onnx.ValueInfoProto], inits: Optional[Dict[str, np.ndarray]] = None,
          opset: int = 17, extra_opsets: Optional[Dict[str, int]] = None) -> onnx.ModelProto:
    inits = inits or {}
    g = helper.make_graph(nodes, "g", inputs, outputs,
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    ops = [helper.make_opsetid("", opset)]
    for d, v in (extra_opsets or {}).items():
        ops.append(helper.make_opsetid(d, v))
    m = helper.make_model(g, opset_imports=ops)
    m.ir_version = min(m.ir_version, 10)
    return m


def single(op: str, ins: Dict[str, np.ndarray], n_out: int = 1, opset: int = 17,
           consts: Optional[Dict[str, np.ndarray]] = None, **attrs) -> onnx.ModelProto:
    """One-node model: ``ins`` become graph inputs (fed), ``consts`` initializers.

    Input order follows ``ins`` then ``consts``; an empty-string key leaves an optional slot.
    """
    consts = consts or {}
    names = list(ins) + list(consts)
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, names, outs, **attrs)
    inputs = [vi(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in ins.items()
              if k]
    return typed_outputs(model([node], inputs, [], {k: v for k, v in consts.items() if k},
                               opset=opset), outs)


def typed_outputs(m: onnx.ModelProto, outs: Sequence[str]) -> onnx.ModelProto:
    """Declare ``outs`` as graph outputs with the types shape inference finds for them."""
    inferred = onnx.shape_inference.infer_shapes(m)
    known = {v.name: v for v in inferred.graph.value_info}
    del m.graph.output[:]
    for o in outs:
        m.graph.output.append(known[o] if o in known else vi(o, F, None))
    return m
