"""Graph.topo_sort: the one-sweep order equals the repeated-pass order (each pass takes, in
order, every node whose inputs are ready) on shuffled random DAGs, keeps a sorted graph as it
is, and names the first node of a cycle or with a missing input."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from fastq.errors import ModelError
from fastq.graph.ir import Graph


def random_model(rng, n_nodes):
    nodes, names = [], ["x"]
    for i in range(n_nodes):
        k = int(rng.integers(1, 3))
        ins = [names[j] for j in rng.integers(0, len(names), k)]
        nodes.append(helper.make_node("Add" if k == 2 else "Relu", ins, [f"t{i}"],
                                      name=f"n{i}"))
        names.append(f"t{i}")
    order = rng.permutation(n_nodes)
    g = helper.make_graph([nodes[i] for i in order], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info(names[-1], TensorProto.FLOAT, [2])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def passes(nodes, avail):
    avail, pending, done = set(avail) | {""}, list(nodes), []
    while pending:
        rest = []
        for n in pending:
            if set(n.input) <= avail:
                done.append(n)
                avail.update(n.output)
            else:
                rest.append(n)
        assert len(rest) < len(pending)
        pending = rest
    return [n.name for n in done]


@pytest.mark.parametrize("seed", range(20))
def test_order_equals_repeated_passes(seed):
    rng = np.random.default_rng(seed)
    g = Graph(random_model(rng, int(rng.integers(1, 60))))
    want = passes(g.nodes, ["x"])
    g.topo_sort()
    assert [n.name for n in g.nodes] == want
    before = [n.name for n in g.nodes]
    g.topo_sort()
    assert [n.name for n in g.nodes] == before


def test_cycle_and_missing_input_name_the_first_stuck_node():
    for extra, bad in (([helper.make_node("Relu", ["b"], ["a"], name="na"),
                         helper.make_node("Relu", ["a"], ["b"], name="nb")], "na"),
                       ([helper.make_node("Relu", ["nowhere"], ["c"], name="nc")], "nc")):
        g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="ok")] + extra, "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
        gr = Graph(helper.make_model(g))
        with pytest.raises(ModelError, match=f"'{bad}'"):
            gr.topo_sort()
