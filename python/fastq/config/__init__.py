"""fastq.config: OpenVINO POT's configuration spec, applied to ONNX, as frozen typed objects.

``load`` validates any accepted form; ``to_dict`` writes it back with every default filled in
(``load(to_dict(x)) == x``); ``resolve_layer`` / ``resolve_range_estimator`` give what one
quantizer uses. fastq extensions: ``ignored.patterns``, ``saturation_fix: "auto"`` with
``saturation_threshold``, ``smooth_quant_alpha``, ``target_arith``, ``conv_pairing``,
``rerank`` (AccuracyAware).
"""

from .parse import PRESET_ALIASES, SUPPORTED_BITS, load, rename_preset
from .resolve import (DEFAULT_OUTLIER_PROB, ResolvedLayer, effective_ignored, resolve_layer,
                      resolve_range_estimator)
from .serialize import to_dict
from .types import (AccuracyAwareParams, Aggregator, AlgorithmConfig, AlgorithmName,
                    BiasCorrectionParams, ConvPairing, DefaultQuantizationParams, DropType,
                    Granularity, IgnoredScope, LayerQuantConfig, MetricConfig, MinMaxParams,
                    Mode, ModelType, OpPattern, Preset, QuantizationConfig, RangeEstimatorConfig,
                    RangePreset, Rerank, Role, SaturationFix, StatConfig, StatType, TargetArith,
                    TargetDevice)

__all__ = [
    "AccuracyAwareParams", "Aggregator", "AlgorithmConfig", "AlgorithmName",
    "BiasCorrectionParams", "ConvPairing", "DEFAULT_OUTLIER_PROB", "DefaultQuantizationParams",
    "DropType", "Granularity", "IgnoredScope", "LayerQuantConfig", "MetricConfig",
    "MinMaxParams", "Mode", "ModelType", "OpPattern", "PRESET_ALIASES", "Preset",
    "QuantizationConfig", "RangeEstimatorConfig", "RangePreset", "Rerank", "ResolvedLayer",
    "Role", "SUPPORTED_BITS", "SaturationFix", "StatConfig", "StatType", "TargetArith",
    "TargetDevice",
    "effective_ignored", "load", "rename_preset", "resolve_layer", "resolve_range_estimator",
    "to_dict",
]
