"""Sequence and Optional values: SequenceEmpty/Construct/Insert/At/Erase/Length,
SplitToSequence, ConcatFromSequence, SequenceMap, Optional, OptionalHasElement/GetElement.

In the executor a sequence is a Python list of arrays, an empty optional is None and a full
optional is its value. Ops return sequences wrapped in a tuple (``(seq,)``) so the executor
does not mistake the list for several outputs. Sequences are never mutated in place.
"""

from __future__ import annotations

import numpy as np

from ...errors import DataError
from ..registry import register


def _pos(pos, n: int, insert: bool = False) -> int:
    p = int(np.asarray(pos).reshape(()))
    hi = n if insert else n - 1
    if p < -n or p > hi:
        raise DataError(f"sequence position {p} out of range for length {n}")
    return p + n if p < 0 else p


@register("SequenceEmpty")
def sequence_empty(node):
    return ([],)


@register("SequenceConstruct")
def sequence_construct(node, *xs):
    return (list(xs),)


@register("SequenceInsert")
def sequence_insert(node, seq, t, pos=None):
    out = list(seq)
    if pos is None:
        out.append(t)
    else:
        out.insert(_pos(pos, len(out), insert=True), t)
    return (out,)


@register("SequenceAt")
def sequence_at(node, seq, pos):
    return seq[_pos(pos, len(seq))]


@register("SequenceErase")
def sequence_erase(node, seq, pos=None):
    out = list(seq)
    del out[-1 if pos is None else _pos(pos, len(out))]
    return (out,)


@register("SequenceLength")
def sequence_length(node, seq):
    return np.array(len(seq), dtype=np.int64)


@register("SplitToSequence")
def split_to_sequence(node, x, split=None):
    axis = node.attr("axis", 0) % x.ndim
    d = x.shape[axis]
    if split is None:
        parts = np.split(x, d, axis=axis)
        if not node.attr("keepdims", 1):
            parts = [np.squeeze(p, axis=axis) for p in parts]
        return (parts,)
    split = np.asarray(split)
    if split.ndim == 0:
        size = int(split)
        sizes = [size] * (d // size) + ([d % size] if d % size else [])
    else:
        sizes = [int(v) for v in split]
    return (np.split(x, np.cumsum(sizes)[:-1], axis=axis),)


@register("ConcatFromSequence")
def concat_from_sequence(node, seq):
    axis = node.attr("axis")
    if node.attr("new_axis", 0):
        return np.stack(seq, axis=axis)
    return np.concatenate(seq, axis=axis)


@register("SequenceMap", context=True)
def sequence_map(node, seq, *extra, ctx):
    body = ctx.graphs["body"]
    n_out = len(node.outputs)
    outs = [[] for _ in range(n_out)]
    for i in range(len(seq)):
        args = [seq[i]] + [e[i] if isinstance(e, list) else e for e in extra]
        for j, y in enumerate(body(args, ctx.outer)):
            outs[j].append(y)
    return tuple(outs)


@register("Optional")
def optional(node, x=None):
    return (x,)


@register("OptionalHasElement")
def optional_has_element(node, x=None):
    return np.array(x is not None)


@register("OptionalGetElement")
def optional_get_element(node, x):
    if x is None:
        raise DataError(f"{node.where()}: the optional is empty")
    return (x,)
