"""Input checks shared by the statistics functions: dtype, layout, impl and NaN/Inf errors.

A tensor reaches C++ as a C-contiguous float32 view ``[outer, C, inner]``. Any numpy layout
is accepted: axes are first reordered by stride (a free view: transposed, Fortran-ordered and
channel-last-in-memory tensors need no copy); only a tensor that is still not contiguous
(sliced with steps, negative strides) is copied once, in that stride order.
"""

from __future__ import annotations

import math
from os import environ as _environ
from typing import Optional, Tuple

import numpy as np

from .. import kernels
from ..errors import ConfigError, DataError


def what(name: Optional[str]) -> str:
    return f"tensor {name!r}" if name is not None else "tensor"


def check_array(x, name: Optional[str]) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.dtype != np.float32:
        raise DataError(f"{what(name)} must have dtype float32, got {x.dtype} (shape {x.shape}); "
                        "convert it with x.astype(np.float32)")
    return x


def resolve_impl(impl: str) -> str:
    """'auto' -> the fastest impl this CPU runs (capped by FASTQ_ISA / kernels.use_impl).
    'auto' is memoized on the raw (use_impl cap, FASTQ_ISA) pair, as the float kernels'
    impl is (runtime/ops/nn_common.float_impl): a statistics pass resolves it per tensor."""
    if impl != "auto":
        return kernels._resolve_impl(impl, "exact32")
    raw = (getattr(kernels._override, "impl", None), _environ.get("FASTQ_ISA"))
    got = _AUTO.get(raw)
    if got is None:
        got = _AUTO[raw] = kernels._resolve_impl("auto", "exact32")
    return got


_AUTO: dict = {}   # (use_impl cap, FASTQ_ISA text) -> the impl 'auto' resolves to


def normalize_axis(axis, ndim: int, name: Optional[str]) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise ConfigError(f"channel_axis must be None or an int, got {axis!r}")
    a = int(axis)
    if not -ndim <= a < ndim:
        raise DataError(f"channel_axis {a} is out of range for {what(name)} with {ndim} "
                        f"dimension(s)")
    return a % ndim


def _stride_order(x: np.ndarray, keep: Optional[int]) -> list:
    """Axes ordered so that x.transpose(order) is C-contiguous whenever x's memory is dense."""
    ones = [a for a in range(x.ndim) if x.shape[a] == 1 and a != keep]
    rest = [a for a in range(x.ndim) if a not in ones]
    rest.sort(key=lambda a: -abs(x.strides[a]))
    return ones + rest


def as_flat(x: np.ndarray) -> np.ndarray:
    """A 1-D C-contiguous view of x's elements in memory order (a copy only if not dense)."""
    if x.flags.c_contiguous:
        return x.reshape(-1)
    y = x.transpose(_stride_order(x, None))
    if not y.flags.c_contiguous:
        y = np.ascontiguousarray(y)
    return y.reshape(-1)


def as_3d(x: np.ndarray, channel_axis: Optional[int], name: Optional[str]) -> np.ndarray:
    """x as a C-contiguous [outer, C, inner] view (C = 1 when channel_axis is None)."""
    if channel_axis is None:
        return as_flat(x).reshape(1, 1, -1)
    ax = normalize_axis(channel_axis, x.ndim, name)
    if x.flags.c_contiguous:
        y, pos = x, ax
    else:
        order = _stride_order(x, ax)
        y = x.transpose(order)
        if not y.flags.c_contiguous:
            y = np.ascontiguousarray(y)
        pos = order.index(ax)
    outer = math.prod(y.shape[:pos])
    inner = math.prod(y.shape[pos + 1:])
    return y.reshape(outer, y.shape[pos], inner)


def require_nonempty(x3: np.ndarray, op: str, name: Optional[str], shape: Tuple[int, ...]):
    if x3.shape[0] * x3.shape[2] == 0:
        raise DataError(f"{op} of an empty {what(name)} (shape {shape}): no values to reduce")


def raise_nonfinite(x: np.ndarray, op: str, name: Optional[str]):
    bad = ~np.isfinite(x)
    count = int(np.count_nonzero(bad))
    first = tuple(int(i) for i in np.argwhere(bad)[0]) if count else ()
    raise DataError(f"{what(name)} (shape {x.shape}) contains {count} NaN/Inf value(s), first at "
                    f"index {first}; {op} needs finite data")
