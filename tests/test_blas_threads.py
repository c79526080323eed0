"""fastq.set_num_threads caps the BLAS library the float executor calls: inside a session's run
OpenBLAS uses no more threads than fastq was given, and its own setting comes back after,
also when runs on several Python threads overlap; with every core (the default) nothing is
touched."""

import os
import threading
import time

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import fastq
from fastq.runtime import parallel

LIBS = parallel._blas_libraries()
pytestmark = pytest.mark.skipif(not LIBS or (os.cpu_count() or 1) < 2,
                                reason="needs a loaded OpenBLAS and two cores")


def _blas():
    return [g() for _, g in LIBS]


def _session(seen, delay=0.0):
    """A float MatMul model whose MatMul step records the BLAS thread counts it runs under."""
    w = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 64])],
                          [numpy_helper.from_array(w, "w")])
    sess = fastq.InferenceSession(helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))
    for st in sess._graph.steps:
        if st.node.op_type == "MatMul":
            inner = st.kernel

            def kernel(*a, _k=inner):
                seen.append(_blas())
                time.sleep(delay)
                return _k(*a)
            st.kernel = kernel
    return sess


@pytest.fixture
def threads():
    before_fq, before_blas = fastq.get_num_threads(), _blas()
    parallel.set_blas_threads(2)
    yield
    fastq.set_num_threads(before_fq)
    for (s, _), n in zip(LIBS, before_blas):
        s(n)


def test_one_fastq_thread_runs_blas_on_one_and_restores_it(threads):
    seen = []
    sess = _session(seen)
    x = {"x": np.ones((8, 64), np.float32)}
    fastq.set_num_threads(1)
    sess.run(None, x)
    sess.run_with_intermediates(x, ["y"])
    assert seen == [[1] * len(LIBS)] * 2
    assert _blas() == [2] * len(LIBS)
    fastq.set_num_threads(0)                     # every core: BLAS keeps its own setting
    sess.run(None, x)
    assert seen[-1] == [2] * len(LIBS) and _blas() == [2] * len(LIBS)


def test_overlapping_runs_on_two_threads_restore_the_setting(threads):
    seen = []
    sess = _session(seen, delay=0.05)
    x = {"x": np.ones((8, 64), np.float32)}
    fastq.set_num_threads(1)
    ts = [threading.Thread(target=sess.run, args=(None, x)) for _ in range(2)]
    for t in ts:
        t.start()
        time.sleep(0.02)                         # the second enters while the first runs
    for t in ts:
        t.join()
    assert seen == [[1] * len(LIBS)] * 2
    assert _blas() == [2] * len(LIBS)
