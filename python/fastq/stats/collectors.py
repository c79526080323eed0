"""Mergeable collectors: fold samples one at a time, in bounded memory, and combine shards.

Every collector has ``update(x)``, ``merge(other)`` (in place, returns self), ``result()``
and ``state() -> dict of numpy arrays`` / ``from_state(state)`` (``np.savez``-able, so shards
computed in other processes merge). merge(split halves) equals the whole: exactly for
min/max/abs_max, histogram counts and per-sample values; to float rounding for means (sums
are float64). Updates with zero elements change nothing; ``result()`` before any data raises
DataError.

HistogramCollector keeps a fixed range: the one given, else numpy's range of the first
non-empty update. Values outside it are clamped into the first/last bin and counted in
``clamped_low`` / ``clamped_high`` (so a too-narrow range is visible, never silent). Shards
merge only with identical edges. ``rebin(factor)`` coarsens exactly.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _core
from ..errors import ConfigError, DataError
from . import reduce as _r
from ._tensor import as_3d, as_flat, check_array, raise_nonfinite, resolve_impl, what
from .aggregate import aggregate, check_aggregator

__all__ = ["AbsMaxCollector", "HistogramCollector", "MeanCollector", "MinMaxCollector",
           "PerSampleCollector", "from_state"]


def _axis_state(axis) -> np.ndarray:
    return np.array([] if axis is None else [int(axis)], dtype=np.int64)


def _axis_from(a) -> Optional[int]:
    a = np.asarray(a)
    return None if a.size == 0 else int(a.reshape(-1)[0])


def _kind(state) -> str:
    try:
        return str(np.asarray(state["kind"]))
    except (KeyError, TypeError):
        raise ConfigError("collector state has no 'kind' entry") from None


def _x3(x, axis, name):
    x = check_array(x, name)
    return x, as_3d(x, axis, name)


class _Collector:
    kind = ""

    def _require_same(self, other):
        if type(other) is not type(self):
            raise ConfigError(f"cannot merge {type(other).__name__} into {type(self).__name__}")

    def _require_kind(self, state):
        if _kind(state) != self.kind:
            raise ConfigError(f"state of kind {_kind(state)!r} given to {type(self).__name__}")

    def __repr__(self):
        return f"{type(self).__name__}({self.state()!r})"


class _PerChannel(_Collector):
    """Shared: a channel axis, a sample count and per-channel arrays of fixed length C."""

    def __init__(self, channel_axis=None):
        if channel_axis is not None and (isinstance(channel_axis, bool)
                                         or not isinstance(channel_axis, (int, np.integer))):
            raise ConfigError(f"channel_axis must be None or an int, got {channel_axis!r}")
        self.channel_axis = None if channel_axis is None else int(channel_axis)
        self.samples = 0

    def _check_channels(self, have, got, name):
        if have is not None and have.shape != got.shape:
            raise DataError(f"{what(name)} has {got.size} channel(s) along axis "
                            f"{self.channel_axis}; earlier samples had {have.size}")

    def _require_same(self, other):
        super()._require_same(other)
        if other.channel_axis != self.channel_axis:
            raise ConfigError(f"cannot merge collectors with channel_axis {self.channel_axis} "
                              f"and {other.channel_axis}")

    def _out(self, a):
        return a[0] if self.channel_axis is None else a.copy()


class MinMaxCollector(_PerChannel):
    """Running (min, max) over all samples, per tensor or per channel."""
    kind = "minmax"

    def __init__(self, channel_axis=None):
        super().__init__(channel_axis)
        self._min = self._max = None

    def update(self, x, *, name: Optional[str] = None, impl: str = "auto"):
        x, x3 = _x3(x, self.channel_axis, name)
        if x3.shape[0] * x3.shape[2] == 0:
            return self
        mn, mx, nf = _core.stats_minmax(x3, resolve_impl(impl))
        if nf:
            raise_nonfinite(x, "minmax", name)
        self._fold(mn, mx, 1, name)
        return self

    def _fold(self, mn, mx, samples, name=None):
        self._check_channels(self._min, mn, name)
        self._min = mn.copy() if self._min is None else np.minimum(self._min, mn)
        self._max = mx.copy() if self._max is None else np.maximum(self._max, mx)
        self.samples += samples

    def merge(self, other: "MinMaxCollector"):
        self._require_same(other)
        if other._min is not None:
            self._fold(other._min, other._max, other.samples)
        return self

    def result(self):
        if self._min is None:
            raise DataError("MinMaxCollector.result(): no data collected")
        return self._out(self._min), self._out(self._max)

    def state(self) -> dict:
        empty = np.zeros(0, np.float32)
        return {"kind": np.array(self.kind), "channel_axis": _axis_state(self.channel_axis),
                "samples": np.array(self.samples, np.int64),
                "min": empty if self._min is None else self._min.copy(),
                "max": empty if self._max is None else self._max.copy()}

    @classmethod
    def from_state(cls, state: dict) -> "MinMaxCollector":
        c = cls(_axis_from(state["channel_axis"]))
        c._require_kind(state)
        mn = np.asarray(state["min"], np.float32)
        if mn.size:
            c._fold(mn, np.asarray(state["max"], np.float32), int(state["samples"]))
        return c


class AbsMaxCollector(_PerChannel):
    """Running max |x| over all samples, per tensor or per channel."""
    kind = "abs_max"

    def __init__(self, channel_axis=None):
        super().__init__(channel_axis)
        self._amax = None

    def update(self, x, *, name: Optional[str] = None, impl: str = "auto"):
        x, x3 = _x3(x, self.channel_axis, name)
        if x3.shape[0] * x3.shape[2] == 0:
            return self
        a, nf = _core.stats_absmax(x3, resolve_impl(impl))
        if nf:
            raise_nonfinite(x, "abs_max", name)
        self._fold(a, 1, name)
        return self

    def _fold(self, a, samples, name=None):
        self._check_channels(self._amax, a, name)
        self._amax = a.copy() if self._amax is None else np.maximum(self._amax, a)
        self.samples += samples

    def merge(self, other: "AbsMaxCollector"):
        self._require_same(other)
        if other._amax is not None:
            self._fold(other._amax, other.samples)
        return self

    def result(self):
        if self._amax is None:
            raise DataError("AbsMaxCollector.result(): no data collected")
        return self._out(self._amax)

    def state(self) -> dict:
        return {"kind": np.array(self.kind), "channel_axis": _axis_state(self.channel_axis),
                "samples": np.array(self.samples, np.int64),
                "abs_max": np.zeros(0, np.float32) if self._amax is None else self._amax.copy()}

    @classmethod
    def from_state(cls, state: dict) -> "AbsMaxCollector":
        c = cls(_axis_from(state["channel_axis"]))
        c._require_kind(state)
        a = np.asarray(state["abs_max"], np.float32)
        if a.size:
            c._fold(a, int(state["samples"]))
        return c


class MeanCollector(_PerChannel):
    """Running mean over all elements of all samples: float64 sums + element count."""
    kind = "mean"

    def __init__(self, channel_axis=None):
        super().__init__(channel_axis)
        self._sum = None
        self.count = 0

    def update(self, x, *, name: Optional[str] = None, impl: str = "auto"):
        x, x3 = _x3(x, self.channel_axis, name)
        if x3.shape[0] * x3.shape[2] == 0:
            return self
        s, nf = _core.stats_sum(x3, resolve_impl(impl))
        if nf:
            raise_nonfinite(x, "mean", name)
        self._fold(s, x3.shape[0] * x3.shape[2], 1, name)
        return self

    def update_sums(self, sums, count: int, *, name: Optional[str] = None):
        """Fold one sample given as what ``update`` computes of it: its float64 sums (per
        channel, or one) and the element count behind each (e.g. sums a fused kernel took)."""
        if count:
            self._fold(np.asarray(sums, np.float64), count, 1, name)
        return self

    def _fold(self, s, count, samples, name=None):
        self._check_channels(self._sum, s, name)
        self._sum = s.copy() if self._sum is None else self._sum + s
        self.count += int(count)
        self.samples += samples

    def merge(self, other: "MeanCollector"):
        self._require_same(other)
        if other._sum is not None:
            self._fold(other._sum, other.count, other.samples)
        return self

    def result(self):
        if self._sum is None:
            raise DataError("MeanCollector.result(): no data collected")
        return self._out(self._sum / float(self.count))

    def state(self) -> dict:
        return {"kind": np.array(self.kind), "channel_axis": _axis_state(self.channel_axis),
                "samples": np.array(self.samples, np.int64),
                "count": np.array(self.count, np.int64),
                "sum": np.zeros(0) if self._sum is None else self._sum.copy()}

    @classmethod
    def from_state(cls, state: dict) -> "MeanCollector":
        c = cls(_axis_from(state["channel_axis"]))
        c._require_kind(state)
        s = np.asarray(state["sum"], np.float64)
        if s.size:
            c._fold(s, int(state["count"]), int(state["samples"]))
        return c


class HistogramCollector(_Collector):
    """Fixed-range histogram over all samples (numpy's bins; out-of-range values clamped into
    the edge bins and counted in clamped_low / clamped_high)."""
    kind = "histogram"

    def __init__(self, bins: int = 2048, range=None):  # noqa: A002 - numpy's name
        self.bins = _r.check_bins(bins)
        self.edges = None
        if range is not None:
            lo, hi = _r.check_range(range)
            self.edges = _r.numpy_edges(lo, hi, self.bins, np.zeros(0, np.float32))
        self.counts = np.zeros(self.bins, np.int64)
        self.clamped_low = 0
        self.clamped_high = 0
        self.samples = 0

    def update(self, x, *, name: Optional[str] = None, impl: str = "auto"):
        x = check_array(x, name)
        flat = as_flat(x)
        if flat.size == 0:
            return self
        if self.edges is None:
            self.edges = _r.data_edges(flat, self.bins, impl, x, name)
        full = _r.histogram_full(flat, self.edges, impl, x, name)
        self.counts += full[:self.bins]
        self.counts[0] += full[self.bins]
        self.counts[-1] += full[self.bins + 1]
        self.clamped_low += int(full[self.bins])
        self.clamped_high += int(full[self.bins + 1])
        self.samples += 1
        return self

    def merge(self, other: "HistogramCollector"):
        self._require_same(other)
        if other.edges is None:
            return self
        if self.edges is None and not self.counts.any() and self.bins == other.bins:
            self.edges = other.edges.copy()
        if self.bins != other.bins or not np.array_equal(self.edges, other.edges):
            raise DataError("cannot merge histograms with different bins or ranges "
                            f"({self.bins} bins over {self._range()} vs {other.bins} over "
                            f"{other._range()}); give every shard the same range=")
        self.counts += other.counts
        self.clamped_low += other.clamped_low
        self.clamped_high += other.clamped_high
        self.samples += other.samples
        return self

    def _range(self):
        return None if self.edges is None else (float(self.edges[0]), float(self.edges[-1]))

    def result(self):
        """(counts int64 (bins,), edges float32 (bins + 1,))."""
        if self.edges is None:
            raise DataError("HistogramCollector.result(): no data collected")
        return self.counts.copy(), self.edges.copy()

    def rebin(self, factor: int) -> "HistogramCollector":
        """A new collector whose bins are runs of ``factor`` of these (exact)."""
        if self.edges is None:
            raise DataError("HistogramCollector.rebin(): no data collected")
        counts, edges = _r.rebin(self.counts, self.edges, factor)
        c = HistogramCollector(counts.size)
        c.counts, c.edges = counts, edges
        c.clamped_low, c.clamped_high, c.samples = (self.clamped_low, self.clamped_high,
                                                    self.samples)
        return c

    def state(self) -> dict:
        return {"kind": np.array(self.kind), "bins": np.array(self.bins, np.int64),
                "edges": np.zeros(0, np.float32) if self.edges is None else self.edges.copy(),
                "counts": self.counts.copy(),
                "clamped": np.array([self.clamped_low, self.clamped_high], np.int64),
                "samples": np.array(self.samples, np.int64)}

    @classmethod
    def from_state(cls, state: dict) -> "HistogramCollector":
        c = cls(int(state["bins"]))
        c._require_kind(state)
        edges = np.asarray(state["edges"], np.float32)
        counts = np.asarray(state["counts"], np.int64)
        if counts.shape != (c.bins,) or edges.size not in (0, c.bins + 1):
            raise ConfigError(f"histogram state has counts {counts.shape} and edges "
                              f"{edges.shape} for {c.bins} bins")
        c.edges = edges.copy() if edges.size else None
        c.counts = counts.copy()
        c.clamped_low, c.clamped_high = (int(v) for v in np.asarray(state["clamped"]))
        c.samples = int(state["samples"])
        return c


class PerSampleCollector(_PerChannel):
    """Reduces each sample in C++ (``reducer``), keeps only those few values per sample, and
    aggregates them across samples (``aggregator``) — POT's range estimator.

    For quantile reducers give ``q``, or POT's ``outlier_prob`` with ``side``: q = outlier_prob
    for side="min", 1 - outlier_prob for side="max" (POT's get_tensor_statistics)."""
    kind = "per_sample"

    def __init__(self, reducer: str, aggregator: str, channel_axis=None, *,
                 q: Optional[float] = None, outlier_prob: Optional[float] = None,
                 side: str = "max"):
        super().__init__(channel_axis)
        if side not in ("min", "max"):
            raise ConfigError(f"side must be 'min' or 'max', got {side!r}")
        if outlier_prob is not None:
            if q is not None:
                raise ConfigError("give q or outlier_prob, not both")
            if reducer in ("quantile", "abs_quantile"):
                op = _r._check_q(outlier_prob)
                q = op if side == "min" else 1.0 - op
        self.q = _r.check_reducer(reducer, q)
        self.reducer = reducer
        self.aggregator = check_aggregator(aggregator)
        self._values = []

    def update(self, x, *, name: Optional[str] = None, impl: str = "auto"):
        """Add one sample (its reduced value(s) are kept, the tensor is not)."""
        v = np.asarray(_r.reduce(x, self.reducer, self.channel_axis, self.q, name=name,
                                 impl=impl))
        if self._values:
            self._check_channels(self._values[0], v, name)
        self._values.append(v)
        self.samples += 1
        return self

    def update_batch(self, x, *, name: Optional[str] = None, impl: str = "auto"):
        """Each x[i] along axis 0 is one sample (POT reduces per batch item); channel_axis
        refers to the axes of one item."""
        x = check_array(x, name)
        if x.ndim == 0:
            raise DataError(f"{what(name)} has no batch axis (0-d)")
        for i in range(x.shape[0]):
            self.update(x[i], name=name, impl=impl)
        return self

    def values(self) -> np.ndarray:
        """Per-sample values, shape (N,) or (N, C)."""
        if not self._values:
            raise DataError("PerSampleCollector: no data collected")
        return np.stack(self._values)

    def result(self):
        return aggregate(self.values(), self.aggregator)

    def merge(self, other: "PerSampleCollector"):
        self._require_same(other)
        if (other.reducer, other.aggregator) != (self.reducer, self.aggregator) or \
                other.q != self.q:
            raise ConfigError(f"cannot merge {other.reducer}/{other.aggregator}/q={other.q} "
                              f"into {self.reducer}/{self.aggregator}/q={self.q}")
        if self._values and other._values:
            self._check_channels(self._values[0], other._values[0], None)
        self._values.extend(v.copy() for v in other._values)
        self.samples += other.samples
        return self

    def state(self) -> dict:
        vals = np.stack(self._values) if self._values else np.zeros(0, np.float32)
        return {"kind": np.array(self.kind), "channel_axis": _axis_state(self.channel_axis),
                "reducer": np.array(self.reducer), "aggregator": np.array(self.aggregator),
                "q": np.array(np.nan if self.q is None else self.q, np.float64),
                "values": vals, "samples": np.array(self.samples, np.int64)}

    @classmethod
    def from_state(cls, state: dict) -> "PerSampleCollector":
        q = float(np.asarray(state["q"]))
        c = cls(str(np.asarray(state["reducer"])), str(np.asarray(state["aggregator"])),
                _axis_from(state["channel_axis"]), q=None if np.isnan(q) else q)
        c._require_kind(state)
        vals = np.asarray(state["values"])
        c._values = [v.copy() for v in vals] if int(state["samples"]) else []
        c.samples = int(state["samples"])
        return c


_KINDS = {k.kind: k for k in (MinMaxCollector, AbsMaxCollector, MeanCollector,
                              HistogramCollector, PerSampleCollector)}


def from_state(state: dict):
    """Rebuild any collector from its ``state()`` (e.g. loaded with ``np.load``)."""
    kind = _kind(state)
    if kind not in _KINDS:
        raise ConfigError(f"unknown collector kind {kind!r}; valid: {', '.join(_KINDS)}")
    return _KINDS[kind].from_state(state)
