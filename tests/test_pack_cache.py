"""Shared packings (kernels._shared_pack): equal int8 weights packed with equal options give
the same packed object (an AccuracyAware ranking builds dozens of sessions over the same
weights); other bytes, shapes or options never do; the cache stays within its byte budget,
small weights skip it, and results through a shared packing are the fresh packing's."""

from __future__ import annotations

import numpy as np

from fastq import kernels

RNG = np.random.default_rng(5)


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
