"""``to_dict``: a loaded config back to plain JSON-serializable data, every default filled in.

Contract: the result is a full POT-form config ({"compression": {"target_device",
"algorithms"}}) and ``load(to_dict(x)) == x``. Top-level params are all written (unset
optional ones as null); inside ``weights``/``activations``/``range_estimator`` unset fields
are left out, because there "unset" means "the preset and the hardware config decide".
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any, Dict

from .types import (AccuracyAwareParams, AlgorithmConfig, IgnoredScope, LayerQuantConfig,
                    MetricConfig, OpPattern, QuantizationConfig, RangeEstimatorConfig,
                    StatConfig)

_SPARSE = (LayerQuantConfig, RangeEstimatorConfig, StatConfig)


def _value(v: Any) -> Any:
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, OpPattern):
        return {"type": v.type, "attributes": {k: _value(a) for k, a in v.attributes}}
    if isinstance(v, IgnoredScope):
        return {"scope": list(v.scope), "operations": [_value(o) for o in v.operations],
                "patterns": list(v.patterns)}
    if isinstance(v, MetricConfig):
        return {"name": v.name, "baseline_value": v.baseline_value}
    if isinstance(v, AccuracyAwareParams):
        out = _value(v.base)
        for f in dataclasses.fields(v):
            if f.name != "base":
                out[f.name] = _value(getattr(v, f.name))
        return out
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        sparse = isinstance(v, _SPARSE)
        return {f.name: _value(getattr(v, f.name)) for f in dataclasses.fields(v)
                if not (sparse and getattr(v, f.name) is None)}
    if isinstance(v, (list, tuple)):
        return [_value(x) for x in v]
    return v


def algorithm_to_dict(algo: AlgorithmConfig) -> Dict[str, Any]:
    return {"name": algo.name.value, "params": _value(algo.params)}


def to_dict(cfg: Any) -> Dict[str, Any]:
    """The config (any form ``load`` accepts) as plain data with all defaults filled in."""
    from .parse import load
    q: QuantizationConfig = load(cfg)
    return {"compression": {"target_device": q.target_device.value,
                            "algorithms": [algorithm_to_dict(a) for a in q.algorithms]}}
