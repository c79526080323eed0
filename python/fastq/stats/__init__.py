"""fastq.stats: calibration statistics computed in C++, streamed, mergeable.

Per-sample statistics (``reduce.py``): ``minmax``, ``min``, ``max``, ``abs_max``, ``mean``,
``quantile``, ``abs_quantile``, ``histogram`` (+ ``rebin``), numpy-like. ``channel_axis=None``
reduces the whole tensor; an int (negative allowed) keeps that axis, giving shape (C,).
Per-channel reductions walk contiguous inner runs (NCHW axis 1 needs no transposition copy).

Collectors (``collectors.py``): ``MinMaxCollector``, ``AbsMaxCollector``, ``MeanCollector``,
``HistogramCollector``, ``PerSampleCollector`` — ``update`` / ``merge`` / ``result`` /
``state`` / ``from_state``. Aggregators across samples (``aggregate.py``): POT's min, max,
mean, median, mean_no_outliers, median_no_outliers, hl_estimator.

Policies:

- Input: float32 only (anything else raises DataError). Any numpy layout: axes are reordered
  by stride for free; a tensor that is still not dense (stepped slices, negative strides) is
  copied once. Kernels are single-threaded and release the GIL.
- NaN/Inf: every C++ pass detects non-finite values in the same pass, and the call raises
  ``fastq.DataError`` naming the tensor (``name=``), the count and the first index. Nothing is
  silently skipped; a collector is left unchanged by a failed update.
- Empty tensors: min/max/abs_max/mean/quantile raise DataError (numpy raises ValueError for
  min/max of empty); ``histogram`` counts nothing (range (0, 1) if none is given, as numpy);
  collectors ignore empty updates. A single element is its own min/max/quantile/mean.
- Exactness: min/max/abs_max and histogram counts equal numpy's exactly (same float32 edges;
  bins decided by comparisons with the edges); quantile equals
  ``numpy.quantile(x, q, method="linear")`` bit for bit for a Python-float q; mean is float64
  from a double sum in a fixed order (every impl returns the same bits).
- Names: an unknown reducer or aggregator raises ``fastq.ConfigError`` listing valid names.
- ``impl=`` ("auto", "ref", "avx2", "avx512vnni") picks the kernels; "auto" follows
  ``fastq.kernels.default_impl`` (FASTQ_ISA, ``kernels.use_impl``). Every impl gives the same
  results.
"""

from .aggregate import AGGREGATORS, aggregate
from .collectors import (AbsMaxCollector, HistogramCollector, MeanCollector, MinMaxCollector,
                         PerSampleCollector, from_state)
from .reduce import (REDUCERS, abs_max, abs_quantile, histogram, max, mean, min, minmax,
                     quantile, rebin, reduce)

__all__ = [
    "AGGREGATORS", "AbsMaxCollector", "HistogramCollector", "MeanCollector", "MinMaxCollector",
    "PerSampleCollector", "REDUCERS", "abs_max", "abs_quantile", "aggregate", "from_state",
    "histogram", "max", "mean", "min", "minmax", "quantile", "rebin", "reduce",
]
