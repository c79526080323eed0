"""AccuracyAware's settings search before any revert: the mixed preset (``convert_to_mixed_
preset``) and the range-estimator / bias-correction grid (``tune_hyperparams``).

Contract: ``mixed_params(p)``, ``grid_stage1(p)``, ``grid_stage2(p)`` -> ``[(label, params)]``;
``requantize(state, params)`` -> ``Trial`` (the QDQ model, its report and the state to revert
from) without another statistics pass: the one pass of ``run_default`` was given every trial's
estimators (``extra_params``) and kept each distinct per-sample reduction (``Stats.per_sample``).
A trial re-runs placement, QParams, bias correction (fast: one small run; full: 20% of the
calibration samples through the quantized model) and the export only.
"""

from __future__ import annotations

# POT sources (tools/pot/openvino/tools/pot/algorithms/quantization/...):
# - accuracy_aware_common/utils.py is_preset_performance, get_mixed_preset_config: the mixed
#   preset is the same config with preset "mixed", activations asymmetric, weights symmetric.
# - optimization/params_tuning.py ParamsGridSearchAlgorithm._grid_search_space: stage 1 tries
#   the weights estimator {min: min, max: max} alone, then each of the 3 x 3 activation
#   estimators (min: min/min, quantile/mean p=1e-3, quantile/mean p=1e-4; max: max/max,
#   quantile/mean 1e-3, quantile/mean 1e-4) alone; stage 2 tries use_fast_bias True/False on
#   top of stage 1's best (_gridsearch_engine extends each guess with the lowest-error params).
#   POT writes ``{"range_estimator": ...}`` over the whole weights/activations section; fastq
#   replaces only its range_estimator (the user's bits/mode stay).

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

from ..config.types import (Aggregator, AlgorithmName, LayerQuantConfig, Mode, Preset,
                            RangeEstimatorConfig, StatConfig, StatType)
from ..export import build
from ..report import Report
from . import bias_correction as bc
from .placement import build_plan
from .ranges import activation_qparams, weight_qparams

FULL_BC_THRESHOLD = 1000.0       # POT BiasCorrection's default threshold


def is_preset_performance(p) -> bool:
    """POT is_preset_performance: symmetric weights and activations."""
    w, a = p.weights.mode, p.activations.mode
    if w is Mode.SYMMETRIC and a is Mode.SYMMETRIC:
        return True
    if Mode.ASYMMETRIC in (w, a):
        return False
    return p.preset is Preset.PERFORMANCE


def mixed_params(p):
    """POT get_mixed_preset_config: preset mixed; a set activations mode -> asymmetric, a set
    weights mode -> symmetric."""
    acts, ws = p.activations, p.weights
    if acts.mode is not None:
        acts = dataclasses.replace(acts, mode=Mode.ASYMMETRIC)
    if ws.mode is not None:
        ws = dataclasses.replace(ws, mode=Mode.SYMMETRIC)
    return dataclasses.replace(p, preset=Preset.MIXED, activations=acts, weights=ws)


def _side(type_: StatType, aggregator=None, outlier_prob=None) -> StatConfig:
    return StatConfig(type=type_, aggregator=aggregator, outlier_prob=outlier_prob)


_ACT_MIN = [_side(StatType.MIN, Aggregator.MIN),
            _side(StatType.QUANTILE, Aggregator.MEAN, 1e-3),
            _side(StatType.QUANTILE, Aggregator.MEAN, 1e-4)]
_ACT_MAX = [_side(StatType.MAX, Aggregator.MAX),
            _side(StatType.QUANTILE, Aggregator.MEAN, 1e-3),
            _side(StatType.QUANTILE, Aggregator.MEAN, 1e-4)]


def _with_estimator(p, role: str, est: RangeEstimatorConfig):
    layer: LayerQuantConfig = getattr(p, role)
    return dataclasses.replace(p, **{role: dataclasses.replace(layer, range_estimator=est)})


def _describe(side: StatConfig) -> dict:
    d = {"type": side.type.value}
    if side.aggregator is not None:
        d["aggregator"] = side.aggregator.value
    if side.outlier_prob is not None:
        d["outlier_prob"] = side.outlier_prob
    return d


def grid_stage1(p) -> List[Tuple[dict, Any]]:
    out = [({"weights": {"min": {"type": "min"}, "max": {"type": "max"}}},
            _with_estimator(p, "weights", RangeEstimatorConfig(
                min=_side(StatType.MIN), max=_side(StatType.MAX))))]
    for lo in _ACT_MIN:
        for hi in _ACT_MAX:
            out.append(({"activations": {"min": _describe(lo), "max": _describe(hi)}},
                        _with_estimator(p, "activations",
                                        RangeEstimatorConfig(min=lo, max=hi))))
    return out


def grid_stage2(p) -> List[Tuple[dict, Any]]:
    """use_fast_bias True/False over ``p`` (stage 1's best). Full bias correction takes POT
    BiasCorrection's threshold when ``p`` has the fast default."""
    out = []
    for fast in (True, False):
        q = dataclasses.replace(p, use_fast_bias=fast)
        if not fast and p.threshold == 2.0:
            q = dataclasses.replace(q, threshold=FULL_BC_THRESHOLD)
        out.append(({"use_fast_bias": fast}, q))
    return out


@dataclass
class Trial:
    model: Any                  # onnx.ModelProto
    report: Report
    state: Any                  # DefaultState to revert from
    biases: Dict[str, Any]      # bias initializer -> corrected value of this trial
    seconds: float


def requantize(state, params, base_report: Report) -> Trial:
    """Placement, QParams, bias correction and export under ``params`` from ``state``'s
    statistics. ``state.graph`` is left with the biases it had (the current choice's)."""
    from ..quantize import FULL_BC_FRACTION, _fill_report
    t0 = time.perf_counter()
    g = state.graph
    names = [b for b, _ in state.bias_before.values()]
    saved = {b: g.inits[b] for b in names}
    for b, v in state.bias_before.values():
        g.inits[b] = v.copy()
    try:
        plan = build_plan(g, params)
        view = dataclasses.replace(state.stats, ranges={
            t: state.stats.range_for(t, q.layer.range_estimator, q.channel_axis)
            for t, q in plan.activations.items()})
        act_qp, decisions = activation_qparams(plan, view)
        plan.decisions.extend(decisions)
        w_qp = weight_qparams(g.inits, plan)
        bc_result: Dict[str, dict] = {}
        if state.name is AlgorithmName.DEFAULT_QUANTIZATION and state.sites:
            if params.use_fast_bias:
                bc_result = bc.fast_bias_correction(g, plan, state.sites, view, act_qp, w_qp,
                                                    params.threshold)
            else:
                n = max(1, int(round(len(state.samples) * FULL_BC_FRACTION)))
                bc_result = bc.full_bias_correction(
                    g, plan, state.sites, view, state.samples[:n],
                    lambda: build(g, plan, act_qp, dict(w_qp))[0], params.threshold)
        qdq, export_info = build(g, plan, act_qp, dict(w_qp))
        rep = Report(samples=base_report.samples, transforms=base_report.transforms,
                     config=base_report.config, timings=dict(base_report.timings))
        _fill_report(rep, g, plan, act_qp, dict(w_qp), w_qp, view, bc_result, export_info)
        biases = {b: g.inits[b] for b in names}
    finally:
        g.inits.update(saved)
    new = dataclasses.replace(state, plan=plan, act_qp=act_qp, w_qp=w_qp, params=params)
    return Trial(qdq, rep, new, biases, time.perf_counter() - t0)


def adopt(trial: Trial) -> None:
    """Make ``trial`` the current choice: its corrected biases go into the shared graph."""
    trial.state.graph.inits.update(trial.biases)
