"""Shared packings (kernels.shared_packing): inside the block, equal int8 weights packed with
equal options give the same packed object (an AccuracyAware ranking builds dozens of sessions
over the same weights); other bytes, shapes or options never do; the cache stays within its
byte budget, small weights skip it, results through a shared packing are the fresh packing's;
outside the block (and after it) nothing is shared or kept."""

from __future__ import annotations

import numpy as np
import pytest

from fastq import kernels

RNG = np.random.default_rng(5)


@pytest.fixture
def shared():
    with kernels.shared_packing():
        yield


@pytest.mark.usefixtures("shared")
def test_equal_weights_share_a_packing():
    kernels.clear_pack_cache()
    w = RNG.integers(-128, 128, (64, 96), dtype=np.int8)
    a = kernels.pack_weights(w)
    assert kernels.pack_weights(w.copy()) is a
    w2 = w.copy()
    w2[3, 5] ^= 1
    assert kernels.pack_weights(w2) is not a
    assert kernels.pack_weights(np.ascontiguousarray(w.reshape(96, 64))) is not a
    x = RNG.integers(0, 256, (7, 64), dtype=np.uint8)
    kernels.clear_pack_cache()
    fresh = kernels.gemm_u8s8(x, w, arith="sat16pair")
    assert np.array_equal(kernels.gemm_u8s8(x, a, arith="sat16pair"), fresh)


@pytest.mark.usefixtures("shared")
def test_conv_options_are_part_of_the_key():
    kernels.clear_pack_cache()
    w = RNG.integers(-128, 128, (64, 9, 3, 3), dtype=np.int8)     # 5 KiB: cached
    a = kernels.pack_conv_weights(w, pairing="per_tap")
    assert kernels.pack_conv_weights(w.copy(), pairing="per_tap") is a
    assert kernels.pack_conv_weights(w, pairing="flat") is not a
    g = RNG.integers(-128, 128, (64, 24, 3, 3), dtype=np.int8)
    a2 = kernels.pack_conv_weights(g, group=2)
    assert kernels.pack_conv_weights(g, group=2) is a2
    assert kernels.pack_conv_weights(g, group=1) is not a2


@pytest.mark.usefixtures("shared")
def test_budget_and_small_weights(monkeypatch):
    kernels.clear_pack_cache()
    small = RNG.integers(-128, 128, (8, 8), dtype=np.int8)        # 64 bytes: not cached
    assert kernels.pack_weights(small) is not kernels.pack_weights(small)
    monkeypatch.setattr(kernels, "PACK_CACHE_BYTES", 3 * 8192)
    ws = [RNG.integers(-128, 128, (128, 64), dtype=np.int8) for _ in range(4)]   # 8 KiB each
    first = kernels.pack_weights(ws[0])
    for w in ws[1:]:
        kernels.pack_weights(w)
    assert kernels._pack_cached_bytes <= 3 * 8192
    assert len(kernels._PACK_CACHE) == 3
    assert kernels.pack_weights(ws[0]) is not first          # the oldest one was dropped
    kernels.clear_pack_cache()
    assert kernels._pack_cached_bytes == 0 and not kernels._PACK_CACHE


@pytest.mark.usefixtures("shared")
def test_only_inside_shared_packing():
    w = RNG.integers(-128, 128, (64, 96), dtype=np.int8)
    a = kernels.pack_weights(w)
    with kernels.shared_packing():                  # nested: the outer block still holds it
        assert kernels.pack_weights(w) is a
    assert kernels.pack_weights(w) is a and kernels._PACK_CACHE


def test_nothing_shared_or_kept_outside():
    kernels.clear_pack_cache()
    w = RNG.integers(-128, 128, (64, 96), dtype=np.int8)
    with kernels.shared_packing():
        pass
    import threading
    done = []
    t = threading.Thread(target=lambda: done.append(kernels.pack_weights(w)))
    t.start()
    t.join()
    assert done and kernels.pack_weights(w) is not done[0]


def test_quantize_shares_packings_and_leaves_none(monkeypatch):
    """fastq.quantize packs each int8 weight once across its sessions (bias correction,
    saturation report) and keeps no packing after it returns."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    import fastq
    wt = RNG.standard_normal((64, 64)).astype(np.float32)
    bt = RNG.standard_normal(64).astype(np.float32)
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
                          [numpy_helper.from_array(wt, "w"), numpy_helper.from_array(bt, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(m)
    data = [RNG.standard_normal((1, 64)).astype(np.float32) for _ in range(8)]
    calls = []
    real = kernels._core.pack_weights
    monkeypatch.setattr(kernels._core, "pack_weights", lambda b: calls.append(1) or real(b))
    kernels.clear_pack_cache()
    fastq.quantize(m, data, progress=False)
    shared_calls = len(calls)
    assert not kernels._PACK_CACHE and kernels._pack_cached_bytes == 0
    monkeypatch.setattr(kernels, "PACK_CACHE_MIN_BYTES", 1 << 40)      # sharing off
    calls.clear()
    fastq.quantize(m, data, progress=False)
    assert shared_calls == 1 < len(calls)
