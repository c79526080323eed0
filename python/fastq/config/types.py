"""The typed form of a POT configuration: enums for every closed set, frozen dataclasses.

Contract: objects here are immutable and hold only validated values; ``parse.load`` is the
only way raw JSON becomes them. ``None`` in a field means "not set by the user, POT's rule
decides" (the preset for modes, the hardware config for granularity, all samples for
``stat_subset_size``); every other default is POT's code default, cited where it is set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional, Tuple, Union

from ..errors import ConfigError


class _StrEnum(str, Enum):
    """``enum.StrEnum`` for Python 3.9+: members are their string values, also in str()/format()
    (a plain ``str, Enum`` mixin formats as ``Preset.MIXED`` on 3.12+)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class TargetDevice(_StrEnum):
    """``compression.target_device`` (POT configs/config.py DEFAULT_TARGET_DEVICE = 'ANY')."""
    ANY = "ANY"
    CPU = "CPU"
    GPU = "GPU"
    NPU = "NPU"
    VPU = "VPU"
    GNA = "GNA"
    GNA3 = "GNA3"
    GNA3_5 = "GNA3.5"
    CPU_SPR = "CPU_SPR"


class Preset(_StrEnum):
    PERFORMANCE = "performance"
    MIXED = "mixed"
    ACCURACY = "accuracy"


class Mode(_StrEnum):
    SYMMETRIC = "symmetric"
    ASYMMETRIC = "asymmetric"


class Granularity(_StrEnum):
    PERTENSOR = "pertensor"
    PERCHANNEL = "perchannel"


class Role(_StrEnum):
    """Which tensor a quantizer sits on: a constant weight or a runtime activation."""
    WEIGHTS = "weights"
    ACTIVATIONS = "activations"


class StatType(_StrEnum):
    """Per-sample statistic a range estimator reduces each tensor to."""
    MIN = "min"
    MAX = "max"
    ABS_MAX = "abs_max"
    QUANTILE = "quantile"
    ABS_QUANTILE = "abs_quantile"


class Aggregator(_StrEnum):
    """How per-sample statistics are combined over the calibration set (activations only)."""
    MIN = "min"
    MAX = "max"
    MEAN = "mean"
    MEDIAN = "median"
    MEAN_NO_OUTLIERS = "mean_no_outliers"
    MEDIAN_NO_OUTLIERS = "median_no_outliers"
    HL_ESTIMATOR = "hl_estimator"


class RangePreset(_StrEnum):
    DEFAULT = "default"
    QUANTILE = "quantile"


class SaturationFix(_StrEnum):
    FIRST_LAYER = "first_layer"
    ALL = "all"
    NO = "no"
    AUTO = "auto"          # fastq: layers whose sat16pair-changed outputs exceed a threshold


class ModelType(_StrEnum):
    TRANSFORMER = "transformer"


class DropType(_StrEnum):
    ABSOLUTE = "absolute"
    RELATIVE = "relative"


class Rerank(_StrEnum):
    """fastq extension: when AccuracyAware re-ranks the remaining quantizer groups."""
    DROP_INCREASE = "drop_increase"      # POT: only after a revert made the drop grow
    EVERY_ITERATION = "every_iteration"  # after every kept revert (can revert far fewer)


class TargetArith(_StrEnum):
    """fastq extension: the int8 arithmetic quantized layers are evaluated in."""
    EXACT32 = "exact32"        # s32 sum of u8*s8 products, as VNNI vpdpbusd
    SAT16PAIR = "sat16pair"    # pair sums saturated to s16, as AVX2 vpmaddubsw


class ConvPairing(_StrEnum):
    """fastq extension: which products sat16pair pairs in a conv with odd channel count."""
    PER_TAP = "per_tap"        # channels padded to even per tap (oneDNN, ORT symmetric conv)
    FLAT = "flat"              # im2col over flat (kh, kw, c) (ORT general QLinearConv)


class AlgorithmName(_StrEnum):
    DEFAULT_QUANTIZATION = "DefaultQuantization"
    ACCURACY_AWARE_QUANTIZATION = "AccuracyAwareQuantization"
    MIN_MAX_QUANTIZATION = "MinMaxQuantization"
    FAST_BIAS_CORRECTION = "FastBiasCorrection"
    BIAS_CORRECTION = "BiasCorrection"


# --------------------------------------------------------------------------------------------
# Range estimators and per-role quantization settings


@dataclass(frozen=True)
class StatConfig:
    """One side (min or max) of a range estimator. ``outlier_prob`` is used by the quantile
    types only; ``aggregator`` exists for activations only (weights have one sample)."""
    type: Optional[StatType] = None
    aggregator: Optional[Aggregator] = None
    outlier_prob: Optional[float] = None
    clipping_value: Optional[float] = None
    granularity: Optional[Granularity] = None


@dataclass(frozen=True)
class RangeEstimatorConfig:
    """As written by the user: any field may be unset. ``resolve_range_estimator`` returns one
    with ``preset`` and every present side fully specified. Symmetric weights have no ``min``
    side (POT derives min = -max) unless the user gives one."""
    preset: Optional[RangePreset] = None
    min: Optional[StatConfig] = None
    max: Optional[StatConfig] = None


@dataclass(frozen=True)
class LayerQuantConfig:
    """``weights`` / ``activations`` section. Unset fields are decided by the preset and the
    hardware config (see ``resolve_layer``)."""
    bits: Optional[int] = None
    mode: Optional[Mode] = None
    granularity: Optional[Granularity] = None
    level_low: Optional[int] = None
    level_high: Optional[int] = None
    range_estimator: Optional[RangeEstimatorConfig] = None


# --------------------------------------------------------------------------------------------
# Ignored scope


@dataclass(frozen=True)
class OpPattern:
    """``ignored.operations`` entry: an op type plus attributes that must all match.
    ``attributes`` is a sorted tuple of (name, value) pairs; lists are frozen to tuples."""
    type: str
    attributes: Tuple[Tuple[str, Any], ...] = ()

    def matches(self, op_type: str, attributes: Optional[dict] = None) -> bool:
        if op_type != self.type:
            return False
        attributes = attributes or {}
        for name, want in self.attributes:
            if name not in attributes or _freeze(attributes[name]) != want:
                return False
        return True


@dataclass(frozen=True)
class IgnoredScope:
    """Nodes left in float: by exact name (``scope``), by op type and attributes
    (``operations``), or by regular expression over the node name (``patterns``, a fastq
    extension, matched with ``re.fullmatch``)."""
    scope: Tuple[str, ...] = ()
    operations: Tuple[OpPattern, ...] = ()
    patterns: Tuple[str, ...] = ()

    def is_ignored(self, node_name: str, op_type: str = "",
                   attributes: Optional[dict] = None) -> bool:
        if node_name in self.scope:
            return True
        if any(op.matches(op_type, attributes) for op in self.operations):
            return True
        return any(re.fullmatch(p, node_name) for p in self.patterns)


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


# --------------------------------------------------------------------------------------------
# Algorithm parameters. Defaults: POT's code defaults (file cited per field group).


@dataclass(frozen=True)
class MinMaxParams:
    """MinMaxQuantization: placement and ranges (POT algorithms/quantization/minmax)."""
    target_device: TargetDevice = TargetDevice.ANY
    preset: Preset = Preset.PERFORMANCE
    stat_subset_size: Optional[int] = None       # None: all samples
    stat_batch_size: int = 1
    shuffle_data: bool = False
    seed: int = 0
    model_type: Optional[ModelType] = None
    inplace_statistics: bool = True
    # POT fake_quantize.py set_rescaling_factors: config.get("saturation_fix", "first_layer")
    saturation_fix: SaturationFix = SaturationFix.FIRST_LAYER
    # fastq, saturation_fix "auto": a weighted layer gets the fix when the fraction of its
    # accumulator outputs that sat16pair changes (vs exact32) on the calibration data exceeds it
    saturation_threshold: float = 1e-3
    ignored: IgnoredScope = field(default_factory=IgnoredScope)
    weights: LayerQuantConfig = field(default_factory=LayerQuantConfig)
    activations: LayerQuantConfig = field(default_factory=LayerQuantConfig)
    range_estimator: Optional[RangeEstimatorConfig] = None     # global fallback for both roles
    smooth_quant_alpha: Optional[float] = 0.95   # fastq: only with model_type transformer
    target_arith: TargetArith = TargetArith.EXACT32
    conv_pairing: ConvPairing = ConvPairing.PER_TAP

    @property
    def effective_saturation_fix(self) -> SaturationFix:
        """POT fake_quantize.py set_rescaling_factors: the fix only applies when the target is
        CPU or ANY (CPUs whose int8 path may be AVX2 vpmaddubsw); elsewhere it is ``no``."""
        if self.target_device not in (TargetDevice.CPU, TargetDevice.ANY):
            return SaturationFix.NO
        return self.saturation_fix


@dataclass(frozen=True)
class BiasCorrectionParams:
    """FastBiasCorrection / BiasCorrection run standalone. ``threshold``: POT
    fast_bias_correction 2.0, bias_correction 1000.0."""
    target_device: TargetDevice = TargetDevice.ANY
    stat_subset_size: Optional[int] = None
    stat_batch_size: int = 1
    shuffle_data: bool = False
    seed: int = 0
    threshold: float = 2.0
    apply_for_all_nodes: bool = False
    model_type: Optional[ModelType] = None
    inplace_statistics: bool = True
    ignored: IgnoredScope = field(default_factory=IgnoredScope)
    target_arith: TargetArith = TargetArith.EXACT32
    conv_pairing: ConvPairing = ConvPairing.PER_TAP


@dataclass(frozen=True)
class DefaultQuantizationParams(MinMaxParams):
    """MinMax -> FastBiasCorrection (``use_fast_bias``) or BiasCorrection
    (POT algorithms/quantization/default/algorithm.py)."""
    use_fast_bias: bool = True
    threshold: float = 2.0                       # 1000.0 when use_fast_bias is false
    apply_for_all_nodes: bool = False


@dataclass(frozen=True)
class MetricConfig:
    name: str
    baseline_value: Optional[float] = None


@dataclass(frozen=True)
class AccuracyAwareParams:
    """AccuracyAwareQuantization: the AA keys (POT accuracy_aware_common/algorithm.py
    default_config) plus every parameter of the base algorithm in ``base``. Attribute reads
    that are not AA keys fall through to ``base`` (``aa.preset`` is ``aa.base.preset``)."""
    base: DefaultQuantizationParams = field(default_factory=DefaultQuantizationParams)
    maximal_drop: float = 0.01
    drop_type: DropType = DropType.ABSOLUTE
    base_algorithm: AlgorithmName = AlgorithmName.DEFAULT_QUANTIZATION
    ranking_subset_size: Optional[int] = None    # None: min(len(dataset), 300)
    max_iter_num: Optional[int] = None           # None: unlimited (POT: sys.maxsize)
    use_prev_if_drop_increase: bool = True
    metric_subset_ratio: float = 0.5
    tune_hyperparams: bool = False
    convert_to_mixed_preset: bool = False
    annotation_free: bool = False
    annotation_conf_threshold: float = 0.6
    metrics: Optional[Tuple[MetricConfig, ...]] = None
    rerank: Rerank = Rerank.EVERY_ITERATION      # fastq extension (DESIGN §4: re-rank)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: delegate DefaultQuantization keys to base.
        if name.startswith("__") or name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    def effective_ranking_subset_size(self, dataset_size: int) -> int:
        if self.ranking_subset_size is not None:
            return min(self.ranking_subset_size, dataset_size)
        return min(dataset_size, 300)


AlgorithmParams = Union[DefaultQuantizationParams, AccuracyAwareParams, MinMaxParams,
                        BiasCorrectionParams]


@dataclass(frozen=True)
class AlgorithmConfig:
    name: AlgorithmName
    params: AlgorithmParams


@dataclass(frozen=True)
class QuantizationConfig:
    """The whole configuration: algorithms run in order, all for one target device."""
    algorithms: Tuple[AlgorithmConfig, ...]
    target_device: TargetDevice = TargetDevice.ANY

    def __post_init__(self) -> None:
        for algo in self.algorithms:
            if algo.params.target_device != self.target_device:
                raise ConfigError("every algorithm must have target_device "
                                 f"{self.target_device.value!r}, got "
                                 f"{algo.params.target_device.value!r} in {algo.name.value}")

    @property
    def main(self) -> AlgorithmConfig:
        """The first algorithm (the quantization algorithm in every POT config)."""
        return self.algorithms[0]
