"""AccuracyAwareQuantization on a one-block BERT encoder whose FFN-up output has one x1000
channel that the FFN-down MatMul ignores (a zero weight row): only the FFN-down input quantizer
is hurt, so reverting that one MatMul must reach the drop -- as NNCF's accuracy control does.
Pins the two placement rules that made fastq revert more: an Add that no int8 op reads (masked
attention scores before Softmax, residuals before LayerNorm) stays float instead of getting a
QLinearAdd output quantizer, and the first_layer saturation fix halves only the first layers'
grids (the block's Q/K/V), never the FFN MatMuls the residual stream leads to.
Model from tests/models/builders.bert_like; drops re-checked with ONNX Runtime.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import fastq

from models.builders import bert_like
from models.util import ort_session

D, FFN, SEQ = 32, 64, 8
MAX_DROP = 0.002


def cosine(outputs, target) -> float:
    a = np.asarray(outputs[0], np.float64).ravel()
    b = np.asarray(target, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def outlier_bert():
    m, _ = bert_like(d=D, ffn=FFN)
    inits = {t.name: t for t in m.graph.initializer}
    mms = [n for n in m.graph.node if n.op_type == "MatMul" and n.input[1] in inits]
    up = next(n for n in mms if tuple(inits[n.input[1]].dims) == (D, FFN))
    down = next(n for n in mms if tuple(inits[n.input[1]].dims) == (FFN, D))
    wu = numpy_helper.to_array(inits[up.input[1]]).copy()
    wu[:, 0] *= 1000.0
    wd = numpy_helper.to_array(inits[down.input[1]]).copy()
    wd[0] = 0.0
    for name, a in ((up.input[1], wu), (down.input[1], wd)):
        inits[name].CopyFrom(numpy_helper.from_array(a, name))
    onnx.checker.check_model(m)
    return m, up.name, down.name


def feeds(n, seed):
    """BERT's additive mask: 0 where attended, -1e4 on the padded tail (not a sentinel)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        mask = np.zeros((1, 1, 1, SEQ), np.float32)
        mask[..., rng.integers(SEQ // 2, SEQ):] = -1e4
        out.append({"input": rng.standard_normal((1, SEQ, D)).astype(np.float32),
                    "mask": mask})
    return out


@pytest.fixture(scope="module")
def problem():
    m, up, down = outlier_bert()
    sess = ort_session(m)
    val = [(f, sess.run(None, f)[0]) for f in feeds(60, 2)]
    return m, up, down, feeds(32, 1), val


def ort_drop(model, val) -> float:
    s = ort_session(model)
    return float(np.mean([cosine([y], t) for (f, t) in val for y in [s.run(None, f)[0]]]))


def test_int8_model_keeps_mask_and_residual_adds_float_and_fixes_only_qkv(problem):
    m, up, down, calib, _ = problem
    res = fastq.quantize(m, calib, {"name": "DefaultQuantization",
                                    "params": {"stat_subset_size": 32}}, progress=False)
    adds = [n for n in m.graph.node if n.name.startswith(("maskadd", "residual"))]
    assert len(adds) == 3
    for n in adds:
        # no quantizer on the output (Softmax/LayerNorm read it in float) nor on the inputs
        assert n.output[0] not in res.report.activations, n.name
        assert n.name in res.report.ignored and "no reader" in res.report.ignored[n.name]
    dq_in = {n.output[0] for n in res.model.graph.node if n.op_type == "DequantizeLinear"}
    for n in res.model.graph.node:
        if n.op_type in ("Softmax", "LayerNormalization"):
            assert not set(n.input) & dq_in, n.name
    # first_layer: the block's Q/K/V MatMuls (they read the first LayerNorm's output), not
    # the FFN MatMuls the residual stream leads to
    fixed = {k for k, v in res.report.layers.items() if v["saturation_fix"]}
    nodes = {n.name: n for n in m.graph.node}
    assert len(fixed) == 3 and len({nodes[k].input[0] for k in fixed}) == 1, fixed
    assert up not in fixed and down not in fixed


def test_reverts_only_the_ffn_down_matmul(problem):
    m, up, down, calib, val = problem
    cfg = {"name": "AccuracyAwareQuantization",
           "params": {"stat_subset_size": 32, "maximal_drop": MAX_DROP}}
    r = fastq.quantize(m, calib, cfg, validation_data=val, metric=cosine, progress=False)
    a = r.report.accuracy_aware
    assert a["int8_drop"] > MAX_DROP                   # DefaultQuantization misses it
    assert a["reached"] and a["iterations"] == 1
    assert a["reverted_layers"] == [down]
    assert up in r.report.layers and down not in r.report.layers
    # the drop, re-measured by ONNX Runtime on both models
    base = ort_drop(m, val)
    assert base - ort_drop(r.model, val) == pytest.approx(a["final_drop"], abs=1e-4)
    assert base - ort_drop(r.model, val) <= MAX_DROP
