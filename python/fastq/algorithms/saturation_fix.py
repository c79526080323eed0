"""``saturation_fix: "auto"`` and the report's saturation figures, on the calibration data.

Contract: ``measure(model, samples, pairing)`` runs ``fastq.analyze_saturation`` per layer only
(one exact32 pass of the int8 QDQ model per sample + the C++ counting kernels; no target run)
and returns its records by layer name, or {} when the model has no fused int8 layer.
``auto_fix`` exports the model with full-range weights, measures it, and applies
``qparams.apply_saturation_fix`` to exactly the weighted layers whose fraction of accumulator
outputs that ``sat16pair`` changes (against ``exact32``) exceeds ``threshold``; every other layer
keeps its full 8-bit weights. Each measured layer gets a decision line with its numbers.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, List, Sequence, Tuple

from .. import qparams as qp_mod
from ..errors import ModelError
from ..qparams import QParams
from ..saturation_result import LayerSaturation
from .placement import Plan


def measure(model, samples: Sequence[dict], pairing: str) -> Dict[str, LayerSaturation]:
    from ..saturation import analyze_saturation
    try:
        a = analyze_saturation(model, samples, conv_pairing=pairing, whole_model=False)
    except ModelError as e:
        if "no int8 layers" in str(e):
            return {}
        raise
    return {r.name: r for r in a.layers}


def describe(r: LayerSaturation) -> str:
    return (f"{100 * r.changed_fraction:.3g}% of accumulator outputs change under sat16pair "
            f"({r.changed_outputs} of {r.outputs}; {r.saturated_pairs} of {r.pairs} pair sums "
            f"at an int16 limit; max abs error {r.max_abs_error}; layer-output SQNR "
            f"{r.sqnr_db:.1f} dB)")


def auto_fix(plan: Plan, w_qp: Dict[str, QParams], export: Callable[[Dict[str, QParams]], object],
             samples: Sequence[dict], threshold: float, pairing: str
             ) -> Tuple[Dict[str, QParams], List[str], dict]:
    """Returns (weight QParams with the fix on the chosen layers, decision lines, info):
    info = {"seconds", "fixed": [layers], "measured": {layer: record dict}}. Marks the chosen
    layers' ``WeightQuantizer.saturation_fix``."""
    t0 = time.perf_counter()
    recs = measure(export(w_qp), samples, pairing)
    out = dict(w_qp)
    decisions: List[str] = []
    fixed: List[str] = []
    for name, wq in plan.weights.items():
        r = recs.get(name)
        if r is None:
            decisions.append(f"{name}: saturation_fix auto: not measured (not an int8 layer of "
                             "the executor), weights kept at full range")
            continue
        if r.changed_fraction > threshold:
            out[name] = qp_mod.apply_saturation_fix(w_qp[name])
            wq.saturation_fix = True
            fixed.append(name)
            decisions.append(f"{name}: saturation fix applied (auto): {describe(r)} > "
                             f"saturation_threshold {threshold:g}")
        elif r.changed_outputs:
            decisions.append(f"{name}: saturation fix not needed (auto): {describe(r)} <= "
                             f"saturation_threshold {threshold:g}")
    info = {"seconds": time.perf_counter() - t0, "fixed": fixed,
            "measured": {k: r.to_dict() for k, r in recs.items()}}
    return out, decisions, info
