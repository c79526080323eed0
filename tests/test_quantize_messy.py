"""What real exported models contain, each decided by a rule recorded in the report: HardSwish
(op and decomposed forms) in MobileNetV3 blocks, opset-11 Reshape/Transpose chains, Conv outputs
that are graph outputs, ignored readers of an int8 op, MatMul + bias Add (static and dynamic
shapes), a graph input read by several bias-corrected layers, sentinel-valued inputs, old
opsets with constant-subgraph weights and Sum. For each export, ONNX Runtime's optimized graph
(``optimized_model_filepath``) must hold no float Conv/Gemm/MatMul on dequantized weights, and
ORT's output must match fastq's exact32 executor within one output quantization step."""

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import fastq
from models import builders as B
from models import messy as M
from models.util import fused_ops, ort_session, output_steps, run_all, sqnr_db

TRANSFORMER = {"name": "DefaultQuantization", "params": {"model_type": "transformer"}}
CASES = {
    "mbv3_hardswish_op": (lambda: M.mobilenet_v3_like(form="op"), None),
    "mbv3_x_hardsigmoid": (lambda: M.mobilenet_v3_like(form="hsig"), None),
    "mbv3_x_clip_div6_opset11": (lambda: M.mobilenet_v3_like(form="clip"), None),
    "shuffle_opset11": (M.shuffle_net_like, None),
    "conv_graph_outputs": (M.conv_head_output, None),
    "shared_input": (M.shared_input_layers, None),
    "ffn_static": (M.ffn_static, TRANSFORMER),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    build, cfg = CASES[request.param]
    m, make = build()
    res = fastq.quantize(m, make(40, seed=1), cfg, progress=False)
    return dict(name=request.param, model=m, result=res, eval=make(6, seed=2))


def test_export_checker_io_and_report(case):
    q, m = case["result"].model, case["model"]
    onnx.checker.check_model(q, full_check=True)
    assert [v.name for v in q.graph.input] == [v.name for v in m.graph.input]
    assert [v.name for v in q.graph.output] == [v.name for v in m.graph.output]
    rep = case["result"].report
    assert rep.layers, "nothing was quantized"
    for d in rep.decisions:
        assert isinstance(d, str) and d


def test_ort_fuses_every_quantized_layer(case, tmp_path):
    """No layer is left as a float op on dequantized weights, and a quantized Conv is always
    a QLinearConv: ORT fuses everything fastq quantized."""
    ops = fused_ops(case["result"].model, tmp_path)
    assert not {"Conv", "Gemm", "MatMul", "FusedConv"} & set(ops), ops
    n_conv = sum(r["op_type"] == "Conv" for r in case["result"].report.layers.values())
    assert ops.get("QLinearConv", 0) == n_conv, ops
    opt = onnx.load(os.fspath(tmp_path / "optimized.onnx"))
    inits = {t.name for t in opt.graph.initializer}
    weight_dq = [n.name for n in opt.graph.node
                 if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert not weight_dq, f"weights dequantized at run time: {weight_dq}"


def test_ort_matches_exact32_within_one_output_step(case):
    q = case["result"].model
    sess = ort_session(q)
    ex = fastq.InferenceSession(q, arith="exact32")
    steps = output_steps(q)
    for feeds in case["eval"]:
        a, b = sess.run(None, feeds), ex.run(None, feeds)
        for out, x, y, step in zip(q.graph.output, a, b, steps):
            assert step > 0
            assert np.max(np.abs(np.asarray(x) - np.asarray(y))) <= step * 1.0001, out.name


def test_int8_close_to_float(case):
    ref = run_all(ort_session(case["model"]), case["eval"])
    got = run_all(ort_session(case["result"].model), case["eval"])
    assert sqnr_db(ref, got) >= 20


def test_hardswish_forms_quantize_conv_outputs():
    # rule: a Conv whose activation ORT cannot fold into QLinearConv (HardSwish in any form)
    # gets a quantizer on its own output; the activation runs in float on the DQ
    for form in ("op", "hsig", "clip"):
        m, make = M.mobilenet_v3_like(form=form)
        res = fastq.quantize(m, make(20, seed=1), progress=False)
        convs = [n.name for n in m.graph.node if n.op_type in ("Conv", "Gemm")]
        assert set(res.report.layers) == set(convs)
        hs = [d for d in res.report.decisions if "ORT fuses it only with a QuantizeLinear" in d]
        assert len(hs) >= 8, (form, res.report.decisions)     # 8 HardSwish per model
        for a in res.report.activations.values():
            assert a["why"]


def test_reshape_transpose_chain_stays_int8(tmp_path):
    # opset 11 channel shuffles between Convs: one quantizer before the chain and one after,
    # with equal ranges, so ORT drops the pair and moves uint8 through Reshape/Transpose
    m, make = M.shuffle_net_like()
    res = fastq.quantize(m, make(30, seed=1), progress=False)
    ops = fused_ops(res.model, tmp_path)
    assert ops["QuantizeLinear"] == 1 and "DequantizeLinear" not in ops, ops
    assert ops["Reshape"] >= 4 and ops["Transpose"] >= 2
    q = res.model
    prod = {o: n for n in q.graph.node for o in n.output}
    for n in q.graph.node:
        if n.op_type in ("Reshape", "Transpose") and n.input[0] in prod:
            # nothing quantizes a tensor between two data-movement ops
            assert not (prod[n.input[0]].op_type == "DequantizeLinear" and any(
                c.op_type in ("Reshape", "Transpose") for c in q.graph.node
                if prod[n.input[0]].input[0] in c.output)), n.name
    acts = res.report.activations
    pairs = [(a, b) for a in acts for b in acts if a != b and acts[a]["max"] == acts[b]["max"]]
    for a, b in pairs:
        assert np.array_equal(acts[a]["scale"], acts[b]["scale"])


def test_conv_outputs_that_are_graph_outputs(tmp_path):
    m, make = M.conv_head_output()
    res = fastq.quantize(m, make(30, seed=1), progress=False)
    q = res.model
    prod = {o: n for n in q.graph.node for o in n.output}
    for out in ("features", "mask_logits"):
        assert prod[out].op_type == "DequantizeLinear"
        assert any(f"quantized graph output {out}" in d for d in res.report.decisions)
    # the int8 Conv reading "features" reads the same DQ output as the graph output
    assert ort_session(q).run(None, make(1, 3)[0])[1].shape == (1, 16, 16, 16)


def test_ignored_reader_leaves_its_producer_float(tmp_path):
    m, make = B.resnet_like()
    res = fastq.quantize(m, make(30, seed=1), {"name": "DefaultQuantization", "params": {
        "ignored": {"operations": [{"type": "Concat"}]}}}, progress=False)
    cat = next(n for n in m.graph.node if n.op_type == "Concat")
    prod = {o: n for n in m.graph.node for o in n.output}
    branch_convs = {prod[prod[x].input[0]].name for x in cat.input}    # Conv -> Relu -> Concat
    for c in branch_convs:
        assert c not in res.report.layers
        assert "ONNX Runtime" in res.report.ignored[c] and cat.name in res.report.ignored[c]
    ops = fused_ops(res.model, tmp_path)
    opt = onnx.load(os.fspath(tmp_path / "optimized.onnx"))
    inits = {t.name for t in opt.graph.initializer}
    assert not any(n.op_type == "DequantizeLinear" and n.input[0] in inits
                   for n in opt.graph.node), ops


def test_matmul_bias_int32_only_for_static_inputs(tmp_path):
    # static input: the Add's bias is int32 (scale s_x * s_w) so ORT fuses QGemm
    m, make = M.ffn_static()
    res = fastq.quantize(m, make(20, seed=1), TRANSFORMER, progress=False)
    q = res.model
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    prod = {o: n for n in q.graph.node for o in n.output}
    adds = [n for n in q.graph.node if n.op_type == "Add" and n.name.startswith("add")]
    assert len(adds) == 2
    for a in adds:
        dq = prod[a.input[1]]
        assert dq.op_type == "DequantizeLinear" and inits[dq.input[0]].dtype == np.int32
        mm = prod[a.input[0]]
        xs = inits[prod[mm.input[0]].input[1]]
        ws = inits[prod[mm.input[1]].input[1]]
        np.testing.assert_array_equal(inits[dq.input[1]], (xs * ws).astype(np.float32))
    assert fused_ops(q, tmp_path)["QGemm"] == 2
    assert sum("fuses MatMul + Add into QGemm" in d for d in res.report.decisions) == 2
    # dynamic axes (B, S): ORT cannot fuse MatMul + Add, so the bias stays float and ORT
    # runs MatMulIntegerToFloat + Add (a DQ on the bias would run on every inference)
    m, make = B.bert_like()
    res = fastq.quantize(m, make(20, seed=1), TRANSFORMER, progress=False)
    prod = {o: n for n in res.model.graph.node for o in n.output}
    inits = {t.name for t in res.model.graph.initializer}
    for a in res.model.graph.node:
        if a.op_type == "Add" and a.input[0] in prod and prod[a.input[0]].op_type == "MatMul":
            assert a.input[1] in inits


def test_shared_graph_input_bias_correction_both_flavours():
    m, make = M.shared_input_layers()
    data = make(30, seed=1)
    for fast in (True, False):
        res = fastq.quantize(m, data, {"name": "DefaultQuantization", "params": {
            "use_fast_bias": fast}}, progress=False)
        assert [i.name for i in res.model.graph.input] == ["input"]
        layers = res.report.layers
        assert len(layers) == 3 and all(v["bias_shift"] is not None or
                                        v["bias_relative_change"] is not None
                                        for v in layers.values())
        assert any(v["bias_corrected"] for v in layers.values())
        ev = make(8, seed=2)
        s = ort_session(res.model)
        ref = ort_session(m)
        for f in ev:
            for a, b in zip(s.run(None, f), ref.run(None, f)):
                assert a.shape == b.shape


def test_sentinel_input_leaves_its_layer_float():
    # a graph input padded with -3.4e38 goes through a MaxPool (finite output) into a Conv:
    # MaxPool in/out share one range, dominated by the sentinels, so neither is quantized and
    # the Conv reading the pool is left in float (an int8 Conv on a float input is a float
    # Conv on dequantized weights in ORT); the next Conv is int8
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 2, 3, 3)).astype(np.float32), "w")
    w2 = numpy_helper.from_array(rng.standard_normal((4, 4, 1, 1)).astype(np.float32), "w2")
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], name="pool", kernel_shape=[1, 6]),
             helper.make_node("Conv", ["p", "w"], ["c"], name="conv", pads=[1] * 4),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["out"], name="conv2")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     ["N", 2, 6, 6])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT,
                                                         ["N", 4, 6, 1])], [w, w2])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    data = []
    for i in range(10):
        x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
        x[..., 4:] = -3.4e38                       # padded columns
        data.append({"x": x})
    res = fastq.quantize(m, data, progress=False)
    assert "conv" not in res.report.layers and "sentinel" in res.report.ignored["conv"]
    assert "conv2" in res.report.layers
    assert any("sentinel" in d and "'x'" not in d and "x" in d for d in res.report.decisions)
    ref = run_all(ort_session(m), data[:3])
    assert sqnr_db(ref, run_all(ort_session(res.model), data[:3])) > 15


def _old_resnet_block():
    """opset 9, IR 3 (initializers listed as graph inputs), weights made by ConstantOfShape
    + Mul subgraphs, BatchNormalization after each Conv, residual Sum: light_resnet50's
    idioms in a few nodes."""
    rng = np.random.default_rng(1)
    inits, nodes = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))

    def weight(name, shape):
        const(name + "_shape", np.array(shape, np.int64))
        const(name + "_noise", (rng.standard_normal(shape) * 0.2).astype(np.float32))
        nodes.append(helper.make_node("ConstantOfShape", [name + "_shape"], [name + "_base"],
                                      value=numpy_helper.from_array(np.array([0.05],
                                                                             np.float32))))
        nodes.append(helper.make_node("Add", [name + "_base", name + "_noise"], [name]))

    def conv_bn(x, cin, cout, name, relu=True):
        weight(name + "_w", [cout, cin, 3, 3])
        for p, v in (("g", rng.uniform(.5, 1.5, cout)), ("b", rng.normal(0, .1, cout)),
                     ("m", rng.normal(0, .1, cout)), ("v", rng.uniform(.5, 2, cout))):
            const(f"{name}_{p}", v.astype(np.float32))
        nodes.append(helper.make_node("Conv", [x, name + "_w"], [name + "_c"], pads=[1] * 4,
                                      name=name))
        nodes.append(helper.make_node("BatchNormalization", [name + "_c"] + [
            f"{name}_{p}" for p in "gbmv"], [name + "_bn"], name=name + "_bn"))
        if relu:
            nodes.append(helper.make_node("Relu", [name + "_bn"], [name + "_r"]))
            return name + "_r"
        return name + "_bn"
    y = conv_bn("data", 3, 8, "stem")
    h = conv_bn(conv_bn(y, 8, 8, "a"), 8, 8, "b", relu=False)
    nodes.append(helper.make_node("Sum", [h, y], ["sum"], name="sum"))
    nodes.append(helper.make_node("Relu", ["sum"], ["out"]))
    inputs = [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 8, 8])] + [
        helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    g = helper.make_graph(nodes, "old", inputs,
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT,
                                                         [1, 8, 8, 8])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)])
    m.ir_version = 3
    return m


def test_old_opset_constant_weights_bn_and_sum(tmp_path):
    m = _old_resnet_block()
    onnx.checker.check_model(m)
    rng = np.random.default_rng(2)
    data = [{"data": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(20)]
    res = fastq.quantize(m, data, progress=False)
    t = res.report.transforms
    assert len(t["batchnorms_folded"]) == 3 and t["sum_to_add"] == ["sum"]
    ops = fused_ops(res.model, tmp_path)
    assert ops["QLinearConv"] == 3 and ops["QLinearAdd"] == 1, ops
    assert not {"BatchNormalization", "Conv", "Sum"} & set(ops), ops
    ref = run_all(ort_session(m), data[:5])
    assert sqnr_db(ref, run_all(ort_session(res.model), data[:5])) > 25
