"""Benchmarks run single-threaded -- fastq's kernels and numpy's OpenBLAS alike, as ONNX
Runtime runs with intra_op_num_threads=1 -- so ratios, not absolute times, are what the
suites report and the machine's other load matters less. Two comparisons with tools that run
at their defaults use every core on both sides: the quantizer benchmark (each tool in its own
subprocess) and the AccuracyAware comparison with NNCF (the test lifts this fixture's cap)."""

import os
import sys

import pytest

import fastq

sys.path.insert(0, os.path.dirname(__file__))
from _timing import blas_threads  # noqa: E402


@pytest.fixture(autouse=True)
def single_thread():
    old = fastq.get_num_threads()
    fastq.set_num_threads(1)
    blas_threads(1)
    yield
    fastq.set_num_threads(old)
    blas_threads(os.cpu_count() or 1)
