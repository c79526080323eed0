"""fastq.config.load / to_dict: accepted forms, POT's code defaults, POT's preset rules, round
trips, and one error test per kind of bad config (each message names the key path)."""

import dataclasses
import json

import pytest

import fastq
from fastq import config as C
from fastq.config import (AlgorithmName, Preset, SaturationFix, TargetDevice)


def params(cfg=None):
    return C.load(cfg).algorithms[0].params


def dq(**p):
    return {"name": "DefaultQuantization", "params": p}


# ------------------------------------------------------------------------------ defaults


def test_none_is_default_quantization_with_pot_defaults():
    q = C.load(None)
    assert len(q.algorithms) == 1 and q.main.name is AlgorithmName.DEFAULT_QUANTIZATION
    p = q.main.params
    assert q.target_device is TargetDevice.ANY          # configs/config.py DEFAULT_TARGET_DEVICE
    assert p.preset is Preset.PERFORMANCE               # configs/config.py DEFAULT_PRESET
    assert p.stat_subset_size is None                   # minmax: len(data_loader): all samples
    assert p.stat_batch_size == 1
    assert p.shuffle_data is False and p.seed == 0      # default/algorithm.py get(...)
    assert p.use_fast_bias is True                      # default/algorithm.py
    assert p.threshold == 2.0                           # fast_bias_correction get('threshold', 2.0)
    assert p.apply_for_all_nodes is False
    assert p.model_type is None
    assert p.inplace_statistics is True                 # config.py compression.inplace_statistics
    assert p.saturation_fix is SaturationFix.FIRST_LAYER  # fake_quantize.set_rescaling_factors
    assert p.ignored == C.IgnoredScope()
    assert p.weights == C.LayerQuantConfig() and p.activations == C.LayerQuantConfig()
    assert p.range_estimator is None
    # fastq extensions
    assert p.smooth_quant_alpha == 0.95
    assert p.target_arith is C.TargetArith.EXACT32
    assert p.conv_pairing is C.ConvPairing.PER_TAP
    assert p.saturation_threshold == 1e-3


def test_full_bias_correction_threshold_default_is_1000():
    assert params(dq(use_fast_bias=False)).threshold == 1000.0   # bias_correction get(.., 1000.0)
    assert params(dq(use_fast_bias=False, threshold=5)).threshold == 5.0
    assert params({"name": "BiasCorrection"}).threshold == 1000.0
    assert params({"name": "FastBiasCorrection"}).threshold == 2.0


def test_accuracy_aware_defaults_match_pot():
    # accuracy_aware_common/algorithm.py default_config
    p = params({"name": "AccuracyAwareQuantization", "params": {}})
    assert isinstance(p, C.AccuracyAwareParams)
    assert p.maximal_drop == 0.01
    assert p.drop_type is C.DropType.ABSOLUTE
    assert p.base_algorithm is AlgorithmName.DEFAULT_QUANTIZATION
    assert p.ranking_subset_size is None and p.effective_ranking_subset_size(1000) == 300
    assert p.effective_ranking_subset_size(40) == 40
    assert p.max_iter_num is None                       # POT sys.maxsize: unlimited
    assert p.use_prev_if_drop_increase is True
    assert p.metric_subset_ratio == 0.5
    assert p.tune_hyperparams is False and p.convert_to_mixed_preset is False
    assert p.annotation_free is False and p.annotation_conf_threshold == 0.6
    assert p.metrics is None
    assert p.base == C.DefaultQuantizationParams()
    assert p.preset is Preset.PERFORMANCE and p.threshold == 2.0   # delegated to base


def test_accuracy_aware_takes_every_default_quantization_param():
    p = params({"name": "AccuracyAwareQuantization", "params": {
        "preset": "mixed", "stat_subset_size": 300, "maximal_drop": 0.005,
        "drop_type": "relative", "ranking_subset_size": 100, "max_iter_num": 5,
        "metrics": [{"name": "accuracy", "baseline_value": 0.76}, {"name": "top5"}],
        "target_arith": "sat16pair", "weights": {"bits": 8}}})
    assert p.base.preset is Preset.MIXED and p.stat_subset_size == 300
    assert p.maximal_drop == 0.005 and p.drop_type is C.DropType.RELATIVE
    assert p.metrics == (C.MetricConfig("accuracy", 0.76), C.MetricConfig("top5", None))
    assert p.target_arith is C.TargetArith.SAT16PAIR and p.weights.bits == 8


def test_enums_are_str_and_objects_frozen():
    p = params(None)
    assert isinstance(p.preset, str) and p.preset == "performance"
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.preset = Preset.MIXED
    assert hash(C.load(None)) == hash(C.load(None))


# ------------------------------------------------------------------------------ presets


@pytest.mark.parametrize("device,given,want", [
    ("CPU", "accuracy", "mixed"), ("ANY", "accuracy", "mixed"), ("GPU", "accuracy", "mixed"),
    ("NPU", "accuracy", "mixed"), ("CPU_SPR", "accuracy", "mixed"),   # POT's default rename
    ("VPU", "accuracy", "accuracy"), ("GNA", "accuracy", "accuracy"), ("GNA", "mixed", "accuracy"),
    ("CPU", "mixed", "mixed"), ("CPU", "performance", "performance"),
    ("CPU", "symmetric", "performance"), ("CPU", "asymmetric", "mixed"),
    ("VPU", "asymmetric", "accuracy"), ("ANY", "symmetric", "performance"),
])
def test_preset_aliases_and_device_rename(device, given, want):
    # configs/config.py _configure_algo_params
    assert params(dq(target_device=device, preset=given)).preset.value == want
    full = {"compression": {"target_device": device, "algorithms": [dq(preset=given)]}}
    assert params(full).preset.value == want


# ------------------------------------------------------------------------------ forms


FULL = {
    "model": {"model_name": "m", "model": "m.xml", "weights": "m.bin"},
    "engine": {"type": "simplified", "data_source": "/data"},
    "compression": {
        "target_device": "CPU", "model_type": "transformer", "inplace_statistics": False,
        "algorithms": [{"name": "DefaultQuantization", "params": {
            "preset": "accuracy", "stat_subset_size": 300,
            "ignored": {"scope": ["conv1"], "patterns": ["^head/.*"],
                        "operations": [{"type": "Conv", "attributes": {"group": 32,
                                                                        "pads": [1, 1, 1, 1]}}]},
            "weights": {"bits": 8, "mode": "symmetric", "granularity": "perchannel",
                        "level_low": -127, "level_high": 127,
                        "range_estimator": {"max": {"type": "abs_max"}}},
            "activations": {"range_estimator": {
                "preset": "quantile",
                "max": {"aggregator": "median", "outlier_prob": 1e-3, "clipping_value": 6.0},
                "min": {"type": "quantile", "granularity": "pertensor"}}},
            "saturation_fix": "auto", "saturation_threshold": 0.01,
            "smooth_quant_alpha": None, "conv_pairing": "flat"}}]}}


def test_full_pot_config_applies_compression_level_keys():
    q = C.load(FULL)
    p = q.main.params
    assert q.target_device is TargetDevice.CPU and p.target_device is TargetDevice.CPU
    assert p.model_type is C.ModelType.TRANSFORMER and p.inplace_statistics is False
    assert p.preset is Preset.MIXED                      # accuracy renamed on CPU
    assert p.ignored.scope == ("conv1",) and p.ignored.patterns == ("^head/.*",)
    assert p.ignored.operations == (C.OpPattern("Conv", (("group", 32),
                                                         ("pads", (1, 1, 1, 1)))),)
    mx = p.activations.range_estimator.max
    assert mx == C.StatConfig(aggregator=C.Aggregator.MEDIAN, outlier_prob=1e-3,
                              clipping_value=6.0)
    assert p.saturation_fix is SaturationFix.AUTO and p.saturation_threshold == 0.01
    assert p.smooth_quant_alpha is None and p.conv_pairing is C.ConvPairing.FLAT


def test_list_form_and_standalone_pot_algorithms():
    q = C.load([{"name": "MinMaxQuantization", "params": {"preset": "mixed",
                                                          "stat_subset_size": 10}},
                {"name": "FastBiasCorrection", "params": {"threshold": 1.5}}])
    assert [a.name for a in q.algorithms] == [AlgorithmName.MIN_MAX_QUANTIZATION,
                                              AlgorithmName.FAST_BIAS_CORRECTION]
    assert isinstance(q.algorithms[0].params, C.MinMaxParams)
    assert isinstance(q.algorithms[1].params, C.BiasCorrectionParams)
    assert q.algorithms[1].params.threshold == 1.5
    with pytest.raises(fastq.ConfigError, match=r"algorithms\[0\]\.params\.use_fast_bias"):
        C.load({"name": "MinMaxQuantization", "params": {"use_fast_bias": True}})
    with pytest.raises(fastq.ConfigError, match=r"algorithms\[0\]\.params\.preset"):
        C.load({"name": "BiasCorrection", "params": {"preset": "mixed"}})


def test_json_file_path_str_and_pathlib(tmp_path):
    f = tmp_path / "pot.json"
    f.write_text(json.dumps(FULL))
    assert C.load(f) == C.load(FULL) == C.load(str(f))


def test_model_type_none_string_means_none():
    assert params(dq(model_type="None")).model_type is None
    assert params(dq(model_type=None)).model_type is None


def test_ignored_scope_matching():
    ig = params(FULL).ignored
    assert ig.is_ignored("conv1", "Conv")
    assert ig.is_ignored("head/fc", "Gemm")                       # regex, fullmatch
    assert not ig.is_ignored("xhead/fc", "Gemm")
    assert ig.is_ignored("c7", "Conv", {"group": 32, "pads": [1, 1, 1, 1], "strides": [1, 1]})
    assert not ig.is_ignored("c7", "Conv", {"group": 1, "pads": [1, 1, 1, 1]})
    assert not ig.is_ignored("c7", "Conv", {"pads": [1, 1, 1, 1]})


# ------------------------------------------------------------------------------ round trips


ROUND_TRIP_CASES = [
    None,
    dq(),
    dq(use_fast_bias=False),
    dq(target_device="VPU", preset="asymmetric", seed=7, shuffle_data=True),
    FULL,
    {"name": "AccuracyAwareQuantization", "params": {
        "maximal_drop": 0.02, "metrics": [{"name": "acc"}], "max_iter_num": 0,
        "range_estimator": {"preset": "quantile", "max": {"type": "abs_quantile"}}}},
    [{"name": "MinMaxQuantization", "params": {"weights": {"mode": "asymmetric"}}},
     {"name": "BiasCorrection", "params": {"apply_for_all_nodes": True}}],
]


@pytest.mark.parametrize("cfg", ROUND_TRIP_CASES, ids=range(len(ROUND_TRIP_CASES)))
def test_round_trip(cfg):
    q = C.load(cfg)
    d = C.to_dict(q)
    assert json.loads(json.dumps(d)) == d                  # plain JSON data
    assert C.load(d) == q
    assert C.to_dict(C.load(d)) == d
    assert d["compression"]["target_device"] == q.target_device.value


def test_to_dict_fills_defaults():
    p = C.to_dict(dq(preset="mixed"))["compression"]["algorithms"][0]["params"]
    assert p["preset"] == "mixed" and p["threshold"] == 2.0 and p["stat_subset_size"] is None
    assert p["saturation_fix"] == "first_layer" and p["inplace_statistics"] is True
    aa = C.to_dict({"name": "AccuracyAwareQuantization"})["compression"]["algorithms"][0]
    assert aa["params"]["maximal_drop"] == 0.01 and aa["params"]["preset"] == "performance"
    assert "base" not in aa["params"]                     # flat, as POT writes it


# ------------------------------------------------------------------------------ errors


def err(cfg, *fragments):
    with pytest.raises(fastq.ConfigError) as e:
        C.load(cfg)
    msg = str(e.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return msg


def test_config_error_is_a_value_error():
    assert issubclass(fastq.ConfigError, ValueError)


def test_unknown_top_level_key():
    err({"model": {}, "compresion": {}}, "compresion", "did you mean 'compression'")
    err({"compression": {"algorithms": [dq()], "target_devise": "CPU"}},
        "compression.target_devise", "did you mean 'target_device'")


def test_unknown_nested_key_with_suggestion():
    err(dq(activations={"range_estimator": {"max": {"agregator": "mean"}}}),
        "algorithms[0].params.activations.range_estimator.max.agregator",
        "did you mean 'aggregator'", "'type'")
    err(dq(stat_subset_sise=3), "algorithms[0].params.stat_subset_sise",
        "did you mean 'stat_subset_size'")
    err({"name": "DefaultQuantization", "parms": {}}, "algorithms[0].parms", "'params'")


def test_aggregator_is_for_activations_only():
    err(dq(weights={"range_estimator": {"max": {"aggregator": "mean"}}}),
        "algorithms[0].params.weights.range_estimator.max.aggregator", "unknown key")


@pytest.mark.parametrize("p,path,frag", [
    ({"stat_subset_size": "300"}, "params.stat_subset_size", "expected an integer"),
    ({"stat_subset_size": True}, "params.stat_subset_size", "got bool"),
    ({"seed": 1.0}, "params.seed", "expected an integer"),
    ({"shuffle_data": 1}, "params.shuffle_data", "expected true or false"),
    ({"threshold": "2"}, "params.threshold", "expected a number"),
    ({"threshold": False}, "params.threshold", "expected a number"),
    ({"weights": []}, "params.weights", "expected an object"),
    ({"ignored": {"scope": "conv1"}}, "params.ignored.scope", "list of strings"),
    ({"ignored": {"operations": [{"attributes": {}}]}}, "params.ignored.operations[0].type",
     "missing"),
    ({"preset": 1}, "params.preset", "expected one of"),
])
def test_wrong_type(p, path, frag):
    err(dq(**p), "algorithms[0]." + path, frag)


@pytest.mark.parametrize("p,path,frag", [
    ({"stat_subset_size": 0}, "params.stat_subset_size", ">= 1"),
    ({"stat_subset_size": -5}, "params.stat_subset_size", ">= 1"),
    ({"stat_batch_size": 0}, "params.stat_batch_size", ">= 1"),
    ({"seed": -1}, "params.seed", ">= 0"),
    ({"threshold": 0}, "params.threshold", "(0, inf]"),
    ({"smooth_quant_alpha": 1.5}, "params.smooth_quant_alpha", "[0, 1]"),
    ({"saturation_threshold": -0.1}, "params.saturation_threshold", "[0, 1]"),
    ({"weights": {"bits": 9}}, "params.weights.bits", "allowed: 2, 3, 4, 5, 6, 7, 8"),
    ({"weights": {"bits": 16}}, "params.weights.bits", "not a supported bit width"),
    ({"activations": {"range_estimator": {"max": {"outlier_prob": 0}}}},
     "params.activations.range_estimator.max.outlier_prob", "(0, 1)"),
    ({"activations": {"range_estimator": {"min": {"outlier_prob": 1.0}}}},
     "params.activations.range_estimator.min.outlier_prob", "(0, 1)"),
    ({"weights": {"level_low": -129}}, "params.weights.level_low", "[-128, 255]"),
    ({"weights": {"level_low": 5, "level_high": 5}}, "params.weights.level_high", "> level_low"),
    ({"weights": {"level_low": -128, "level_high": 255}}, "params.weights.level_high",
     "signed grid"),
    ({"activations": {"range_estimator": {"max": {"clipping_value": float("nan")}}}},
     "params.activations.range_estimator.max.clipping_value", "finite"),
])
def test_out_of_range(p, path, frag):
    err(dq(**p), "algorithms[0]." + path, frag)


def test_accuracy_aware_out_of_range_and_types():
    aa = lambda **p: {"name": "AccuracyAwareQuantization", "params": p}  # noqa: E731
    err(aa(maximal_drop=-0.1), "params.maximal_drop", "[0, inf]")
    err(aa(metric_subset_ratio=0), "params.metric_subset_ratio", "(0, 1]")
    err(aa(ranking_subset_size=0), "params.ranking_subset_size", ">= 1")
    err(aa(max_iter_num=-1), "params.max_iter_num", ">= 0")
    err(aa(annotation_conf_threshold=2), "params.annotation_conf_threshold", "[0, 1]")
    err(aa(metrics=[{"baseline_value": 1}]), "params.metrics[0].name", "missing")
    err(aa(metrics=[{"name": "a", "baselin_value": 1}]), "params.metrics[0].baselin_value",
        "did you mean 'baseline_value'")
    err(aa(base_algorithm="FastBiasCorrection"), "params.base_algorithm",
        "'DefaultQuantization', 'MinMaxQuantization'")
    assert C.load(aa(base_algorithm="MinMaxQuantization")).main.params.base_algorithm \
        is AlgorithmName.MIN_MAX_QUANTIZATION
    err(aa(drop_type="abs"), "params.drop_type", "'absolute', 'relative'")


@pytest.mark.parametrize("p,path,allowed", [
    ({"preset": "perfomance"}, "params.preset",
     "'performance', 'mixed', 'accuracy', 'symmetric', 'asymmetric'; did you mean 'performance'"),
    ({"target_device": "CPUX"}, "params.target_device", "'ANY', 'CPU', 'GPU'"),
    ({"saturation_fix": "first"}, "params.saturation_fix",
     "'first_layer', 'all', 'no', 'auto'"),
    ({"model_type": "Transformer"}, "params.model_type", "did you mean 'transformer'"),
    ({"target_arith": "sat16"}, "params.target_arith", "'exact32', 'sat16pair'"),
    ({"conv_pairing": "pertap"}, "params.conv_pairing", "did you mean 'per_tap'"),
    ({"activations": {"mode": "sym"}}, "params.activations.mode", "'symmetric', 'asymmetric'"),
    ({"weights": {"granularity": "per_channel"}}, "params.weights.granularity",
     "did you mean 'perchannel'"),
    ({"activations": {"range_estimator": {"max": {"aggregator": "meen"}}}},
     "params.activations.range_estimator.max.aggregator",
     "'min', 'max', 'mean', 'median', 'mean_no_outliers', 'median_no_outliers', "
     "'hl_estimator'; did you mean 'mean'"),
    ({"activations": {"range_estimator": {"max": {"type": "absmax"}}}},
     "params.activations.range_estimator.max.type", "did you mean 'abs_max'"),
    ({"activations": {"range_estimator": {"preset": "quantil"}}},
     "params.activations.range_estimator.preset", "'default', 'quantile'"),
])
def test_bad_enum_value_lists_allowed(p, path, allowed):
    err(dq(**p), "algorithms[0]." + path, allowed)


def test_bad_json_file_path(tmp_path):
    err(tmp_path / "missing.json", "config file not found", "missing.json")
    err(str(tmp_path), "config file not found")           # a directory is not a file


def test_malformed_json(tmp_path):
    f = tmp_path / "bad.json"
    f.write_text('{"name": "DefaultQuantization", "params": {"preset": "mixed",}}')
    err(f, "not valid JSON", "line 1")


def test_unknown_algorithm_name():
    err({"name": "DefaultQuantisation"}, "algorithms[0].name",
        "did you mean 'DefaultQuantization'", "'AccuracyAwareQuantization'")
    err({"name": "QuantizeModelFinetuning"}, "algorithms[0].name", "is not one of")
    err({"params": {}}, "algorithms[0].name", "missing required key")


def test_bad_regex_in_ignored_patterns():
    err(dq(ignored={"patterns": ["ok.*", "conv[0-9"]}), "algorithms[0].params.ignored.patterns[1]",
        "invalid regular expression")


def test_structure_errors():
    err([], "algorithms", "at least one")
    err(42, "a config is None, a dict")
    err({"name": "DefaultQuantization", "params": [1]}, "algorithms[0].params", "an object")
    err({"compression": {}}, "compression.algorithms", "missing")
    err({"model": {}}, "compression", "missing")
    err({"compression": {"target_device": "CPU", "algorithms": [dq(target_device="GPU")]}},
        "compression.algorithms[0].params.target_device", "conflicts")
    err([dq(target_device="CPU"), {"name": "FastBiasCorrection"}],
        "algorithms[1].params.target_device", "one device")
    err({"compression": {"target_device": "TPU", "algorithms": [dq()]}},
        "compression.target_device", "'ANY'")


def test_direct_construction_checks_one_device():
    cpu = C.AlgorithmConfig(AlgorithmName.DEFAULT_QUANTIZATION,
                            C.DefaultQuantizationParams(target_device=TargetDevice.CPU))
    assert C.QuantizationConfig((cpu,), TargetDevice.CPU).main is cpu
    with pytest.raises(fastq.ConfigError, match="target_device"):
        C.QuantizationConfig((cpu,), TargetDevice.GPU)


def test_enums_print_as_their_values():
    assert str(Preset.MIXED) == "mixed" and f"{TargetDevice.CPU_SPR}" == "CPU_SPR"
    assert json.dumps({"p": Preset.MIXED}) == '{"p": "mixed"}'


@pytest.mark.parametrize("device,want", [("CPU", "first_layer"), ("ANY", "first_layer"),
                                         ("GPU", "no"), ("CPU_SPR", "no"), ("VPU", "no")])
def test_saturation_fix_only_for_cpu_or_any(device, want):
    # POT fake_quantize.py set_rescaling_factors: target_device not in ['CPU', 'ANY'] -> none
    assert params(dq(target_device=device)).effective_saturation_fix.value == want
    aa = params({"name": "AccuracyAwareQuantization", "params": {"target_device": device,
                                                                 "saturation_fix": "all"}})
    assert aa.effective_saturation_fix.value == ("all" if want != "no" else "no")


def test_bare_compression_section():
    q = C.load({"target_device": "CPU", "algorithms": [dq(preset="accuracy")]})
    assert q.target_device is TargetDevice.CPU and q.main.params.preset is Preset.MIXED
    assert q == C.load({"compression": {"target_device": "CPU",
                                        "algorithms": [dq(preset="accuracy")]}})
    err({"algorithms": [dq()], "target_devise": "CPU"}, "target_devise",
        "did you mean 'target_device'")
    err({"algorithms": [{"name": "X"}]}, "algorithms[0].name", "is not one of")
