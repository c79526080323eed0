"""Per-sample statistics of one float32 tensor, numpy-like, computed in C++ (``fastq._core``).

``channel_axis=None`` reduces the whole tensor to a numpy scalar; an int (negative allowed)
keeps that axis and returns an array of shape (C,). min/max/abs_max/quantile equal numpy's
results exactly (quantile: ``numpy.quantile(..., method="linear")`` with a Python-float q, bit
for bit); mean is float64 from a double-precision sum (numpy's float32 mean rounds more).
"""

from __future__ import annotations

import numbers
from typing import Optional, Tuple

import numpy as np

from .. import _core
from ..errors import ConfigError
from ._tensor import (as_3d, as_flat, check_array, raise_nonfinite, require_nonempty,
                      resolve_impl)

__all__ = ["abs_max", "abs_quantile", "histogram", "max", "mean", "min", "minmax", "quantile",
           "rebin", "REDUCERS", "reduce"]



def _out(r: np.ndarray, channel_axis):
    return r[0] if channel_axis is None else r


def _prep(x, channel_axis, op, name):
    x = check_array(x, name)
    x3 = as_3d(x, channel_axis, name)
    require_nonempty(x3, op, name, x.shape)
    return x, x3


def minmax(x, channel_axis=None, *, name: Optional[str] = None, impl: str = "auto"):
    """(min, max) of x in one pass; per channel along ``channel_axis`` if given."""
    x, x3 = _prep(x, channel_axis, "minmax", name)
    mn, mx, nf = _core.stats_minmax(x3, resolve_impl(impl))
    if nf:
        raise_nonfinite(x, "minmax", name)
    return _out(mn, channel_axis), _out(mx, channel_axis)


def min(x, channel_axis=None, *, name: Optional[str] = None, impl: str = "auto"):  # noqa: A001
    return minmax(x, channel_axis, name=name, impl=impl)[0]


def max(x, channel_axis=None, *, name: Optional[str] = None, impl: str = "auto"):  # noqa: A001
    return minmax(x, channel_axis, name=name, impl=impl)[1]


def abs_max(x, channel_axis=None, *, name: Optional[str] = None, impl: str = "auto"):
    """max |x| (float32); per channel along ``channel_axis`` if given."""
    x, x3 = _prep(x, channel_axis, "abs_max", name)
    r, nf = _core.stats_absmax(x3, resolve_impl(impl))
    if nf:
        raise_nonfinite(x, "abs_max", name)
    return _out(r, channel_axis)


def sum_count(x, channel_axis=None, *, name: Optional[str] = None, impl: str = "auto"):
    """(float64 sums, element count per channel) — the mergeable state of a mean."""
    x = check_array(x, name)
    x3 = as_3d(x, channel_axis, name)
    s, nf = _core.stats_sum(x3, resolve_impl(impl))
    if nf:
        raise_nonfinite(x, "mean", name)
    return s, x3.shape[0] * x3.shape[2]


def mean(x, channel_axis=None, *, name: Optional[str] = None, impl: str = "auto"):
    """Mean as float64 (sum in double, fixed order); per channel along ``channel_axis``."""
    x, x3 = _prep(x, channel_axis, "mean", name)
    s, nf = _core.stats_sum(x3, resolve_impl(impl))
    if nf:
        raise_nonfinite(x, "mean", name)
    return _out(s / float(x3.shape[0] * x3.shape[2]), channel_axis)


def _check_q(q) -> float:
    if isinstance(q, bool) or not isinstance(q, numbers.Real) or not 0.0 <= float(q) <= 1.0:
        raise ConfigError(f"quantile q must be a number in [0, 1], got {q!r}")
    return float(q)


def quantile(x, q, channel_axis=None, *, name: Optional[str] = None, impl: str = "auto"):
    """Exactly ``np.quantile(x, q, axis=<all but channel_axis>)`` (linear method), float32."""
    q = _check_q(q)
    x, x3 = _prep(x, channel_axis, "quantile", name)
    r, nf = _core.stats_quantile(x3, q, False, resolve_impl(impl))
    if nf:
        raise_nonfinite(x, "quantile", name)
    return _out(r, channel_axis)


def abs_quantile(x, q, channel_axis=None, *, name: Optional[str] = None, impl: str = "auto"):
    """Exactly ``np.quantile(np.abs(x), q, ...)`` without materialising |x|."""
    q = _check_q(q)
    x, x3 = _prep(x, channel_axis, "abs_quantile", name)
    r, nf = _core.stats_quantile(x3, q, True, resolve_impl(impl))
    if nf:
        raise_nonfinite(x, "abs_quantile", name)
    return _out(r, channel_axis)


# ---- histograms ---------------------------------------------------------------------------

def check_bins(bins) -> int:
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or int(bins) < 1:
        raise ConfigError(f"bins must be a positive int, got {bins!r}")
    return int(bins)


def check_range(range) -> Tuple[float, float]:  # noqa: A002 - numpy's name
    try:
        lo, hi = (float(v) for v in range)
    except (TypeError, ValueError):
        raise ConfigError(f"range must be a pair of numbers (lo, hi), got {range!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
        raise ConfigError(f"range must be finite with lo <= hi, got {range!r}")
    return lo, hi


def numpy_edges(lo, hi, bins: int, like: np.ndarray) -> np.ndarray:
    """The bin edges numpy.histogram uses for a float32 array and an outer range (lo, hi):
    Python floats for a given range, float32 scalars for the data's own min/max."""
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1, endpoint=True, dtype=np.result_type(lo, hi, like))
    if np.any(edges[:-1] >= edges[1:]):
        raise ConfigError(f"Too many bins for the range ({float(lo)}, {float(hi)}): {bins} "
                          "float32 bins would not all have positive width (numpy refuses too)")
    return np.ascontiguousarray(edges, dtype=np.float32)


def histogram_full(flat: np.ndarray, edges: np.ndarray, impl: str, x, name, op="histogram"):
    """counts[bins + 2] (last two: below edges[0], above edges[-1]) of a 1-D float32 array."""
    counts, nf = _core.stats_histogram(flat, edges, resolve_impl(impl))
    if nf:
        raise_nonfinite(x, op, name)
    return counts


def data_edges(flat: np.ndarray, bins: int, impl: str, x, name) -> np.ndarray:
    if flat.size == 0:
        return numpy_edges(0, 1, bins, flat)
    mn, mx, nf = _core.stats_minmax(flat.reshape(1, 1, -1), resolve_impl(impl))
    if nf:
        raise_nonfinite(x, "histogram", name)
    return numpy_edges(mn[0], mx[0], bins, flat)


def histogram(x, bins: int = 2048, range=None, *, name: Optional[str] = None,  # noqa: A002
              impl: str = "auto") -> Tuple[np.ndarray, np.ndarray]:
    """``np.histogram(x, bins, range)`` for float32 x: same float32 edges, same int64 counts
    (bins are [e_i, e_i+1), the last one closed; values outside the range are not counted).
    range=None uses the data's min and max (an empty x gives range (0, 1), as numpy)."""
    bins = check_bins(bins)
    x = check_array(x, name)
    flat = as_flat(x)
    if range is None:
        edges = data_edges(flat, bins, impl, x, name)
    else:
        lo, hi = check_range(range)
        edges = numpy_edges(lo, hi, bins, flat)
    counts = histogram_full(flat, edges, impl, x, name)
    return counts[:bins], edges


def rebin(counts, edges, factor: int) -> Tuple[np.ndarray, np.ndarray]:
    """Merge each run of ``factor`` adjacent bins: exact, since every coarse bin is a union of
    whole fine bins (edges[::factor]). ``len(counts)`` must be divisible by ``factor``."""
    counts = np.asarray(counts)
    edges = np.asarray(edges)
    factor = check_bins(factor)
    if counts.ndim != 1 or edges.shape != (counts.size + 1,):
        raise ConfigError(f"rebin needs counts (B,) and edges (B+1,), got {counts.shape} and "
                          f"{edges.shape}")
    if counts.size % factor:
        raise ConfigError(f"rebin factor {factor} does not divide the {counts.size} bins")
    return counts.reshape(-1, factor).sum(axis=1), edges[::factor].copy()


# ---- reducer dispatch (used by PerSampleCollector) ----------------------------------------

REDUCERS = ("min", "max", "abs_max", "quantile", "abs_quantile", "mean")
_QUANTILE_REDUCERS = ("quantile", "abs_quantile")


def check_reducer(reducer: str, q) -> Optional[float]:
    if reducer not in REDUCERS:
        raise ConfigError(f"unknown reducer {reducer!r}; valid: {', '.join(REDUCERS)}")
    if reducer in _QUANTILE_REDUCERS:
        if q is None:
            raise ConfigError(f"reducer {reducer!r} needs q (or outlier_prob)")
        return _check_q(q)
    if q is not None:
        raise ConfigError(f"reducer {reducer!r} takes no q, got q={q!r}")
    return None


def reduce(x, reducer: str, channel_axis=None, q: Optional[float] = None, *,
           name: Optional[str] = None, impl: str = "auto"):
    """One named reduction of one sample: min, max, abs_max, quantile, abs_quantile, mean."""
    q = check_reducer(reducer, q)
    if reducer == "min":
        return min(x, channel_axis, name=name, impl=impl)
    if reducer == "max":
        return max(x, channel_axis, name=name, impl=impl)
    if reducer == "abs_max":
        return abs_max(x, channel_axis, name=name, impl=impl)
    if reducer == "quantile":
        return quantile(x, q, channel_axis, name=name, impl=impl)
    if reducer == "abs_quantile":
        return abs_quantile(x, q, channel_axis, name=name, impl=impl)
    return mean(x, channel_axis, name=name, impl=impl)
