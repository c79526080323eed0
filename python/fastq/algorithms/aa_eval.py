"""AccuracyAware's evaluations: per-sample metric values of a model on validation samples, run
in batches, and the ranking of revert candidates from cached activations.

Contract: ``run_outputs(model, arith, feeds, batched)`` -> per-sample output lists. Samples are
stacked into one run (consecutive batch-1 feeds of one shape, up to ``BATCH_BYTES`` of input)
when every model input has a dynamic batch axis and a probe says batching is exact enough
(``batch_verdict``); otherwise they run one by one. Runs, and ranking candidates without an
executor, go to fastq.get_num_threads() threads (``ordered_map``: results in input order).
``float_outputs`` caches the float model's
outputs per (model, validation inputs) digest in-process, so repeated runs skip the baseline.
``rank(...)`` scores candidates, each run only downstream of its first changed node; in-process,
a candidate whose change ends at QuantizeLinear outputs runs just that region in a small
session and the unchanged rest in the caching session (``split_suffix``, same scores).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import onnx
from onnx import helper

from ..errors import ConfigError, DataError
from ..metrics import Metric
from ..runtime import InferenceSession
from ..runtime.parallel import ordered_map

# input bytes per stacked run: bounds live activations and keeps them in cache. Measured
# (2 threads, float runs of the validation sets): BERT 6x128x256, 64 samples: 1.43 s in
# stacks of 63 + 1 (8 MiB), 0.64-0.66 s in stacks of 8-16, 0.76 s one by one; MobileNetV2-112,
# 256 samples: 0.27 s at 53 per stack, 0.15-0.17 s at 4-8, 0.22 s one by one.
BATCH_BYTES = 1 << 20
MAX_BATCH = 64
FLOAT_CACHE_BYTES = 512 << 20   # float outputs kept across quantize calls
SPLIT = True                    # rank split candidates (split_suffix); False: whole suffixes
_FLOAT_CACHE: "OrderedDict[tuple, List[List[np.ndarray]]]" = OrderedDict()


def _canon(feed: Dict[str, Any]) -> Dict[str, Any]:
    """Arrays unpickled in a worker process carry non-canonical dtype objects, which the
    compiled kernels' dtype checks (identity with the canonical dtype) reject: re-view them."""
    return {k: v.view(np.dtype(v.dtype.name)) if isinstance(v, np.ndarray) and
            v.dtype.kind in "fiub" else v for k, v in feed.items()}


def groups(feeds: Sequence[dict], limit_bytes: Optional[int] = None) -> List[List[int]]:
    """Consecutive runs of batch-1 feeds with identical input shapes and dtypes, each within
    ``limit_bytes`` (default ``BATCH_BYTES``) of input."""
    if limit_bytes is None:
        limit_bytes = BATCH_BYTES
    out: List[List[int]] = []
    prev = None
    size = 0
    for i, f in enumerate(feeds):
        key = tuple((k, np.shape(v), np.asarray(v).dtype.str) for k, v in f.items())
        nb = sum(np.asarray(v).nbytes for v in f.values())
        if out and key == prev and len(out[-1]) < MAX_BATCH and size + nb <= limit_bytes:
            out[-1].append(i)
            size += nb
        else:
            out.append([i])
            size = nb
        prev = key
    return out


def _stack(feeds: Sequence[dict], idx: Sequence[int]) -> dict:
    if len(idx) == 1:
        return _canon(feeds[idx[0]])
    return _canon({k: np.concatenate([feeds[i][k] for i in idx]) for k in feeds[idx[0]]})


def _dynamic_batch(sess, feeds: Sequence[dict]) -> bool:
    for arg in sess.get_inputs():
        if arg.shape is None or not arg.shape or isinstance(arg.shape[0], int):
            return False
    return all(np.ndim(v) >= 1 and np.shape(v)[0] == 1 for f in feeds for v in f.values())


def batch_verdict(model: Any, feeds: Sequence[dict]) -> bool:
    """Whether ``model`` (float) may run these feeds stacked: dynamic batch axes, every output
    keeps the batch on axis 0, and the first two samples stacked give their single-run
    outputs (a model mixing samples, e.g. a batch-wide reduction, fails here). ``model`` may
    be a float InferenceSession already built on it."""
    if len(feeds) < 2:
        return False
    sess = model if isinstance(model, InferenceSession) else InferenceSession(model)
    if not _dynamic_batch(sess, feeds[:2]) or groups(feeds[:2]) != [[0, 1]]:
        return False
    single = [sess.run(None, _canon(f)) for f in feeds[:2]]
    both = sess.run(None, _stack(feeds, [0, 1]))
    for j, y in enumerate(both):
        if np.ndim(y) < 1 or np.shape(y)[0] != 2:
            return False
        for i in range(2):
            a, b = np.asarray(y[i:i + 1], np.float64), np.asarray(single[i][j], np.float64)
            # (the scale from the finite values: an output may hold -inf, e.g. a mask)
            big = np.max(np.abs(b), where=np.isfinite(b), initial=0.0)
            if a.shape != b.shape or not np.allclose(a, b, rtol=1e-4, atol=1e-5 * (big + 1e-30)):
                return False
    return True


def run_outputs(model: Any, arith: Optional[str], feeds: Sequence[dict],
                batched: bool = False, where: Optional[Sequence[int]] = None
                ) -> List[List[np.ndarray]]:
    """Outputs of ``model`` (ModelProto or bytes) for each feed, in graph output order. A
    node's DataError names the validation sample (``where[j]``: feed j's index in the
    caller's data; default j); a stacked run that fails re-runs its samples alone, so the
    error is the failing sample's own (and a run that fails only stacked still gives every
    sample's outputs)."""
    sess = InferenceSession(model, arith=arith)

    def one(j: int) -> List[np.ndarray]:
        try:
            return sess.run(None, _canon(feeds[j]))
        except DataError as e:
            raise DataError(f"validation sample {j if where is None else where[j]}: "
                            f"{e}") from None
    if not batched:
        return list(ordered_map(one, range(len(feeds))))

    def stacked(ix: List[int]) -> List[np.ndarray]:
        if len(ix) == 1:
            return one(ix[0])
        try:
            return sess.run(None, _stack(feeds, ix))
        except DataError:
            alone = [one(j) for j in ix]
            return [np.concatenate([a[k] for a in alone]) for k in range(len(alone[0]))]
    out: List[List[np.ndarray]] = []
    grp = groups(feeds)
    for idx, ys in zip(grp, ordered_map(stacked, grp)):
        if len(idx) == 1:
            out.append(ys)
        else:
            out.extend([y[i:i + 1] for y in ys] for i in range(len(idx)))
    return out


def _digest(model: onnx.ModelProto, feeds: Sequence[dict]) -> tuple:
    h = hashlib.sha1()
    for f in feeds:
        for k in sorted(f):
            a = np.ascontiguousarray(f[k])
            h.update(f"{k}:{a.dtype.str}:{a.shape};".encode())
            h.update(a.data)
    return (hashlib.sha1(model.SerializeToString()).hexdigest(), h.hexdigest(), len(feeds))


def float_outputs(model: onnx.ModelProto, feeds: Sequence[dict], batched: bool,
                  where: Optional[Sequence[int]] = None
                  ) -> Tuple[List[List[np.ndarray]], bool]:
    """(outputs, from_cache) of the float model on ``feeds``; the last results are kept while
    they fit in ``FLOAT_CACHE_BYTES``. ``where``: as ``run_outputs``."""
    key = _digest(model, feeds)
    hit = _FLOAT_CACHE.get(key)
    if hit is not None:
        _FLOAT_CACHE.move_to_end(key)
        return hit, True
    outs = run_outputs(model, None, feeds, batched, where)
    size = sum(np.asarray(y).nbytes for o in outs for y in o)
    if size <= FLOAT_CACHE_BYTES:
        _FLOAT_CACHE[key] = outs
        while sum(np.asarray(y).nbytes for v in _FLOAT_CACHE.values() for o in v
                  for y in o) > FLOAT_CACHE_BYTES:
            _FLOAT_CACHE.popitem(last=False)
    return outs, False


def clear_float_cache() -> None:
    _FLOAT_CACHE.clear()


class Evaluator:
    """Per-sample metric values of models on the validation set or a subset of it."""

    def __init__(self, feeds: List[dict], annotations: List[Any], metric: Metric,
                 arith: Optional[str], executor=None, batched: bool = False):
        self.feeds, self.annotations, self.metric = feeds, annotations, metric
        self.arith, self.executor, self.batched = arith, executor, batched
        self.evaluations = 0
        self.origin = list(range(len(feeds)))     # index in the caller's validation data

    def values(self, outputs: List[List[np.ndarray]], idx: Sequence[int]) -> np.ndarray:
        return np.array([self.metric.per_sample(o, self.annotations[i], self.origin[i])
                         for o, i in zip(outputs, idx)], np.float64)

    def run(self, model, idx: Sequence[int]):
        outs = run_outputs(model, self.arith, [self.feeds[i] for i in idx], self.batched,
                           [self.origin[i] for i in idx])
        self.evaluations += 1
        return outs, self.values(outs, idx)


def out_distance(a: List[np.ndarray], b: List[np.ndarray]) -> float:
    return float(sum(np.mean((np.asarray(x, np.float64) - np.asarray(y, np.float64)) ** 2)
                     for x, y in zip(a, b)))


# ------------------------------------------------------------------------------------------
# Ranking from cached activations (module-level functions so a process pool can pickle them)


def suffix_model(cand: onnx.ModelProto, changed: Set[str], known: Set[str]
                 ) -> Optional[Tuple[onnx.ModelProto, List[str], List[str]]]:
    """The part of ``cand`` from ``changed`` nodes downstream: (model, its input tensors
    (to be fed from the cache), graph outputs it does not produce (taken from the cache)).
    None when a needed tensor is not among ``known`` or a node has subgraphs."""
    g = cand.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
           for n in g.node for a in n.attribute):
        return None
    inits = {t.name for t in g.initializer}
    const = _const_tensors(g.node, inits)
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
    if not keep_ids:
        return None
    # Cut only at quantized tensors (QuantizeLinear outputs) or graph inputs: the suffix
    # reaches upstream to them. The session filling the cache must keep the cut tensors
    # produced; a float tensor between an int8 layer and its QuantizeLinear would unfuse that
    # layer (measured: 20x slower convs), while a QuantizeLinear output is what the fused
    # layer produces anyway -- and a quarter of the float bytes in the cache.
    prod = {o: i for i, n in enumerate(g.node) for o in n.output if o}
    q_outs = {o for n in g.node if n.op_type == "QuantizeLinear" for o in n.output if o}
    produced = {o for i in keep_ids for o in g.node[i].output if o}
    todo = list(keep_ids)
    while todo:                          # the producers of what kept nodes read, to a fixpoint
        for x in g.node[todo.pop()].input:
            if x and x not in produced and x not in inits and x not in q_outs and x in prod:
                j = prod[x]
                keep_ids.add(j)
                produced.update(o for o in g.node[j].output if o)
                todo.append(j)
    keep = [g.node[i] for i in sorted(keep_ids)]
    produced, cut = _outside_reads(keep, inits)
    outs = [o for o in g.output if o.name in produced]
    passthrough = [o.name for o in g.output if o.name not in produced]
    if not outs or any(x not in known for x in cut + passthrough):
        return None
    return _part_model(cand, keep, "_suffix", outs), cut, passthrough


def _const_tensors(nodes: Sequence[onnx.NodeProto], inits) -> Set[str]:
    """The initializers and the tensors computed from initializers only (weight
    DequantizeLinear outputs), ``nodes`` in topological order."""
    const = set(inits)
    for n in nodes:
        if n.input and all(x in const for x in n.input if x):
            const.update(o for o in n.output if o)
    return const


def _outside_reads(nodes: Sequence[onnx.NodeProto], inits) -> Tuple[Set[str], List[str]]:
    """(what ``nodes`` write, what they read from outside: neither written nor an
    initializer, in first-read order)."""
    produced = {o for n in nodes for o in n.output if o}
    cut: List[str] = []
    for n in nodes:
        for x in n.input:
            if x and x not in produced and x not in inits and x not in cut:
                cut.append(x)
    return produced, cut


def _part_model(src: onnx.ModelProto, nodes: Sequence[onnx.NodeProto], suffix: str,
                outputs: Sequence[onnx.ValueInfoProto]) -> onnx.ModelProto:
    """A model of ``src``'s ``nodes`` and the initializers they read; no inputs (the caller
    types them from the arrays it feeds)."""
    used = {x for n in nodes for x in n.input}
    g = helper.make_graph(list(nodes), src.graph.name + suffix, [], list(outputs),
                          [t for t in src.graph.initializer if t.name in used])
    m = helper.make_model(g, opset_imports=list(src.opset_import))
    m.ir_version = src.ir_version
    return m


class Split:
    """A suffix cut in two (``split_suffix``): the reverted part, run alone, and the rest,
    which is node for node the current model's and runs in the current model's session."""

    __slots__ = ("region", "cut", "boundary", "ext", "changed")

    def __init__(self, region, cut, boundary, ext, changed):
        self.region = region        # ModelProto: the changed nodes and the ones they read
        self.cut = cut              # its inputs (cached tensors)
        self.boundary = boundary    # its outputs the rest reads (QuantizeLinear outputs)
        self.ext = ext              # the cached tensors the rest may read (the suffix's cut)
        self.changed = changed      # the tensors the revert changes: the rest must not
        #                             compute them


def _same_tensor(a: onnx.TensorProto, b: onnx.TensorProto) -> bool:
    if a.data_type != b.data_type or list(a.dims) != list(b.dims):
        return False
    if a.raw_data or b.raw_data:
        return a.raw_data == b.raw_data
    return a.SerializeToString() == b.SerializeToString()


def split_suffix(sub: onnx.ModelProto, cut: Sequence[str], changed: Set[str],
                 cur_nodes: Dict[str, bytes], cur_inits: Dict[str, onnx.TensorProto],
                 ranks: Dict[str, int]) -> Optional[Split]:
    """Cut a suffix model (``suffix_model``, whose inputs are ``cut``) in two. The region a
    revert changes: the ``changed`` nodes and their readers up to the next QuantizeLinear
    outputs (the boundary), run in a model of their own with the unchanged nodes they read
    from. The rest, unchanged, runs in the current model's session. None when nothing is
    left for the rest, when an unchanged node or weight is not the current model's own
    (``cur_nodes``: node name -> serialized node; ``cur_inits``: name -> initializer), or a
    boundary tensor's rank is unknown (``ranks``: the current model's tensor ranks)."""
    g = sub.graph
    nodes = list(g.node)
    inits = {t.name: t for t in g.initializer}
    prod = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    const = _const_tensors(nodes, inits)
    dirty: Set[int] = set()
    for i, n in enumerate(nodes):        # topological: one pass reaches every reader
        if n.name in changed or any(
                x not in const and prod.get(x) in dirty and
                nodes[prod[x]].op_type != "QuantizeLinear" for x in n.input if x):
            dirty.add(i)
    if not dirty or len(dirty) == len(nodes):
        return None
    after: Set[int] = set(dirty)         # every node the revert reaches, through any tensor
    for i, n in enumerate(nodes):
        if i not in after and any(prod.get(x) in after for x in n.input if x):
            after.add(i)
    region = set(dirty)
    todo = list(dirty)
    while todo:                          # the unchanged nodes the region reads from
        for x in nodes[todo.pop()].input:
            j = prod.get(x)
            if j is not None and j not in region:
                if j in after:           # the rest feeds back into the region: no split
                    return None
                region.add(j)
                todo.append(j)
    for i, n in enumerate(nodes):
        if i in dirty:
            continue
        if cur_nodes.get(n.name) != n.SerializeToString():
            return None
        for x in n.input:
            if x in inits and (x not in cur_inits or not _same_tensor(inits[x], cur_inits[x])):
                return None
    changed_out = {o for i in dirty for o in nodes[i].output if o}
    boundary = sorted({x for i, n in enumerate(nodes) if i not in dirty for x in n.input
                       if x in changed_out})
    if not boundary or any(nodes[prod[x]].op_type != "QuantizeLinear" or
                           nodes[prod[x]].input[0] not in ranks for x in boundary):
        return None
    rnodes = [nodes[i] for i in sorted(region)]
    _, rcut = _outside_reads(rnodes, inits)
    outs = [helper.make_tensor_value_info(x, _q_type(nodes[prod[x]], inits),
                                          [None] * ranks[nodes[prod[x]].input[0]])
            for x in boundary]
    outs += [o for o in g.output if o.name in changed_out and o.name not in boundary]
    return Split(_part_model(sub, rnodes, "_region", outs), rcut, boundary, list(cut),
                 changed_out)


def _q_type(q: onnx.NodeProto, inits: Dict[str, onnx.TensorProto]) -> int:
    """A QuantizeLinear's output element type: its zero point's, uint8 without one."""
    if len(q.input) > 2 and q.input[2] in inits:
        return inits[q.input[2]].data_type
    for a in q.attribute:
        if a.name == "output_dtype" and a.i:
            return a.i
    return onnx.TensorProto.UINT8


def _typed_inputs(m: onnx.ModelProto, cut: Sequence[str],
                  cached: Sequence[Dict[str, np.ndarray]]) -> None:
    del m.graph.input[:]
    first = cached[0]
    for name in cut:
        a = first[name]
        same = all(c[name].shape == a.shape for c in cached)
        shape = list(a.shape) if same else [None] * a.ndim
        m.graph.input.append(helper.make_tensor_value_info(
            name, helper.np_dtype_to_tensor_dtype(a.dtype), shape))


def run_split(m: onnx.ModelProto, arith: Optional[str], split_cut: Sequence[str],
              boundary: Sequence[str], ext: Sequence[str], shared: InferenceSession, plan,
              cached: Sequence[Dict[str, np.ndarray]]) -> List[Dict[str, np.ndarray]]:
    """A split candidate (``split_suffix``) on cached activations: its region ``m`` (typed
    here: its inputs are set from the cache) in a session of its own, the rest in ``shared``
    (the current model's session) from the region's boundary outputs (``plan``:
    ``shared.plan_from(boundary, changed, ext)``). In-process only."""
    _typed_inputs(m, split_cut, cached)
    sess = InferenceSession(m, arith=arith)
    outs = [o.name for o in shared.get_outputs()]
    res = []
    for c in cached:
        # the boundary stays in the session's layout (channels-last views of int8 layers):
        # C-order copies there and back cost more than the region's own run
        r = sess.run_views(_canon({k: c[k] for k in split_cut}))
        feeds = {k: c[k] for k in ext}
        feeds.update((b, r[b]) for b in boundary)
        r.update(shared.run_from(plan, feeds))
        # what the metric sees: the model's outputs, owned and in C order
        res.append({k: np.array(v, order="C") if k in outs else v for k, v in r.items()})
    return res


def run_suffix(model_bytes: bytes, arith: Optional[str], cut: Sequence[str],
               cached: Sequence[Dict[str, np.ndarray]]) -> List[Dict[str, np.ndarray]]:
    """Run a suffix model (whose inputs are the cut tensors) on cached activations: one run
    per cached entry (one sample, or one stacked group of samples)."""
    m = onnx.load_from_string(model_bytes)
    _typed_inputs(m, cut, cached)
    sess = InferenceSession(m, arith=arith)
    names = [o.name for o in sess.get_outputs()]
    return [dict(zip(names, sess.run(None, _canon({k: c[k] for k in cut})))) for c in cached]


def _split(outs: List[List[np.ndarray]], sizes: Sequence[int]) -> List[List[np.ndarray]]:
    res: List[List[np.ndarray]] = []
    for ys, n in zip(outs, sizes):
        res.extend(ys if n == 1 else [y[i:i + 1] for y in ys] for i in range(n))
    return res


def rank(ev: Evaluator, export, current: onnx.ModelProto, reverted: Set[str],
         left: List[Tuple[str, ...]], subset: List[int], fouts, budget: int,
         counts: Dict[str, int]) -> Dict[Tuple[str, ...], Tuple[float, float]]:
    """(metric on the subset, output distance to float) for each candidate group reverted on
    top of ``current`` (``export(nodes)`` builds a candidate). Candidates run from cached
    activations of ``current`` where their cut tensors fit in ``budget`` bytes, else the
    whole model; both paths run the same stacked groups of samples, so they agree exactly."""
    feeds = [ev.feeds[i] for i in subset]
    grp = groups(feeds) if ev.batched else [[i] for i in range(len(feeds))]
    gfeeds = [_stack(feeds, ix) for ix in grp]
    sizes = [len(ix) for ix in grp]
    known = {o for n in current.graph.node for o in n.output} | \
        {i.name for i in current.graph.input}
    plans = {}
    # in-process, a candidate's suffix is split where it can be: its reverted region runs in
    # a small session, the rest (the current model's own nodes) in the cache's session below
    splits: Dict[Tuple[str, ...], Split] = {}
    cur_nodes = {n.name: n.SerializeToString() for n in current.graph.node} \
        if ev.executor is None else {}
    cur_inits = {t.name: t for t in current.graph.initializer}
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in list(current.graph.value_info)
             + list(current.graph.input) + list(current.graph.output)
             if v.type.tensor_type.HasField("shape")}
    for g in left:
        cand, _ = export(reverted | set(g))
        suf = suffix_model(cand, set(g), known)
        plans[g] = (cand, suf)
        if suf is not None and ev.executor is None and SPLIT:
            sp = split_suffix(suf[0], suf[1], set(g), cur_nodes, cur_inits, ranks)
            if sp is not None:
                splits[g] = sp
    need: Set[str] = set()
    for cand, suf in plans.values():
        if suf is not None:
            need.update(suf[1] + suf[2])
    cached: Optional[List[Dict[str, np.ndarray]]] = None
    use: Set[Tuple[str, ...]] = set()
    if need:
        # keep: int8 layer fusion must leave the cut tensors produced, and the split
        # boundaries (QuantizeLinear outputs) read by the steps that consume them
        bnd = {b for sp in splits.values() for b in sp.boundary}
        sess = InferenceSession(current, arith=ev.arith, keep=need | bnd)
        probe = sess.run_with_intermediates(gfeeds[0], need, check_finite=False)
        scale = len(feeds) / sizes[0]
        per = {k: int(v.nbytes * scale) for k, v in probe.items()}
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
            reuse = set(probe) == chosen
            cached = [probe] if reuse else []
            cached += ordered_map(lambda f: sess.run_with_intermediates(
                f, chosen, check_finite=False), gfeeds[1 if reuse else 0:])
    out_names = [o.name for o in current.graph.output]
    jobs = {}
    for g in left:
        cand, suf = plans[g]
        counts["nodes_whole"] += len(cand.graph.node)
        counts["from_cache" if g in use else "whole_model"] += 1
        counts["nodes_run"] += len((suf[0] if g in use else cand).graph.node)
        sp = splits.get(g) if g in use else None
        if sp is not None:
            plan = sess.plan_from(sp.boundary, sp.changed, sp.ext)
            if not (plan.required <= set(sp.ext) and {o.name for o in suf[0].graph.output}
                    <= set(plan.produced) | sp.changed):
                sp = None            # the session computes the rest otherwise: run it whole
        if sp is not None:
            counts["split"] += 1
            args = (run_split, sp.region, ev.arith, sp.cut, sp.boundary, sp.ext, sess, plan,
                    [{k: c[k] for k in set(sp.cut) | set(sp.ext)} for c in cached])
        elif g in use:
            sub, cut, _ = suf
            args = (run_suffix, sub.SerializeToString(), ev.arith, cut,
                    [{k: c[k] for k in cut} for c in cached])
        else:
            args = (_run_groups, cand.SerializeToString(), ev.arith, gfeeds)
        if ev.executor is None:
            jobs[g] = args
            continue
        try:
            jobs[g] = ev.executor.submit(*args)
        except RuntimeError as e:      # e.g. an executor already shut down
            raise ConfigError(f"executor refused the ranking work: {e}") from None
    scores = {}
    # without an executor the candidates run on fastq.get_num_threads() threads here
    # (runtime/parallel.py: kernels inline per worker, BLAS at one thread), results in order
    done = (job.result() for job in jobs.values()) if ev.executor is not None else \
        ordered_map(lambda job: job[0](*job[1:]), jobs.values())
    for g, res in zip(jobs, done):
        if g in use:
            res = [[r[n] if n in r else c[n] for n in out_names] for r, c in zip(res, cached)]
        outs = _split(res, sizes)
        vals = ev.values(outs, subset)
        dist = float(np.mean([out_distance(fouts[i], o) for i, o in zip(subset, outs)]))
        scores[g] = (ev.metric.aggregate(vals), dist)
        ev.evaluations += 1
    return scores


def _run_groups(model_bytes: bytes, arith: Optional[str], gfeeds: Sequence[dict]
                ) -> List[List[np.ndarray]]:
    sess = InferenceSession(model_bytes, arith=arith)
    return [sess.run(None, _canon(f)) for f in gfeeds]
