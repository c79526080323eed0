"""Statistics -> QParams. Activations: the estimator's aggregated min/max, a group's members
(Concat inputs, MaxPool in/out) sharing the union of their ranges; a range reaching the
sentinel magnitude (|x| >= 1e30, e.g. attention masks of -3.4e38) is not quantized, and a
weighted layer it fed is left in float (ONNX Runtime cannot fuse it). Weights:
per-channel reductions of the initializer, then the saturation fix on the chosen layers.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from .. import qparams as qp_mod
from .. import stats as fstats
from ..qparams import QParams
from .placement import Plan
from .statistics import Stats

SENTINEL = 1e30


def activation_qparams(plan: Plan, stats: Stats) -> Tuple[Dict[str, QParams], List[str]]:
    decisions: List[str] = []
    groups: Dict[str, List[str]] = {}
    for t, q in plan.activations.items():
        groups.setdefault(q.group or f"tensor:{t}", []).append(t)
    out: Dict[str, QParams] = {}
    for gid, members in groups.items():
        if not all(t in plan.activations for t in members):
            continue                              # dropped with a sentinel partner
        los, his = [], []
        for t in members:
            lo, hi = stats.ranges[t]
            if lo is None:
                lo = -np.abs(hi)
            los.append(np.min(lo) if np.ndim(lo) and len(members) > 1 else lo)
            his.append(np.max(hi) if np.ndim(hi) and len(members) > 1 else hi)
        lo = los[0] if len(members) == 1 else np.min(los)
        hi = his[0] if len(members) == 1 else np.max(his)
        if max(np.max(np.abs(lo)), np.max(np.abs(hi))) >= SENTINEL:
            gone = []
            for t in members:
                gone += plan.drop(t)
            decisions.append(f"not quantized: {', '.join(members)} (calibrated range "
                             f"[{np.min(lo):.3g}, {np.max(hi):.3g}] holds sentinel values "
                             f"|x| >= {SENTINEL:g}, e.g. an attention mask)"
                             + (f"; with it the other inputs of its int8 op: "
                                f"{', '.join(t for t in gone if t not in members)}"
                                if len(gone) > len(members) else ""))
            continue
        if not all(t in plan.activations for t in members):
            continue
        layer = plan.activations[members[0]].layer
        qp = qp_mod.from_layer(layer, lo, hi)
        for t in members:
            out[t] = qp
    read = {e for q in plan.activations.values() for e in q.consumers}
    for name in list(plan.weights):
        if (name, 0) not in read:     # its input lost its quantizer (sentinels): ORT would
            plan.release(name, "left in float: its input is not quantized (sentinel "
                         "values), and ONNX Runtime runs a layer with int8 weights but a "
                         "float input as a float op on dequantized weights")
            decisions.append(f"{name}: {plan.ignored[name]}")
    return out, decisions


def weight_qparams(inits: Dict[str, np.ndarray], plan: Plan) -> Dict[str, QParams]:
    out: Dict[str, QParams] = {}
    for name, wq in plan.weights.items():
        w = np.ascontiguousarray(inits[wq.tensor], dtype=np.float32)
        est = wq.layer.range_estimator

        def red(side):
            if side is None:
                return None
            kw = {}
            if side.type.value in ("quantile", "abs_quantile"):
                p = side.outlier_prob
                kw["q"] = p if side is est.min and side.type.value == "quantile" else 1.0 - p
            return np.asarray(fstats.reduce(w, side.type.value, wq.axis, name=wq.tensor, **kw),
                              np.float64)
        lo, hi = red(est.min), red(est.max)
        qp = qp_mod.from_layer(wq.layer, lo, hi)
        if wq.saturation_fix:
            qp = qp_mod.apply_saturation_fix(qp)
        out[name] = qp
    return out
