"""CPU detection, impl listing and the guard that the fast paths were built and run."""

import platform

import pytest

import fastq
from fastq import kernels


def test_cpu_features_are_booleans():
    feats = fastq.cpu_features()
    assert {"avx2", "avx512_vnni", "os_avx", "os_avx512"} <= set(feats)
    assert all(isinstance(v, bool) for v in feats.values())


def test_ref_always_available():
    assert kernels.available_impls()[0] == "ref"


def test_guard_fast_paths_built_where_cpu_has_them():
    """An x86-64 host whose CPU has AVX2 / AVX512-VNNI must build and list those impls."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("non-x86 host: reference kernels only by design")
    feats = fastq.cpu_features()
    assert feats["x86_64"], "x86-64 host but the module was built without the x86 kernels"
    avail = kernels.available_impls()
    if feats["avx2"] and feats["fma"]:
        assert "avx2" in avail
    if all(feats[f] for f in ("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni")):
        assert "avx512vnni" in avail


def test_fastq_isa_caps_default(monkeypatch):
    monkeypatch.setenv("FASTQ_ISA", "ref")
    assert kernels.default_impl("exact32") == "ref"
    monkeypatch.setenv("FASTQ_ISA", "avx2")
    assert kernels.default_impl("sat16pair") == ("avx2" if "avx2" in kernels.available_impls()
                                                  else "ref")
    monkeypatch.setenv("FASTQ_ISA", "bogus")
    with pytest.raises(fastq.KernelError, match="avx512vnni"):
        kernels.default_impl("exact32")


def test_use_impl_scoped_override():
    best = kernels.default_impl("exact32")
    with kernels.use_impl("ref"):
        assert kernels.default_impl("exact32") == "ref"
    assert kernels.default_impl("exact32") == best


def test_threads_roundtrip():
    old = fastq.get_num_threads()
    try:
        fastq.set_num_threads(1)
        assert fastq.get_num_threads() == 1
    finally:
        fastq.set_num_threads(0)
    assert fastq.get_num_threads() >= 1
    fastq.set_num_threads(old)


_FORK_SCRIPT = r"""
import multiprocessing as mp
import numpy as np
import fastq
from fastq import kernels

def work(_):
    a = np.ones((300, 257), np.uint8)
    b = np.ones((257, 190), np.int8)
    return int(kernels.gemm_u8s8(a, b).sum())

if __name__ == "__main__":
    fastq.set_num_threads(2)
    first = work(0)  # the parent's thread pool is running before the fork
    with mp.get_context("fork").Pool(2) as p:
        assert p.map(work, range(4)) == [first] * 4
    print("ok")
"""


def test_kernels_work_in_forked_children():
    """multiprocessing forks after the parent started the kernel thread pool: the children
    must build their own pool instead of waiting on threads that do not exist there."""
    import subprocess
    import sys

    if not hasattr(__import__("os"), "fork"):
        pytest.skip("no fork on this platform")
    out = subprocess.run([sys.executable, "-c", _FORK_SCRIPT], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
