"""Benchmarks run single-threaded unless a benchmark says otherwise: ratios, not absolute
times, are what the suites report, so the machine's other load matters less."""

import pytest

import fastq


@pytest.fixture(autouse=True)
def single_thread():
    old = fastq.get_num_threads()
    fastq.set_num_threads(1)
    yield
    fastq.set_num_threads(old)
