"""From user settings to what one quantizer uses: mode/granularity/bits by preset, a fully
specified range estimator (POT's presets, user overrides merged on top), and the ignored scope
including the op types ``model_type`` leaves in float. POT sources are cited below.
"""

from __future__ import annotations

# Sources (POT, tools/pot/openvino/tools/pot/...): presets and merge rule from
# algorithms/quantization/range_estimator.py (get_range_estimator_config); the default
# outlier_prob 1e-4 from algorithms/quantization/utils.py (append_estimator_configs); the
# preset -> mode choice from fake_quantize_configuration.py (_apply_preset_rule) over the CPU
# hardware config configs/hardware/cpu.json (weights q8_w_sym perchannel levels -127..127
# first, q8_w_asym second; activations symmetric first, asymmetric second, pertensor;
# perchannel for depthwise convolutions); model_type's ignored ops from
# algorithms/quantization/utils.py (get_ignored_operations).

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Optional, Union

from ..errors import ConfigError
from .types import (AccuracyAwareParams, Aggregator, Granularity, IgnoredScope,
                    LayerQuantConfig, MinMaxParams, Mode, ModelType, OpPattern, Preset,
                    RangeEstimatorConfig, RangePreset, Role, StatConfig, StatType, TargetDevice)

DEFAULT_OUTLIER_PROB = 1e-4

S = StatType
A = Aggregator


def _s(type_: StatType, aggregator: Optional[Aggregator] = None, outlier_prob=None,
       granularity: Optional[Granularity] = None) -> Dict[str, Any]:
    d: Dict[str, Any] = {"type": type_}
    if aggregator is not None:
        d["aggregator"] = aggregator
    if outlier_prob is not None:
        d["outlier_prob"] = outlier_prob
    if granularity is not None:
        d["granularity"] = granularity
    return d


_Q = DEFAULT_OUTLIER_PROB
_PT = Granularity.PERTENSOR
# [preset][role] -> activations: [granularity][mode] / weights: [mode] -> {"min"?, "max"}
_PRESETS = {
    RangePreset.DEFAULT: {
        Role.ACTIVATIONS: {
            Granularity.PERCHANNEL: {
                Mode.SYMMETRIC: {"min": _s(S.MIN, A.MIN, granularity=_PT),
                                 "max": _s(S.ABS_MAX, A.MAX)},
                Mode.ASYMMETRIC: {"min": _s(S.MIN, A.MIN), "max": _s(S.MAX, A.MAX)},
            },
            Granularity.PERTENSOR: {
                Mode.SYMMETRIC: {"min": _s(S.MIN, A.MIN), "max": _s(S.ABS_MAX, A.MEAN)},
                Mode.ASYMMETRIC: {"min": _s(S.MIN, A.MEAN), "max": _s(S.MAX, A.MEAN)},
            },
        },
        Role.WEIGHTS: {
            Mode.SYMMETRIC: {"max": _s(S.ABS_MAX)},
            Mode.ASYMMETRIC: {"min": _s(S.MIN), "max": _s(S.MAX)},
        },
    },
    RangePreset.QUANTILE: {
        Role.ACTIVATIONS: {
            Granularity.PERCHANNEL: {
                Mode.SYMMETRIC: {"min": _s(S.MIN, A.MIN, granularity=_PT),
                                 "max": _s(S.ABS_QUANTILE, A.MAX, _Q)},
                Mode.ASYMMETRIC: {"min": _s(S.QUANTILE, A.MIN, _Q),
                                  "max": _s(S.QUANTILE, A.MAX, _Q)},
            },
            Granularity.PERTENSOR: {
                Mode.SYMMETRIC: {"min": _s(S.MIN, A.MIN), "max": _s(S.ABS_QUANTILE, A.MEAN, _Q)},
                Mode.ASYMMETRIC: {"min": _s(S.QUANTILE, A.MEAN, _Q),
                                  "max": _s(S.QUANTILE, A.MEAN, _Q)},
            },
        },
        Role.WEIGHTS: {
            Mode.SYMMETRIC: {"max": _s(S.ABS_QUANTILE, outlier_prob=_Q)},
            Mode.ASYMMETRIC: {"min": _s(S.QUANTILE, outlier_prob=_Q),
                              "max": _s(S.QUANTILE, outlier_prob=_Q)},
        },
    },
}

UserSource = Union[None, RangeEstimatorConfig, LayerQuantConfig, MinMaxParams,
                   AccuracyAwareParams]


def _user_estimator(src: UserSource, role: Role) -> RangeEstimatorConfig:
    """POT: the role's own range_estimator if given, else the params-level one (no merge)."""
    if src is None:
        return RangeEstimatorConfig()
    if isinstance(src, RangeEstimatorConfig):
        return src
    if isinstance(src, LayerQuantConfig):
        return src.range_estimator or RangeEstimatorConfig()
    layer = getattr(src, role.value)
    return layer.range_estimator or src.range_estimator or RangeEstimatorConfig()


def resolve_range_estimator(user: UserSource, role: Union[Role, str], mode: Union[Mode, str],
                            granularity: Union[Granularity, str],
                            preset: Optional[Union[RangePreset, str]] = None
                            ) -> RangeEstimatorConfig:
    """The range estimator one quantizer uses.

    ``user`` is the params object, a ``weights``/``activations`` section or a bare estimator
    (or None). The preset's table entry for (role, granularity, mode) is the base; each side
    the user sets is merged key by key over it (a user ``max.aggregator`` keeps the preset's
    ``type``). Then, as POT does, a side without ``granularity`` takes the quantizer's, and
    every side gets ``outlier_prob`` (1e-4 unless set; used by quantile types only).
    Symmetric weights have no ``min`` side unless the user gives one: POT uses -max.
    """
    role, mode, granularity = Role(role), Mode(mode), Granularity(granularity)
    u = _user_estimator(user, role)
    preset = RangePreset(preset) if preset is not None else (u.preset or RangePreset.DEFAULT)
    table = _PRESETS[preset][role]
    base = table[granularity][mode] if role is Role.ACTIVATIONS else table[mode]
    sides: Dict[str, Optional[StatConfig]] = {}
    for side in ("min", "max"):
        merged = dict(base.get(side, {}))
        override = getattr(u, side)
        if override is None and side not in base:
            sides[side] = None
            continue
        if override is not None:
            merged.update({f.name: getattr(override, f.name)
                           for f in dataclasses.fields(override)
                           if getattr(override, f.name) is not None})
        merged.setdefault("type", StatType.MIN if side == "min" else StatType.MAX)
        merged.setdefault("granularity", granularity)
        merged.setdefault("outlier_prob", DEFAULT_OUTLIER_PROB)
        if role is Role.ACTIVATIONS:
            merged.setdefault("aggregator", base.get(side, {}).get("aggregator", Aggregator.MEAN))
        elif merged.get("aggregator") is not None:
            raise ConfigError(f"weights.range_estimator.{side}.aggregator: weights have one "
                              "sample; aggregators apply to activations only")
        sides[side] = StatConfig(**merged)
    return RangeEstimatorConfig(preset=preset, min=sides["min"], max=sides["max"])


# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedLayer:
    """What one quantizer of ``role`` uses. ``level_low``/``level_high`` None: the default
    grid of ``fastq.qparams.compute_qparams`` for (role, mode, bits)."""
    role: Role
    bits: int
    mode: Mode
    granularity: Granularity
    level_low: Optional[int]
    level_high: Optional[int]
    range_estimator: RangeEstimatorConfig


def resolve_layer(params: Union[MinMaxParams, AccuracyAwareParams], role: Union[Role, str], *,
                  depthwise: bool = False, mode: Optional[Union[Mode, str]] = None
                  ) -> ResolvedLayer:
    """Bits, mode, granularity, levels and range estimator for one quantizer.

    User settings win; otherwise the CPU hardware config and the preset decide (POT
    _apply_preset_rule): weights are symmetric per-channel with levels -127..127 unless the
    preset is ``accuracy`` (then asymmetric); activations are per-tensor (per-channel for a
    depthwise conv input) and symmetric for ``performance``, asymmetric for ``mixed`` and
    ``accuracy``. ``mode`` forces a mode (the placement's model_type rules use it).
    """
    role = Role(role)
    layer: LayerQuantConfig = getattr(params, role.value)
    preset: Preset = params.preset
    if mode is not None:
        eff_mode = Mode(mode)
    elif layer.mode is not None:
        eff_mode = layer.mode
    elif role is Role.WEIGHTS:
        eff_mode = Mode.ASYMMETRIC if preset is Preset.ACCURACY else Mode.SYMMETRIC
    else:
        eff_mode = Mode.SYMMETRIC if preset is Preset.PERFORMANCE else Mode.ASYMMETRIC
    if layer.granularity is not None:
        gran = layer.granularity
    elif role is Role.WEIGHTS or depthwise:
        gran = Granularity.PERCHANNEL
    else:
        gran = Granularity.PERTENSOR
    lo, hi = layer.level_low, layer.level_high
    return ResolvedLayer(role=role, bits=layer.bits or 8, mode=eff_mode, granularity=gran,
                         level_low=lo, level_high=hi,
                         range_estimator=resolve_range_estimator(params, role, eff_mode, gran))


# POT algorithms/quantization/utils.py get_ignored_operations("transformer", device), with the
# OpenVINO IR types named as ONNX ops: Add, Power->Pow, Squeeze, Subtract->Sub, ReduceMean,
# SquaredDifference and MVN -> the ONNX normalization ops; Multiply->Mul except on CPU_SPR.
_TRANSFORMER_IGNORED = ("Add", "Pow", "Squeeze", "Sub", "ReduceMean", "LayerNormalization",
                        "MeanVarianceNormalization", "InstanceNormalization",
                        "GroupNormalization", "SimplifiedLayerNormalization",
                        "SkipLayerNormalization")


def effective_ignored(params: Union[MinMaxParams, AccuracyAwareParams]) -> IgnoredScope:
    """The user's ignored scope plus the op types ``model_type`` leaves in float (POT
    fake_quantize.py insert_fake_quantize_nodes appends them to ignored.operations)."""
    ignored: IgnoredScope = params.ignored
    if params.model_type is not ModelType.TRANSFORMER:
        return ignored
    types = list(_TRANSFORMER_IGNORED)
    if params.target_device is not TargetDevice.CPU_SPR:
        types.append("Mul")
    have = {op for op in ignored.operations if not op.attributes}
    extra = tuple(OpPattern(t) for t in types if OpPattern(t) not in have)
    return dataclasses.replace(ignored, operations=ignored.operations + extra)
