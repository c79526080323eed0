"""Range-estimator resolution and per-role resolution against POT's tables, restated here
independently (POT algorithms/quantization/range_estimator.py; DESIGN.md section 4)."""

import itertools

import pytest

import fastq
from fastq import config as C
from fastq.config import Aggregator as A
from fastq.config import Granularity as G
from fastq.config import Mode as M
from fastq.config import RangePreset as P
from fastq.config import Role as R
from fastq.config import StatType as T

PT, PC = G.PERTENSOR, G.PERCHANNEL
Q = 1e-4

# (role, mode, granularity, preset) -> (min, max); each side (type, aggregator, granularity or
# None for "the quantizer's"), None for "no side". outlier_prob is 1e-4 everywhere by default.
EXPECTED = {}
for g in (PT, PC):
    # weights: abs_max (sym, min derived as -max) or min/max (asym); quantile preset uses
    # abs_quantile / quantile. No aggregator (one sample).
    EXPECTED[(R.WEIGHTS, M.SYMMETRIC, g, P.DEFAULT)] = (None, (T.ABS_MAX, None, None))
    EXPECTED[(R.WEIGHTS, M.ASYMMETRIC, g, P.DEFAULT)] = ((T.MIN, None, None), (T.MAX, None, None))
    EXPECTED[(R.WEIGHTS, M.SYMMETRIC, g, P.QUANTILE)] = (None, (T.ABS_QUANTILE, None, None))
    EXPECTED[(R.WEIGHTS, M.ASYMMETRIC, g, P.QUANTILE)] = ((T.QUANTILE, None, None),
                                                          (T.QUANTILE, None, None))
# activations per tensor: sym min = min of per-sample min, max = mean of per-sample abs_max;
# asym mean of min / mean of max.
EXPECTED[(R.ACTIVATIONS, M.SYMMETRIC, PT, P.DEFAULT)] = ((T.MIN, A.MIN, None),
                                                         (T.ABS_MAX, A.MEAN, None))
EXPECTED[(R.ACTIVATIONS, M.ASYMMETRIC, PT, P.DEFAULT)] = ((T.MIN, A.MEAN, None),
                                                          (T.MAX, A.MEAN, None))
EXPECTED[(R.ACTIVATIONS, M.SYMMETRIC, PT, P.QUANTILE)] = ((T.MIN, A.MIN, None),
                                                          (T.ABS_QUANTILE, A.MEAN, None))
EXPECTED[(R.ACTIVATIONS, M.ASYMMETRIC, PT, P.QUANTILE)] = ((T.QUANTILE, A.MEAN, None),
                                                           (T.QUANTILE, A.MEAN, None))
# activations per channel: aggregated with min/max; the symmetric min is per tensor.
EXPECTED[(R.ACTIVATIONS, M.SYMMETRIC, PC, P.DEFAULT)] = ((T.MIN, A.MIN, PT),
                                                         (T.ABS_MAX, A.MAX, None))
EXPECTED[(R.ACTIVATIONS, M.ASYMMETRIC, PC, P.DEFAULT)] = ((T.MIN, A.MIN, None),
                                                          (T.MAX, A.MAX, None))
EXPECTED[(R.ACTIVATIONS, M.SYMMETRIC, PC, P.QUANTILE)] = ((T.MIN, A.MIN, PT),
                                                          (T.ABS_QUANTILE, A.MAX, None))
EXPECTED[(R.ACTIVATIONS, M.ASYMMETRIC, PC, P.QUANTILE)] = ((T.QUANTILE, A.MIN, None),
                                                           (T.QUANTILE, A.MAX, None))

COMBOS = list(itertools.product(R, M, G, P))


def test_table_covers_every_combination():
    assert set(EXPECTED) == set(COMBOS) and len(COMBOS) == 16


def _want_side(spec, granularity):
    if spec is None:
        return None
    t, agg, g = spec
    return C.StatConfig(type=t, aggregator=agg, outlier_prob=Q, clipping_value=None,
                        granularity=g or granularity)


@pytest.mark.parametrize("role,mode,gran,preset", COMBOS)
def test_preset_resolution_every_combination(role, mode, gran, preset):
    want_min, want_max = EXPECTED[(role, mode, gran, preset)]
    # the preset given three ways: argument, in a bare estimator, in a layer section of params
    got = [C.resolve_range_estimator(None, role, mode, gran, preset=preset),
           C.resolve_range_estimator(C.RangeEstimatorConfig(preset=preset), role.value,
                                     mode.value, gran.value)]
    p = C.load({"name": "DefaultQuantization", "params": {
        role.value: {"range_estimator": {"preset": preset.value}}}}).main.params
    got.append(C.resolve_range_estimator(p, role, mode, gran))
    for re_cfg in got:
        assert re_cfg.preset is preset
        assert re_cfg.min == _want_side(want_min, gran)
        assert re_cfg.max == _want_side(want_max, gran)


def test_default_preset_when_nothing_set():
    re_cfg = C.resolve_range_estimator(C.load(None).main.params, "activations", "symmetric",
                                       "pertensor")
    assert re_cfg.preset is P.DEFAULT
    assert re_cfg.max.type is T.ABS_MAX and re_cfg.max.aggregator is A.MEAN


def _params(**p):
    return C.load({"name": "DefaultQuantization", "params": p}).main.params


def test_user_aggregator_override_keeps_preset_type():
    p = _params(activations={"range_estimator": {"max": {"aggregator": "median"}}})
    re_cfg = C.resolve_range_estimator(p, R.ACTIVATIONS, M.SYMMETRIC, PT)
    assert re_cfg.max.type is T.ABS_MAX and re_cfg.max.aggregator is A.MEDIAN
    assert re_cfg.min == _want_side((T.MIN, A.MIN, None), PT)        # untouched side


def test_user_type_override_keeps_preset_aggregator_and_gets_outlier_prob():
    p = _params(activations={"range_estimator": {"max": {"type": "abs_quantile"},
                                                  "min": {"type": "quantile",
                                                          "outlier_prob": 1e-3}}})
    re_cfg = C.resolve_range_estimator(p, R.ACTIVATIONS, M.ASYMMETRIC, PT)
    assert re_cfg.max == C.StatConfig(T.ABS_QUANTILE, A.MEAN, 1e-4, None, PT)
    assert re_cfg.min == C.StatConfig(T.QUANTILE, A.MEAN, 1e-3, None, PT)


def test_quantile_preset_with_user_override_on_top():
    p = _params(activations={"range_estimator": {
        "preset": "quantile", "max": {"outlier_prob": 1e-2, "clipping_value": 6.0}}})
    re_cfg = C.resolve_range_estimator(p, R.ACTIVATIONS, M.SYMMETRIC, PC)
    assert re_cfg.max == C.StatConfig(T.ABS_QUANTILE, A.MAX, 1e-2, 6.0, PC)
    assert re_cfg.min.granularity is PT


def test_user_granularity_on_a_side_wins():
    p = _params(activations={"range_estimator": {"max": {"granularity": "pertensor"}}})
    re_cfg = C.resolve_range_estimator(p, R.ACTIVATIONS, M.ASYMMETRIC, PC)
    assert re_cfg.max.granularity is PT and re_cfg.min.granularity is PC


def test_params_level_range_estimator_is_a_fallback_not_merged():
    # POT: tensor_type_config.get('range_estimator', global_range_estimator)
    p = _params(range_estimator={"preset": "quantile"},
                weights={"range_estimator": {"max": {"type": "max"}}})
    acts = C.resolve_range_estimator(p, R.ACTIVATIONS, M.SYMMETRIC, PT)
    assert acts.preset is P.QUANTILE and acts.max.type is T.ABS_QUANTILE
    wts = C.resolve_range_estimator(p, R.WEIGHTS, M.SYMMETRIC, PC)
    assert wts.preset is P.DEFAULT and wts.max.type is T.MAX


def test_symmetric_weights_user_min_side():
    p = _params(weights={"range_estimator": {"min": {"clipping_value": -1.0}}})
    re_cfg = C.resolve_range_estimator(p, R.WEIGHTS, M.SYMMETRIC, PC)
    assert re_cfg.min == C.StatConfig(T.MIN, None, Q, -1.0, PC)
    assert re_cfg.max == C.StatConfig(T.ABS_MAX, None, Q, None, PC)


def test_aggregator_on_weights_estimator_is_rejected():
    bare = C.RangeEstimatorConfig(max=C.StatConfig(aggregator=A.MEAN))
    with pytest.raises(fastq.ConfigError, match="weights.range_estimator.max.aggregator"):
        C.resolve_range_estimator(bare, R.WEIGHTS, M.SYMMETRIC, PC)


def test_accuracy_aware_params_resolve_like_their_base():
    aa = C.load({"name": "AccuracyAwareQuantization", "params": {
        "activations": {"range_estimator": {"preset": "quantile"}}}}).main.params
    assert C.resolve_range_estimator(aa, R.ACTIVATIONS, M.SYMMETRIC, PT).preset is P.QUANTILE


# ------------------------------------------------------------------------------ resolve_layer


@pytest.mark.parametrize("device,preset,w_mode,a_mode", [
    ("CPU", "performance", M.SYMMETRIC, M.SYMMETRIC),
    ("CPU", "mixed", M.SYMMETRIC, M.ASYMMETRIC),
    ("CPU", "accuracy", M.SYMMETRIC, M.ASYMMETRIC),      # renamed to mixed on CPU
    ("VPU", "accuracy", M.ASYMMETRIC, M.ASYMMETRIC),     # kept: last hardware config for both
])
def test_resolve_layer_modes_by_preset(device, preset, w_mode, a_mode):
    p = _params(target_device=device, preset=preset)
    w = C.resolve_layer(p, "weights")
    a = C.resolve_layer(p, "activations")
    assert (w.mode, a.mode) == (w_mode, a_mode)
    assert (w.granularity, a.granularity) == (PC, PT)
    assert w.bits == a.bits == 8
    assert w.range_estimator == C.resolve_range_estimator(p, R.WEIGHTS, w_mode, PC)
    assert a.range_estimator == C.resolve_range_estimator(p, R.ACTIVATIONS, a_mode, PT)


def test_resolve_layer_user_settings_win():
    p = _params(preset="performance",
                activations={"mode": "asymmetric", "bits": 7},
                weights={"granularity": "pertensor", "level_low": -63, "level_high": 63})
    a = C.resolve_layer(p, R.ACTIVATIONS, depthwise=True)
    assert a.mode is M.ASYMMETRIC and a.bits == 7 and a.granularity is PC
    w = C.resolve_layer(p, R.WEIGHTS)
    assert w.granularity is PT and (w.level_low, w.level_high) == (-63, 63)
    forced = C.resolve_layer(_params(preset="mixed"), R.ACTIVATIONS, mode="symmetric")
    assert forced.mode is M.SYMMETRIC and forced.range_estimator.max.type is T.ABS_MAX


def test_effective_ignored_adds_transformer_ops():
    plain = _params(ignored={"scope": ["a"]})
    assert C.effective_ignored(plain) == plain.ignored
    tr = _params(model_type="transformer", ignored={"operations": [{"type": "Add"}]})
    ig = C.effective_ignored(tr)
    types = [op.type for op in ig.operations]
    assert types.count("Add") == 1                      # not duplicated
    for t in ("Pow", "Sub", "ReduceMean", "Squeeze", "Mul", "LayerNormalization"):
        assert t in types and ig.is_ignored("n", t)
    assert not ig.is_ignored("n", "MatMul") and not ig.is_ignored("n", "Conv")
    spr = C.effective_ignored(_params(model_type="transformer", target_device="CPU_SPR"))
    assert not spr.is_ignored("n", "Mul") and spr.is_ignored("n", "Add")   # POT: Mul kept on SPR
