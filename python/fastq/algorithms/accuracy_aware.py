"""AccuracyAwareQuantization (POT's loop): DefaultQuantization, then (optionally) the mixed
preset and a range-estimator search, then revert the quantizer groups that hurt the metric
most until the drop is within ``maximal_drop``.

Contract: ``accuracy_aware(model, calibration_data, cfg, validation_data=, metric=, ...)`` ->
``QuantizationResult`` whose model leaves the reverted layers in float (no Q/DQ around them,
bias as before correction) and whose report has an ``accuracy_aware`` section (every trial
and revert with metric and time, the final drop, the layers left in float). Full evaluations
run stacked batches when the model allows it (``aa_eval``); the float outputs are cached per
(model, validation inputs); ranking runs each candidate only downstream of its first changed
node from cached activations (within ``memory_budget`` bytes), on ``executor`` if given.

Params (POT accuracy_aware_common/algorithm.py, cited per step below): ``maximal_drop``/
``drop_type`` (absolute: float - int8, sign by ``higher_is_better``; relative: that / |float|,
POT's ``baseline * maximal_drop`` bound for a positive baseline); ``ranking_subset_size``
(min(N, 300)) samples where int8 is most worse; ``max_iter_num`` revert attempts;
``use_prev_if_drop_increase`` POT's step back; ``metrics[0].baseline_value`` skips the float
evaluation except on a seeded random ``metric_subset_ratio`` of the samples (the per-sample
comparisons); ``annotation_free``: labels = float argmax of samples whose top score (softmax
unless already in [0, 1]) is > ``annotation_conf_threshold``; ``convert_to_mixed_preset`` /
``tune_hyperparams``: see ``aa_tuning``. Reverting keeps the other layers' decisions.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import time
from dataclasses import replace
from typing import Any, Dict, List, Optional, Set, Tuple

import numpy as np
import onnx

from .. import kernels
from ..config.types import AlgorithmName, DropType
from ..data import check_sample, input_specs
from ..errors import ConfigError, DataError
from ..export import build, save_model
from ..graph.ir import Graph, load_model
from ..metrics import Metric, as_metric
from . import aa_tuning as tuning
from .aa_eval import (Evaluator, _canon, batch_verdict, float_outputs, out_distance, rank,
                      run_outputs, run_suffix, suffix_model)

# names kept for callers of the first version
_suffix_model = suffix_model
_out_distance = out_distance
__all__ = ["accuracy_aware", "quantizer_groups", "reverted_plan", "export", "run_outputs",
           "run_suffix", "Evaluator", "_canon"]

DEFAULT_MEMORY_BUDGET = 256 << 20      # bytes of cached activations for the ranking


# ------------------------------------------------------------------------------------------
# Quantizer groups and re-export


def quantizer_groups(plan) -> List[Tuple[str, ...]]:
    """Nodes that must be reverted together, in plan order: a weighted layer with its input
    activation quantizer edge; a joint node (Add/Concat/MatMul of activations) with all its
    input edges; nodes whose quantizers share one range (Concat inputs, MaxPool in/out)."""
    parent: Dict[str, str] = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    order: List[str] = []
    for n in plan.layers:
        find(n)
        order.append(n)
    by_group: Dict[str, str] = {}
    for q in plan.activations.values():
        for node, _ in q.consumers:
            find(node)
            if node not in order:
                order.append(node)
            if q.group is not None:
                first = by_group.setdefault(q.group, node)
                parent[find(node)] = find(first)
    groups: Dict[str, List[str]] = {}
    for n in order:
        groups.setdefault(find(n), []).append(n)
    return [tuple(v) for v in groups.values()]


def reverted_plan(plan, nodes: Set[str]):
    """A copy of ``plan`` without the weight quantizers of ``nodes`` and without the
    activation edges into them (a quantizer left with no consumer is dropped)."""
    p = replace(plan, weights={k: v for k, v in plan.weights.items() if k not in nodes},
                activations={}, layers=[n for n in plan.layers if n not in nodes],
                ignored=dict(plan.ignored), decisions=list(plan.decisions))
    for t, q in plan.activations.items():
        cons = [e for e in q.consumers if e[0] not in nodes]
        if cons:
            p.activations[t] = replace(q, consumers=cons)
    return p


def export(state, nodes: Set[str]) -> Tuple[onnx.ModelProto, Any]:
    """The QDQ model with ``nodes`` left in float (their biases as before correction)."""
    g = state.graph
    saved = {}
    for n in nodes:
        if n in state.bias_before:
            name, value = state.bias_before[n]
            saved[name] = g.inits[name]
            g.inits[name] = value
    try:
        plan = reverted_plan(state.plan, nodes)
        model, _ = build(g, plan, state.act_qp, dict(state.w_qp), qcache=state.wq_cache)
    finally:
        g.inits.update(saved)
    return model, plan


# ------------------------------------------------------------------------------------------
# The loop


def _validation(validation_data, specs, annotation_free: bool):
    if validation_data is None:
        raise DataError("AccuracyAwareQuantization needs validation_data: an iterable of "
                        "(inputs, annotation) pairs")
    feeds, ann = [], []
    for i, item in enumerate(validation_data):
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise DataError(f"validation sample {i}: expected an (inputs, annotation) pair, "
                            f"got {type(item).__name__}")
        feeds.append(check_sample(item[0], specs, i, "validation sample"))
        ann.append(item[1])
    if not feeds:
        raise DataError("the validation dataset is empty")
    return feeds, ann


def _memory_budget(memory_budget) -> int:
    if memory_budget is None:
        return DEFAULT_MEMORY_BUDGET
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, numbers.Real) \
            or not math.isfinite(memory_budget) or memory_budget < 0:
        raise ConfigError(f"memory_budget: a number of bytes >= 0 (0: cache nothing), got "
                          f"{memory_budget!r}")
    return int(memory_budget)


def _check_executor(executor) -> None:
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise ConfigError(f"executor: a concurrent.futures.Executor (an object with submit()), "
                          f"got {type(executor).__name__}")


def _check_intermediate_dir(path) -> None:
    """Fails before any work: a path that exists and is not a directory."""
    if path is None:
        return
    try:
        path = os.fspath(path)
    except TypeError:
        raise ConfigError(f"intermediate_dir: a directory path, got "
                          f"{type(path).__name__}") from None
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"intermediate_dir: {path!r} exists and is not a directory")


def _confidence(x: np.ndarray) -> float:
    """POT annotation_free (accuracy checker ClassificationPrediction.to_annotation): the top
    score, after a softmax only when the scores are not already in [0, 1]."""
    z = np.asarray(x, np.float64).ravel()
    if z.max() > 1.0 or z.min() < 0.0:
        e = np.exp(z - z.max())
        z = e / e.sum()
    return float(z.max())


class _Bar:
    def __init__(self, enabled: bool, total: int):
        self.bar = None
        if enabled:
            try:
                import sys
                from tqdm import tqdm
                self.bar = tqdm(total=total, desc="fastq accuracy-aware", file=sys.stderr,
                                leave=False)
            except ImportError:
                pass

    def step(self, it: int, drop: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(iteration=it, drop=f"{drop:.4g}")
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Current:
    """The model the loop stands on: QDQ model, its per-sample outputs/values on every
    validation sample, aggregate metric and drop, the state to revert from, reverted nodes."""

    def __init__(self, model, outs, vals, metric, drop, state, report, plan, reverted):
        self.model, self.outs, self.vals = model, outs, vals
        self.metric, self.drop, self.state = metric, drop, state
        self.report, self.plan, self.reverted = report, plan, set(reverted)

    def copy(self) -> "_Current":
        return _Current(self.model, self.outs, self.vals, self.metric, self.drop, self.state,
                        self.report, self.plan, self.reverted)


@kernels.shared_packing()     # its sessions share the packing of equal int8 weights
def accuracy_aware(model, calibration_data, cfg, *, validation_data=None, metric=None,
                   executor=None, intermediate_dir=None, memory_budget=None,
                   progress: bool = True, batched: Any = "auto",
                   rerank: Optional[str] = None):
    """POT accuracy_aware_common/algorithm.py AccuracyAwareCommon.run. ``batched``: "auto"
    (stack validation samples when the model allows it), True or False. ``rerank``:
    "drop_increase" (POT, NNCF: go down one ranking until the drop grows) or
    "every_iteration" (fastq extension: re-rank after every kept revert -- affordable with
    the cached-suffix ranking, and it can revert far fewer layers when the first ranking,
    made on the fully quantized model, is stale after the worst layer is gone)."""
    from ..quantize import QuantizationResult, run_default

    t_start = time.perf_counter()
    aa = cfg.main.params
    if rerank is None:
        rerank = aa.rerank.value          # the config's fastq extension key
    if rerank not in ("drop_increase", "every_iteration"):
        raise ConfigError(f"rerank: 'drop_increase' or 'every_iteration', got {rerank!r}")
    if aa.base_algorithm not in (AlgorithmName.DEFAULT_QUANTIZATION,
                                 AlgorithmName.MIN_MAX_QUANTIZATION):
        raise ConfigError(f"algorithms[0].params.base_algorithm: DefaultQuantization or "
                          f"MinMaxQuantization, got {aa.base_algorithm.value!r}")
    if aa.annotation_free and metric is None:
        metric = "top1"
    m = as_metric(metric)
    budget = _memory_budget(memory_budget)
    _check_executor(executor)
    _check_intermediate_dir(intermediate_dir)
    relative = aa.drop_type is DropType.RELATIVE
    arith = str(aa.target_arith.value)

    float_proto = load_model(model)
    specs = input_specs(Graph(float_proto).inputs)
    feeds, ann = _validation(validation_data, specs, aa.annotation_free)

    # POT AccuracyAwareCommon.__init__: the preset conversion only from a performance preset;
    # register_statistics: every trial's statistics are requested in the one pass.
    base_p = aa.base
    convert = aa.convert_to_mixed_preset and tuning.is_preset_performance(base_p)
    mixed = tuning.mixed_params(base_p) if convert else None
    extra: List[Any] = [mixed] if convert else []
    if aa.tune_hyperparams:
        for p in [base_p] + extra[:1]:
            extra += [q for _, q in tuning.grid_stage1(p)]
            if aa.base_algorithm is AlgorithmName.DEFAULT_QUANTIZATION:
                extra.append(replace(p, use_fast_bias=True))
    result, state = run_default(model, calibration_data, cfg, aa.base_algorithm, aa.base,
                                progress, extra_params=extra)
    t0 = time.perf_counter()
    if batched == "auto":
        batched = batch_verdict(float_proto, feeds)
    ev = Evaluator(feeds, ann, m, arith, executor, bool(batched))
    info: Dict[str, Any] = {"metric": m.name, "higher_is_better": m.higher_is_better,
                            "drop_type": aa.drop_type.value, "maximal_drop": aa.maximal_drop,
                            "target_arith": arith, "skipped_samples": [],
                            "batched_evaluation": ev.batched, "rerank": rerank}

    # float reference (POT run(): _collect_baseline unless baselines are given;
    # __init__: _diff_subset_indices, a random metric_subset_ratio of the samples when
    # baselines are given, else all of them -- the per-sample comparisons use only those)
    baseline = aa.metrics[0].baseline_value if aa.metrics else None
    n_all = len(feeds)
    if aa.annotation_free:
        fo, hit = float_outputs(float_proto, feeds, ev.batched)
        keep = [i for i, o in enumerate(fo) if _confidence(o[0]) > aa.annotation_conf_threshold]
        kept = set(keep)
        info["skipped_samples"] = [i for i in range(n_all) if i not in kept]
        if not keep:
            raise DataError(f"annotation_free: no validation sample has a float confidence "
                            f"> {aa.annotation_conf_threshold}")
        ev.feeds = [feeds[i] for i in keep]
        ev.annotations = [int(np.argmax(fo[i][0])) for i in keep]
        ev.origin = keep
        diff_idx = list(range(len(keep)))
        fouts = {j: fo[i] for j, i in enumerate(keep)}
        baseline = None                       # measured on the kept samples (POT too)
    else:
        n_sub = int(aa.metric_subset_ratio * n_all)
        if baseline is not None and n_sub < n_all:
            rng = np.random.default_rng(base_p.seed)
            diff_idx = sorted(rng.choice(n_all, size=max(1, n_sub), replace=False).tolist())
        else:
            diff_idx = list(range(n_all))
        idx = diff_idx if baseline is not None else list(range(n_all))
        fo, hit = float_outputs(float_proto, [feeds[i] for i in idx], ev.batched, idx)
        fouts = dict(zip(idx, fo))
    f_vals = dict(zip(sorted(fouts), ev.values([fouts[i] for i in sorted(fouts)],
                                               sorted(fouts))))
    if baseline is None:
        baseline = m.aggregate(np.array([f_vals[i] for i in sorted(f_vals)]))
    info.update({"float_metric": baseline, "float_from_cache": hit,
                 "metric_subset": len(diff_idx)})
    timings = {"float_evaluation": time.perf_counter() - t0}
    all_idx = list(range(len(ev.feeds)))

    def evaluate(model_):
        outs, vals = ev.run(model_, all_idx)
        met = m.aggregate(vals)
        return outs, vals, met, m.drop(baseline, met, relative)

    t0 = time.perf_counter()
    cur = _Current(result.model, *evaluate(result.model), state, result.report,
                   state.plan, ())
    info["int8_metric"], info["int8_drop"] = cur.metric, cur.drop
    timings["int8_evaluation"] = time.perf_counter() - t0

    def ranking_subset(c: _Current) -> List[int]:
        """POT _get_ranking_subset (sort_by_metric_difference, reverse): the diff-subset
        samples where int8 is most worse than float (signed); fastq breaks ties by the
        larger output change (POT: argsort order)."""
        k = min(aa.effective_ranking_subset_size(n_all), len(diff_idx))
        sign = 1.0 if m.higher_is_better else -1.0
        worse = np.array([sign * (f_vals[i] - c.vals[i]) for i in diff_idx])
        dist = np.array([out_distance(fouts[i], c.outs[i]) for i in diff_idx])
        order = np.lexsort((-dist, -worse))[:k]
        return sorted(diff_idx[j] for j in order)

    trials: List[dict] = []
    stop = "drop reached" if cur.drop <= aa.maximal_drop else None
    t0 = time.perf_counter()
    if stop is None and convert:
        cur = _try_mixed(ev, evaluate, cur, mixed, trials)
        if cur.drop <= aa.maximal_drop:
            stop = "drop reached"
    if stop is None and aa.tune_hyperparams:
        cur = _tune(ev, evaluate, cur, ranking_subset(cur), trials, m)
        if cur.drop <= aa.maximal_drop:
            stop = "drop reached"
    timings["accuracy_aware_tuning"] = time.perf_counter() - t0
    info["trials"] = trials
    info["tuned_drop"] = cur.drop
    state = cur.state

    groups = quantizer_groups(state.plan)
    history: List[dict] = []
    it = 0
    # POT: range(max_iter_num), default sys.maxsize. The loop ends anyway: a step back is
    # always followed by a kept revert, so every two iterations revert at least one group.
    max_iter = aa.max_iter_num if aa.max_iter_num is not None else sys.maxsize
    rank_s = 0.0
    counts = {"from_cache": 0, "whole_model": 0, "cached_bytes": 0, "nodes_run": 0,
              "nodes_whole": 0, "split": 0, "rankings": 0, "rankings_reused": 0}
    rankings: Dict[frozenset, Tuple[List[int], dict]] = {}   # reverted set -> ranking
    bar = _Bar(progress, min(max_iter, len(groups)))    # an estimate: step backs add more
    all_layers = {n for g in groups for n in g}

    def key_of(scores):
        sign = 1.0 if m.higher_is_better else -1.0
        return lambda g: (-sign * scores[g][0], scores[g][1])

    # POT _change_quantization_scope: rank once; revert the top group; keep going down the
    # same ranking while the drop does not grow (or right after a step back); when it grows,
    # step back to the previous model if use_prev_if_drop_increase, then re-rank. A group
    # stepped back from is not excluded (POT's _exclude_bad_nodes is off for CPU/GPU/ANY).
    acc_drop, is_step_back = cur.drop, True
    importance: List[Tuple[str, ...]] = []
    need_rank = True
    try:
        while stop is None:
            if it >= max_iter:
                stop = "max_iter_num reached"
                break
            if need_rank:
                left = [g for g in groups if not set(g) <= cur.reverted]
                if not left:
                    stop = "nothing left to revert"
                    break
                tr = time.perf_counter()
                key = frozenset(cur.reverted)
                if key in rankings:
                    # a step back returns to a model ranked before: POT ranks it again and
                    # gets the same scores (same model, subset and candidates) -- reuse them
                    subset, scores = rankings[key]
                    counts["rankings_reused"] += 1
                else:
                    subset = ranking_subset(cur)
                    scores = rank(ev, lambda nodes: export(state, nodes), cur.model,
                                  cur.reverted, left, subset, fouts, budget, counts)
                    rankings[key] = (subset, scores)
                    counts["rankings"] += 1
                rank_s += time.perf_counter() - tr
                # POT _get_node_importance: by score, then by name, both descending
                importance = sorted(sorted(left, key=lambda g: g[0], reverse=True),
                                    key=key_of(scores))
                need_rank = False
            if not importance:
                stop = "nothing left to revert"
                break
            it += 1
            t_it = time.perf_counter()
            best = importance.pop(0)
            prev = cur.copy()
            cand, cplan = export(state, cur.reverted | set(best))
            c_outs, c_vals, c_metric, c_drop = evaluate(cand)
            rec = {"iteration": it, "layers": list(best), "metric_before": cur.metric,
                   "metric_after": c_metric, "drop_before": cur.drop, "drop_after": c_drop,
                   "ranking_subset": len(subset), "candidates": len(scores),
                   "subset_score": scores[best][0], "reranked_after": False,
                   "rolled_back": False}
            cur = _Current(cand, c_outs, c_vals, c_metric, c_drop, state, cur.report, cplan,
                           cur.reverted | set(best))
            if c_drop <= aa.maximal_drop:
                stop = "drop reached"
            elif all_layers <= cur.reverted:
                stop = "nothing left to revert"
            elif aa.maximal_drop < c_drop <= acc_drop or (c_drop > acc_drop and is_step_back):
                is_step_back, acc_drop = False, c_drop
                need_rank = rec["reranked_after"] = rerank == "every_iteration"
            else:
                if c_drop > acc_drop and aa.use_prev_if_drop_increase:
                    cur = prev
                    rec["rolled_back"] = True
                    is_step_back = True
                acc_drop = c_drop
                need_rank = True
                rec["reranked_after"] = True
            rec["seconds"] = time.perf_counter() - t_it
            history.append(rec)
            bar.step(it, cur.drop)
            if intermediate_dir is not None:
                os.makedirs(intermediate_dir, exist_ok=True)
                save_model(cur.model, os.path.join(intermediate_dir,
                                                   f"iteration_{it:03d}.onnx"))
    finally:
        bar.close()

    order = [n for g in groups for n in g]
    info.update({"final_metric": cur.metric, "final_drop": cur.drop,
                 "reached": cur.drop <= aa.maximal_drop, "stop_reason": stop,
                 "iterations": it, "reverts": history,
                 "reverted_layers": [n for n in order if n in cur.reverted],
                 "all_reverted": all_layers <= cur.reverted,
                 "evaluations": ev.evaluations, "ranking_seconds": rank_s,
                 "ranking_runs": counts})
    rep = cur.report
    for n in cur.reverted:
        rep.layers.pop(n, None)
        rep.ignored[n] = "reverted to float by AccuracyAwareQuantization"
    for t in list(rep.activations):
        if t not in cur.plan.activations:
            rep.activations.pop(t)
    rep.accuracy_aware = info
    rep.timings.update(timings)
    rep.timings["accuracy_aware_ranking"] = rank_s
    rep.timings["total"] = time.perf_counter() - t_start
    return QuantizationResult(cur.model, rep, cur.plan)


def _trial_record(stage: str, config: dict, metric: float, drop, samples: int,
                  seconds: float, **kw) -> dict:
    return {"stage": stage, "config": config, "metric": metric, "drop": drop,
            "samples": samples, "seconds": seconds, **kw}


def _adopt(trial, outs, vals, met, drop) -> _Current:
    tuning.adopt(trial)
    return _Current(trial.model, outs, vals, met, drop, trial.state, trial.report,
                    trial.state.plan, ())


def _try_mixed(ev, evaluate, cur: _Current, mixed, trials: List[dict]) -> _Current:
    """POT run(): quantize with the mixed preset and evaluate on the whole set. POT keeps it
    unconditionally; fastq keeps it only when its drop is smaller (it is the same algorithm
    with asymmetric activations, so a larger drop is noise the user did not ask for)."""
    t = time.perf_counter()
    tr = tuning.requantize(cur.state, mixed, cur.report)
    outs, vals, met, drop = evaluate(tr.model)
    kept = drop < cur.drop
    trials.append(_trial_record("convert_to_mixed_preset", {"preset": "mixed"}, met, drop,
                                len(ev.feeds), time.perf_counter() - t, kept=kept))
    return _adopt(tr, outs, vals, met, drop) if kept else cur


def _tune(ev, evaluate, cur: _Current, subset: List[int], trials: List[dict],
          m: Metric) -> _Current:
    """POT run() with tune_hyperparams: ParamsGridSearchAlgorithm over the current settings
    on the hardest ranking subset (_create_hardest_ranking_subset: for one metric, the
    ranking subset); the lowest error (first one on ties) is re-evaluated on the whole set
    and kept when its drop is smaller than the current one."""
    better = (lambda a, b: a > b) if m.higher_is_better else (lambda a, b: a < b)
    seen: Dict[Any, float] = {}
    best = None                                       # (metric, config, params, trial)

    def run(config: dict, params, stage: str):
        nonlocal best
        t = time.perf_counter()
        if params in seen:
            trials.append(_trial_record(stage, config, seen[params], None, len(subset), 0.0,
                                        duplicate=True))
            return
        tr = tuning.requantize(cur.state, params, cur.report)
        _, vals = ev.run(tr.model, subset)
        met = m.aggregate(vals)
        seen[params] = met
        trials.append(_trial_record(stage, config, met, None, len(subset),
                                    time.perf_counter() - t))
        if best is None or better(met, best[0]):
            best = (met, config, params, tr)

    base = cur.state.params
    for config, p in tuning.grid_stage1(base):
        run(config, p, "tune_hyperparams")
    if cur.state.name is AlgorithmName.DEFAULT_QUANTIZATION:
        first = best
        for config, p in tuning.grid_stage2(first[2]):
            run({**first[1], **config}, p, "tune_hyperparams")
    met_sub, config, params, tr = best
    t = time.perf_counter()
    outs, vals, met, drop = evaluate(tr.model)
    kept = drop < cur.drop
    trials.append(_trial_record("tune_hyperparams_best", config, met, drop, len(ev.feeds),
                                time.perf_counter() - t, kept=kept, subset_metric=met_sub))
    return _adopt(tr, outs, vals, met, drop) if kept else cur
