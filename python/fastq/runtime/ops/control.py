"""Control flow: If, Loop, Scan, running their bodies with the same executor.

Bodies are compiled once per session (``ctx.graphs[attr]``, a callable taking positional
inputs and the outer scope) and see every outer value by name. Loop stacks scan outputs along
a new axis 0; Scan (opset 9+) slices/stacks along the given axes and directions. The opset-8
Scan (batch axis, sequence_lens) is not supported and fails at session creation.
"""

from __future__ import annotations

import numpy as np

from ...errors import DataError, UnsupportedOpError
from ..registry import register


@register("If", context=True)
def if_(node, cond, *, ctx):
    branch = "then_branch" if bool(np.asarray(cond).reshape(-1)[0]) else "else_branch"
    return tuple(ctx.graphs[branch]([], ctx.outer))


@register("Loop", context=True)
def loop(node, max_trip=None, cond=None, *carried, ctx):
    body = ctx.graphs["body"]
    n_carried = len(carried)
    trips = None if max_trip is None else int(np.asarray(max_trip).reshape(()))
    keep_going = True if cond is None else bool(np.asarray(cond).reshape(()))
    state = list(carried)
    scans: list = []
    i = 0
    while keep_going and (trips is None or i < trips):
        outs = body([np.array(i, dtype=np.int64), np.array(keep_going)] + state, ctx.outer)
        keep_going = bool(np.asarray(outs[0]).reshape(()))
        state = list(outs[1:1 + n_carried])
        scans.append(outs[1 + n_carried:])
        i += 1
    n_scan = len(node.outputs) - n_carried
    stacked = []
    for j in range(n_scan):
        if scans:
            stacked.append(np.stack([s[j] for s in scans]))
        else:
            stacked.append(np.zeros((0,), dtype=np.float32))
    return tuple(state + stacked)


def _prep_scan(node, consts, ctx):
    if node.version < 9:
        raise UnsupportedOpError(f"{node.where()}: the opset-8 Scan (batch axis, "
                                 "sequence_lens) is not supported")
    return None


@register("Scan", context=True, prepare=_prep_scan)
def scan(node, *xs, ctx):
    body = ctx.graphs["body"]
    m = node.attr("num_scan_inputs")
    n = len(xs) - m
    state, seqs = list(xs[:n]), list(xs[n:])
    in_axes = node.attr("scan_input_axes") or [0] * m
    in_dirs = node.attr("scan_input_directions") or [0] * m
    seqs = [np.moveaxis(s, a % s.ndim, 0) for s, a in zip(seqs, in_axes)]
    seqs = [s[::-1] if d else s for s, d in zip(seqs, in_dirs)]
    lengths = {s.shape[0] for s in seqs}
    if len(lengths) != 1:
        raise DataError(f"{node.where()}: scan inputs have different lengths {sorted(lengths)}")
    steps = lengths.pop()
    k = len(node.outputs) - n
    out_axes = node.attr("scan_output_axes") or [0] * k
    out_dirs = node.attr("scan_output_directions") or [0] * k
    per_step: list = [[] for _ in range(k)]
    for t in range(steps):
        outs = body(state + [s[t] for s in seqs], ctx.outer)
        state = list(outs[:n])
        for j in range(k):
            per_step[j].append(outs[n + j])
    results = []
    for j in range(k):
        ys = per_step[j][::-1] if out_dirs[j] else per_step[j]
        y = np.stack(ys) if ys else np.zeros((0,), dtype=np.float32)
        results.append(np.moveaxis(y, 0, out_axes[j] % y.ndim))
    return tuple(state + results)
