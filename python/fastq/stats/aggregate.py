"""Aggregators across samples, with POT's semantics (tools/pot/.../statistics/functions/
aggregation.py): ``values`` holds one reduced value per sample (axis 0 = samples), shape (N,)
per tensor or (N, C) per channel; every aggregator works per channel.

- min / max / mean / median: over axis 0.
- mean_no_outliers / median_no_outliers: per channel, keep v with q01 <= v <= q99 (numpy
  linear quantiles at 0.01 and 0.99, bounds inclusive), then mean / median of what is kept.
- hl_estimator (Hodges-Lehmann): 0.5 * median of v_i + v_j over pairs i > j (the diagonal
  i == j is excluded, as POT's ``np.tril_indices(n, -1)``), per channel.

Two deliberate departures where POT returns NaN: a channel whose 1%-99% window keeps no
value (possible only for N = 2) falls back to the plain mean / median, and hl_estimator of a
single sample is that sample. Means sum in float64; results have the values' float dtype
(min, max, medians and hl_estimator are exactly numpy's).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DataError

__all__ = ["AGGREGATORS", "aggregate", "check_aggregator"]

AGGREGATORS = ("min", "max", "mean", "median", "mean_no_outliers", "median_no_outliers",
               "hl_estimator")
_OUTLIER_ALPHA = 0.01
_HL_CHUNK = 1 << 22  # pairwise sums materialised per channel chunk (elements)


def check_aggregator(name: str) -> str:
    if name not in AGGREGATORS:
        raise ConfigError(f"unknown aggregator {name!r}; valid: {', '.join(AGGREGATORS)}")
    return name


def _no_outliers(v: np.ndarray, median: bool) -> np.ndarray:
    lo = np.quantile(v, _OUTLIER_ALPHA, axis=0)
    hi = np.quantile(v, 1.0 - _OUTLIER_ALPHA, axis=0)
    keep = (v >= lo) & (v <= hi)
    kept = keep.sum(axis=0)
    ok = kept > 0  # false only for N = 2 with distinct values: fall back to all values
    if median:
        out = np.median(v, axis=0)
        if np.any(ok):
            out[ok] = np.nanmedian(np.where(keep[:, ok], v[:, ok], np.nan), axis=0)
        return out.astype(v.dtype)
    v64 = v.astype(np.float64)
    out = np.where(keep, v64, 0.0).sum(axis=0) / np.maximum(kept, 1)
    return np.where(ok, out, v64.mean(axis=0)).astype(v.dtype)


def _hl(v: np.ndarray) -> np.ndarray:
    n, c = v.shape
    if n == 1:
        return v[0].copy()
    i, j = np.triu_indices(n, 1)  # pairs i < j: the same multiset of sums as POT's i > j
    out = np.empty(c, dtype=v.dtype)
    step = max(1, _HL_CHUNK // i.size)
    for c0 in range(0, c, step):  # bounded memory: never all pairs of all channels at once
        part = v[:, c0:c0 + step]
        sums = part[i] + part[j]  # in the values' dtype, as np.add.outer in POT
        out[c0:c0 + step] = np.median(sums, axis=0) * v.dtype.type(0.5)
    return out


def aggregate(values, name: str) -> np.ndarray:
    """Aggregate per-sample values (axis 0 = samples; shape (N,) or (N, C)) with ``name``."""
    check_aggregator(name)
    v = np.asarray(values)
    if v.ndim not in (1, 2):
        raise DataError(f"aggregate needs values of shape (N,) or (N, C), got {v.shape}")
    if v.shape[0] == 0:
        raise DataError(f"aggregate {name!r} of zero samples")
    if not np.issubdtype(v.dtype, np.floating):
        v = v.astype(np.float64)
    if not np.all(np.isfinite(v)):
        raise DataError(f"aggregate {name!r}: per-sample values contain NaN/Inf")
    per_tensor = v.ndim == 1
    v2 = v[:, None] if per_tensor else v
    if name == "min":
        r = v2.min(axis=0)
    elif name == "max":
        r = v2.max(axis=0)
    elif name == "mean":
        r = v2.mean(axis=0, dtype=np.float64).astype(v2.dtype)
    elif name == "median":
        r = np.median(v2, axis=0)
    elif name == "mean_no_outliers":
        r = _no_outliers(v2, median=False)
    elif name == "median_no_outliers":
        r = _no_outliers(v2, median=True)
    else:
        r = _hl(v2)
    return r[0] if per_tensor else r
