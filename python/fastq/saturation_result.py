"""Results of ``fastq.analyze_saturation``: per-layer records (sums over all samples) and
per-output differences, with the derived figures (fractions, mean error, SQNR) and the
renderings: ``to_dict`` / ``to_json``, ``to_markdown``, ``to_table`` (the CLI's plain text) and
``save_plot`` (matplotlib, an optional extra). Harm order: lowest layer-output SQNR first, then
most outputs changed, then most saturated pairs, then execution order.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from .errors import FastqError


def _sqnr_db(signal: float, noise: float) -> float:
    """10 log10(signal / noise); +inf without noise, -inf with noise and no signal."""
    if noise <= 0:
        return math.inf
    if signal <= 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def _num(v: float) -> Any:
    return v if math.isfinite(v) else ("inf" if v > 0 else "-inf")


@dataclass
class LayerSaturation:
    """One int8 layer. ``outputs``: accumulator outputs measured; ``pairs``: int16 pair sums
    behind them (``pairs_per_output`` each); ``saturated_pairs``: pair sums at an int16 limit
    in the target/sat16pair arithmetic (a pair whose exact sum equals a limit is counted
    though it loses nothing); ``changed_outputs``: accumulators that differ between the two
    arithmetics; errors are |target - baseline| on the int32 accumulators; ``signal`` /
    ``noise``: energy of the baseline layer output y = (acc - zp*colsum) * x_scale * w_scale
    + bias and of its change."""
    name: str
    op_type: str
    input: str
    k: int
    pairs_per_output: int
    channels: int
    channel_counts: np.ndarray
    outputs: int = 0
    pairs: int = 0
    saturated_pairs: int = 0
    changed_outputs: int = 0
    max_abs_error: int = 0
    sum_abs_error: float = 0.0
    signal: float = 0.0
    noise: float = 0.0

    @property
    def saturated_fraction(self) -> float:
        return self.saturated_pairs / self.pairs if self.pairs else 0.0

    @property
    def changed_fraction(self) -> float:
        return self.changed_outputs / self.outputs if self.outputs else 0.0

    @property
    def mean_abs_error(self) -> float:
        return self.sum_abs_error / self.outputs if self.outputs else 0.0

    @property
    def sqnr_db(self) -> float:
        return _sqnr_db(self.signal, self.noise)

    @property
    def saturating_channels(self) -> int:
        return int(np.count_nonzero(self.channel_counts))

    def harm_key(self, index: int) -> tuple:
        return (self.sqnr_db, -self.changed_fraction, -self.saturated_fraction, index)

    def to_dict(self) -> dict:
        return {"layer": self.name, "op_type": self.op_type, "input": self.input, "k": self.k,
                "pairs_per_output": self.pairs_per_output, "outputs": self.outputs,
                "pairs": self.pairs, "saturated_pairs": self.saturated_pairs,
                "saturated_fraction": self.saturated_fraction,
                "changed_outputs": self.changed_outputs,
                "changed_fraction": self.changed_fraction,
                "max_abs_error": self.max_abs_error, "mean_abs_error": self.mean_abs_error,
                "sqnr_db": _num(self.sqnr_db), "channels": self.channels,
                "saturating_channels": self.saturating_channels}


@dataclass
class OutputDiff:
    """One model output, target run against baseline run, over all samples."""
    name: str
    elements: int = 0
    changed: int = 0
    max_abs: float = 0.0
    sum_abs: float = 0.0
    signal: float = 0.0
    noise: float = 0.0

    def add(self, base: np.ndarray, target: np.ndarray) -> None:
        b = np.asarray(base, np.float64)
        d = np.asarray(target, np.float64) - b
        self.elements += d.size
        self.changed += int(np.count_nonzero(d))
        if d.size:
            self.max_abs = max(self.max_abs, float(np.max(np.abs(d))))
        self.sum_abs += float(np.sum(np.abs(d)))
        self.signal += float(np.sum(b * b))
        self.noise += float(np.sum(d * d))

    @property
    def changed_fraction(self) -> float:
        return self.changed / self.elements if self.elements else 0.0

    @property
    def mean_abs(self) -> float:
        return self.sum_abs / self.elements if self.elements else 0.0

    @property
    def sqnr_db(self) -> float:
        return _sqnr_db(self.signal, self.noise)

    def to_dict(self) -> dict:
        return {"output": self.name, "elements": self.elements, "changed": self.changed,
                "changed_fraction": self.changed_fraction, "max_abs_diff": self.max_abs,
                "mean_abs_diff": self.mean_abs, "sqnr_db": _num(self.sqnr_db)}


def _pct(v: float) -> str:
    return "0%" if v == 0 else (f"{100 * v:.3g}%" if v >= 1e-5 else f"{100 * v:.2e}%")


def _db(v: float) -> str:
    return "inf" if v == math.inf else ("-inf" if v == -math.inf else f"{v:.1f}")


def require_matplotlib() -> None:
    """FastqError unless matplotlib (the ``plot`` extra) can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise FastqError("plotting needs matplotlib, which is not installed: "
                         "pip install 'fastq[plot]' (or pip install matplotlib)") from None


@dataclass
class SaturationAnalysis:
    baseline: str
    target: str
    conv_pairing: str
    samples: int
    layers: List[LayerSaturation]                 # sorted by harm, worst first
    outputs: Dict[str, OutputDiff] = field(default_factory=dict)
    metric: Optional[dict] = None
    unfused: List[dict] = field(default_factory=list)
    timings: Dict[str, float] = field(default_factory=dict)
    # samples whose target run was not needed: no layer changed an accumulator on them, so
    # their target outputs are the baseline's (saturation.py)
    target_runs_skipped: int = 0

    def layer(self, name: str) -> LayerSaturation:
        for r in self.layers:
            if r.name == name:
                return r
        raise KeyError(f"no int8 layer named {name!r}; layers: "
                       f"{', '.join(r.name for r in self.layers)}")

    @property
    def saturating_layers(self) -> List[str]:
        """Layers whose accumulators changed, worst first."""
        return [r.name for r in self.layers if r.changed_outputs]

    def to_dict(self) -> dict:
        return {"baseline": self.baseline, "target": self.target,
                "conv_pairing": self.conv_pairing, "samples": self.samples,
                "layers": [r.to_dict() for r in self.layers],
                "outputs": [o.to_dict() for o in self.outputs.values()],
                "metric": self.metric, "unfused_layers": list(self.unfused),
                "target_runs_skipped": self.target_runs_skipped,
                "timings_s": dict(self.timings)}

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def _rows(self) -> List[List[str]]:
        return [[r.name, r.op_type, str(r.k),
                 f"{r.saturated_pairs} ({_pct(r.saturated_fraction)})",
                 f"{r.changed_outputs} ({_pct(r.changed_fraction)})", str(r.max_abs_error),
                 f"{r.mean_abs_error:.3g}", _db(r.sqnr_db)] for r in self.layers]

    _HEAD = ["layer", "op", "K", "saturated pairs", "outputs changed", "max abs err",
             "mean abs err", "SQNR dB"]

    def _summary(self) -> List[str]:
        lines = [f"{self.target} vs {self.baseline} (conv pairing {self.conv_pairing}), "
                 f"{self.samples} samples, {len(self.layers)} int8 layers, "
                 f"{len(self.saturating_layers)} with changed outputs"]
        for o in self.outputs.values():
            lines.append(f"output {o.name}: {_pct(o.changed_fraction)} of elements changed, "
                         f"max abs diff {o.max_abs:.4g}, mean abs diff {o.mean_abs:.4g}, "
                         f"SQNR {_db(o.sqnr_db)} dB")
        if self.metric:
            m = self.metric
            lines.append(f"metric {m['name']}: {self.baseline} {m['baseline']:.6g}, "
                         f"{self.target} {m['target']:.6g} (drop {m['drop']:.6g})")
        if self.target_runs_skipped:
            lines.append(f"{self.target} run skipped on {self.target_runs_skipped} of "
                         f"{self.samples} samples: no accumulator changed on them, so their "
                         f"outputs are the {self.baseline} run's")
        if self.unfused:
            lines.append("not analyzed (left in float): " + "; ".join(
                f"{u['name']} ({u['reason']})" for u in self.unfused))
        return lines

    def to_table(self) -> str:
        """Plain-text table, worst layer first, then the summary lines."""
        rows = [self._HEAD] + self._rows()
        widths = [max(len(r[i]) for r in rows) for i in range(len(self._HEAD))]
        fmt = [lambda s, w: s.ljust(w)] * 2 + [lambda s, w: s.rjust(w)] * 6
        out = ["  ".join(f(c, w) for f, c, w in zip(fmt, r, widths)).rstrip() for r in rows]
        out.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(out + [""] + self._summary()) + "\n"

    def to_markdown(self) -> str:
        lines = ["# fastq saturation analysis", ""] + self._summary() + [""]
        lines += ["| " + " | ".join(self._HEAD) + " |",
                  "|" + "---|" * 2 + "---:|" * 6]
        lines += ["| " + " | ".join(r) + " |" for r in self._rows()]
        return "\n".join(lines) + "\n"

    def save_plot(self, path: str) -> None:
        """Bar chart per layer (execution order is lost: worst first): saturated-pair and
        changed-output fractions. Needs matplotlib (``pip install fastq[plot]``)."""
        require_matplotlib()
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        names = [r.name for r in self.layers]
        x = np.arange(len(names))
        fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(names) + 2), 4.5))
        ax.bar(x - 0.2, [100 * r.saturated_fraction for r in self.layers], 0.4,
               label="saturated pair sums")
        ax.bar(x + 0.2, [100 * r.changed_fraction for r in self.layers], 0.4,
               label="accumulator outputs changed")
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("% of the layer's pair sums / outputs")
        ax.set_title(f"{self.target} vs {self.baseline}: {self.samples} samples")
        ax.legend()
        fig.tight_layout()
        try:
            fig.savefig(path)
        except OSError as e:
            raise FastqError(f"cannot write plot {path!r}: {e.strerror or e}") from None
        finally:
            plt.close(fig)
