"""Float transforms before placement keep the model's outputs (1e-5 relative): identity
removal, BatchNormalization folding, constant folding, shape inference."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from fastq.graph import Graph, prepare
from models import builders as B
from models.util import ort_session, run_all


@pytest.mark.parametrize("build", [B.resnet_like, B.mobilenet_like, B.bert_like])
def test_transforms_preserve_outputs(build):
    m, make = build()
    g = Graph(m)
    info = prepare(g)
    out = g.to_model()
    data = make(5, seed=3)
    a, b = run_all(ort_session(m, level="disable"), data), \
        run_all(ort_session(out, level="disable"), data)
    assert np.max(np.abs(a - b)) <= 1e-5 * np.max(np.abs(a))
    ops = {n.op_type for n in out.graph.node}
    assert not ops & {"BatchNormalization", "Identity", "Dropout"}
    if build is not B.bert_like:
        assert info["batchnorms_folded"]
    assert [o.name for o in out.graph.output] == [o.name for o in m.graph.output]
    assert g.value_info                     # shapes inferred for intermediates


def test_fold_constants_and_identity_on_output():
    rng = np.random.default_rng(0)
    c1 = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "c1")
    c2 = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "c2")
    g = helper.make_graph(
        [helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(
            np.float32(2.0))),
         helper.make_node("Add", ["c1", "c2"], ["s"], name="fold_me"),
         helper.make_node("Mul", ["s", "k"], ["s2"], name="fold_me_too"),
         helper.make_node("Mul", ["x", "s2"], ["y0"], name="mul"),
         helper.make_node("Identity", ["y0"], ["y"], name="id")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], [c1, c2])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    gr = Graph(m)
    info = prepare(gr)
    assert info["constants_folded"] == 2 and info["identities_removed"] == ["id"]
    out = gr.to_model()
    assert [n.op_type for n in out.graph.node] == ["Mul"] and out.graph.node[0].output[0] == "y"
    x = rng.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(ort_session(out).run(None, {"x": x})[0],
                               ort_session(m).run(None, {"x": x})[0], rtol=1e-6)
    assert len(m.graph.node) == 5            # the input model is untouched
