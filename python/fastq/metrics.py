"""Metrics for AccuracyAwareQuantization: one value per validation sample, aggregated.

A metric is a callable ``metric(outputs, annotation) -> float`` (``outputs`` = the model's
output arrays in order) aggregated by the mean, higher is better; or an object with
``per_sample(outputs, annotation)``, ``aggregate(values)`` and ``higher_is_better``.
``as_metric`` normalizes both; a per-sample call that raises is a DataError naming the sample.
"""

from __future__ import annotations

from typing import Any, Callable, List, Sequence

import numpy as np

from .errors import ConfigError, DataError


def top1(outputs: Sequence[np.ndarray], annotation: Any) -> float:
    """1.0 when the argmax of output 0 (over all its elements: batch of one) is the label."""
    return float(int(np.argmax(np.asarray(outputs[0]))) == int(np.asarray(annotation).ravel()[0]))


def neg_mse(outputs: Sequence[np.ndarray], annotation: Any) -> float:
    """Minus the mean squared error of output 0 against the annotation array."""
    d = np.asarray(outputs[0], np.float64) - np.asarray(annotation, np.float64)
    return float(-np.mean(d * d))


class Metric:
    """The normalized form: ``per_sample``, ``aggregate``, ``higher_is_better``, ``name``."""

    def __init__(self, per_sample: Callable, aggregate: Callable[[np.ndarray], float],
                 higher_is_better: bool, name: str):
        self._per_sample = per_sample
        self._aggregate = aggregate
        self.higher_is_better = bool(higher_is_better)
        self.name = name

    def per_sample(self, outputs: List[np.ndarray], annotation: Any, index: int) -> float:
        try:
            v = float(self._per_sample(outputs, annotation))
        except Exception as e:
            raise DataError(f"metric {self.name!r} raised on validation sample {index}: "
                            f"{type(e).__name__}: {e}") from e
        if not np.isfinite(v):
            raise DataError(f"metric {self.name!r} returned {v} on validation sample {index}")
        return v

    def aggregate(self, values: np.ndarray) -> float:
        return float(self._aggregate(np.asarray(values, np.float64)))

    def drop(self, reference: float, value: float, relative: bool) -> float:
        """How much worse ``value`` is than ``reference`` (positive = worse)."""
        d = (reference - value) if self.higher_is_better else (value - reference)
        if relative:
            if reference == 0:
                return 0.0 if d <= 0 else float("inf")
            d = d / abs(reference)
        return float(d)


NAMED = {"top1": top1, "neg_mse": neg_mse}


def as_metric(metric: Any) -> Metric:
    if metric is None:
        raise ConfigError("AccuracyAwareQuantization needs a metric: pass metric=callable "
                          "(outputs, annotation) -> float, or e.g. fastq.metrics.top1")
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str):
        if metric not in NAMED:
            raise ConfigError(f"metric: unknown name {metric!r}; known: {sorted(NAMED)}")
        return Metric(NAMED[metric], np.mean, True, metric)
    if hasattr(metric, "per_sample"):
        agg = getattr(metric, "aggregate", None) or np.mean
        return Metric(metric.per_sample, agg, getattr(metric, "higher_is_better", True),
                      getattr(metric, "name", type(metric).__name__))
    if callable(metric):
        return Metric(metric, np.mean, True, getattr(metric, "__name__", "metric"))
    raise ConfigError(f"metric must be a callable or an object with per_sample, got "
                      f"{type(metric).__name__}")
