"""AccuracyAwareQuantization (POT's loop): DefaultQuantization, then revert the quantizer
groups that hurt the metric most until the drop is within ``maximal_drop``.

Contract: ``accuracy_aware(model, calibration_data, cfg, validation_data=, metric=, ...)`` ->
``QuantizationResult`` whose model leaves the reverted layers in float (no Q/DQ around them,
bias as before correction) and whose report has an ``accuracy_aware`` section (every revert,
the final drop, the layers left in float). Ranking runs each candidate only downstream of its
first changed node, from activations of the current model cached on the ranking subset
(within ``memory_budget`` bytes); candidates are independent and run on ``executor`` if given.

Params: ``maximal_drop``/``drop_type`` (absolute: float - int8; relative: that / |float|; the
sign follows ``higher_is_better``); ``base_algorithm`` DefaultQuantization or MinMax;
``ranking_subset_size`` (default min(N, 300)) samples whose per-sample metric moved most
(ties: larger output change); ``max_iter_num`` iterations (each one revert attempt);
``use_prev_if_drop_increase`` rolls a worsening revert back and never retries that group;
``metrics[0].baseline_value`` replaces the float evaluation, which then runs on the first
``metric_subset_ratio`` of the samples only (to pick the ranking subset);
``annotation_free``/``annotation_conf_threshold``: labels = float argmax, unconfident samples
skipped; ``tune_hyperparams``/``convert_to_mixed_preset``: ConfigError (not implemented yet).
Reverting keeps the base algorithm's other decisions (ranges, corrections of other layers).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import onnx
from onnx import helper

from ..config.types import AlgorithmName, DropType
from ..data import check_sample, input_specs
from ..errors import ConfigError, DataError
from ..export import build, save_model
from ..graph.ir import Graph, load_model
from ..metrics import Metric, as_metric
from ..runtime import InferenceSession

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
        model, _ = build(g, plan, state.act_qp, dict(state.w_qp))
    finally:
        g.inits.update(saved)
    return model, plan


# ------------------------------------------------------------------------------------------
# Evaluation (module-level so a ProcessPoolExecutor can pickle it)


def _canon(feed: Dict[str, Any]) -> Dict[str, Any]:
    """Arrays unpickled in a worker process carry non-canonical dtype objects, which the
    compiled kernels' dtype checks (identity with the canonical dtype) reject: re-view them."""
    return {k: v.view(np.dtype(v.dtype.name)) if isinstance(v, np.ndarray) and
            v.dtype.kind in "fiub" else v for k, v in feed.items()}


def run_outputs(model: Any, arith: Optional[str], feeds: Sequence[dict]
                ) -> List[List[np.ndarray]]:
    """Outputs of ``model`` (ModelProto or bytes) for each feed, in graph output order."""
    sess = InferenceSession(model, arith=arith)
    return [sess.run(None, _canon(f)) for f in feeds]


def _suffix_model(cand: onnx.ModelProto, changed: Set[str], known: Set[str]
                  ) -> Optional[Tuple[onnx.ModelProto, List[str], List[str]]]:
    """The part of ``cand`` from ``changed`` nodes downstream: (model, its input tensors
    (to be fed from the cache), graph outputs it does not produce (taken from the cache)).
    None when a needed tensor is not among ``known`` or a node has subgraphs."""
    g = cand.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
           for n in g.node for a in n.attribute):
        return None
    inits = {t.name for t in g.initializer}
    const = set(inits)                   # tensors computed from initializers only
    for n in g.node:
        if n.input and all(x in const for x in n.input if x):
            const.update(o for o in n.output if o)
    dirty: Set[str] = set()
    keep_ids: Set[int] = set()
    for i, n in enumerate(g.node):       # the graph is topologically sorted
        if n.name in changed or any(x in dirty for x in n.input if x):
            keep_ids.add(i)
            dirty.update(o for o in n.output if o)
    need = {x for i in keep_ids for x in g.node[i].input if x in const and x not in inits}
    for i in range(len(g.node) - 1, -1, -1):     # constant producers (weight DQ) come along
        n = g.node[i]
        if any(o in need for o in n.output):
            keep_ids.add(i)
            need.update(x for x in n.input if x in const and x not in inits)
    keep = [g.node[i] for i in sorted(keep_ids)]
    if not keep:
        return None
    produced = {o for n in keep for o in n.output if o}
    cut: List[str] = []
    for n in keep:
        for x in n.input:
            if x and x not in produced and x not in inits and x not in cut:
                cut.append(x)
    outs = [o for o in g.output if o.name in produced]
    passthrough = [o.name for o in g.output if o.name not in produced]
    if not outs or any(x not in known for x in cut + passthrough):
        return None
    used = {x for n in keep for x in n.input}
    sub = helper.make_graph(list(keep), g.name + "_suffix", [],
                            list(outs), [t for t in g.initializer if t.name in used])
    m = helper.make_model(sub, opset_imports=list(cand.opset_import))
    m.ir_version = cand.ir_version
    return m, cut, passthrough


def run_suffix(model_bytes: bytes, arith: Optional[str], cut: Sequence[str],
               cached: Sequence[Dict[str, np.ndarray]]) -> List[Dict[str, np.ndarray]]:
    """Run a suffix model (whose inputs are the cut tensors) on cached activations."""
    m = onnx.load_from_string(model_bytes)
    del m.graph.input[:]
    first = cached[0]
    for name in cut:
        a = first[name]
        same = all(c[name].shape == a.shape for c in cached)
        shape = list(a.shape) if same else [None] * a.ndim
        m.graph.input.append(helper.make_tensor_value_info(
            name, helper.np_dtype_to_tensor_dtype(a.dtype), shape))
    sess = InferenceSession(m, arith=arith)
    names = [o.name for o in sess.get_outputs()]
    return [dict(zip(names, sess.run(None, _canon({k: c[k] for k in cut})))) for c in cached]


class Evaluator:
    """Per-sample metric values of models on the validation set or a subset of it."""

    def __init__(self, feeds: List[dict], annotations: List[Any], metric: Metric,
                 arith: Optional[str], executor=None):
        self.feeds, self.annotations, self.metric = feeds, annotations, metric
        self.arith, self.executor = arith, executor
        self.evaluations = 0
        self.origin = list(range(len(feeds)))     # index in the caller's validation data

    def values(self, outputs: List[List[np.ndarray]], idx: Sequence[int]) -> np.ndarray:
        return np.array([self.metric.per_sample(o, self.annotations[i], self.origin[i])
                         for o, i in zip(outputs, idx)], np.float64)

    def run(self, model, idx: Sequence[int], arith="target"):
        arith = self.arith if arith == "target" else arith
        outs = run_outputs(model, arith, [self.feeds[i] for i in idx])
        self.evaluations += 1
        return outs, self.values(outs, idx)


def _out_distance(a: List[np.ndarray], b: List[np.ndarray]) -> float:
    return float(sum(np.mean((np.asarray(x, np.float64) - np.asarray(y, np.float64)) ** 2)
                     for x, y in zip(a, b)))


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
        feeds.append(check_sample(item[0], specs, i))
        ann.append(item[1])
    if not feeds:
        raise DataError("the validation dataset is empty")
    return feeds, ann


def _softmax_max(x: np.ndarray) -> float:
    z = np.asarray(x, np.float64).ravel()
    e = np.exp(z - z.max())
    return float(e.max() / e.sum())


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


def accuracy_aware(model, calibration_data, cfg, *, validation_data=None, metric=None,
                   executor=None, intermediate_dir=None, memory_budget=None,
                   progress: bool = True):
    from ..quantize import QuantizationResult, run_default

    t_start = time.perf_counter()
    aa = cfg.main.params
    if aa.tune_hyperparams:
        raise ConfigError("algorithms[0].params.tune_hyperparams: not implemented yet in "
                          "fastq; use false")
    if aa.convert_to_mixed_preset:
        raise ConfigError("algorithms[0].params.convert_to_mixed_preset: not implemented yet "
                          "in fastq; use false")
    if aa.base_algorithm not in (AlgorithmName.DEFAULT_QUANTIZATION,
                                 AlgorithmName.MIN_MAX_QUANTIZATION):
        raise ConfigError(f"algorithms[0].params.base_algorithm: DefaultQuantization or "
                          f"MinMaxQuantization, got {aa.base_algorithm.value!r}")
    if aa.annotation_free and metric is None:
        metric = "top1"
    m = as_metric(metric)
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else int(memory_budget)
    relative = aa.drop_type is DropType.RELATIVE
    arith = str(aa.target_arith.value)

    float_proto = load_model(model)
    specs = input_specs(Graph(float_proto).inputs)
    feeds, ann = _validation(validation_data, specs, aa.annotation_free)

    result, state = run_default(model, calibration_data, cfg, aa.base_algorithm, aa.base,
                                progress)
    ev = Evaluator(feeds, ann, m, arith, executor)
    t0 = time.perf_counter()
    all_idx = list(range(len(feeds)))
    info: Dict[str, Any] = {"metric": m.name, "higher_is_better": m.higher_is_better,
                            "drop_type": aa.drop_type.value, "maximal_drop": aa.maximal_drop,
                            "target_arith": arith, "skipped_samples": []}

    # float reference
    baseline = aa.metrics[0].baseline_value if aa.metrics else None
    if aa.annotation_free:
        fouts = run_outputs(float_proto, None, feeds)
        keep = [i for i, o in enumerate(fouts)
                if _softmax_max(o[0]) >= aa.annotation_conf_threshold]
        kept = set(keep)
        info["skipped_samples"] = [i for i in all_idx if i not in kept]
        if not keep:
            raise DataError(f"annotation_free: no validation sample has a float confidence "
                            f">= {aa.annotation_conf_threshold}")
        ev.feeds = [feeds[i] for i in keep]
        ev.annotations = [int(np.argmax(fouts[i][0])) for i in keep]
        ev.origin = keep
        fouts = [fouts[i] for i in keep]
        all_idx = list(range(len(keep)))
    elif baseline is None:
        fouts = run_outputs(float_proto, None, feeds)
    else:                  # POT: compare on metric_subset_ratio of the samples only
        n = max(1, int(np.ceil(aa.metric_subset_ratio * len(feeds))))
        fouts = run_outputs(float_proto, None, feeds[:n])
    fidx = list(range(len(fouts)))
    f_vals = ev.values(fouts, fidx)
    if baseline is None:
        baseline = m.aggregate(f_vals)
    info["float_metric"] = baseline
    timings = {"float_evaluation": time.perf_counter() - t0}

    groups = quantizer_groups(state.plan)
    reverted: Set[str] = set()
    history: List[dict] = []
    t0 = time.perf_counter()
    q_model = result.model
    q_outs, q_vals = ev.run(q_model, all_idx)
    q_metric = m.aggregate(q_vals)
    drop = m.drop(baseline, q_metric, relative)
    info["int8_metric"] = q_metric
    info["int8_drop"] = drop
    timings["int8_evaluation"] = time.perf_counter() - t0
    plan = state.plan
    tried: Set[Tuple[str, ...]] = set()
    it = 0
    max_iter = aa.max_iter_num if aa.max_iter_num is not None else len(groups) + 1
    rank_s = 0.0
    counts = {"from_cache": 0, "whole_model": 0, "cached_bytes": 0, "nodes_run": 0,
              "nodes_whole": 0}
    bar = _Bar(progress, min(max_iter, len(groups)))
    stop = "drop reached" if drop <= aa.maximal_drop else None
    try:
        while stop is None:
            left = [g for g in groups if g not in tried and not set(g) <= reverted]
            if it >= max_iter:
                stop = "max_iter_num reached"
                break
            if not left:
                stop = "nothing left to revert"
                break
            it += 1
            t_it = time.perf_counter()
            k = aa.effective_ranking_subset_size(len(fidx))
            diff = np.abs(f_vals - q_vals[:len(fidx)])
            dist = np.array([_out_distance(fouts[i], q_outs[i]) for i in fidx])
            subset = sorted(np.lexsort((-dist, -diff))[:k].tolist())
            tr = time.perf_counter()
            scores = _rank(ev, state, q_model, reverted, left, subset, fouts, budget, counts)
            rank_s += time.perf_counter() - tr
            best = min(scores, key=lambda g: (-scores[g][0] if m.higher_is_better
                                              else scores[g][0], scores[g][1]))
            cand, cplan = export(state, reverted | set(best))
            c_outs, c_vals = ev.run(cand, all_idx)
            c_metric = m.aggregate(c_vals)
            c_drop = m.drop(baseline, c_metric, relative)
            rec = {"iteration": it, "layers": list(best), "metric_before": q_metric,
                   "metric_after": c_metric, "drop_before": drop, "drop_after": c_drop,
                   "ranking_subset": len(subset), "candidates": len(left),
                   "subset_score": scores[best][0]}
            tried.add(best)
            if aa.use_prev_if_drop_increase and c_drop > drop:
                rec["rolled_back"] = True
            else:
                rec["rolled_back"] = False
                reverted |= set(best)
                q_model, plan = cand, cplan
                q_outs, q_vals, q_metric, drop = c_outs, c_vals, c_metric, c_drop
                if drop <= aa.maximal_drop:
                    stop = "drop reached"
            rec["seconds"] = time.perf_counter() - t_it
            history.append(rec)
            bar.step(it, drop)
            if intermediate_dir is not None:
                os.makedirs(intermediate_dir, exist_ok=True)
                save_model(q_model, os.path.join(intermediate_dir, f"iteration_{it:03d}.onnx"))
    finally:
        bar.close()

    all_layers = [n for g in groups for n in g]
    info.update({"final_metric": q_metric, "final_drop": drop,
                 "reached": drop <= aa.maximal_drop, "stop_reason": stop,
                 "iterations": it, "reverts": history,
                 "reverted_layers": [n for n in all_layers if n in reverted],
                 "all_reverted": set(all_layers) <= reverted,
                 "evaluations": ev.evaluations, "ranking_seconds": rank_s,
                 "ranking_runs": counts})
    rep = result.report
    for n in reverted:
        rep.layers.pop(n, None)
        rep.ignored[n] = "reverted to float by AccuracyAwareQuantization"
    for t in list(rep.activations):
        if t not in plan.activations:
            rep.activations.pop(t)
    rep.accuracy_aware = info
    rep.timings.update(timings)
    rep.timings["accuracy_aware_ranking"] = rank_s
    rep.timings["total"] = time.perf_counter() - t_start
    return QuantizationResult(q_model, rep, plan)


def _rank(ev: Evaluator, state, current: onnx.ModelProto, reverted: Set[str],
          left: List[Tuple[str, ...]], subset: List[int], fouts, budget: int,
          counts: Dict[str, int]) -> Dict[Tuple[str, ...], Tuple[float, float]]:
    """(metric on the subset, output distance to float) for each candidate group reverted on
    top of ``current``. Candidates run from cached activations of ``current`` where their
    cut tensors fit in ``budget`` bytes, else the whole model."""
    feeds = [ev.feeds[i] for i in subset]
    known = {o for n in current.graph.node for o in n.output} | \
        {i.name for i in current.graph.input}
    plans = {}
    for g in left:
        cand, _ = export(state, reverted | set(g))
        plans[g] = (cand, _suffix_model(cand, set(g), known))
    need: Set[str] = set()
    for cand, suf in plans.values():
        if suf is not None:
            need.update(suf[1] + suf[2])
    cached: Optional[List[Dict[str, np.ndarray]]] = None
    use: Set[Tuple[str, ...]] = set()
    if need:
        # keep: int8 layer fusion must leave the cut tensors produced
        sess = InferenceSession(current, arith=ev.arith, keep=need)
        probe = sess.run_with_intermediates(feeds[0], need, check_finite=False)
        per = {k: v.nbytes * len(feeds) for k, v in probe.items()}
        chosen: Set[str] = set()
        total = 0
        order = sorted((g for g in left if plans[g][1] is not None),
                       key=lambda g: len(plans[g][1][0].graph.node))
        for g in order:
            names = set(plans[g][1][1] + plans[g][1][2]) - chosen
            extra = sum(per[n] for n in names)
            if total + extra <= budget:
                chosen |= names
                total += extra
                use.add(g)
        counts["cached_bytes"] = max(counts["cached_bytes"], total)
        if chosen:
            cached = [probe if j == 0 and set(probe) == chosen else
                      sess.run_with_intermediates(f, chosen, check_finite=False)
                      for j, f in enumerate(feeds)]
    out_names = [o.name for o in current.graph.output]
    jobs = {}
    for g in left:
        cand, suf = plans[g]
        counts["nodes_whole"] += len(cand.graph.node)
        counts["from_cache" if g in use else "whole_model"] += 1
        counts["nodes_run"] += len((suf[0] if g in use else cand).graph.node)
        if g in use:
            sub, cut, _ = suf
            args = (run_suffix, sub.SerializeToString(), ev.arith, cut,
                    [{k: c[k] for k in cut} for c in cached])
        else:
            args = (run_outputs, cand.SerializeToString(), ev.arith, feeds)
        jobs[g] = ev.executor.submit(*args) if ev.executor is not None else args
    scores = {}
    for g, job in jobs.items():
        res = job.result() if ev.executor is not None else job[0](*job[1:])
        if g in use:
            outs = [[r[n] if n in r else c[n] for n in out_names]
                    for r, c in zip(res, cached)]
        else:
            outs = res
        vals = ev.values(outs, subset)
        dist = float(np.mean([_out_distance(fouts[i], o) for i, o in zip(subset, outs)]))
        scores[g] = (ev.metric.aggregate(vals), dist)
        ev.evaluations += 1
    return scores
