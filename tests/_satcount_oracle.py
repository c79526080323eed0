"""Independent numpy statement of the saturation-counting contracts (DESIGN.md section 3):
each output's u8 x s8 products listed in reduction order ((kh, kw, c) per group for convs, k for
GEMMs), paired per tap or flat, each pair sum clipped to int16; returns the sat16pair sums, the
exact32 sums and the per-channel count of pair sums that sit on an int16 limit."""

import numpy as np


def conv_oracle(x, w, *, group, strides, pads, dil, zp, pairing):
    """(sat16pair sums, exact32 sums, per-oc limit counts) from the listed products."""
    N, C, H, W = x.shape
    OC, Cg, KH, KW = w.shape
    OCg = OC // group
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])),
                constant_values=zp)
    OH = (H + pads[0] + pads[2] - dil[0] * (KH - 1) - 1) // strides[0] + 1
    OW = (W + pads[1] + pads[3] - dil[1] * (KW - 1) - 1) // strides[1] + 1
    sat = np.zeros((N, OC, OH, OW), np.int64)
    exact = np.zeros((N, OC, OH, OW), np.int64)
    counts = np.zeros(OC, np.int64)
    for g in range(group):
        xs = xp[:, g * Cg:(g + 1) * Cg]
        taps = [xs[:, :, kh * dil[0]:kh * dil[0] + strides[0] * (OH - 1) + 1:strides[0],
                       kw * dil[1]:kw * dil[1] + strides[1] * (OW - 1) + 1:strides[1]]
                for kh in range(KH) for kw in range(KW)]
        xt = np.stack(taps, axis=1)                                   # [N, T, Cg, OH, OW]
        wt = w[g * OCg:(g + 1) * OCg].astype(np.int64).reshape(OCg, Cg, KH * KW)
        p = xt[:, None] * wt.transpose(0, 2, 1)[None, :, :, :, None, None]  # [N,OCg,T,Cg,..]
        if pairing == "per_tap":   # each tap's channels padded to even: pairs within a tap
            p = np.pad(p, ((0, 0), (0, 0), (0, 0), (0, Cg % 2), (0, 0), (0, 0)))
            f = p.reshape(N, OCg, -1, OH, OW)
        else:                      # pairs over the flat (kh, kw, c) index
            f = p.reshape(N, OCg, -1, OH, OW)
            f = np.pad(f, ((0, 0), (0, 0), (0, f.shape[2] % 2), (0, 0), (0, 0)))
        pair = f[:, :, 0::2] + f[:, :, 1::2]
        clipped = np.clip(pair, -32768, 32767)
        sat[:, g * OCg:(g + 1) * OCg] = clipped.sum(axis=2)
        exact[:, g * OCg:(g + 1) * OCg] = f.sum(axis=2)
        counts[g * OCg:(g + 1) * OCg] = ((clipped == 32767) | (clipped == -32768)).sum(
            axis=(0, 2, 3, 4))
    return sat.astype(np.int32), exact.astype(np.int32), counts


def gemm_oracle(a, b):
    """(sat16pair, exact32, per-column limit counts) of u8 a[M, K] @ s8 b[K, N]."""
    p = a.astype(np.int64)[:, :, None] * b.astype(np.int64)[None, :, :]      # [M, K, N]
    p = np.pad(p, ((0, 0), (0, p.shape[1] % 2), (0, 0)))
    clipped = np.clip(p[:, 0::2] + p[:, 1::2], -32768, 32767)
    counts = ((clipped == 32767) | (clipped == -32768)).sum(axis=(0, 1)).astype(np.int64)
    return clipped.sum(axis=1).astype(np.int32), p.sum(axis=1).astype(np.int32), counts


def conv_fills(case, rng):
    """(name, x u8 NCHW, w s8, x zero point) fills for a conv case (N, C, H, W, OC, KH, KW,
    group, ...): random, near-255 inputs, the int16-limit corners and small values."""
    N, C, H, W, OC, KH, KW, group = case[:8]
    xs, ws = (N, C, H, W), (OC, C // group, KH, KW)
    yield "random", rng.integers(0, 256, xs, dtype=np.uint8), \
        rng.integers(-128, 128, ws, dtype=np.int8), 11
    yield "high", rng.integers(200, 256, xs, dtype=np.uint8), \
        rng.integers(-128, 128, ws, dtype=np.int8), 250
    yield "255x127", np.full(xs, 255, np.uint8), np.full(ws, 127, np.int8), 0
    yield "255x-128", np.full(xs, 255, np.uint8), np.full(ws, -128, np.int8), 255
    yield "0x127", np.zeros(xs, np.uint8), np.full(ws, 127, np.int8), 0
    yield "small", rng.integers(0, 16, xs, dtype=np.uint8), \
        rng.integers(-8, 8, ws, dtype=np.int8), 3
