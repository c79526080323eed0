"""The one statistics pass: run the float model over the calibration samples and reduce exactly
the planned tensors in C++ (``fastq.stats``): per-sample min/max/abs-max/quantiles (kept, a few
floats per sample) aggregated across samples as POT does, per-channel means for bias
correction, and each tensor's per-sample shape. Activations are never kept.

Batching: when every input's batch axis is dynamic and consecutive samples are batch-1 feeds
of one shape, up to ``batch`` samples run as one feed and each tensor is reduced per sample
with one C++ call over axis 0 (channel_axis=0). A probe run of one sample decides whether
every planned tensor carries the batch on axis 0; if not, samples run one at a time.
Several estimators may be requested for one tensor: each distinct per-sample reduction is
computed once and kept (``Stats.per_sample``), and ``Stats.range_for`` aggregates any
estimator built from collected reductions without another pass (AccuracyAware's trials).
A tensor wanted only for its per-channel mean may arrive as a ``ChannelSums`` (the session's
``channel_sums``: its fused Conv+Relu/Clip summed it before the clamp), folded as is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import onnx
from onnx import numpy_helper

from .. import stats as fstats
from ..config.types import Granularity
from ..errors import DataError
from ..runtime.parallel import ordered_map
from ..runtime.registry import ChannelSums
from ..stats._tensor import raise_nonfinite

BATCH_BYTES = 1 << 20          # input bytes per batched run (bounds live activations: at 8 MiB
                               # MobileNetV2-112 peaked at +198 MiB, at 1 MiB +31 MiB, same time)
MAX_BATCH = 64


@dataclass
class RangeRequest:
    """Per-sample min and max reductions of one tensor, aggregated over samples."""
    tensor: str
    estimator: object            # RangeEstimatorConfig (resolved)
    channel_axis: Optional[int]


def side_key(side, side_name: str, axis: Optional[int]) -> tuple:
    """(reducer, quantile, axis): what one side of an estimator computes per sample."""
    reducer = side.type.value
    q = None
    if reducer in ("quantile", "abs_quantile"):
        p = side.outlier_prob
        q = p if side_name == "min" else 1.0 - p
    ax = (axis if axis is not None else 1) if side.granularity is Granularity.PERCHANNEL \
        else None
    return (reducer, q, ax)


@dataclass
class Stats:
    ranges: Dict[str, Tuple[Optional[np.ndarray], np.ndarray]] = field(default_factory=dict)
    means: Dict[str, np.ndarray] = field(default_factory=dict)
    shapes: Dict[str, tuple] = field(default_factory=dict)      # one sample's shape
    samples: int = 0
    seconds: float = 0.0
    batched: bool = False
    # (tensor, side_key) -> per-sample values, axis 0 = samples
    per_sample: Dict[tuple, np.ndarray] = field(default_factory=dict)

    def range_for(self, tensor: str, estimator, channel_axis: Optional[int]
                  ) -> Tuple[Optional[np.ndarray], np.ndarray]:
        """(min, max) of ``tensor`` under ``estimator`` from the kept per-sample values;
        KeyError when a needed reduction was not requested in the pass."""
        out = []
        for name in ("min", "max"):
            side = getattr(estimator, name)
            if side is None:
                out.append(None)
                continue
            v = self.per_sample[(tensor, side_key(side, name, channel_axis))]
            out.append(np.asarray(fstats.aggregate(v, side.aggregator.value), np.float64))
        return out[0], out[1]


DERIVABLE = ("min", "max", "abs_max")      # per-tensor reducers rescale() can derive


def channel_keys(axis: int = -1) -> Tuple[tuple, tuple]:
    """The per-sample per-channel min and max side keys ``collect(channel_minmax=...)`` adds."""
    return ("min", None, axis), ("max", None, axis)


def rescale(stats: "Stats", tensor: str, s: np.ndarray, ranges: List["RangeRequest"],
            axis: int = -1) -> None:
    """``tensor`` is now X / s (s > 0 per channel on ``axis``): replace its per-tensor
    per-sample min/max/abs_max (derived from the kept per-channel ones, exact in real
    arithmetic), its mean (a per-channel mean on ``axis`` divides by s) and its ranges."""
    s = np.asarray(s, np.float64)
    kmin, kmax = channel_keys(axis)
    lo = stats.per_sample[(tensor, kmin)] / s          # [samples, channels]
    hi = stats.per_sample[(tensor, kmax)] / s
    for key in [k for t, k in stats.per_sample if t == tensor and k[2] is None]:
        reducer = key[0]
        if reducer not in DERIVABLE:
            raise ValueError(f"{tensor}: reducer {reducer!r} cannot be derived per channel")
        v = lo.min(axis=1) if reducer == "min" else hi.max(axis=1) if reducer == "max" else \
            np.maximum(np.abs(lo), np.abs(hi)).max(axis=1)
        stats.per_sample[(tensor, key)] = v.astype(stats.per_sample[(tensor, key)].dtype)
    if tensor in stats.means:
        stats.means[tensor] = stats.means[tensor] / s
    for r in ranges:
        if r.tensor == tensor:
            stats.ranges[tensor] = stats.range_for(r.tensor, r.estimator, r.channel_axis)
            break


class _Side:
    """One per-sample reduction of one tensor (shared by every estimator that uses it)."""

    def __init__(self, key: tuple):
        self.reducer, self.q, self.axis = key
        self.values: List[np.ndarray] = []

    def reduce(self, x, name, batched: bool) -> np.ndarray:
        """Per-sample values of ``x`` (axis 0 = samples when ``batched``, else one sample)."""
        if not batched:
            v = np.asarray(fstats.reduce(x, self.reducer, self.axis, self.q, name=name))
            return np.atleast_1d(v)[None] if self.axis is not None else v.reshape(1)
        if self.axis is not None:                      # per-channel: one sample at a time
            return np.concatenate([self.reduce(x[i:i + 1], name, False)
                                   for i in range(x.shape[0])], axis=0)
        return np.asarray(fstats.reduce(x, self.reducer, 0, self.q, name=name)).reshape(-1)

    def result(self) -> np.ndarray:
        return np.concatenate(self.values, axis=0)


def _reduce_sides(per: Dict[tuple, _Side], x, name, batched: bool) -> Dict[tuple, np.ndarray]:
    """Every side's per-sample values for one tensor. The min/max/abs_max sides of one axis
    share one C++ min-max pass (abs_max = max(|min|, |max|), exact for finite data; a
    non-finite value raises in that pass as it would in abs_max's own)."""
    out: Dict[tuple, np.ndarray] = {}
    shared: Dict[Optional[int], List[tuple]] = {}
    for key, side in per.items():
        if side.reducer in DERIVABLE:
            shared.setdefault(side.axis, []).append(key)
        else:
            out[key] = side.reduce(x, name, batched)
    for axis, keys in shared.items():
        if len(keys) == 1:
            out[keys[0]] = per[keys[0]].reduce(x, name, batched)
            continue
        if axis is None:
            if batched:
                mn, mx = fstats.minmax(x, 0, name=name)
            else:
                mn, mx = (np.asarray(v).reshape(1) for v in fstats.minmax(x, None, name=name))
        else:
            parts = [fstats.minmax(x[i:i + 1], axis, name=name) for i in range(x.shape[0])] \
                if batched else [fstats.minmax(x, axis, name=name)]
            mn = np.stack([np.atleast_1d(p[0]) for p in parts])
            mx = np.stack([np.atleast_1d(p[1]) for p in parts])
        for key in keys:
            r = per[key].reducer
            out[key] = mn if r == "min" else mx if r == "max" else \
                np.maximum(np.abs(mn), np.abs(mx))
    return out


def _batchable(session, samples) -> bool:
    for arg in session.get_inputs():
        if arg.shape is None or not arg.shape or isinstance(arg.shape[0], int):
            return False
    return all(np.shape(x)[:1] == (1,) for x in samples[0].values())


def with_dynamic_batch(model: onnx.ModelProto, copy: bool = True
                       ) -> Optional[onnx.ModelProto]:
    """A copy of ``model`` whose inputs' and outputs' leading dimension 1 is symbolic, so the
    statistics pass can stack batch-1 samples (exporters often fix the batch at 1); None when
    some input is not batch-1 shaped. Inner shapes are re-inferred by the session; a graph
    that hard-codes the batch (e.g. Reshape to [1, -1]) is caught by the per-tensor batch
    check of ``collect`` or by the caller's equivalence probe, and runs unbatched.
    ``copy=False`` edits ``model`` itself (the caller's own, about to be discarded)."""
    ins = [vi for vi in model.graph.input
           if vi.name not in {t.name for t in model.graph.initializer}]
    if not ins:
        return None
    for vi in ins:
        dims = vi.type.tensor_type.shape.dim
        if not vi.type.tensor_type.HasField("shape") or not dims or dims[0].dim_value != 1:
            return None
    if copy:
        m = onnx.ModelProto()
        m.CopyFrom(model)
    else:
        m = model
    inits = {t.name for t in m.graph.initializer}
    for vi in list(m.graph.input) + list(m.graph.output):
        if vi.name in inits or not vi.type.tensor_type.HasField("shape"):
            continue
        dims = vi.type.tensor_type.shape.dim
        if dims and dims[0].dim_value == 1:
            dims[0].Clear()
            dims[0].dim_param = "fastq_batch"
    _reshape_keeps_batch(m)
    del m.graph.value_info[:]
    return m


def _reshape_keeps_batch(m: onnx.ModelProto) -> int:
    """Reshape targets that hard-code the batch as 1 ([1, ...], allowzero 0) become [0, ...]
    (copy the input's dim 0) where the reshaped tensor's inferred dim 0 is 1: the same result
    for batch-1 feeds, and the batch carried through for stacked ones (the caller's
    equivalence probe still decides). Returns how many targets changed."""
    dim0 = {}
    for vi in list(m.graph.value_info) + list(m.graph.input):
        dims = vi.type.tensor_type.shape.dim
        if vi.type.tensor_type.HasField("shape") and dims:
            dim0[vi.name] = dims[0].dim_value if dims[0].HasField("dim_value") else None
    inits = {t.name: t for t in m.graph.initializer}
    users: Dict[str, list] = {}
    for n in m.graph.node:
        for k, x in enumerate(n.input):
            users.setdefault(x, []).append((n, k))
    changed = 0
    for n in m.graph.node:
        if n.op_type != "Reshape" or len(n.input) < 2 or n.input[1] not in inits or any(
                a.name == "allowzero" and a.i for a in n.attribute):
            continue
        if dim0.get(n.input[0]) != 1:
            continue
        t = inits[n.input[1]]
        shape = numpy_helper.to_array(t)
        if shape.ndim != 1 or shape.size < 1 or shape[0] != 1:
            continue
        if any(u.op_type != "Reshape" or k != 1 or dim0.get(u.input[0]) != 1 or any(
                a.name == "allowzero" and a.i for a in u.attribute)
               for u, k in users[n.input[1]]):
            continue          # shared with a use this rewrite is not proven for
        new = shape.copy()
        new[0] = 0
        t.CopyFrom(numpy_helper.from_array(new, t.name))
        changed += 1
    return changed


def batches(session, samples, limit: int = MAX_BATCH) -> List[dict]:
    """Feeds of up to ``limit`` concatenated batch-1 samples when the model's batch axes are
    dynamic (for reductions that do not care which sample a value came from), else the
    samples themselves."""
    if len(samples) < 2 or not _batchable(session, samples):
        return list(samples)
    return stacked_groups(samples, limit)


def batch_limit(samples) -> int:
    """Samples per concatenated run: ``MAX_BATCH``, fewer when a run's input would pass
    ``BATCH_BYTES``."""
    per = max(1, sum(np.asarray(v).nbytes for v in samples[0].values()))
    return int(min(MAX_BATCH, max(1, BATCH_BYTES // per)))


def concat_samples(samples, idx) -> dict:
    """One feed of the samples ``idx`` concatenated on axis 0."""
    return {k: np.concatenate([samples[i][k] for i in idx]) for k in samples[0]}


def stacked_groups(samples, limit: int) -> List[dict]:
    """Consecutive same-shape samples concatenated, at most ``limit`` per feed."""
    return [concat_samples(samples, idx) for idx in _groups(samples, limit)]


def _groups(samples, limit) -> List[List[int]]:
    """Consecutive runs of samples with identical shapes, at most ``limit`` long."""
    out: List[List[int]] = []
    key_prev = None
    for i, s in enumerate(samples):
        key = tuple((k, np.shape(v)) for k, v in s.items())
        if out and key == key_prev and len(out[-1]) < limit:
            out[-1].append(i)
        else:
            out.append([i])
        key_prev = key
    return out


def collect(session, samples: List[dict], ranges: List[RangeRequest],
            means: Dict[str, int], progress=None, batch: Optional[int] = None,
            workers: Optional[int] = None, channel_minmax=()) -> Stats:
    """Run ``session`` (a float fastq.InferenceSession) once over ``samples``.

    Groups of samples (batches, or single samples) run on ``workers`` threads (default
    ``fastq.get_num_threads()``; runtime/parallel.py); each group's per-sample reductions and
    mean partial sums are merged in sample order, so the result is bit-identical for any
    worker count. ``channel_minmax``: tensors that also keep per-sample per-channel min and max
    on the last axis (``channel_keys``; SmoothQuant derives its scales and ``rescale``s from
    them)."""
    t0 = time.perf_counter()
    sides: Dict[str, Dict[tuple, _Side]] = {}
    for t in channel_minmax:
        for key in channel_keys():
            sides.setdefault(t, {})[key] = _Side(key)
    for r in ranges:
        per = sides.setdefault(r.tensor, {})
        for s in ("min", "max"):
            side = getattr(r.estimator, s)
            if side is not None:
                key = side_key(side, s, r.channel_axis)
                if key not in per:
                    per[key] = _Side(key)
    mean_axes = dict(means)
    mean_cols = {t: fstats.MeanCollector(channel_axis=ax) for t, ax in means.items()}
    names = set(sides) | set(mean_cols)
    out = Stats()

    def run_group(feeds: dict, idx: List[int], strict: bool) -> tuple:
        """One run over the samples ``idx`` stacked on axis 0 (one index: that sample's own
        feed): (per-side values, mean partials, shapes) of this group only."""
        vals: Dict[tuple, np.ndarray] = {}
        partial: Dict[str, object] = {}
        shapes: Dict[str, tuple] = {}
        n = len(idx)

        def callback(name, x):
            if strict and (np.ndim(x) < 1 or _shape(x)[0] != n):
                raise _NotBatched(name)
            reduce_checked(name, x, idx, vals, partial, shapes)
        try:
            session.run_with_intermediates(feeds, names, callback)
        except DataError as e:
            raise _sample_error(session, samples, idx, e) from None
        return vals, partial, shapes

    def reduce_checked(name, x, idx: List[int], *res) -> None:
        try:
            reduce_one(name, x, len(idx) > 1, *res)
        except DataError:
            why = _nonfinite_sample(name, x, idx)
            if why is None:
                raise
            raise _named(why) from None

    def reduce_one(name, x, batched: bool, vals, partial, shapes) -> None:
        if isinstance(x, ChannelSums):    # a mean-only tensor, summed by its fused conv
            shapes[name] = (1,) + tuple(x.shape[1:]) if batched else tuple(x.shape)
            if x.nonfinite:
                raise_nonfinite(x.bad, "mean", name)
            partial[name] = fstats.MeanCollector(channel_axis=mean_axes[name]).update_sums(
                x.sums, x.count, name=name)
            return
        x32 = x if x.dtype == np.float32 else np.asarray(x, np.float32)
        shapes[name] = (1,) + tuple(x.shape[1:]) if batched else tuple(x.shape)
        for key, v in _reduce_sides(sides.get(name, {}), x32, name, batched).items():
            vals[(name, key)] = v
        if name in mean_axes:
            partial[name] = fstats.MeanCollector(channel_axis=mean_axes[name]).update(
                x32, name=name)

    def merge(res: tuple, n: int) -> None:
        vals, partial, shapes = res
        for name, shp in shapes.items():
            out.shapes.setdefault(name, shp)
        for (name, key), v in vals.items():
            sides[name][key].values.append(v)
        for name, c in partial.items():
            mean_cols[name].merge(c)
        if progress is not None:
            progress.update(n)

    start = 0
    if batch is None:
        batch = batch_limit(samples)
    if batch > 1 and len(samples) > 1 and _batchable(session, samples):
        try:
            probe = session.run_with_intermediates(samples[0], names)
        except DataError as e:
            raise _sample_error(session, samples, [0], e) from None
        if all(np.ndim(v) >= 1 and _shape(v)[0] == 1 for v in probe.values()):
            res = ({}, {}, {})
            for name, x in probe.items():       # the probe's tensors count as sample 0
                reduce_checked(name, x, [0], *res)
            merge(res, 1)
            start = 1
            out.batched = True
    if out.batched:
        groups = [[i + start for i in idx] for idx in _groups(samples[start:], batch)]

        def run_batch(idx):
            return run_group(concat_samples(samples, idx), idx, len(idx) > 1)
        try:
            for idx, res in zip(groups, ordered_map(run_batch, groups, workers)):
                merge(res, len(idx))
        except _NotBatched:                     # e.g. a Reshape with a fixed batch:
            return collect(session, samples, ranges, means, progress, batch=1,
                           workers=workers, channel_minmax=channel_minmax)
    else:
        for res in ordered_map(lambda i: run_group(samples[i], [i], False),
                               range(len(samples)), workers):
            merge(res, 1)
    out.samples = len(samples)
    for t, per in sides.items():
        for key, side in per.items():
            out.per_sample[(t, key)] = side.result()
    for r in ranges:                      # the first request of a tensor gives its range
        if r.tensor not in out.ranges:
            out.ranges[r.tensor] = out.range_for(r.tensor, r.estimator, r.channel_axis)
    for t, c in mean_cols.items():
        out.means[t] = np.asarray(c.result(), np.float64)
    out.seconds = time.perf_counter() - t0
    return out


class _NotBatched(Exception):
    pass


def _named(msg: str) -> DataError:
    """A DataError that names its calibration sample (users still see a plain DataError)."""
    e = DataError(msg)
    e.names_sample = True
    return e


def _sample_error(session, samples, idx: List[int], e: DataError) -> Exception:
    """``e`` (a node's error in the run of the samples ``idx``) naming the sample: a stacked
    run's samples are re-run one by one to find it (only on this error path); when none
    fails alone, the stacking itself failed (a constant with the batch fixed): _NotBatched,
    and collect runs every sample alone."""
    if getattr(e, "names_sample", False):
        return e
    msg = str(e)
    k = idx[0]
    if len(idx) > 1:
        for k in idx:
            try:
                session.run(None, samples[k])
            except DataError as e1:
                msg = str(e1)
                break
        else:                           # only the stacked run fails: run them one by one
            return _NotBatched(msg)
    return _named(f"calibration sample {k}: {msg}")


def _nonfinite_sample(name: str, x, idx: List[int]) -> Optional[str]:
    """The error for a float tensor holding NaN/Inf on the samples ``idx`` (stacked on axis 0
    when more than one), naming the first such sample and the index within its own tensor;
    None when ``x`` is finite or not a float array (the collector's error stands). A fused
    conv's ``ChannelSums`` carries its tensor in ``bad`` when it is not finite."""
    if isinstance(x, ChannelSums):
        x = x.bad
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        return None
    bad = ~np.isfinite(x)
    if not bad.any():
        return None
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    shape = tuple(x.shape)
    k = idx[0]
    if len(idx) > 1:                    # stacked: row r is sample idx[r]
        k = idx[first[0]]
        bad = bad[first[0]:first[0] + 1]
        first, shape = (0,) + first[1:], (1,) + shape[1:]
    return (f"calibration sample {k}: the float model's tensor {name!r} (shape {shape}) holds "
            f"{int(np.count_nonzero(bad))} NaN/Inf value(s), first at index {first}; "
            f"calibration statistics need finite values")


def _shape(x) -> tuple:
    return x.shape if isinstance(x, ChannelSums) else np.shape(x)
