"""The ONNX package's official backend node tests, run through fastq.InferenceSession.

A case is included iff every op type in its model (subgraphs included) is in
``fastq.supported_ops()`` and it uses no dtype fastq does not run (see EXOTIC) and it is not in
KNOWN_EXCLUDED (each with its reason). The official runner compares outputs with the suite's
own tolerances for floats and exactly for integer/bool outputs.
``python tests/test_backend_onnx.py --list`` prints the inclusion summary.
"""

from __future__ import annotations

import os
import re
import sys
import unittest
import warnings

import numpy as np
import onnx
import pytest
import onnx.backend.test
from onnx import TensorProto
from onnx.backend.base import Backend, BackendRep
from onnx.backend.test.loader import load_model_tests, load_node_model_tests

import fastq
from fastq.runtime.graph import pre7_unsupported


# dtypes excluded from the fidelity run: FLOAT8E8M0 casts have their own rounding modes
# (round_mode) that fastq does not implement; complex numbers have no ONNX op fastq needs.
EXOTIC = {TensorProto.COMPLEX64, TensorProto.COMPLEX128}
if hasattr(TensorProto, "FLOAT8E8M0"):
    EXOTIC.add(TensorProto.FLOAT8E8M0)

# Besides the node cases: whole models stored with the onnx package (PyTorch exports of single
# operators and small networks, and simple models). The "real" kind downloads full models
# from the internet; their light versions run offline in test_runtime_light_models.py.
MODEL_KINDS = ("simple", "pytorch-converted", "pytorch-operator")

# case name -> why it is excluded although its ops are supported
KNOWN_EXCLUDED = {
    "training_dropout": "training-mode Dropout draws random masks; fastq is an inference engine",
    "loop16_seq_none": "the runner's assert_similar_outputs recurses into a sequence and calls "
                       "len() on its 0-d tensors (TypeError for any backend); fastq's output "
                       "equals the expected one (checked by hand)",
    "scan_sum": "opset-8 Scan (batch axis, sequence_lens) is not supported (opset 9+ is)",
}


class FastqRep(BackendRep):
    def __init__(self, sess: fastq.InferenceSession):
        self.sess = sess
        self.names = [i.name for i in sess.get_inputs()]

    def run(self, inputs, **kwargs):
        feeds = dict(inputs) if isinstance(inputs, dict) else dict(zip(self.names, inputs))
        return self.sess.run(None, feeds)


class FastqBackend(Backend):
    @classmethod
    def prepare(cls, model, device="CPU", **kwargs):
        return FastqRep(fastq.InferenceSession(model))

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"


def _graph_facts(g: onnx.GraphProto, ops: set, types: set) -> None:
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        t = vi.type
        while t.WhichOneof("value") in ("sequence_type", "optional_type"):
            t = getattr(t, t.WhichOneof("value")).elem_type
        if t.WhichOneof("value") == "tensor_type":
            types.add(t.tensor_type.elem_type)
    for t in g.initializer:
        types.add(t.data_type)
    for n in g.node:
        ops.add(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}:{n.op_type}")
        for a in n.attribute:
            if a.name in ("to", "output_dtype", "dtype") and a.type == onnx.AttributeProto.INT:
                types.add(a.i)
            if a.type == onnx.AttributeProto.TENSOR:
                types.add(a.t.data_type)
            if a.type == onnx.AttributeProto.GRAPH:
                _graph_facts(a.g, ops, types)
            if a.type == onnx.AttributeProto.GRAPHS:
                for sg in a.graphs:
                    _graph_facts(sg, ops, types)


def classify():
    """(included names, {excluded name: reason}) over the node test directory."""
    supported = set(fastq.supported_ops())
    included, excluded = [], {}
    with warnings.catch_warnings():  # the case generators warn about their own overflows
        warnings.simplefilter("ignore")
        cases = list(load_node_model_tests())
    for kind in MODEL_KINDS:
        cases += load_model_tests(kind=kind)
    for tc in sorted(cases, key=lambda t: t.name):
        name = tc.name
        m = tc.model if tc.model is not None else onnx.load(
            os.path.join(tc.model_dir, "model.onnx"))
        case = name[len("test_"):]
        ops, types = set(), set()
        _graph_facts(m.graph, ops, types)
        missing = sorted(ops - supported)
        opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 99)
        old = sorted(o for o in ops if ":" not in o and pre7_unsupported(o, opset))
        known = [k for k in KNOWN_EXCLUDED if case.startswith(k)]
        if missing:
            excluded[name] = "unsupported op: " + ", ".join(missing)
        elif old:
            excluded[name] = (f"opset {opset} schema of {', '.join(old)} (fastq runs opset 7+; "
                              "older schemas only for ops whose semantics did not change)")
        elif types & EXOTIC:
            excluded[name] = "exotic dtype: " + ", ".join(
                sorted(TensorProto.DataType.Name(t) for t in types & EXOTIC))
        elif known:
            excluded[name] = KNOWN_EXCLUDED[known[0]]
        else:
            included.append(name)
    return included, excluded


INCLUDED, EXCLUDED = classify()

def _exact_ints(ref, out) -> None:
    """Integer and bool outputs must be equal, not just close (the runner uses allclose)."""
    if isinstance(ref, (list, tuple)) and isinstance(out, (list, tuple)):
        for r, o in zip(ref, out):
            _exact_ints(r, o)
    elif isinstance(ref, np.ndarray) and isinstance(out, np.ndarray) and ref.dtype.kind in "iub":
        assert out.dtype == ref.dtype and np.array_equal(out, ref), (
            f"integer output differs: got {out!r}, want {ref!r}")


class ExactIntBackendTest(onnx.backend.test.BackendTest):
    @classmethod
    def assert_similar_outputs(cls, ref_outputs, outputs, rtol, atol, model_dir=None):
        super().assert_similar_outputs(ref_outputs, outputs, rtol, atol, model_dir=model_dir)
        _exact_ints(list(ref_outputs), list(outputs))


backend_test = ExactIntBackendTest(FastqBackend, __name__)
if INCLUDED:
    backend_test.include("^(" + "|".join(re.escape(n) for n in INCLUDED) + ")_cpu$")
else:  # pragma: no cover
    backend_test.include("^$")
with warnings.catch_warnings():  # the runner's coverage mark is registered by onnx's plugin
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    backend_test.enable_report()
globals().update(backend_test.test_cases)

if __name__ == "__main__":
    if "--list" in sys.argv:
        from collections import Counter
        print(f"included {len(INCLUDED)}, excluded {len(EXCLUDED)}")
        reasons = Counter(r.split(":")[0] for r in EXCLUDED.values())
        for r, c in reasons.most_common():
            print(f"  {c:5d} {r}")
        ops = Counter()
        for r in EXCLUDED.values():
            if r.startswith("unsupported op: "):
                ops.update(r[len("unsupported op: "):].split(", "))
        print("  unsupported ops:", ", ".join(f"{o}({c})" for o, c in ops.most_common()))
    else:
        unittest.main()
