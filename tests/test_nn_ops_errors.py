"""Bad inputs to the heavy float ops raise fastq's errors (ModelError, or
UnsupportedOpError for what fastq does not implement) naming the node."""

from __future__ import annotations

import numpy as np
import pytest

import fastq
from test_nn_ops_util import run_fastq

F = np.float32
RNG = np.random.default_rng(0)


def r(*shape):
    return RNG.standard_normal(shape).astype(F)


BAD = [
    ("Conv", [r(1, 3, 5, 5), r(4, 2, 3, 3)], {}, "channel"),
    ("Conv", [r(1, 4, 5, 5), r(4, 2, 3, 3)], {"group": 3}, "group"),
    ("Conv", [r(3, 5, 5), r(4, 3, 3, 3)], {}, "rank"),
    ("Conv", [r(1, 3, 5), r(4, 3, 3, 3)], {}, "rank"),
    ("Conv", [r(1, 3, 5, 5), r(4, 3, 3, 3), r(5)], {}, "bias"),
    ("Conv", [r(1, 3, 5, 5), r(4, 3, 3, 3)], {"kernel_shape": [2, 2]}, "kernel_shape"),
    ("Conv", [r(1, 3, 5, 5), r(4, 3, 3, 3)], {"strides": [1, 1, 1]}, "strides"),
    ("Conv", [r(1, 3, 2, 2), r(4, 3, 3, 3)], {}, "exceeds"),
    ("Conv", [r(1, 3, 5, 5), r(4, 3, 3, 3)], {"auto_pad": "SAME"}, "auto_pad"),
    ("ConvTranspose", [r(1, 3, 5, 5), r(2, 2, 3, 3)], {}, "channel"),
    ("MaxPool", [r(1, 3, 5, 5)], {}, "kernel_shape"),
    ("MaxPool", [r(5, 5)], {"kernel_shape": [2, 2]}, "shape"),
    ("AveragePool", [r(1, 2, 5, 5)], {"kernel_shape": [2, 2], "pads": [1, 1]}, "pads"),
    ("Gemm", [r(3, 4), r(5, 6)], {}, "inner"),
    ("Gemm", [r(3, 4), r(4, 6), r(4, 6)], {}, "broadcast"),
    ("MatMul", [r(3, 4), r(5, 6)], {}, "inner"),
    ("MatMul", [r(2, 3, 4), r(3, 4, 2)], {}, "broadcast"),
    ("BatchNormalization", [r(2, 3, 4), r(2), r(3), r(3), r(3)], {}, "scale"),
    ("InstanceNormalization", [r(2, 3, 4), r(4), r(3)], {}, "scale"),
    ("GroupNormalization", [r(2, 6, 4), r(6), r(6)], {"num_groups": 4}, "num_groups"),
    ("LayerNormalization", [r(2, 3, 4), r(5)], {}, "Scale"),
    ("Softmax", [r(2, 3)], {"axis": 2}, "axis"),
    ("Resize", [r(1, 1, 2, 2), None, np.array([1, 2], F)], {}, "scales"),
    ("Resize", [r(1, 1, 2, 2), None, None, None], {}, "scales"),
    ("Resize", [r(1, 1, 2, 2), None, None, np.array([1, 1, 3], np.int64)], {}, "sizes"),
    ("Resize", [r(1, 1, 2, 2), None, np.array([1, 1, 2, 2], F)], {"mode": "bicubic"}, "mode"),
    ("LRN", [r(1, 3, 2, 2)], {}, "size"),
]


@pytest.mark.parametrize("op,feeds,attrs,word", BAD, ids=[f"{b[0]}-{b[3]}" for b in BAD])
def test_bad_inputs_raise_model_error_naming_node(op, feeds, attrs, word):
    opset = 21 if op == "GroupNormalization" else 19
    with pytest.raises(fastq.ModelError) as ei:
        run_fastq(op, feeds, opset, name="the_node", **attrs)
    msg = str(ei.value)
    assert "'the_node'" in msg and op in msg
    assert word.lower() in msg.lower()


def test_unsupported_dims_and_dtypes_raise_unsupported():
    with pytest.raises(fastq.UnsupportedOpError, match="the_node.*4 spatial"):
        run_fastq("Conv", [r(1, 1, 2, 2, 2, 2), r(1, 1, 1, 1, 1, 1)], 13, name="the_node")
    with pytest.raises(fastq.UnsupportedOpError, match="the_node.*int32"):
        run_fastq("Conv", [np.ones((1, 1, 3, 3), np.int32), np.ones((1, 1, 1, 1), np.int32)],
                  13, name="the_node")
    with pytest.raises(fastq.UnsupportedOpError, match="the_node.*p="):
        run_fastq("LpPool", [r(1, 1, 3, 3)], 1, name="the_node", kernel_shape=[2, 2], p=2.5)
