"""Rare ops borrowed from ``onnx.reference``: one adapter, a vetted list.

Each op in FALLBACK_OPS is run by the onnx package's reference implementation of the schema
version the model uses, instantiated once per node at session creation. Only ops that are off
the hot path of CNNs/transformer encoders are listed, and each one passes the ONNX backend node
cases (tests/test_backend_onnx.py) before it goes on the list. An op some other module
already registered natively is left alone (modules are imported in name order; this one
sorts after nn*.py).
"""

from __future__ import annotations

import numpy as np
from onnx.reference import ReferenceEvaluator
from onnx.reference.ops import load_op

from ..registry import is_registered, register

FALLBACK_OPS = (
    "NonMaxSuppression", "Unique", "CumProd", "Det", "LpNormalization",
    "Col2Im", "CenterCropPad", "BlackmanWindow", "HammingWindow",
    "HannWindow", "MaxUnpool", "RoiAlign", "GridSample", "AffineGrid", "DFT", "STFT",
    "MelWeightMatrix", "TensorScatter", "RotaryEmbedding", "SwiGLU", "BitCast", "LSTM", "GRU",
    "RNN",
)


def _instance(node):
    cls = load_op("", node.op_type, node.opset)
    params = {"log": lambda *a: None, "opsets": {"": node.opset}, "verbose": 0,
              "new_ops": None, "existing_functions": {}, "evaluator_cls": ReferenceEvaluator}
    return cls(node.proto, params)


def _call(inst, xs):
    out = inst.run(*xs)
    return tuple(np.asarray(o) if o is not None else None for o in out)


def _prepare(node, consts, ctx):
    inst = _instance(node)
    return lambda *xs: _call(inst, xs)


def _run(node, *xs):
    return _call(_instance(node), xs)


for _op in FALLBACK_OPS:
    if not is_registered(_op):  # a native implementation (imported earlier) wins
        register(_op, prepare=_prepare)(_run)
