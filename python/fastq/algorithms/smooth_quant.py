"""SmoothQuant for transformer MatMuls (as NNCF applies it): for each activation X read only
by MatMuls with constant [K, N] weights, s_k = max|X_k|^alpha / max|W_k,:|^(1-alpha) per input
channel k; X is divided by s (folded into a LayerNormalization's scale and bias when X is its
only output, else an inserted Mul) and W's rows are multiplied by s, so X @ W is unchanged
while the activation outliers move into the per-channel-quantized weights.

One float pass serves both: ``prepare`` inserts the structure with unit scales (the graph
computes exactly what it did), the statistics pass also keeps per-sample per-channel min/max of
each smoothed tensor, ``finish`` writes the scales, and the smoothed tensors' per-tensor figures
are derived from the per-channel ones (min(X/s) = min_k min(X_k)/s_k for s > 0; statistics.py
``Stats.rescale``). ``smooth_quant`` is the two-pass form for what cannot be derived.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np
from onnx import helper

from .. import stats as fstats
from ..graph.ir import Graph, attrs
from ..runtime import InferenceSession

S_MIN = 1e-5
# An activation with other consumers (e.g. a residual Add) is smoothed on the MatMul branch
# only, by a Mul; folding into a LayerNormalization needs the MatMuls to be its only readers.


def _candidates(g: Graph, ignored) -> Dict[str, List]:
    """activation -> the MatMuls reading it as input 0 with a constant float [K, N] weight
    (one K). Other consumers of the activation keep the unsmoothed tensor."""
    cons = g.consumers()
    out = {}
    for x, users in cons.items():
        if g.is_const(x):
            continue
        mm = []
        for n, i in users:
            w = n.input[1] if len(n.input) > 1 else ""
            if n.op_type == "MatMul" and i == 0 and g.is_const(w) and \
                    g.inits[w].ndim == 2 and g.inits[w].dtype == np.float32 and \
                    not ignored.is_ignored(n.name, n.op_type, attrs(n)):
                mm.append(n)
        if mm and len({g.inits[n.input[1]].shape[0] for n in mm}) == 1:
            out[x] = mm
    return out


@dataclass
class Site:
    """One smoothed activation: ``tensor`` is what its MatMuls read after the transform (the
    LayerNormalization output when folded, else the inserted Mul's output)."""
    source: str                   # the activation before smoothing
    tensor: str
    layers: List                  # the MatMul nodes
    weights: Dict[str, np.ndarray] = field(default_factory=dict)    # W' name -> W
    divided: Dict[str, np.ndarray] = field(default_factory=dict)    # LN param' name -> value
    mul_scale: str = ""           # the Mul's 1/s initializer (when not folded)
    how: str = ""


def prepare(g: Graph, ignored) -> Dict[str, Site]:
    """Insert the smoothing structure with unit scales (s = 1, so the graph computes exactly
    what it did): fresh initializers for each W and folded LayerNormalization parameter, or a
    Mul by ones. ``finish`` writes the real scales. Keyed by ``Site.tensor``."""
    cands = _candidates(g, ignored)
    prods = g.producers()
    sites: Dict[str, Site] = {}
    for x, users in cands.items():
        site = Site(source=x, tensor=x, layers=users)
        for n in users:
            w = g.fresh(n.input[1] + "_smooth")
            site.weights[w] = g.inits[w] = g.inits[n.input[1]]   # s = 1: the same array
            n.input[1] = w
        p = prods.get(x)
        cons = g.consumers()
        k = site.weights[next(iter(site.weights))].shape[0]
        if p is not None and p.op_type == "LayerNormalization" and len(p.input) >= 2 and \
                all(g.is_const(t) for t in p.input[1:]) and x not in g.output_names and \
                len(cons.get(x, [])) == len(users) and g.inits[p.input[1]].shape == (k,):
            for j in range(1, len(p.input)):
                t = g.fresh(p.input[j] + "_smooth")
                site.divided[t] = g.inits[t] = g.inits[p.input[j]]
                p.input[j] = t
            site.how = f"folded into {p.name}"
        else:
            c = g.fresh(x + "_smooth_scale")
            g.inits[c] = np.ones(k, np.float32)
            y = g.fresh(x + "_smoothed")
            mul = helper.make_node("Mul", [x, c], [y], name=g.fresh(x + "_SmoothQuantMul"))
            for n in users:
                n.input[0] = y
            g.nodes.append(mul)
            site.mul_scale, site.tensor = c, y
            site.how = f"Mul {mul.name} inserted"
        sites[site.tensor] = site
    g.topo_sort()
    return sites


def scales(site: Site, a_max: np.ndarray, alpha: float) -> np.ndarray:
    """s_k = max|X_k|^alpha / max|W_k,:|^(1-alpha), 1 where undefined, at least S_MIN; a
    channel whose weight rows are all zero gets max|X_k| / (the largest smoothed channel's
    max), so it stops setting the quantization range."""
    a_max = np.asarray(a_max, np.float64)
    w_max = np.max([np.max(np.abs(w), axis=1) for w in site.weights.values()], axis=0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s = np.power(a_max, alpha) / np.power(w_max, 1.0 - alpha)
    ok = np.isfinite(s) & (s > 0) & (a_max > 0) & (w_max > 0)
    s = np.where(ok, s, 1.0)
    # An all-zero weight row: channel k adds nothing to X @ W whatever s_k is, so scale it
    # down to the largest smoothed channel instead of letting its outliers set the range.
    dead = (w_max == 0) & (a_max > 0) & np.isfinite(a_max)
    if dead.any() and ok.any():
        s = np.where(dead, a_max / np.max(a_max[ok] / s[ok]), s)
    return np.maximum(s, S_MIN)


def finish(g: Graph, sites: Dict[str, Site], a_max: Dict[str, np.ndarray], alpha: float
           ) -> Dict[str, Tuple[np.ndarray, dict]]:
    """Write the real scales from each site's per-channel abs-max: W' = W * s (rows),
    LayerNormalization parameters / s or the Mul by 1/s. Returns tensor -> (s, report
    entry keyed by the source activation)."""
    out = {}
    for t, site in sites.items():
        s = scales(site, a_max[t], alpha)
        for name, w in site.weights.items():
            g.inits[name] = (w * s[:, None]).astype(np.float32)
        for name, v in site.divided.items():
            g.inits[name] = (v / s).astype(np.float32)
        if site.mul_scale:
            g.inits[site.mul_scale] = (1.0 / s).astype(np.float32)
        out[t] = (s, {"layers": [n.name for n in site.layers], "method": site.how,
                      "scale_min": float(s.min()), "scale_max": float(s.max())})
    return out


def own_pass(g: Graph, sites: Dict[str, Site], samples, alpha: float) -> Dict[str, dict]:
    """A float pass of its own for the per-channel abs-max of each prepared site, then
    ``finish``: for figures the statistics pass cannot derive (e.g. quantile estimators).
    Returns the report entries by source activation."""
    cols = {t: fstats.AbsMaxCollector(channel_axis=-1) for t in sites}
    sess = InferenceSession(g.to_model(), keep=cols.keys())     # not fused away

    def cb(name, a):
        cols[name].update(np.asarray(a, np.float32), name=name)
    from .statistics import batches
    try:
        for feeds in batches(sess, samples):     # abs-max over any batching is the same
            sess.run_with_intermediates(feeds, cols.keys(), cb)
    except Exception:
        cols = {t: fstats.AbsMaxCollector(channel_axis=-1) for t in sites}
        for feeds in samples:
            sess.run_with_intermediates(feeds, cols.keys(), cb)
    done = finish(g, sites, {t: cols[t].result() for t in sites}, alpha)
    return {sites[t].source: rep for t, (_, rep) in done.items()}


def smooth_quant(g: Graph, samples, alpha: float, ignored) -> Dict[str, dict]:
    """The two-pass form: ``prepare`` then ``own_pass``."""
    sites = prepare(g, ignored)
    return own_pass(g, sites, samples, alpha) if sites else {}
