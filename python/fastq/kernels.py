"""int8 kernels: GEMM with a chosen arithmetic, packed weights, the quantized-linear epilogue.

``arith`` fixes the integer result (``exact32`` as VNNI computes, ``sat16pair`` as AVX2
``vpmaddubsw`` computes); ``impl`` only picks who computes it. ``impl="auto"`` is the fastest
impl this CPU runs, capped by the ``FASTQ_ISA`` environment variable or by ``use_impl``.
Inputs are validated here so errors name the argument; non-contiguous arrays are copied.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections import OrderedDict
from typing import Callable, Iterator, Optional, Union

import numpy as np

from . import _core
from .errors import IsaError, KernelError

IMPLS = ("ref", "avx2", "avx512vnni")  # slowest to fastest
ARITHS = ("exact32", "sat16pair")
PackedWeights = _core.PackedWeights

_override = threading.local()


def _check_name(value: str, valid: tuple, what: str) -> str:
    if value not in valid:
        raise KernelError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return value


def available_impls() -> list:
    """Impls that are built into this module and that this CPU can run, slowest first."""
    built = set(_core.built_impls())
    return [i for i in IMPLS if i in built and not _core.impl_missing_feature(i)]


def _cap() -> Optional[str]:
    cap = getattr(_override, "impl", None)
    if cap is not None:
        return cap
    env = os.environ.get("FASTQ_ISA")
    if env:
        return _check_name(env.strip().lower(), IMPLS, "FASTQ_ISA value")
    return None


def default_impl(arith: str = "exact32") -> str:
    """The impl ``impl="auto"`` resolves to: the fastest available impl under the cap."""
    _check_name(arith, ARITHS, "arith")
    avail = available_impls()
    cap = _cap()
    if cap is not None:
        avail = [i for i in avail if IMPLS.index(i) <= IMPLS.index(cap)]
    return avail[-1]


@contextlib.contextmanager
def use_impl(impl: str) -> Iterator[None]:
    """Scoped cap on ``impl="auto"`` for this thread, e.g. ``with use_impl("ref"): ...``."""
    _check_name(impl, IMPLS, "impl")
    _resolve_impl(impl, "exact32")  # fail early if this CPU cannot run it
    prev = getattr(_override, "impl", None)
    _override.impl = impl
    try:
        yield
    finally:
        _override.impl = prev


def _resolve_impl(impl: str, arith: str) -> str:
    _check_name(arith, ARITHS, "arith")
    if impl == "auto":
        return default_impl(arith)
    _check_name(impl, IMPLS, "impl")
    if impl not in _core.built_impls():
        raise IsaError(f"impl {impl!r} is not built on this platform (reference kernels only)")
    missing = _core.impl_missing_feature(impl)
    if missing:
        raise IsaError(f"impl {impl!r} cannot run on this CPU: missing {missing}")
    return impl


def _as_2d(x, name: str, dtypes: tuple) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise KernelError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.dtype not in dtypes:
        want = " or ".join(np.dtype(d).name for d in dtypes)
        raise KernelError(f"{name} must have dtype {want}, got {x.dtype} (shape {x.shape})")
    if x.ndim != 2:
        raise KernelError(f"{name} must be 2-D, got shape {x.shape}")
    return np.ascontiguousarray(x)  # copies only when not C-contiguous


# Packed weights are immutable, so inside ``shared_packing()`` equal int8 weights share one
# packing: an AccuracyAware ranking builds dozens of sessions over the same weights (packing
# was ~4% of its time). Keyed by the weights' bytes (BLAKE2b), shape and packing options;
# least recently used entries go beyond PACK_CACHE_BYTES of weight bytes, and leaving the
# outermost ``shared_packing()`` forgets them all (a long-lived process keeps none). Below
# PACK_CACHE_MIN_BYTES, hashing would cost about what packing does.
PACK_CACHE_BYTES = 256 << 20
PACK_CACHE_MIN_BYTES = 4096
_PACK_CACHE: "OrderedDict[tuple, tuple]" = OrderedDict()
_PACK_LOCK = threading.Lock()
_pack_cached_bytes = 0
_pack_depth = 0


@contextlib.contextmanager
def shared_packing() -> Iterator[None]:
    """Within the block (any thread), equal int8 weights packed by ``pack_weights`` /
    ``pack_conv_weights`` share one packing; the outermost exit forgets them. Nests."""
    global _pack_depth
    with _PACK_LOCK:
        _pack_depth += 1
    try:
        yield
    finally:
        with _PACK_LOCK:
            _pack_depth -= 1
            last = _pack_depth == 0
        if last:
            clear_pack_cache()


def _shared_pack(w: np.ndarray, options: tuple, pack: Callable[[], object]):
    """``pack()`` of the C-contiguous int8 ``w``, or (inside ``shared_packing()``) the packing
    of equal weights made before."""
    global _pack_cached_bytes
    if _pack_depth == 0 or w.nbytes < PACK_CACHE_MIN_BYTES or w.nbytes > PACK_CACHE_BYTES:
        return pack()
    key = (w.shape, options, hashlib.blake2b(w.data, digest_size=20).digest())
    with _PACK_LOCK:
        hit = _PACK_CACHE.get(key)
        if hit is not None:
            _PACK_CACHE.move_to_end(key)
            return hit[0]
    packed = pack()
    with _PACK_LOCK:
        if key not in _PACK_CACHE:
            _PACK_CACHE[key] = (packed, w.nbytes)
            _pack_cached_bytes += w.nbytes
            while _pack_cached_bytes > PACK_CACHE_BYTES:
                _, (_, n) = _PACK_CACHE.popitem(last=False)
                _pack_cached_bytes -= n
    return packed


def clear_pack_cache() -> None:
    """Forget every shared packing (memory returns once no session holds them)."""
    global _pack_cached_bytes
    with _PACK_LOCK:
        _PACK_CACHE.clear()
        _pack_cached_bytes = 0


def pack_weights(b: np.ndarray) -> PackedWeights:
    """Pack int8 weights ``b[K, N]`` once for every impl; K is padded here, never by callers.
    Inside ``shared_packing()`` equal weights packed before share that packing."""
    if not isinstance(b, np.ndarray):
        raise KernelError(f"b must be a numpy array, got {type(b).__name__}")
    if b.dtype != np.int8:
        raise KernelError(f"b must have dtype int8, got {b.dtype} (shape {b.shape})")
    if b.ndim != 2:
        raise KernelError(f"b must be 2-D [K, N], got shape {b.shape}")
    b = np.ascontiguousarray(b)
    return _shared_pack(b, ("gemm",), lambda: _core.pack_weights(b))


def _packed(b: Union[np.ndarray, PackedWeights]) -> PackedWeights:
    return b if isinstance(b, PackedWeights) else pack_weights(b)


def gemm_u8s8(a: np.ndarray, b, *, arith: str = "exact32", impl: str = "auto") -> np.ndarray:
    """int32[M, N] = a (uint8[M, K]) @ b (int8[K, N] or PackedWeights) under ``arith``."""
    impl = _resolve_impl(impl, arith)
    a = _as_2d(a, "a", (np.uint8,))
    pb = _packed(b)
    if a.shape[1] != pb.k:
        raise KernelError(f"a has K={a.shape[1]} (shape {a.shape}) but b has K={pb.k} "
                          f"(shape {pb.shape})")
    return _core.gemm_u8s8(a, pb, arith, impl)


def qlinear(a: np.ndarray, packed, *, a_zero_point: int, a_scale: float, w_scales,
            bias=None, arith: str = "exact32", impl: str = "auto") -> np.ndarray:
    """float32[M, N] = (acc - a_zp * colsum(w)) * a_scale * w_scales[n] + bias[n].

    ``a`` is uint8 or int8 (int8 runs shifted by +128 with compensation, as hardware does).
    ``w_scales`` is a scalar or one scale per output channel.
    """
    impl = _resolve_impl(impl, arith)
    a = _as_2d(a, "a", (np.uint8, np.int8))
    pb = _packed(packed)
    if a.shape[1] != pb.k:
        raise KernelError(f"a has K={a.shape[1]} (shape {a.shape}) but the weights have "
                          f"K={pb.k} (shape {pb.shape})")
    lo, hi = (0, 255) if a.dtype == np.uint8 else (-128, 127)
    zp = int(a_zero_point)
    if not lo <= zp <= hi:
        raise KernelError(f"a_zero_point={zp} is outside the {a.dtype} range [{lo}, {hi}]")
    scale = float(a_scale)
    if not np.isfinite(scale) or scale <= 0:
        raise KernelError(f"a_scale must be a positive finite number, got {a_scale!r}")
    ws = np.ascontiguousarray(np.atleast_1d(np.asarray(w_scales, dtype=np.float32)))
    if ws.ndim != 1 or ws.shape[0] not in (1, pb.n):
        raise KernelError(f"w_scales must be a scalar or have N={pb.n} entries, got shape "
                          f"{np.shape(w_scales)}")
    if not np.all(np.isfinite(ws)) or np.any(ws <= 0):
        raise KernelError("w_scales must be positive and finite")
    if bias is not None:
        bias = np.ascontiguousarray(np.asarray(bias, dtype=np.float32))
        if bias.shape != (pb.n,):
            raise KernelError(f"bias must have shape ({pb.n},), got {bias.shape}")
    return _core.qlinear(a, pb, zp, scale, ws, bias, arith, impl)


# ----------------------------------------------------------------------------- convolution
PackedConvWeights = _core.PackedConvWeights
PAIRINGS = ("per_tap", "flat")


def pack_conv_weights(w: np.ndarray, *, group: int = 1,
                      pairing: str = "per_tap") -> PackedConvWeights:
    """Pack int8 conv weights ``w[OC, C/group, KH, KW]`` (or ``[OC, C/group, KW]`` for 1-D).

    ``pairing`` fixes how ``sat16pair`` pairs products when C/group is odd: ``per_tap`` pads
    each tap's channels to even (oneDNN-style kernels), ``flat`` pairs over the flat
    (kh, kw, c) index (im2col-then-GEMM engines). It never changes ``exact32`` results.
    Inside ``shared_packing()`` equal weights packed before with the same options share
    that packing.
    """
    if not isinstance(w, np.ndarray) or w.dtype != np.int8:
        raise KernelError(f"w must be an int8 numpy array, got "
                          f"{getattr(w, 'dtype', type(w).__name__)}")
    if w.ndim == 3:
        w = w[:, :, None, :]
    if w.ndim != 4:
        raise KernelError(f"w must be [OC, C/group, KH, KW] or [OC, C/group, KW], got shape "
                          f"{w.shape}")
    _check_name(pairing, PAIRINGS, "pairing")
    if int(group) < 1 or w.shape[0] % int(group):
        raise KernelError(f"group={group} must be >= 1 and divide OC={w.shape[0]}")
    w = np.ascontiguousarray(w)
    return _shared_pack(w, ("conv", int(group), pairing),
                        lambda: _core.pack_conv_weights(w, int(group), pairing))


def _conv_geometry(x: np.ndarray, packed: PackedConvWeights, strides, pads, dilations):
    """Normalize ONNX-style geometry to the 2-D form the core takes (1-D runs as H = 1)."""
    nd = x.ndim - 2
    if nd not in (1, 2):
        raise KernelError(f"x must be [N, C, W] or [N, C, H, W], got shape {x.shape}")
    strides = tuple(int(v) for v in (strides if strides is not None else (1,) * nd))
    dilations = tuple(int(v) for v in (dilations if dilations is not None else (1,) * nd))
    pads = tuple(int(v) for v in (pads if pads is not None else (0,) * (2 * nd)))
    if len(strides) != nd or len(dilations) != nd or len(pads) != 2 * nd:
        raise KernelError(f"for a {nd}-D conv give {nd} strides, {nd} dilations and {2 * nd} "
                          f"pads; got strides={strides}, dilations={dilations}, pads={pads}")
    if nd == 1:
        x = x[:, :, None, :]
        strides, dilations = (1,) + strides, (1,) + dilations
        pads = (0, pads[0], 0, pads[1])
        if packed.shape[2] != 1:
            raise KernelError("1-D input given 2-D weights")
    oc, cg, _, _ = packed.shape
    if x.shape[1] != cg * packed.group:
        raise KernelError(f"x has C={x.shape[1]} but the weights expect "
                          f"C={cg * packed.group} (C/group={cg}, group={packed.group})")
    return np.ascontiguousarray(x), strides, pads, dilations, nd


def _packed_conv(w, group, pairing) -> PackedConvWeights:
    if isinstance(w, PackedConvWeights):
        if group not in (None, w.group):
            raise KernelError(f"group={group} given but the packed weights have group={w.group}")
        if pairing not in (None, w.pairing):
            raise KernelError(f"pairing={pairing!r} given but the weights were packed with "
                              f"{w.pairing!r}")
        return w
    return pack_conv_weights(w, group=group or 1, pairing=pairing or "per_tap")


def _u8_conv_operands(x, w, group, pairing, strides, pads, dilations, x_zero_point):
    """Checked operands of a uint8-input conv: (packed weights, 4-D x, strides, pads,
    dilations, spatial rank)."""
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8:
        raise KernelError(f"x must be a uint8 numpy array, got "
                          f"{getattr(x, 'dtype', type(x).__name__)}")
    pw = _packed_conv(w, group, pairing)
    x4, st, pd, dl, nd = _conv_geometry(x, pw, strides, pads, dilations)
    if not 0 <= int(x_zero_point) <= 255:
        raise KernelError(f"x_zero_point={x_zero_point} is outside [0, 255]")
    return pw, x4, st, pd, dl, nd


def conv_u8s8(x: np.ndarray, w, *, strides=None, pads=None, dilations=None, group=None,
              x_zero_point: int = 0, pairing=None, arith: str = "exact32",
              impl: str = "auto") -> np.ndarray:
    """Raw int32 sums of a uint8 NCHW (or NCW) input with int8 weights under ``arith``.

    ``pads`` is ONNX's [begin..., end...]; padded positions read ``x_zero_point``, so
    subtracting ``x_zero_point * colsum`` gives the zero-point-corrected sums.
    """
    impl = _resolve_impl(impl, arith)
    pw, x4, st, pd, dl, nd = _u8_conv_operands(x, w, group, pairing, strides, pads, dilations,
                                               x_zero_point)
    out = _core.conv_u8s8(x4, pw, st, pd, dl, int(x_zero_point), arith, impl)
    return out[:, :, 0, :] if nd == 1 else out


def qconv(x: np.ndarray, w, *, x_zero_point: int, x_scale: float, w_scales, bias=None,
          strides=None, pads=None, dilations=None, group=None, pairing=None,
          arith: str = "exact32", impl: str = "auto") -> np.ndarray:
    """float32 conv of a quantized input (uint8 or int8) with int8 weights: the qlinear
    epilogue ``(acc - zp*colsum[oc]) * x_scale * w_scales[oc] + bias[oc]`` per channel."""
    impl = _resolve_impl(impl, arith)
    if not isinstance(x, np.ndarray) or x.dtype not in (np.uint8, np.int8):
        raise KernelError(f"x must be a uint8 or int8 numpy array, got "
                          f"{getattr(x, 'dtype', type(x).__name__)}")
    pw = _packed_conv(w, group, pairing)
    x4, st, pd, dl, nd = _conv_geometry(x, pw, strides, pads, dilations)
    oc = pw.shape[0]
    lo, hi = (0, 255) if x.dtype == np.uint8 else (-128, 127)
    if not lo <= int(x_zero_point) <= hi:
        raise KernelError(f"x_zero_point={x_zero_point} is outside the {x.dtype} range")
    scale = float(x_scale)
    if not np.isfinite(scale) or scale <= 0:
        raise KernelError(f"x_scale must be a positive finite number, got {x_scale!r}")
    ws = np.ascontiguousarray(np.atleast_1d(np.asarray(w_scales, dtype=np.float32)))
    if ws.ndim != 1 or ws.shape[0] not in (1, oc):
        raise KernelError(f"w_scales must be a scalar or have OC={oc} entries, got shape "
                          f"{np.shape(w_scales)}")
    if bias is not None:
        bias = np.ascontiguousarray(np.asarray(bias, dtype=np.float32))
        if bias.shape != (oc,):
            raise KernelError(f"bias must have shape ({oc},), got {bias.shape}")
    out = _core.qconv(x4, pw, st, pd, dl, int(x_zero_point), scale, ws, bias, arith, impl)
    return out[:, :, 0, :] if nd == 1 else out


# ------------------------------------------------------------------- saturation analysis
SATCOUNT_IMPLS = ("ref", "avx512vnni")


def gemm_u8s8_satcount(a: np.ndarray, b, *, impl: str = "auto"):
    """One pass computing ``(c_sat, c_exact, limit_counts)`` for ``a @ b``:

    ``c_sat`` equals ``gemm_u8s8(a, b, arith="sat16pair")``, ``c_exact`` equals
    ``gemm_u8s8(a, b, arith="exact32")``, and ``limit_counts[n]`` (int64) is how many pair
    sums of column n, over all rows, ``vpmaddubsw`` returned at an int16 limit (32767 or
    -32768): every clipped pair, plus any pair whose exact sum equals a limit. The error
    itself is ``c_exact - c_sat``. Kernels exist for ``ref`` and ``avx512vnni``; ``auto``
    picks the fastest of those this CPU runs.
    """
    impl = _satcount_impl(impl)
    a = _as_2d(a, "a", (np.uint8,))
    pb = _packed(b)
    if a.shape[1] != pb.k:
        raise KernelError(f"a has K={a.shape[1]} (shape {a.shape}) but b has K={pb.k} "
                          f"(shape {pb.shape})")
    return _core.gemm_u8s8_satcount(a, pb, impl)


def _satcount_impl(impl: str) -> str:
    if impl == "auto":
        cap = default_impl("sat16pair")
        impl = "avx512vnni" if cap == "avx512vnni" else "ref"
    elif impl not in SATCOUNT_IMPLS:
        _check_name(impl, IMPLS, "impl")
        raise KernelError(f"the saturation-counting kernels have no {impl!r} kernel; valid: "
                          f"{', '.join(SATCOUNT_IMPLS)}")
    return _resolve_impl(impl, "sat16pair")


def conv_u8s8_satcount(x: np.ndarray, w, *, strides=None, pads=None, dilations=None,
                       group=None, x_zero_point: int = 0, pairing=None, impl: str = "auto"):
    """The conv form of ``gemm_u8s8_satcount``: ``(c_sat, c_exact, limit_counts)`` where
    ``c_sat`` equals ``conv_u8s8(..., arith="sat16pair")`` with the weights' pairing,
    ``c_exact`` equals ``conv_u8s8(..., arith="exact32")`` and ``limit_counts[oc]`` (int64)
    counts the pair sums of output channel ``oc`` (over all outputs) that ``vpmaddubsw``
    returned at an int16 limit. Each output has ``ceil(K / 2)`` pairs, K = KH*KW*C/group
    (per-tap pairing: C/group rounded up to even; a depthwise per-tap pair is one product
    beside a zero pad, so it never reaches a limit). Same arguments as ``conv_u8s8``."""
    impl = _satcount_impl(impl)
    pw, x4, st, pd, dl, nd = _u8_conv_operands(x, w, group, pairing, strides, pads, dilations,
                                               x_zero_point)
    sat, exact, counts = _core.conv_u8s8_satcount(x4, pw, st, pd, dl, int(x_zero_point), impl)
    if nd == 1:
        sat, exact = sat[:, :, 0, :], exact[:, :, 0, :]
    return sat, exact, counts


def conv_pairs_per_output(packed: PackedConvWeights) -> int:
    """Pair sums behind one conv output: ceil(K / 2), K the reduction length in the pairing."""
    oc, cg, kh, kw = packed.shape
    cpad = cg + (cg % 2) if packed.pairing == "per_tap" else cg
    return (kh * kw * cpad + 1) // 2
