"""``fastq.quantize``: DefaultQuantization end to end — float ONNX in, int8 QDQ ONNX out.

Contract: ``quantize(model, calibration_data, config=None, *, progress=True)`` ->
``QuantizationResult`` with ``.model`` (ModelProto), ``.report``, ``.plan``, ``.save(path)``
(atomic). The caller's model is never mutated. Stages: load/check -> float transforms ->
(SmoothQuant) -> placement -> one statistics pass -> QParams (+ saturation fix; "auto"
measures each layer on the calibration data) -> bias correction (exact32 executor) -> QDQ export
-> report (CPU/ANY targets: per-layer sat16pair saturation of the exported model).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import numpy as np
import onnx

from . import config as config_mod
from . import kernels
from .algorithms import bias_correction as bc
from .algorithms import saturation_fix as sat_fix
from .algorithms.placement import Plan, build_plan, check_scope
from .algorithms.ranges import activation_qparams, weight_qparams
from .algorithms.statistics import RangeRequest, collect, side_key, with_dynamic_batch
from .config.types import AlgorithmName, ModelType, SaturationFix, TargetDevice
from .data import input_specs, read_samples
from .errors import ConfigError, FastqError, ModelError
from .export import build, save_model
from .export.qdq import as_u8
from .graph.ir import Graph, load_model
from .graph.light import check_and_infer
from .graph.transforms import infer_shapes, prepare, upgrade_opset
from .report import Report
from .runtime import InferenceSession

FULL_BC_FRACTION = 0.2      # POT BiasCorrection: 20% of the calibration samples
# The report's per-layer saturation is measured on at most this many calibration samples.
REPORT_SATURATION_SAMPLES = 32
_SAT_KEYS = ("saturated_pairs", "saturated_fraction", "changed_outputs", "changed_fraction",
             "max_abs_error", "mean_abs_error", "sqnr_db")


@dataclass
class QuantizationResult:
    model: onnx.ModelProto
    report: Report
    plan: Plan

    def save(self, path, *, external_threshold: Optional[int] = None) -> list:
        """Write the model atomically (temp file in the same directory, then os.replace);
        initializers past ``external_threshold`` bytes (default 2e9) go to external data."""
        kw = {} if external_threshold is None else {"external_threshold": external_threshold}
        return save_model(self.model, path, **kw)


class _Progress:
    def __init__(self, enabled: bool, total: int, desc: str):
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, desc=desc, file=sys.stderr, leave=False)
            except ImportError:
                self.bar = None

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _check(proto: onnx.ModelProto) -> None:
    try:
        check_and_infer(proto, infer=False)
    except onnx.checker.ValidationError as e:
        raise ModelError(f"the model fails the ONNX checker: {str(e).splitlines()[0]}") from None
    except ValueError as e:
        if "2GB" not in str(e) and "2 GB" not in str(e):
            raise ModelError(f"the model fails the ONNX checker: {e}") from None


def _check_initializers(g: Graph) -> Dict[str, tuple]:
    """One pass over the float initializers. A NaN is an error here: it would surface as NaN
    statistics of some sample (or a NaN weight scale, or nothing at all past an ignored
    layer). +-Inf is legitimate in masks and clamps: returns {name: (count, first index)}
    of the initializers holding it, for ``_check_weights_finite``."""
    inf: Dict[str, tuple] = {}
    for name, v in g.inits.items():
        if not (isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.size):
            continue
        bad = ~np.isfinite(v)
        if not bad.any():
            continue
        nan = np.isnan(v)
        if nan.any():
            first = tuple(int(i) for i in np.argwhere(nan)[0])
            raise ModelError(f"initializer {name!r} (shape {v.shape}) holds "
                             f"{int(np.count_nonzero(nan))} NaN value(s), first at index "
                             f"{first}")
        inf[name] = (int(np.count_nonzero(bad)), tuple(int(i) for i in np.argwhere(bad)[0]))
    return inf


def _check_weights_finite(g: Graph, plan, inf: Dict[str, tuple]) -> None:
    """A weight to quantize must be finite (its int8 range is taken from its values); named
    here rather than as the NaN/Inf statistics of some calibration sample downstream.
    ``inf``: ``_check_initializers``' result."""
    for wq in plan.weights.values():
        if wq.tensor in inf:
            count, first = inf[wq.tensor]
            raise ModelError(f"layer {wq.node!r}: weight {wq.tensor!r} (shape "
                             f"{g.inits[wq.tensor].shape}) holds {count} Inf value(s), first "
                             f"at index {first}; an int8 weight needs finite values")


@kernels.shared_packing()
def quantize(model: Any, calibration_data: Any, config: Any = None, *,
             progress: bool = True, validation_data: Any = None, metric: Any = None,
             executor: Any = None, intermediate_dir: Any = None,
             memory_budget: Optional[int] = None,
             rerank: Optional[str] = None) -> QuantizationResult:
    """Quantize ``model`` (path, bytes or ModelProto) with POT's DefaultQuantization.

    ``calibration_data``: an iterable of samples; each sample is one feed of the model (a
    dict input-name -> array, a tuple in input order, or one array for a one-input model),
    with the batch dimension the model expects (usually 1). ``config``: anything
    ``fastq.config.load`` accepts; None is DefaultQuantization with POT's defaults.

    AccuracyAwareQuantization configs also take ``validation_data`` (iterable of
    ``(inputs, annotation)``), ``metric`` (callable ``metric(outputs, annotation) -> float``
    or an object with ``per_sample``/``aggregate``/``higher_is_better``), ``executor`` (a
    ``concurrent.futures.Executor`` for the ranking evaluations), ``intermediate_dir`` (the
    model after each iteration), ``memory_budget`` (bytes of cached activations used by
    the ranking) and ``rerank`` ("drop_increase" as POT, or "every_iteration"; None takes the
    config's ``rerank`` key, default "every_iteration"); see
    ``fastq.algorithms.accuracy_aware``.

    The sessions of one call share the packing of equal int8 weights
    (``kernels.shared_packing``); nothing of it outlives the call.
    """
    cfg = config_mod.load(config)
    algo = cfg.main
    if algo.name is AlgorithmName.ACCURACY_AWARE_QUANTIZATION:
        from .algorithms.accuracy_aware import accuracy_aware
        return accuracy_aware(model, calibration_data, cfg, validation_data=validation_data,
                              metric=metric, executor=executor,
                              intermediate_dir=intermediate_dir,
                              memory_budget=memory_budget, progress=progress,
                              rerank=rerank)
    if algo.name not in (AlgorithmName.DEFAULT_QUANTIZATION,
                         AlgorithmName.MIN_MAX_QUANTIZATION):
        raise ConfigError(f"algorithms[0].name: fastq.quantize runs DefaultQuantization, "
                          f"MinMaxQuantization or AccuracyAwareQuantization, got "
                          f"{algo.name.value!r}")
    return run_default(model, calibration_data, cfg, algo.name, algo.params, progress)[0]


@dataclass
class DefaultState:
    """What DefaultQuantization decided, kept so AccuracyAware can re-export with layers
    reverted: the prepared float graph (biases as corrected), the plan, the QParams and each
    corrected bias initializer's value before correction."""
    graph: Graph
    plan: Plan
    act_qp: dict
    w_qp: dict
    bias_before: dict          # layer -> (bias initializer, value before bias correction)
    # for re-quantizing with other settings without another statistics pass (AccuracyAware)
    stats: Any = None
    samples: Any = None
    sites: Any = None
    params: Any = None
    name: Any = None
    # (weight tensor, its QParams' bytes, axis) -> int8 weights: re-exports quantize each
    # weight once (qdq.build's qcache)
    wq_cache: dict = field(default_factory=dict)


def _sq_derivable(sites, requests, means) -> bool:
    """Every figure the statistics pass must give for a smoothed tensor is a per-tensor
    min/max/abs_max or a last-axis mean (statistics.rescale can derive it)."""
    from .algorithms.statistics import DERIVABLE
    for r in requests:
        if r.tensor in sites:
            for side_name in ("min", "max"):
                side = getattr(r.estimator, side_name)
                if side is not None and (side.type.value not in DERIVABLE or
                                         side_key(side, side_name, r.channel_axis)[2]
                                         is not None):
                    return False
    return all(means[t] == -1 for t in sites if t in means)


def _sq_finish(g, sites, stats, requests, alpha) -> dict:
    from .algorithms import smooth_quant as sq_mod
    from .algorithms.statistics import channel_keys, rescale
    kmin, kmax = channel_keys()
    a_max = {t: np.maximum(np.abs(stats.per_sample[(t, kmin)]),
                           np.abs(stats.per_sample[(t, kmax)])).max(axis=0) for t in sites}
    done = sq_mod.finish(g, sites, a_max, alpha)
    for t, (sc, _) in done.items():
        rescale(stats, t, sc, requests)
    return {sites[t].source: rep for t, (_, rep) in done.items()}


def run_default(model: Any, calibration_data: Any, cfg, name: AlgorithmName, params,
                progress: bool, extra_params=()):
    """DefaultQuantization (``name`` DefaultQuantization or MinMaxQuantization) with
    ``params``: returns ``(QuantizationResult, DefaultState)``. ``extra_params``: other
    settings whose range estimators the one statistics pass also serves (AccuracyAware's
    preset conversion and hyperparameter trials)."""
    t_start = time.perf_counter()
    algo_name = name
    proto = load_model(model)
    _check(proto)
    g = Graph(upgrade_opset(proto))
    del proto                  # the Graph holds the weights now (as numpy arrays)
    check_scope(params, [n.name for n in g.nodes])
    transforms = prepare(g)
    inf_inits = _check_initializers(g)   # (after constant folding: generated weights)
    specs = input_specs(g.inputs)
    samples = read_samples(calibration_data, specs, params.stat_subset_size,
                           params.shuffle_data, params.seed)
    report = Report(samples=len(samples), transforms=transforms,
                    config=config_mod.to_dict(cfg))
    timings = report.timings

    sq_sites = {}
    if params.model_type is ModelType.TRANSFORMER and params.smooth_quant_alpha is not None:
        from .algorithms import smooth_quant as sq_mod
        t0 = time.perf_counter()
        sq_sites = sq_mod.prepare(g, config_mod.effective_ignored(params))   # unit scales
        report.transforms["smooth_quant"] = {}
        if sq_sites:
            infer_shapes(g)                       # types of the inserted tensors
        timings["smooth_quant"] = time.perf_counter() - t0

    plan = build_plan(g, params)
    _check_weights_finite(g, plan, inf_inits)
    use_bc = algo_name is AlgorithmName.DEFAULT_QUANTIZATION
    sites = bc.find_sites(g, plan, params.apply_for_all_nodes) if use_bc else {}
    bias_before = {k: (s.bias, g.inits[s.bias].copy()) for k, s in sites.items()}
    requests = [RangeRequest(t, q.layer.range_estimator, q.channel_axis)
                for t, q in plan.activations.items()]
    for p in extra_params:
        requests += [RangeRequest(t, q.layer.range_estimator, q.channel_axis)
                     for t, q in build_plan(g, p).activations.items()]
    means = {}
    nodes = {n.name: n for n in g.nodes}
    if use_bc and (params.use_fast_bias or any(p.use_fast_bias for p in extra_params)):
        for k, s in sites.items():
            means[nodes[k].input[0]] = s.in_axis
    for s in sites.values():
        means[s.out] = s.out_axis
    if sq_sites and not _sq_derivable(sq_sites, requests, means):
        # a figure of a smoothed tensor that per-channel min/max cannot give: SmoothQuant's own
        # pass first, then the statistics pass sees the smoothed graph
        t0 = time.perf_counter()
        report.transforms["smooth_quant"] = sq_mod.own_pass(g, sq_sites, samples,
                                                            params.smooth_quant_alpha)
        timings["smooth_quant"] += time.perf_counter() - t0
        sq_sites = {}
    # keep: the executor's float fusions (Conv+BN+Relu...) leave every requested tensor produced
    # (a tensor kept only for a per-channel mean on axis 1 may stay inside its fused conv)
    session, batch = _stat_session(g, samples, [r.tensor for r in requests] + list(means),
                                   sq_sites, plan.decisions,
                                   sums=[t for t, ax in means.items() if ax == 1 and t not in
                                         {r.tensor for r in requests} and t not in sq_sites])
    bar = _Progress(progress, len(samples), "fastq statistics")
    try:
        stats = collect(session, samples, requests, means, bar, batch=batch,
                        channel_minmax=sq_sites)
    finally:
        bar.close()
    timings["statistics"] = stats.seconds
    del session                # the float session's weights and plans: not needed from here
    if sq_sites:      # scales from the same pass; the smoothed tensors' figures derived
        t0 = time.perf_counter()
        report.transforms["smooth_quant"] = _sq_finish(g, sq_sites, stats, requests,
                                                       params.smooth_quant_alpha)
        timings["smooth_quant"] += time.perf_counter() - t0
    act_qp, decisions = activation_qparams(plan, stats)
    plan.decisions.extend(decisions)
    w_qp = weight_qparams(g.inits, plan)
    pairing = params.conv_pairing.value
    if params.effective_saturation_fix is SaturationFix.AUTO:
        w_qp, decisions, info = sat_fix.auto_fix(
            plan, w_qp, lambda w: build(g, plan, act_qp, dict(w))[0], samples,
            params.saturation_threshold, pairing, stacked=stats.batched)
        plan.decisions.extend(decisions)
        timings["saturation_auto"] = info["seconds"]

    bc_result = {}
    if sites:
        t0 = time.perf_counter()
        if params.use_fast_bias:
            bar = _Progress(progress, len(sites), "fastq bias correction")
            try:
                bc_result = bc.fast_bias_correction(g, plan, sites, stats, act_qp, w_qp,
                                                    params.threshold, bar)
            finally:
                bar.close()
        else:
            n = max(1, int(round(len(samples) * FULL_BC_FRACTION)))
            bar = _Progress(progress, len(sites), "fastq bias correction")
            try:
                bc_result = bc.full_bias_correction(
                    g, plan, sites, stats, samples[:n],
                    lambda: build(g, plan, act_qp, dict(w_qp))[0], params.threshold, bar)
            finally:
                bar.close()
        timings["bias_correction"] = time.perf_counter() - t0

    final_w = dict(w_qp)
    qdq, export_info = build(g, plan, act_qp, final_w)
    _fill_report(report, g, plan, act_qp, final_w, w_qp, stats, bc_result, export_info)
    if params.target_device in (TargetDevice.CPU, TargetDevice.ANY):
        # what an AVX2 CPU does to the model as exported (fix applied): one exact32 int8 pass
        # with the C++ counting kernels over the first REPORT_SATURATION_SAMPLES calibration
        # samples (over all 300 it cost 4x the statistics pass on a small CNN)
        t0 = time.perf_counter()
        sat_samples = samples[:REPORT_SATURATION_SAMPLES]
        report.decisions.append(
            f"report saturation figures measured on {len(sat_samples)} of {len(samples)} "
            "calibration samples")
        try:
            measured = sat_fix.measure(qdq, sat_samples, pairing, stacked=stats.batched)
        except FastqError as e:   # a report figure, not worth failing the quantization
            report.decisions.append(f"saturation not measured for the report: {e}")
            measured = {}
        for name, r in measured.items():
            if name in report.layers:
                report.layers[name]["saturation"] = {
                    k: v for k, v in r.to_dict().items() if k in _SAT_KEYS}
        timings["saturation_report"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    state = DefaultState(g, plan, act_qp, w_qp, bias_before, stats, samples, sites,
                         params, algo_name)
    return QuantizationResult(qdq, report, plan), state


def _stat_session(g: Graph, samples: list, keep: list, sq_sites, decisions: list,
                  sums: list = ()):
    """The float session for the statistics pass: on the model with a fixed batch-1 axis made
    symbolic when stacking the first two samples gives their single-run outputs (so samples
    run in batches; recorded in the decisions), else on the model as is. One session is
    built (the probe runs on the session the pass then uses). Returns (session, batch): batch
    1 when the probe says samples must run one at a time, else None (collect decides).
    ``sums``: kept tensors collect only sums per channel (axis 1): a fused conv may deliver
    them; every kept tensor may arrive as a channels-last view (collect reduces any layout)."""
    from .algorithms.aa_eval import batch_verdict
    model = g.to_model()
    keep = list(keep) + list(sq_sites)
    if len(samples) > 2:
        try:
            dyn = with_dynamic_batch(model, copy=False)   # None unless every input is batch 1
            if dyn is not None:
                sess = InferenceSession(dyn, keep=keep, channel_sums=sums, keep_views=True)
                del dyn, model
                try:
                    ok = batch_verdict(sess, samples[:2])
                except FastqError:             # e.g. a Reshape to [1, -1] on stacked feeds
                    ok = False
                if ok:
                    decisions.append(
                        "statistics pass: the model's fixed batch axis of 1 was made symbolic "
                        "to run calibration samples in batches (stacked and single runs of the "
                        "first two samples agree)")
                    return sess, None
                return sess, 1     # computes the same for batch-1 feeds: run one at a time
        except FastqError:
            model = g.to_model()               # any doubt: the model as given, unbatched
    return InferenceSession(model, keep=keep, channel_sums=sums, keep_views=True), None


def _fill_report(report, g, plan, act_qp, final_w, w_qp, stats, bc_result, export_info):
    for name, wq in plan.weights.items():
        qp = final_w[name]
        w = g.inits.get(wq.tensor)
        rec = {"op_type": wq.op_type, "weight": wq.tensor, "axis": wq.axis,
               "weight_max": (np.max(np.abs(w), axis=tuple(i for i in range(w.ndim)
                                                          if i != wq.axis))
                              if w is not None and wq.axis is not None else
                              (np.max(np.abs(w)) if w is not None else None)),
               "weight_scale": qp.scale, "weight_zero_point": qp.zero_point,
               "bits": qp.bits, "mode": str(qp.mode), "saturation_fix": wq.saturation_fix}
        r = bc_result.get(name)
        rec["bias_corrected"] = bool(r and r["applied"])
        rec["bias_shift"] = r["bias_shift"] if r else None
        rec["bias_relative_change"] = r["relative_change"] if r else None
        rec.update(export_info.get(name, {}))
        if rec.get("scale_enlarged_channels"):
            plan.decisions.append(f"{name}: weight scale enlarged on channels "
                                  f"{rec['scale_enlarged_channels']} so the int32 bias fits")
        report.layers[name] = rec
    for t, q in plan.activations.items():
        qp = act_qp.get(t)
        if qp is None:
            continue
        lo, hi = stats.ranges[t]
        stored = as_u8(qp)                 # what the QDQ file holds (same levels)
        report.activations[t] = {"min": -np.abs(hi) if lo is None else lo, "max": hi,
                                 "scale": qp.scale, "zero_point": qp.zero_point,
                                 "dtype": np.dtype(qp.dtype).name, "mode": str(qp.mode),
                                 "stored_dtype": np.dtype(stored.dtype).name,
                                 "stored_zero_point": stored.zero_point,
                                 "group": q.group, "consumers": [n for n, _ in q.consumers],
                                 "why": q.reasons}
    report.ignored = dict(plan.ignored)
    report.decisions = list(plan.decisions)
