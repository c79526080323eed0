"""``Report``: what quantization did, built from the plan, the QParams and the algorithms'
results. Per quantized layer: weight range, scales, zero points, bias shift, saturation fix and
(CPU/ANY targets) the sat16pair saturation measured on the calibration data as exported;
per activation quantizer: range, scale, zero point; ignored nodes and why; decisions; timings;
the config used with defaults filled in; for AccuracyAwareQuantization, every revert, the final
drop and the layers left in float. ``to_json`` / ``to_markdown``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List

import numpy as np


def _plain(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, float) and not np.isfinite(v):
        return str(v)
    return v


@dataclass
class Report:
    layers: Dict[str, dict] = field(default_factory=dict)
    activations: Dict[str, dict] = field(default_factory=dict)
    ignored: Dict[str, str] = field(default_factory=dict)
    decisions: List[str] = field(default_factory=list)
    transforms: Dict[str, Any] = field(default_factory=dict)
    timings: Dict[str, float] = field(default_factory=dict)
    samples: int = 0
    config: Dict[str, Any] = field(default_factory=dict)
    accuracy_aware: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return _plain({"layers": self.layers, "activations": self.activations,
                       "ignored": self.ignored, "decisions": self.decisions,
                       "transforms": self.transforms, "timings_s": self.timings,
                       "calibration_samples": self.samples, "config": self.config,
                       **({"accuracy_aware": self.accuracy_aware}
                          if self.accuracy_aware else {})})

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_markdown(self) -> str:
        lines = ["# fastq quantization report", "",
                 f"calibration samples: {self.samples}; statistics pass: "
                 f"{self.timings.get('statistics', 0.0):.3f} s; total: "
                 f"{self.timings.get('total', 0.0):.3f} s", "",
                 "## Layers", "",
                 "| layer | op | weight range (abs max) | scale (min..max) | sat. fix | "
                 "bias shift (max abs) | bias corrected |", "|---|---|---|---|---|---|---|"]
        for k, v in self.layers.items():
            s = np.atleast_1d(v["weight_scale"])
            shift = v.get("bias_shift")
            lines.append(f"| {k} | {v['op_type']} | {np.max(np.abs(v['weight_max'])):.4g} | "
                         f"{s.min():.3g}..{s.max():.3g} | {v['saturation_fix']} | "
                         f"{'-' if shift is None else f'{np.max(np.abs(shift)):.3g}'} | "
                         f"{v.get('bias_corrected', False)} |")
        lines += _saturation_markdown(self.layers, self.timings)
        lines += ["", "## Activations", "",
                  "| tensor | range | scale | zero point | grid | stored as |",
                  "|---|---|---|---|---|---|"]
        for k, v in self.activations.items():
            lines.append(f"| {k} | [{np.min(v['min']):.4g}, {np.max(v['max']):.4g}] | "
                         f"{np.max(v['scale']):.4g} | {np.max(v['zero_point'])} | "
                         f"{v['dtype']} | {v.get('stored_dtype', v['dtype'])} zp "
                         f"{np.max(v.get('stored_zero_point', v['zero_point']))} |")
        if self.ignored:
            lines += ["", "## Left in float", ""]
            lines += [f"- {k}: {v}" for k, v in self.ignored.items()]
        if self.decisions:
            lines += ["", "## Decisions", ""] + [f"- {d}" for d in self.decisions]
        if self.accuracy_aware:
            lines += _aa_markdown(self.accuracy_aware)
        return "\n".join(lines) + "\n"


def _saturation_markdown(layers: Dict[str, dict], timings: Dict[str, float]) -> List[str]:
    rows = [(k, v) for k, v in layers.items() if v.get("saturation")]
    if not rows:
        return []
    lines = ["", "## AVX2 saturation (sat16pair vs exact32, calibration data, as exported)", "",
             f"measured in {timings.get('saturation_report', 0.0):.3f} s", "",
             "| layer | sat. fix | saturated pairs | outputs changed | max abs err | SQNR dB |",
             "|---|---|---:|---:|---:|---:|"]
    for k, v in rows:
        s = v["saturation"]
        db = s["sqnr_db"]
        lines.append(f"| {k} | {v['saturation_fix']} | {s['saturated_pairs']} "
                     f"({100 * s['saturated_fraction']:.3g}%) | {s['changed_outputs']} "
                     f"({100 * s['changed_fraction']:.3g}%) | {s['max_abs_error']} | "
                     f"{db if isinstance(db, str) else f'{db:.1f}'} |")
    return lines


def _aa_markdown(a: dict) -> List[str]:
    lines = ["", "## Accuracy-aware quantization", "",
             f"metric {a['metric']}: float {a['float_metric']:.6g}, int8 {a['int8_metric']:.6g} "
             f"(drop {a['int8_drop']:.6g}), final {a['final_metric']:.6g} (drop "
             f"{a['final_drop']:.6g}, {a['drop_type']}, maximal {a['maximal_drop']}); "
             f"{'reached' if a['reached'] else 'NOT reached'} ({a['stop_reason']}); "
             f"{a['iterations']} iterations, {a['evaluations']} evaluations",
             "", "| iteration | layers | metric before | metric after | drop after | kept | s |",
             "|---|---|---|---|---|---|---|"]
    for r in a["reverts"]:
        lines.append(f"| {r['iteration']} | {', '.join(r['layers'])} | "
                     f"{r['metric_before']:.6g} | {r['metric_after']:.6g} | "
                     f"{r['drop_after']:.6g} | {'no (rolled back)' if r['rolled_back'] else 'yes'}"
                     f" | {r['seconds']:.3f} |")
    if a.get("trials"):
        lines += ["", "Settings tried before reverting (metric on the samples counted):", "",
                  "| stage | config | metric | samples | drop | kept | s |",
                  "|---|---|---|---|---|---|---|"]
        for t in a["trials"]:
            drop = "-" if t.get("drop") is None else f"{t['drop']:.6g}"
            kept = {True: "yes", False: "no"}.get(t.get("kept"), "-")
            lines.append(f"| {t['stage']} | {t['config']} | {t['metric']:.6g} | "
                         f"{t['samples']} | {drop} | {kept} | {t['seconds']:.3f} |")
    lines += ["", "Left in float: " + (", ".join(a["reverted_layers"]) or "none")
              + (" (all quantizable layers)" if a.get("all_reverted") else "")]
    return lines
