"""Graph.copy (the export's working copy) is independent of its source except for the
initializer arrays it shares, and a session never converts an initializer nothing reads."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import fastq
from fastq.graph.ir import Graph


def model(dead=True, init_output=False):
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    inits = [numpy_helper.from_array(w, "w")]
    if dead:
        inits.append(numpy_helper.from_array(np.ones((64, 64), np.float32), "unused"))
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])]
    if init_output:
        outs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 3]))
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                          outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_copy_is_independent_but_shares_arrays():
    g = Graph(model())
    e = g.copy()
    assert e.inits["w"] is g.inits["w"]                  # shared, never written into
    e.nodes[0].input[1] = "w2"
    e.inits["w2"] = np.zeros((2, 3), np.float32)
    n = e.fresh("w")
    e.set_opset(17)
    assert g.nodes[0].input[1] == "w" and "w2" not in g.inits and g.opset == 13
    assert n not in g._reserved
    onnx.checker.check_model(g.to_model())
    assert e.to_model().graph.node[0].input[1] == "w2"


def test_session_skips_initializers_nothing_reads():
    x = {"x": np.array([[1.0, 2.0]], np.float32)}
    s = fastq.InferenceSession(model())
    assert "unused" not in s._graph.consts and "w" in s._graph.consts
    np.testing.assert_array_equal(s.run(None, x)[0], [[6.0, 9.0, 12.0]])
    # an initializer that is a graph output is read (by the caller)
    s2 = fastq.InferenceSession(model(dead=False, init_output=True))
    y, w = s2.run(None, x)
    np.testing.assert_array_equal(w, np.arange(6, dtype=np.float32).reshape(2, 3))
