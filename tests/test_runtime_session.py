"""InferenceSession: the ORT-shaped API, graph preparation (order, folding, lifetimes,
external data, dynamic batch), intermediates for statistics, and every bad-input error."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import fastq
from fastq.runtime import graph as rt_graph
from fastq.runtime.registry import register, supported_ops

from _runtime_models import F, model, single, vi

# A counting op in a private domain: tells whether a node ran at prepare time or per run.
CALLS = {"n": 0}
TEST_DOMAIN = "test.fastq.runtime"
if "Count" not in supported_ops(TEST_DOMAIN):
    @register("Count", domain=TEST_DOMAIN)
    def _count(node, x):
        CALLS["n"] += 1
        return x + 0


def mlp_like():
    """x[N,4] -> Relu -> Mul(c) -> Add(b) -> Tanh -> y ; also exposes r, m, a as names."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Mul", ["r", "c"], ["m"], name="mul"),
             helper.make_node("Add", ["m", "b"], ["a"], name="add"),
             helper.make_node("Tanh", ["a"], ["y"], name="tanh")]
    inits = {"c": np.array([0.5, -1.0, 2.0, 1.5], np.float32),
             "b": np.array([0.1, 0.2, -0.3, 0.0], np.float32)}
    return model(nodes, [vi("x", F, ["N", 4])], [vi("y", F, ["N", 4])], inits)


def mlp_oracle(x):
    c = np.array([0.5, -1.0, 2.0, 1.5], np.float32)
    b = np.array([0.1, 0.2, -0.3, 0.0], np.float32)
    return np.tanh(np.maximum(x, 0) * c + b)


X = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)


# -- API ------------------------------------------------------------------------------------

def test_inputs_outputs_describe_like_ort():
    s = fastq.InferenceSession(mlp_like())
    (i,), (o,) = s.get_inputs(), s.get_outputs()
    assert (i.name, i.shape, i.type) == ("x", ["N", 4], "tensor(float)")
    assert (o.name, o.shape, o.type) == ("y", ["N", 4], "tensor(float)")


def test_run_matches_oracle_and_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    m = mlp_like()
    y = fastq.InferenceSession(m).run(None, {"x": X})[0]
    np.testing.assert_allclose(y, mlp_oracle(X), rtol=1e-6, atol=1e-7)
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(y, ref.run(None, {"x": X})[0], rtol=1e-6, atol=1e-7)
    assert y.dtype == np.float32


@pytest.mark.parametrize("form", ["proto", "bytes", "path"])
def test_model_forms_and_proto_not_mutated(form, tmp_path):
    m = mlp_like()
    before = m.SerializeToString()
    if form == "bytes":
        arg = before
    elif form == "path":
        arg = str(tmp_path / "m.onnx")
        onnx.save(m, arg)
    else:
        arg = m
    y = fastq.InferenceSession(arg).run(None, {"x": X})[0]
    np.testing.assert_allclose(y, mlp_oracle(X), rtol=1e-6)
    assert m.SerializeToString() == before


def test_external_data_resolved_from_path(tmp_path):
    w = np.arange(4096, dtype=np.float32).reshape(1024, 4) / 4096
    nodes = [helper.make_node("Gather", ["w", "i"], ["y"])]
    m = model(nodes, [vi("i", TensorProto.INT64, [2])], [vi("y", F, [2, 4])], {"w": w})
    p = tmp_path / "ext.onnx"
    onnx.save(m, str(p), save_as_external_data=True, location="ext.bin", size_threshold=0)
    assert (tmp_path / "ext.bin").exists()
    y = fastq.InferenceSession(str(p)).run(None, {"i": np.array([3, -1], np.int64)})[0]
    np.testing.assert_array_equal(y, w[[3, -1]])


def test_dynamic_batch_one_session():
    s = fastq.InferenceSession(mlp_like())
    for n in (1, 5, 0):
        x = np.random.default_rng(n).standard_normal((n, 4)).astype(np.float32)
        np.testing.assert_allclose(s.run(None, {"x": x})[0], mlp_oracle(x), rtol=1e-6)


def test_run_named_outputs_including_intermediate():
    s = fastq.InferenceSession(mlp_like())
    r, y = s.run(["r", "y"], {"x": X})
    np.testing.assert_array_equal(r, np.maximum(X, 0))
    np.testing.assert_allclose(y, mlp_oracle(X), rtol=1e-6)


def test_unsorted_nodes_are_ordered():
    m = mlp_like()
    nodes = list(m.graph.node)[::-1]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    np.testing.assert_allclose(fastq.InferenceSession(m).run(None, {"x": X})[0], mlp_oracle(X),
                               rtol=1e-6)


def test_supported_ops_lists_registered_types():
    ops = fastq.supported_ops()
    assert ops == sorted(ops)
    for op in ("Add", "Reshape", "QuantizeLinear", "MatMulInteger", "QLinearMatMul", "If",
               "ReduceMean", "Where", "Einsum"):
        assert op in ops


def test_unknown_arith_is_config_error():
    with pytest.raises(fastq.ConfigError, match="arith"):
        fastq.InferenceSession(mlp_like(), arith="int7")


# -- preparation: folding and lifetimes -----------------------------------------------------

def _count_model(const_input: bool):
    nodes = [helper.make_node("Count", ["k" if const_input else "x"], ["c"], domain=TEST_DOMAIN),
             helper.make_node("Add", ["x", "c"], ["y"])]
    m = model(nodes, [vi("x", F, [4])], [vi("y", F, [4])],
              {"k": np.arange(4, dtype=np.float32)}, extra_opsets={TEST_DOMAIN: 1})
    return m


def test_constant_subgraph_runs_once_at_prepare():
    CALLS["n"] = 0
    s = fastq.InferenceSession(_count_model(const_input=True))
    assert CALLS["n"] == 1
    x = np.ones(4, np.float32)
    for _ in range(3):
        np.testing.assert_array_equal(s.run(None, {"x": x})[0], x + np.arange(4))
    assert CALLS["n"] == 1


def test_non_constant_node_runs_per_call():
    CALLS["n"] = 0
    s = fastq.InferenceSession(_count_model(const_input=False))
    for _ in range(3):
        s.run(None, {"x": np.ones(4, np.float32)})
    assert CALLS["n"] == 3


def test_huge_constant_is_not_folded(monkeypatch):
    monkeypatch.setattr(rt_graph, "FOLD_LIMIT_BYTES", 8)  # 16-byte output counts as huge
    CALLS["n"] = 0
    s = fastq.InferenceSession(_count_model(const_input=True))
    s.run(None, {"x": np.ones(4, np.float32)})
    s.run(None, {"x": np.ones(4, np.float32)})
    assert CALLS["n"] >= 2  # ran per call (folding tried it at most once, then refused)


def test_intermediates_freed_after_last_consumer():
    """A requested tensor is not kept alive by the executor once its consumer has run."""
    s = fastq.InferenceSession(mlp_like())
    refs = {}
    dead_when = {}

    def cb(name, arr):
        for k, r in refs.items():
            dead_when.setdefault(k, {})[name] = r() is None
        refs[name] = weakref.ref(arr)

    s.run_with_intermediates({"x": X}, ["r", "m", "a", "y"], cb)
    gc.collect()
    # r is consumed by Mul only: gone by the time Add's output 'a' is delivered
    assert dead_when["r"]["a"] and dead_when["r"]["y"]
    assert dead_when["m"]["y"]


def test_intermediates_dict_and_callback_agree():
    s = fastq.InferenceSession(mlp_like())
    got = s.run_with_intermediates({"x": X}, ["x", "c", "r", "a", "y"])
    seen = []
    s.run_with_intermediates({"x": X}, ["x", "c", "r", "a", "y"],
                             lambda n, a: seen.append((n, a.copy())))
    assert sorted(got) == sorted(n for n, _ in seen) == ["a", "c", "r", "x", "y"]
    for n, a in seen:
        np.testing.assert_array_equal(got[n], a)
    np.testing.assert_array_equal(got["r"], np.maximum(X, 0))
    assert [n for n, _ in seen][-3:] == ["r", "a", "y"]  # in production order


def test_intermediates_unknown_name():
    s = fastq.InferenceSession(mlp_like())
    with pytest.raises(fastq.ModelError, match="nope"):
        s.run_with_intermediates({"x": X}, ["nope"])


# -- opset versions -------------------------------------------------------------------------

@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_unsqueeze_axes_attr_vs_input(opset):
    x = np.random.default_rng(1).standard_normal((1, 3, 1, 2)).astype(np.float32)
    axes = np.array([0, 2], np.int64)
    if opset < 13:
        m = single("Squeeze", {"x": x}, opset=opset, axes=[0, 2])
    else:
        m = single("Squeeze", {"x": x}, opset=opset, consts={"axes": axes})
    y = fastq.InferenceSession(m).run(None, {"x": x})[0]
    np.testing.assert_array_equal(y, x.reshape(3, 2))


@pytest.mark.parametrize("op,opset,axes_input", [("ReduceSum", 11, False),
                                                  ("ReduceSum", 13, True),
                                                  ("ReduceMean", 17, False),
                                                  ("ReduceMean", 18, True),
                                                  ("ReduceMax", 18, True)])
def test_reduce_axes_attribute_vs_input(op, opset, axes_input):
    x = np.random.default_rng(2).standard_normal((2, 3, 4)).astype(np.float32)
    if axes_input:
        m = single(op, {"x": x}, opset=opset, consts={"axes": np.array([1, -1], np.int64)},
                   keepdims=0)
    else:
        m = single(op, {"x": x}, opset=opset, axes=[1, -1], keepdims=0)
    y = fastq.InferenceSession(m).run(None, {"x": x})[0]
    fn = {"ReduceSum": np.sum, "ReduceMean": np.mean, "ReduceMax": np.max}[op]
    np.testing.assert_allclose(y, fn(x, axis=(1, 2)), rtol=1e-6)


@pytest.mark.parametrize("opset", [11, 13, 18])
def test_split_versions(opset):
    x = np.arange(10, dtype=np.float32)
    if opset == 11:
        m = single("Split", {"x": x}, n_out=2, opset=opset, split=[3, 7])
    elif opset == 13:
        m = single("Split", {"x": x}, n_out=2, opset=opset, consts={"s": np.array([3, 7])})
    else:
        m = single("Split", {"x": x}, n_out=2, opset=opset, num_outputs=2)
    a, b = fastq.InferenceSession(m).run(None, {"x": x})
    cut = 5 if opset == 18 else 3
    np.testing.assert_array_equal(a, x[:cut])
    np.testing.assert_array_equal(b, x[cut:])


def test_if_reads_outer_scope():
    then_g = helper.make_graph([helper.make_node("Add", ["x", "x"], ["t"])], "then", [],
                               [vi("t", F, [3])])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [],
                               [vi("e", F, [3])])
    nodes = [helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)]
    m = model(nodes, [vi("c", TensorProto.BOOL, []), vi("x", F, [3])], [vi("y", F, [3])])
    s = fastq.InferenceSession(m)
    x = np.array([1, -2, 3], np.float32)
    np.testing.assert_array_equal(s.run(None, {"c": np.array(True), "x": x})[0], 2 * x)
    np.testing.assert_array_equal(s.run(None, {"c": np.array(False), "x": x})[0], -x)


# -- bad input ------------------------------------------------------------------------------

def test_checker_failure_is_model_error():
    m = single("Transpose", {"x": np.zeros((2, 3), np.float32)})
    m.graph.node[0].attribute.append(helper.make_attribute("perm", [1.0, 0.0]))
    with pytest.raises(fastq.ModelError, match="checker.*perm|checker"):
        fastq.InferenceSession(m)


def test_cycle_is_model_error_naming_a_node_on_it():
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="entry"),
             helper.make_node("Add", ["a", "c"], ["b"], name="loop_add"),
             helper.make_node("Neg", ["b"], ["c"], name="loop_neg"),
             helper.make_node("Relu", ["b"], ["y"], name="exit")]
    m = model(nodes, [vi("x", F, [2])], [vi("y", F, [2])])
    with pytest.raises(fastq.ModelError, match="cycle.*loop_(add|neg)") as ei:
        fastq.InferenceSession(m)
    assert "entry" not in str(ei.value).split("cycle:")[1]


def test_unknown_op_fails_at_creation_naming_node_op_and_opset():
    nodes = [helper.make_node("Frobnicate", ["x"], ["y"], name="frob", domain="com.example")]
    m = model(nodes, [vi("x", F, [2])], [vi("y", F, [2])], extra_opsets={"com.example": 3})
    with pytest.raises(fastq.UnsupportedOpError, match="frob.*Frobnicate.*opset 3"):
        fastq.InferenceSession(m)


def test_supported_by_onnx_but_not_fastq_fails_at_creation():
    # Bernoulli draws random numbers: an inference engine for calibration does not run it
    nodes = [helper.make_node("Bernoulli", ["x"], ["y"], name="coin")]
    m = model(nodes, [vi("x", F, [4])], [vi("y", F, [4])], opset=15)
    with pytest.raises(fastq.UnsupportedOpError, match="coin.*Bernoulli.*opset 15"):
        fastq.InferenceSession(m)


@pytest.mark.parametrize("feeds,pattern", [
    ({}, "missing feed for input 'x'"),
    ({"x": X, "z": X}, "unexpected feed 'z'"),
    ({"x": X[None]}, "input 'x' expects rank 2"),
    ({"x": np.zeros((3, 5), np.float32)}, "input 'x' expects dimension 1 = 4"),
    ({"x": X.astype(np.float64)}, "input 'x' expects tensor\\(float\\).*float64"),
])
def test_bad_feeds_are_data_errors(feeds, pattern):
    s = fastq.InferenceSession(mlp_like())
    with pytest.raises(fastq.DataError, match=pattern):
        s.run(None, feeds)


def test_nan_accepted_by_run_rejected_by_calibration_path():
    s = fastq.InferenceSession(mlp_like())
    x = X.copy()
    x[1, 2] = np.nan
    y = s.run(None, {"x": x})[0]
    assert np.isnan(y[1, 2]) and np.isfinite(np.delete(y.reshape(-1), 6)).all()
    with pytest.raises(fastq.DataError, match=r"input 'x' holds NaN/Inf.*\(1, 2\)"):
        s.run_with_intermediates({"x": x}, ["r"])
    got = s.run_with_intermediates({"x": x}, ["r"], check_finite=False)
    assert np.isnan(got["r"][1, 2])


def test_runtime_failure_names_the_node():
    nodes = [helper.make_node("Reshape", ["x", "s"], ["y"], name="bad_reshape")]
    m = model(nodes, [vi("x", F, ["N"]), vi("s", TensorProto.INT64, [2])],
              [vi("y", F, ["A", "B"])])
    s = fastq.InferenceSession(m)
    with pytest.raises(fastq.DataError, match="bad_reshape"):
        s.run(None, {"x": np.zeros(5, np.float32), "s": np.array([2, 2], np.int64)})


def test_errors_are_fastq_errors():
    for cls in (fastq.ModelError, fastq.UnsupportedOpError, fastq.DataError):
        assert issubclass(cls, fastq.FastqError)


def test_undefined_input_is_model_error():
    g = helper.make_graph([helper.make_node("Relu", ["ghost"], ["y"], name="r")], "g",
                          [vi("x", F, [2])], [vi("y", F, [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(fastq.ModelError, match="ghost"):
        fastq.InferenceSession(m)


def test_outputs_do_not_alias_feeds_or_constants():
    nodes = [helper.make_node("Identity", ["x"], ["y"]), helper.make_node("Identity", ["k"], ["z"])]
    m = model(nodes, [vi("x", F, [3])], [vi("y", F, [3]), vi("z", F, [2])],
              {"k": np.array([1, 2], np.float32)})
    s = fastq.InferenceSession(m)
    x = np.zeros(3, np.float32)
    y, z = s.run(None, {"x": x})
    y[:] = 5
    z[:] = 7
    assert np.all(x == 0)
    np.testing.assert_array_equal(s.run(None, {"x": x})[1], [1, 2])


def test_graph_rewrite_stage_replaces_nodes(monkeypatch):
    """The extension point for fused int8 layers: a stage sees resolved nodes + constants."""
    import dataclasses
    seen = []

    def stage(nodes, consts, ctx):
        seen.append((ctx.arith, sorted(consts)))
        return [dataclasses.replace(n, op_type="Count", domain=TEST_DOMAIN, proto=None)
                if n.op_type == "Tanh" else n for n in nodes]

    monkeypatch.setattr(rt_graph, "GRAPH_REWRITES", [stage])
    s = fastq.InferenceSession(mlp_like(), arith="exact32")
    assert seen == [("exact32", ["b", "c"])]
    y = s.run(None, {"x": X})[0]
    np.testing.assert_allclose(y, np.maximum(X, 0) * np.array([0.5, -1, 2, 1.5], np.float32)
                               + np.array([0.1, 0.2, -0.3, 0], np.float32), rtol=1e-6)


def test_index_error_inside_op_names_node_and_is_data_error():
    nodes = [helper.make_node("Gather", ["x", "i"], ["y"], name="gather_tok")]
    m = model(nodes, [vi("x", F, [4, 2]), vi("i", TensorProto.INT64, [1])], [vi("y", F, [1, 2])])
    s = fastq.InferenceSession(m)
    with pytest.raises(fastq.DataError, match="gather_tok.*out of range"):
        s.run(None, {"x": np.zeros((4, 2), np.float32), "i": np.array([9], np.int64)})


def test_sequences_flow_between_ops():
    nodes = [helper.make_node("SplitToSequence", ["x"], ["seq"], axis=1, keepdims=0),
             helper.make_node("SequenceLength", ["seq"], ["n"]),
             helper.make_node("SequenceAt", ["seq", "i"], ["col"]),
             helper.make_node("ConcatFromSequence", ["seq"], ["y"], axis=0, new_axis=1)]
    m = model(nodes, [vi("x", F, [2, 3])],
              [vi("n", TensorProto.INT64, []), vi("col", F, [2]), vi("y", F, [3, 2])],
              {"i": np.array(-1, np.int64)})
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    n, col, y = fastq.InferenceSession(m).run(None, {"x": x})
    assert n == 3
    np.testing.assert_array_equal(col, x[:, -1])
    np.testing.assert_array_equal(y, x.T)


# A two-output op whose kernel returns only its first value (the second output is absent).
if "FirstOnly" not in supported_ops(TEST_DOMAIN):
    @register("FirstOnly", domain=TEST_DOMAIN)
    def _first_only(node, x):
        return (x * 2,)


def _first_only_model(read_second: bool):
    nodes = [helper.make_node("FirstOnly", ["x"], ["a", "b"], domain=TEST_DOMAIN),
             helper.make_node("Relu", ["b" if read_second else "a"], ["y"], name="reader")]
    return model(nodes, [vi("x", F, [3])], [vi("y", F, [3])],
                 extra_opsets={TEST_DOMAIN: 1})


def test_absent_output_is_an_error_only_when_read():
    x = np.array([-1, 0, 2], np.float32)
    s = fastq.InferenceSession(_first_only_model(read_second=False))
    np.testing.assert_array_equal(s.run(None, {"x": x})[0], np.maximum(2 * x, 0))
    s = fastq.InferenceSession(_first_only_model(read_second=True))
    with pytest.raises(fastq.errors.ModelError, match=r"'reader'.*input 'b' is not available"):
        s.run(None, {"x": x})


@pytest.mark.parametrize("op,consts,shape", [("Identity", {}, [2, 3]),
                                             ("Reshape", {"s": [6]}, [6]),
                                             ("Squeeze", {}, [2, 3])])
def test_outputs_never_alias_feeds_or_constants(op, consts, shape):
    """Outputs that are feeds, constants, or views of either are copies; fresh ones are not."""
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    ins = ["x"] + list(consts)
    inits = {k: np.array(v, np.int64) for k, v in consts.items()}
    nodes = [helper.make_node(op, ins, ["y"]), helper.make_node(op, ["k"] + list(consts), ["z"]),
             helper.make_node("Add", ["x", "x"], ["w"])]
    inits["k"] = np.ones((2, 3), np.float32)
    m = model(nodes, [vi("x", F, [2, 3])], [vi("y", F, shape), vi("z", F, shape),
                                            vi("w", F, [2, 3])], inits)
    s = fastq.InferenceSession(m)
    consts_now = [c for c in s._graph.consts.values() if isinstance(c, np.ndarray)]
    y, z, w = s.run(None, {"x": x})
    assert not np.shares_memory(y, x)
    assert not any(np.shares_memory(z, c) for c in consts_now)
    np.testing.assert_array_equal(y.reshape(2, 3), x)
    np.testing.assert_array_equal(z.reshape(2, 3), 1)
    np.testing.assert_array_equal(w, 2 * x)
    w2 = s.run(None, {"x": x})[2]
    assert not np.shares_memory(w, w2)


def test_plan_from_runs_the_rest_of_the_graph_from_given_tensors():
    """plan_from/run_from (AccuracyAware's split ranking): fed one Concat branch and what the
    plan requires, the downstream steps give the full run's outputs bit for bit; a changed
    value changes them; what is not available is computed by the plan (the other branch,
    from the graph input), and a required tensor not fed is an error."""
    from models.builders import resnet_like
    from fastq.errors import DataError
    m, make = resnet_like()
    feed = make(1, 3)[0]
    cat = next(n for n in m.graph.node if n.op_type == "Concat")
    mine, other = cat.input[0], cat.input[1]
    sess = fastq.InferenceSession(m, keep=[mine, other])
    full = sess.run(None, feed)
    inter = sess.run_with_intermediates(feed, [mine, other])
    out = m.graph.output[0].name
    plan = sess.plan_from([mine], available=[other])
    assert plan.produced == [out] and plan.required == {other}
    got = sess.run_from(plan, {mine: inter[mine], other: inter[other]})
    assert np.array_equal(got[out], full[0])
    moved = sess.run_from(plan, {mine: inter[mine] * 2, other: inter[other]})
    assert not np.array_equal(moved[out], full[0])
    with pytest.raises(DataError, match="required"):
        sess.run_from(plan, {mine: inter[mine]})
    # nothing available: the other branch is computed from the graph input
    whole = sess.plan_from([mine])
    assert whole.required == {"input"}
    got = sess.run_from(whole, {mine: inter[mine], "input": feed["input"]})
    assert np.array_equal(got[out], full[0])
    # a step writing a skipped name does not run: its reader then requires that name
    assert other in sess.plan_from([mine], skip=[other]).required
    # nor does one writing a given name, though it reads another given one: the fed value
    # of the later tensor is what its readers see
    two = sess.plan_from(["input", mine])
    got = sess.run_from(two, {"input": feed["input"], mine: inter[mine] * 2})
    assert np.array_equal(got[out], moved[out])
    views = sess.run_views(feed)
    assert np.array_equal(views[out], full[0])
