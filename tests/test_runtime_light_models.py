"""The ONNX package's "light" reference models (onnx/backend/test/data/light): run each with
fastq and reproduce its stored output with the suite's tolerances.

Inputs are built exactly as onnx.backend.test.runner does for these models (arange(n)/n in
the input's shape, unknown dims as 1; initializers listed as inputs are not fed). A model
whose ops fastq does not register yet (the nn ops: Conv, pooling, ...) is skipped, naming them.
"""

from __future__ import annotations

import os
import time

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import fastq

LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
# name, rtol, atol: the values onnx.backend.test.case.model uses for these models
MODELS = [("bvlc_alexnet", 1e-3, 1e-7), ("densenet121", 2e-3, 1e-7),
          ("inception_v1", 1e-3, 1e-7), ("inception_v2", 1e-3, 1e-7),
          ("resnet50", 1e-3, 1e-7), ("shufflenet", 1e-3, 1e-7), ("squeezenet", 1e-3, 1e-7),
          ("vgg19", 1e-3, 1e-7), ("zfnet512", 1e-3, 1e-7)]


def dummy_input(vi: onnx.ValueInfoProto) -> np.ndarray:
    shape = tuple(d.dim_value if d.HasField("dim_value") else 1
                  for d in vi.type.tensor_type.shape.dim)
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


@pytest.mark.parametrize("name,rtol,atol", MODELS, ids=[m[0] for m in MODELS])
def test_light_model_reproduces_stored_output(name, rtol, atol):
    path = os.path.join(LIGHT_DIR, f"light_{name}.onnx")
    if not os.path.exists(path):
        pytest.skip(f"{path} is not shipped with this onnx version")
    m = onnx.load(path)
    missing = sorted({n.op_type for n in m.graph.node} - set(fastq.supported_ops()))
    if missing:
        pytest.skip(f"light_{name} needs ops not registered yet: {', '.join(missing)}")
    inits = {t.name for t in m.graph.initializer}
    feeds = {vi.name: dummy_input(vi) for vi in m.graph.input if vi.name not in inits}
    t0 = time.perf_counter()
    sess = fastq.InferenceSession(path)
    outs = sess.run(None, feeds)
    elapsed = time.perf_counter() - t0
    for i, got in enumerate(outs):
        want = numpy_helper.to_array(onnx.load_tensor(
            os.path.join(LIGHT_DIR, f"light_{name}_output_{i}.pb")))
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol,
                                   err_msg=f"light_{name} output {i}")
    print(f"light_{name}: prepare+run {elapsed:.2f} s")
