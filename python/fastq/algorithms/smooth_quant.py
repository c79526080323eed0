"""SmoothQuant for transformer MatMuls (as NNCF applies it): for each activation X read only
by MatMuls with constant [K, N] weights, s_k = max|X_k|^alpha / max|W_k,:|^(1-alpha) per input
channel k; X is divided by s (folded into a LayerNormalization's scale and bias when X is its
only output, else an inserted Mul) and W's rows are multiplied by s, so X @ W is unchanged
while the activation outliers move into the per-channel-quantized weights. Needs one float
pass of its own (per-channel abs-max of each X) before the statistics pass.
"""

from __future__ import annotations

from typing import Dict, List

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


def smooth_quant(g: Graph, samples, alpha: float, ignored) -> Dict[str, dict]:
    cands = _candidates(g, ignored)
    if not cands:
        return {}
    cols = {x: fstats.AbsMaxCollector(channel_axis=-1) for x in cands}
    sess = InferenceSession(g.to_model(), keep=cols.keys())     # not fused away

    def cb(name, a):
        cols[name].update(np.asarray(a, np.float32), name=name)
    from .statistics import batches
    try:
        for feeds in batches(sess, samples):     # abs-max over any batching is the same
            sess.run_with_intermediates(feeds, cols.keys(), cb)
    except Exception:
        cols = {x: fstats.AbsMaxCollector(channel_axis=-1) for x in cands}
        for feeds in samples:
            sess.run_with_intermediates(feeds, cols.keys(), cb)
    prods = g.producers()
    done: Dict[str, dict] = {}
    for x, users in cands.items():
        a_max = np.asarray(cols[x].result(), np.float64)
        w_max = np.max([np.max(np.abs(g.inits[n.input[1]]), axis=1) for n in users], axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.power(a_max, alpha) / np.power(w_max, 1.0 - alpha)
        s = np.where(np.isfinite(s) & (s > 0) & (a_max > 0) & (w_max > 0), s, 1.0)
        s = np.maximum(s, S_MIN)
        for n in users:
            w = g.fresh(n.input[1] + "_smooth")
            g.inits[w] = (g.inits[n.input[1]] * s[:, None]).astype(np.float32)
            n.input[1] = w
        p = prods.get(x)
        cons = g.consumers()
        if p is not None and p.op_type == "LayerNormalization" and len(p.input) >= 2 and \
                all(g.is_const(t) for t in p.input[1:]) and x not in g.output_names and \
                len(cons.get(x, [])) == len(users) and g.inits[p.input[1]].shape == s.shape:
            for j in range(1, len(p.input)):
                t = g.fresh(p.input[j] + "_smooth")
                g.inits[t] = (g.inits[p.input[j]] / s).astype(np.float32)
                p.input[j] = t
            how = f"folded into {p.name}"
        else:
            c = g.fresh(x + "_smooth_scale")
            g.inits[c] = (1.0 / s).astype(np.float32)
            y = g.fresh(x + "_smoothed")
            mul = helper.make_node("Mul", [x, c], [y], name=g.fresh(x + "_SmoothQuantMul"))
            for n in users:
                n.input[0] = y
            g.nodes.append(mul)
            how = f"Mul {mul.name} inserted"
        done[x] = {"layers": [n.name for n in users], "method": how,
                   "scale_min": float(s.min()), "scale_max": float(s.max())}
    g.topo_sort()
    return done
