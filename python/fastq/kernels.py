"""int8 kernels: GEMM with a chosen arithmetic, packed weights, the quantized-linear epilogue.

``arith`` fixes the integer result (``exact32`` as VNNI computes, ``sat16pair`` as AVX2
``vpmaddubsw`` computes); ``impl`` only picks who computes it. ``impl="auto"`` is the fastest
impl this CPU runs, capped by the ``FASTQ_ISA`` environment variable or by ``use_impl``.
Inputs are validated here so errors name the argument; non-contiguous arrays are copied.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator, Optional, Union

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


def pack_weights(b: np.ndarray) -> PackedWeights:
    """Pack int8 weights ``b[K, N]`` once for every impl; K is padded here, never by callers."""
    if not isinstance(b, np.ndarray):
        raise KernelError(f"b must be a numpy array, got {type(b).__name__}")
    if b.dtype != np.int8:
        raise KernelError(f"b must have dtype int8, got {b.dtype} (shape {b.shape})")
    if b.ndim != 2:
        raise KernelError(f"b must be 2-D [K, N], got shape {b.shape}")
    return _core.pack_weights(b)


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
