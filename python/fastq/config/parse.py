"""``load``: every accepted config form -> one validated, frozen ``QuantizationConfig``.

Forms: None, {"name", "params"}, a list of those, a full POT config or its bare compression
section, a path to a JSON file, or a ``QuantizationConfig``. Unknown keys, wrong types and
out-of-range values raise ``ConfigError`` naming the key path and the allowed values.
"""

from __future__ import annotations

# POT rules kept (tools/pot/openvino/tools/pot/configs/config.py _configure_algo_params):
# preset aliases, the per-device ``accuracy`` rename, and compression-level keys
# (target_device, model_type, inplace_statistics) copied into every algorithm's params.

import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

from . import _check as c
from .types import (AccuracyAwareParams, Aggregator, AlgorithmConfig, AlgorithmName,
                    BiasCorrectionParams, ConvPairing, DefaultQuantizationParams, DropType,
                    Granularity, IgnoredScope, LayerQuantConfig, MetricConfig, MinMaxParams,
                    Mode, ModelType, OpPattern, Preset, QuantizationConfig, RangeEstimatorConfig,
                    RangePreset, Rerank, Role, SaturationFix, StatConfig, StatType, TargetArith,
                    TargetDevice, _freeze)

SUPPORTED_BITS = (2, 3, 4, 5, 6, 7, 8)    # every grid fits 8-bit QDQ storage

# POT configs/config.py _configure_algo_params: aliases first, then the per-device rename.
PRESET_ALIASES = {"symmetric": "performance", "asymmetric": "accuracy"}
_PRESET_RENAME_BY_DEVICE = {
    TargetDevice.VPU: {Preset.ACCURACY: Preset.ACCURACY},
    TargetDevice.GNA: {Preset.ACCURACY: Preset.ACCURACY, Preset.MIXED: Preset.ACCURACY},
    TargetDevice.CPU: {Preset.ACCURACY: Preset.MIXED},
    TargetDevice.ANY: {Preset.ACCURACY: Preset.MIXED},
    TargetDevice.GPU: {Preset.ACCURACY: Preset.MIXED},
}
_PRESET_RENAME_DEFAULT = {Preset.ACCURACY: Preset.MIXED}   # POT's .get(device, default)


def rename_preset(preset: Preset, device: TargetDevice) -> Preset:
    """POT: ``accuracy`` becomes ``mixed`` except on VPU/GNA; GNA also maps mixed->accuracy."""
    return _PRESET_RENAME_BY_DEVICE.get(device, _PRESET_RENAME_DEFAULT).get(preset, preset)


# --------------------------------------------------------------------------------------------
# Field tables: key -> checker(value, path). A None value means "unset" for Optional fields.

Checker = Callable[[Any, str], Any]


def _opt(check: Checker) -> Checker:
    return lambda v, p: None if v is None else check(v, p)


def _enum(cls, aliases=None) -> Checker:
    return lambda v, p: c.enum(v, cls, p, aliases)


def _int(lo=None, hi=None) -> Checker:
    return lambda v, p: c.integer(v, p, lo, hi)


def _num(lo=None, hi=None, lo_open=False, hi_open=False) -> Checker:
    return lambda v, p: c.number(v, p, lo, hi, lo_open, hi_open)


def _bits(v: Any, path: str) -> int:
    b = c.integer(v, path)
    if b not in SUPPORTED_BITS:
        raise c.fail(path, f"{b} is not a supported bit width; allowed: "
                           f"{', '.join(map(str, SUPPORTED_BITS))}")
    return b


def _fields(d: Mapping[str, Any], table: Mapping[str, Checker], path: str) -> Dict[str, Any]:
    c.check_keys(d, list(table), path)
    return {k: table[k](v, c.join(path, k)) for k, v in d.items()}


def _stat(role: Optional[Role]) -> Checker:
    table = {
        "type": _opt(_enum(StatType)),
        "outlier_prob": _opt(_num(0.0, 1.0, lo_open=True, hi_open=True)),
        "clipping_value": _opt(_num()),
        "granularity": _opt(_enum(Granularity)),
    }
    if role is Role.ACTIVATIONS:        # POT validate_algo_config: aggregator for activations only
        table["aggregator"] = _opt(_enum(Aggregator))
    return lambda v, p: StatConfig(**_fields(c.mapping(v, p), table, p))


def _range_estimator(role: Optional[Role]) -> Checker:
    table = {"preset": _opt(_enum(RangePreset)), "min": _opt(_stat(role)),
             "max": _opt(_stat(role))}
    return lambda v, p: RangeEstimatorConfig(**_fields(c.mapping(v, p), table, p))


def _layer(role: Role) -> Checker:
    table = {
        "bits": _opt(_bits),
        "mode": _opt(_enum(Mode)),
        "granularity": _opt(_enum(Granularity)),
        "level_low": _opt(_int()),
        "level_high": _opt(_int()),
        "range_estimator": _opt(_range_estimator(role)),
    }

    def parse(v: Any, path: str) -> LayerQuantConfig:
        kw = _fields(c.mapping(v, path), table, path)
        _check_levels(kw.get("bits") or 8, kw.get("level_low"), kw.get("level_high"), path)
        return LayerQuantConfig(**kw)
    return parse


def _check_levels(bits: int, lo: Optional[int], hi: Optional[int], path: str) -> None:
    """Levels must fit the signed or unsigned grid of ``bits`` (8-bit storage at most)."""
    smin, umax = -(1 << (bits - 1)), (1 << bits) - 1
    if lo is not None and not smin <= lo <= umax:
        raise c.fail(c.join(path, "level_low"), f"must be in [{smin}, {umax}] for {bits} bits, "
                                                 f"got {lo}")
    if hi is not None and not smin <= hi <= umax:
        raise c.fail(c.join(path, "level_high"), f"must be in [{smin}, {umax}] for {bits} bits, "
                                                  f"got {hi}")
    if lo is not None and hi is not None:
        if lo >= hi:
            raise c.fail(c.join(path, "level_high"), f"must be > level_low ({lo}), got {hi}")
        if lo < 0 and hi > -smin - 1:
            raise c.fail(c.join(path, "level_high"), f"a signed grid (level_low {lo} < 0) "
                                                      f"needs level_high <= {-smin - 1}, got {hi}")


def _op_pattern(v: Any, path: str) -> OpPattern:
    d = c.mapping(v, path)
    c.check_keys(d, ["type", "attributes"], path)
    if "type" not in d:
        raise c.fail(c.join(path, "type"), "missing required key")
    attrs = c.mapping(d.get("attributes", {}), c.join(path, "attributes"))
    for k in attrs:
        c.string(k, c.join(path, "attributes"))
    return OpPattern(type=c.string(d["type"], c.join(path, "type")),
                     attributes=tuple(sorted((k, _freeze(a)) for k, a in attrs.items())))


def _op_list(v: Any, path: str) -> tuple:
    if not isinstance(v, (list, tuple)):
        raise c.fail(path, f"expected a list of {{\"type\": ..., \"attributes\": ...}}, "
                           f"got {type(v).__name__} {v!r}")
    return tuple(_op_pattern(item, f"{path}[{i}]") for i, item in enumerate(v))


def _patterns(v: Any, path: str) -> tuple:
    pats = c.string_list(v, path)
    for i, p in enumerate(pats):
        try:
            re.compile(p)
        except re.error as e:
            raise c.fail(f"{path}[{i}]", f"invalid regular expression {p!r}: {e}") from None
    return pats


_IGNORED = {"scope": c.string_list, "operations": _op_list, "patterns": _patterns}


def _ignored(v: Any, path: str) -> IgnoredScope:
    return IgnoredScope(**_fields(c.mapping(v, path), _IGNORED, path))


def _metrics(v: Any, path: str) -> tuple:
    if not isinstance(v, (list, tuple)):
        raise c.fail(path, f"expected a list of {{\"name\": ..., \"baseline_value\": ...}}, "
                           f"got {type(v).__name__} {v!r}")
    out = []
    for i, item in enumerate(v):
        p = f"{path}[{i}]"
        d = c.mapping(item, p)
        c.check_keys(d, ["name", "baseline_value"], p)
        if "name" not in d:
            raise c.fail(c.join(p, "name"), "missing required key")
        out.append(MetricConfig(name=c.string(d["name"], c.join(p, "name")),
                                baseline_value=_opt(_num())(d.get("baseline_value"),
                                                            c.join(p, "baseline_value"))))
    return tuple(out)


def _model_type(v: Any, path: str) -> Optional[ModelType]:
    if v is None or v == "None":          # POT: model_type "None" means none
        return None
    return c.enum(v, ModelType, path)


# Keys every algorithm takes (POT: compression-level keys copied into params + sampling).
_COMMON = {
    "target_device": _enum(TargetDevice),
    "stat_subset_size": _opt(_int(lo=1)),
    "stat_batch_size": _int(lo=1),
    "shuffle_data": c.boolean,
    "seed": _int(lo=0),
    "model_type": _model_type,
    "inplace_statistics": c.boolean,
    "ignored": _ignored,
    "target_arith": _enum(TargetArith),
    "conv_pairing": _enum(ConvPairing),
}
_MINMAX = {
    **_COMMON,
    "preset": _enum(Preset, PRESET_ALIASES),
    "saturation_fix": _enum(SaturationFix),
    "saturation_threshold": _num(0.0, 1.0),
    "weights": _layer(Role.WEIGHTS),
    "activations": _layer(Role.ACTIVATIONS),
    "range_estimator": _opt(_range_estimator(None)),
    "smooth_quant_alpha": _opt(_num(0.0, 1.0)),
}
_BIAS = {
    **_COMMON,
    "threshold": _num(0.0, lo_open=True),
    "apply_for_all_nodes": c.boolean,
}
_DEFAULT = {**_MINMAX, **_BIAS, "use_fast_bias": c.boolean}
_AA = {
    "maximal_drop": _num(0.0),
    "drop_type": _enum(DropType),
    "base_algorithm": lambda v, p: _base_algorithm(v, p),
    "ranking_subset_size": _opt(_int(lo=1)),
    "max_iter_num": _opt(_int(lo=0)),
    "use_prev_if_drop_increase": c.boolean,
    "metric_subset_ratio": _num(0.0, 1.0, lo_open=True),
    "tune_hyperparams": c.boolean,
    "convert_to_mixed_preset": c.boolean,
    "annotation_free": c.boolean,
    "annotation_conf_threshold": _num(0.0, 1.0),
    "metrics": _opt(_metrics),
    "rerank": _enum(Rerank),
}


def _base_algorithm(v: Any, path: str) -> AlgorithmName:
    # POT's AccuracyAwareQuantization accepts any quantization algorithm as its base; fastq's
    # are DefaultQuantization and MinMaxQuantization (POT's annotation-free sample uses it).
    name = c.enum(v, AlgorithmName, path)
    allowed = (AlgorithmName.DEFAULT_QUANTIZATION, AlgorithmName.MIN_MAX_QUANTIZATION)
    if name not in allowed:
        raise c.fail(path, f"{name.value!r} is not supported as base_algorithm; allowed: "
                           + ", ".join(repr(a.value) for a in allowed))
    return name


def _finish_preset(kw: Dict[str, Any]) -> None:
    if "preset" in kw:
        kw["preset"] = rename_preset(kw["preset"], kw.get("target_device", TargetDevice.ANY))


def _parse_params(name: AlgorithmName, d: Dict[str, Any], path: str):
    if name is AlgorithmName.ACCURACY_AWARE_QUANTIZATION:
        c.check_keys(d, list(_AA) + list(_DEFAULT), path)
        aa = {k: _AA[k](v, c.join(path, k)) for k, v in d.items() if k in _AA}
        base = _parse_params(AlgorithmName.DEFAULT_QUANTIZATION,
                             {k: v for k, v in d.items() if k not in _AA}, path)
        return AccuracyAwareParams(base=base, **aa)
    if name is AlgorithmName.DEFAULT_QUANTIZATION:
        kw = _fields(d, _DEFAULT, path)
        _finish_preset(kw)
        if "threshold" not in kw and not kw.get("use_fast_bias", True):
            kw["threshold"] = 1000.0       # POT bias_correction/algorithm.py default
        return DefaultQuantizationParams(**kw)
    if name is AlgorithmName.MIN_MAX_QUANTIZATION:
        kw = _fields(d, _MINMAX, path)
        _finish_preset(kw)
        return MinMaxParams(**kw)
    kw = _fields(d, _BIAS, path)
    if "threshold" not in kw and name is AlgorithmName.BIAS_CORRECTION:
        kw["threshold"] = 1000.0
    return BiasCorrectionParams(**kw)


# --------------------------------------------------------------------------------------------
# Forms

_COMPRESSION_LEVEL = ("target_device", "model_type", "inplace_statistics")


def _algorithm(v: Any, path: str, inherited: Mapping[str, Any]) -> AlgorithmConfig:
    d = c.mapping(v, path)
    c.check_keys(d, ["name", "params"], path)
    if "name" not in d:
        raise c.fail(c.join(path, "name"), "missing required key (the algorithm name)")
    name = c.enum(d["name"], AlgorithmName, c.join(path, "name"))
    ppath = c.join(path, "params")
    params = c.mapping(d.get("params", {}), ppath)
    for key, value in inherited.items():
        if key in params and params[key] != value:
            raise c.fail(c.join(ppath, key), f"{params[key]!r} conflicts with "
                                             f"compression.{key} = {value!r}")
        params[key] = value
    return AlgorithmConfig(name=name, params=_parse_params(name, params, ppath))


def _algorithms(items: Any, path: str, inherited: Mapping[str, Any]) -> QuantizationConfig:
    if not isinstance(items, (list, tuple)):
        raise c.fail(path, f"expected a list of {{\"name\": ..., \"params\": ...}}, "
                           f"got {type(items).__name__}")
    if not items:
        raise c.fail(path, "needs at least one algorithm")
    algos = tuple(_algorithm(a, f"{path}[{i}]", inherited) for i, a in enumerate(items))
    device = algos[0].params.target_device
    for i, a in enumerate(algos):
        if a.params.target_device != device:
            raise c.fail(f"{path}[{i}].params.target_device",
                         f"{a.params.target_device.value!r} differs from {path}[0]'s "
                         f"{device.value!r}; all algorithms target one device")
    return QuantizationConfig(algorithms=algos, target_device=device)


def _full(d: Dict[str, Any]) -> QuantizationConfig:
    # model/engine describe OpenVINO IR paths and the accuracy checker: fastq takes the model
    # and the data as arguments, so these sections are accepted (as objects) and not used.
    c.check_keys(d, ["model", "engine", "compression"], "")
    for key in ("model", "engine"):
        if key in d:
            c.mapping(d[key], key)
    if "compression" not in d:
        raise c.fail("compression", "missing required key")
    return _compression(c.mapping(d["compression"], "compression"), "compression")


def _compression(comp: Dict[str, Any], path: str) -> QuantizationConfig:
    """The ``compression`` section: algorithms plus keys POT copies into every algorithm."""
    c.check_keys(comp, ["algorithms", *_COMPRESSION_LEVEL], path)
    if "algorithms" not in comp:
        raise c.fail(c.join(path, "algorithms"), "missing required key")
    inherited = {k: comp[k] for k in _COMPRESSION_LEVEL if k in comp}
    if "target_device" in inherited:   # validate here so the error names this key
        c.enum(inherited["target_device"], TargetDevice, c.join(path, "target_device"))
    return _algorithms(comp["algorithms"], c.join(path, "algorithms"), inherited)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise c.fail("", f"config file not found: {str(path)!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise c.fail("", f"cannot read config file {str(path)!r}: {e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise c.fail("", f"config file {str(path)!r} is not valid JSON: {e.msg} "
                         f"(line {e.lineno}, column {e.colno})") from None


def load(cfg: Any = None) -> QuantizationConfig:
    """Parse and validate a configuration in any accepted form (see module docstring)."""
    if cfg is None:
        return QuantizationConfig(algorithms=(AlgorithmConfig(
            AlgorithmName.DEFAULT_QUANTIZATION, DefaultQuantizationParams()),))
    if isinstance(cfg, QuantizationConfig):
        return cfg
    if isinstance(cfg, (str, os.PathLike)):
        data = _read_json(Path(cfg))
        if isinstance(data, (str, os.PathLike)) or data is None:
            raise c.fail("", f"config file {str(cfg)!r} must hold an object or a list")
        return load(data)
    if isinstance(cfg, (list, tuple)):
        return _algorithms(cfg, "algorithms", {})
    if isinstance(cfg, Mapping):
        d = dict(cfg)
        if any(k in d for k in ("compression", "model", "engine")):
            return _full(d)
        if "algorithms" in d:                  # a bare compression section
            return _compression(d, "")
        return _algorithms([d], "algorithms", {})
    raise c.fail("", "a config is None, a dict, a list of algorithm dicts or a path to a "
                     f"JSON file; got {type(cfg).__name__}")
