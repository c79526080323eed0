"""The one statistics pass: run the float model once per calibration sample and feed the C++
collectors of ``fastq.stats`` with exactly the planned tensors (per-sample reductions kept,
activations never). Also per-channel means for bias correction and each tensor's shape.

Contract: ``collect(session, samples, requests)`` -> ``Stats``; a sample is one feed dict.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from .. import stats as fstats
from ..config.types import Granularity

_SIDE_DEFAULT = {"min": "min", "max": "max"}


@dataclass
class RangeRequest:
    """Per-sample min and max reductions of one tensor, aggregated over samples."""
    tensor: str
    estimator: object            # RangeEstimatorConfig (resolved)
    channel_axis: Optional[int]


@dataclass
class Stats:
    ranges: Dict[str, Tuple[Optional[np.ndarray], np.ndarray]] = field(default_factory=dict)
    means: Dict[str, np.ndarray] = field(default_factory=dict)
    shapes: Dict[str, tuple] = field(default_factory=dict)
    samples: int = 0
    seconds: float = 0.0


def _collector(side, axis, side_name):
    granular = (axis if axis is not None else 1) \
        if side.granularity is Granularity.PERCHANNEL else None
    kw = {}
    if side.type.value in ("quantile", "abs_quantile"):
        kw = {"outlier_prob": side.outlier_prob, "side": side_name}
    return fstats.PerSampleCollector(side.type.value, side.aggregator.value, granular, **kw)


def collect(session, samples: List[dict], ranges: List[RangeRequest],
            means: Dict[str, int], progress=None) -> Stats:
    """Run ``session`` (a float fastq.InferenceSession) over ``samples`` once."""
    t0 = time.perf_counter()
    cols: Dict[str, list] = {}
    for r in ranges:
        pair = []
        for side_name in ("min", "max"):
            side = getattr(r.estimator, side_name)
            if side is None:
                pair.append(None)
                continue
            pair.append(_collector(side, r.channel_axis, side_name))
        cols[r.tensor] = pair
    mean_cols = {t: fstats.MeanCollector(channel_axis=ax) for t, ax in means.items()}
    out = Stats()

    def callback(name, x):
        if name not in out.shapes:
            out.shapes[name] = tuple(x.shape)
        x32 = x if x.dtype == np.float32 else np.asarray(x, np.float32)
        for c in cols.get(name, ()):
            if c is not None:
                c.update(x32, name=name)
        mc = mean_cols.get(name)
        if mc is not None:
            mc.update(x32, name=name)

    names = set(cols) | set(mean_cols)
    for i, feeds in enumerate(samples):
        session.run_with_intermediates(feeds, names, callback)
        if progress is not None:
            progress.update(1)
    out.samples = len(samples)
    for t, (lo, hi) in cols.items():
        out.ranges[t] = (None if lo is None else np.asarray(lo.result(), np.float64),
                         np.asarray(hi.result(), np.float64))
    for t, c in mean_cols.items():
        out.means[t] = np.asarray(c.result(), np.float64)
    out.seconds = time.perf_counter() - t0
    return out
