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
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import onnx

from .. import qparams as qp_mod
from ..errors import FastqError, ModelError
from ..qparams import QParams
from ..saturation_result import LayerSaturation
from .placement import Plan
from .statistics import batch_limit, stacked_groups, with_dynamic_batch


def measure(model, samples: Sequence[dict], pairing: str, stacked: bool = False
            ) -> Dict[str, LayerSaturation]:
    """``stacked``: the statistics pass ran these samples batched (its probe found the batch
    on axis 0 of every planned tensor), so they run here as concatenated groups too, within
    the same input-byte bound -- fewer, larger runs. A layer's figures are sums over its
    outputs: the counts are the same whichever run an output came from; the float sums
    behind the SQNR add in another order. A model that will not take the groups runs the
    samples one by one."""
    from ..saturation import analyze_saturation
    if stacked and len(samples) > 1:
        m = _batch_model(model)
        if m is not None:
            try:
                groups = stacked_groups(samples, batch_limit(samples))
                return _layers(analyze_saturation(m, groups, conv_pairing=pairing,
                                                  whole_model=False))
            except ModelError as e:
                if "no int8 layers" in str(e):
                    return {}
            except FastqError:
                pass                      # e.g. a Reshape that fixes the batch: one by one
    try:
        return _layers(analyze_saturation(model, samples, conv_pairing=pairing,
                                          whole_model=False))
    except ModelError as e:
        if "no int8 layers" in str(e):
            return {}
        raise


def _layers(a) -> Dict[str, LayerSaturation]:
    return {r.name: r for r in a.layers}


def _batch_model(model: onnx.ModelProto) -> Optional[onnx.ModelProto]:
    """``model`` if every input's batch axis is symbolic, a copy with symbolic batch axes if
    every input is batch 1 (``with_dynamic_batch``), else None."""
    inits = {t.name for t in model.graph.initializer}
    dims = [vi.type.tensor_type.shape.dim for vi in model.graph.input if vi.name not in inits]
    if dims and all(d and not d[0].HasField("dim_value") for d in dims):
        return model
    return with_dynamic_batch(model)


def describe(r: LayerSaturation) -> str:
    return (f"{100 * r.changed_fraction:.3g}% of accumulator outputs change under sat16pair "
            f"({r.changed_outputs} of {r.outputs}; {r.saturated_pairs} of {r.pairs} pair sums "
            f"at an int16 limit; max abs error {r.max_abs_error}; layer-output SQNR "
            f"{r.sqnr_db:.1f} dB)")


def auto_fix(plan: Plan, w_qp: Dict[str, QParams], export: Callable[[Dict[str, QParams]], object],
             samples: Sequence[dict], threshold: float, pairing: str, stacked: bool = False
             ) -> Tuple[Dict[str, QParams], List[str], dict]:
    """Returns (weight QParams with the fix on the chosen layers, decision lines, info):
    info = {"seconds", "fixed": [layers], "measured": {layer: record dict}}. Marks the chosen
    layers' ``WeightQuantizer.saturation_fix``."""
    t0 = time.perf_counter()
    recs = measure(export(w_qp), samples, pairing, stacked)
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
