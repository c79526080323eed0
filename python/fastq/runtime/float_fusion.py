"""Float graph fusions (a ``graph.GRAPH_REWRITES`` stage, run after the int8 QDQ stage).

Contract: Conv [-> BatchNormalization (inference)] [-> Relu|Clip (constant bounds)] becomes one
fastq ``FusedConv`` (ops/nn_conv.py) that folds the normalization into W/B (once per session
when they are constants) and clamps in its epilogue; Add|Sum(2 inputs) -> Relu becomes
``FusedAdd``; MatMul(constant 2-D W) -> Add(constant 1-D bias) becomes ``FusedMatMul``; the erf
GELU exporters write -- Div|Mul(x, c1) -> Erf -> Add(c2) -> Mul by x and by c3 in any of the
three associations, every c a float32 scalar constant -- becomes ``ErfGelu``, one C++ pass that
performs the same float32 operations in the same order (the unfused bits, erf included). A
pattern fuses only when the intermediate has that one consumer and is neither a graph output
nor a tensor the session keeps for ``run_with_intermediates``, so every requested tensor
still exists; except that an activation's input kept only for its per-channel sums
(``OpContext.channel_sums``) is fused all the same, the FusedConv getting ``sums_out`` and a
second output that delivers it as a ``registry.ChannelSums`` of the pre-activation values.
Results differ from the unfused graph by float rounding only (ONNX Runtime folds the same
way).

Layout: a float Conv/FusedConv whose output may be handed on as an NCHW-shaped view of an NHWC
buffer gets the attribute ``nhwc_out`` (ops/nn_conv.py): when every consumer is a conv with an
NHWC path (reads the buffer with no copy), a GlobalAveragePool (averages channel rows), a
QuantizeF32 (quantizes in memory order; int8 layers read its u8 NHWC view) or an
elementwise op in ``_LAYOUT_KEEPING`` (numpy ufuncs keep the operands' memory order) whose own
output satisfies the same rule, and no tensor on the way is a graph output or kept tensor
(kept tensors in ``OpContext.view_keep`` excepted: that caller takes strided views).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Set

import numpy as np

from .. import _core
from . import graph
from .ops.elementwise import _erf
from .ops.nn_common import float_impl
from .ops.nn_linalg import matmul
from .registry import Node, OpContext, register

DOMAIN = "fastq"


@register("FusedMatMul", domain=DOMAIN)
def fused_matmul(node: Node, a, b, c):
    """MatMul then Add of a constant 1-D bias over the last axis, added in place."""
    y = matmul(node, a, b)
    if not y.flags.writeable or y.base is not None:
        return y + c
    y += c
    return y


@register("FusedAdd", domain=DOMAIN)
def fused_add(node: Node, a, b):
    """Add (opset >= 7 broadcasting) or two-input Sum, then Relu, in one output buffer."""
    y = np.add(a, b)
    if y.dtype != a.dtype:
        y = y.astype(a.dtype)
    return np.maximum(y, np.zeros((), y.dtype), out=y)


@register("ErfGelu", domain=DOMAIN)
def erf_gelu(node: Node, x, c1, c2, c3):
    """The erf GELU's five ops in one pass (attributes: ``div`` -- Div or Mul by c1 --
    and ``form`` 0: (x * a) * c3, 1: (x * c3) * a, 2: (a * c3) * x, a = erf(..) + c2)."""
    div, form = bool(node.attr("div")), int(node.attr("form"))
    shape = np.broadcast_shapes(np.shape(x), np.shape(c1), np.shape(c2), np.shape(c3))
    if isinstance(x, np.ndarray) and x.dtype == np.float32:
        y = _core.nn_gelu_erf(np.ascontiguousarray(x), float(c1.reshape(())), div,
                              float(c2.reshape(())), float(c3.reshape(())), form, float_impl())
        return y.reshape(shape)
    a = _erf(x / c1 if div else x * c1) + c2       # any other dtype: the ops one by one
    return (x * a) * c3 if form == 0 else (x * c3) * a if form == 1 else (a * c3) * x


def _scalar_f32(name: str, consts: Dict[str, np.ndarray]) -> bool:
    c = consts.get(name)
    return isinstance(c, np.ndarray) and c.dtype == np.float32 and c.size == 1


def _erf_gelu(erf: Node, prod: Dict[str, Node], cons: Dict[str, List[Node]],
              consts: Dict[str, np.ndarray], pinned: Set[str]):
    """(fused node, nodes it replaces) for an exported erf GELU around ``erf``, or None."""
    def binary(n: Optional[Node], op: str) -> bool:
        return n is not None and n.domain == "" and n.op_type == op and n.version >= 7 \
            and len(n.inputs) == 2 and len(n.outputs) == 1

    def other(n: Node, name: str) -> str:
        return n.inputs[1] if n.inputs[0] == name else n.inputs[0]

    pre = prod.get(erf.inputs[0])
    if not (binary(pre, "Div") or binary(pre, "Mul")) or \
            _sole_consumer(pre.outputs[0], cons, pinned) is not erf:
        return None
    if pre.op_type == "Div":
        x, c1 = pre.inputs
    else:
        x, c1 = (pre.inputs[1], pre.inputs[0]) if _scalar_f32(pre.inputs[0], consts) \
            else pre.inputs
    if not _scalar_f32(c1, consts) or x in consts:
        return None
    add = _sole_consumer(erf.outputs[0], cons, pinned)
    if not binary(add, "Add") or not _scalar_f32(other(add, erf.outputs[0]), consts):
        return None
    c2 = other(add, erf.outputs[0])
    m1 = _sole_consumer(add.outputs[0], cons, pinned)
    if not binary(m1, "Mul") or m1.inputs[0] == m1.inputs[1]:
        return None
    o = other(m1, add.outputs[0])
    if o == x or _scalar_f32(o, consts):         # (x * a) * c3  or  (a * c3) * x
        m2 = _sole_consumer(m1.outputs[0], cons, pinned)
        if not binary(m2, "Mul"):
            return None
        last = other(m2, m1.outputs[0])
        if o == x and _scalar_f32(last, consts):
            form, c3 = 0, last
        elif o != x and last == x:
            form, c3 = 2, o
        else:
            return None
        parts, out = [pre, erf, add, m1, m2], m2.outputs
    else:                                        # (x * c3) * a
        h = prod.get(o)
        if not binary(h, "Mul") or _sole_consumer(o, cons, pinned) is not m1 or \
                x not in h.inputs or not _scalar_f32(other(h, x), consts):
            return None
        form, c3, parts, out = 1, other(h, x), [pre, erf, add, h, m1], m1.outputs
    fused = Node(erf.name, "ErfGelu", DOMAIN, 1, erf.opset,
                 {"div": int(pre.op_type == "Div"), "form": form}, (x, c1, c2, c3),
                 tuple(out), None)
    return fused, parts


def _consumers(nodes: List[Node]) -> Dict[str, List[Node]]:
    out: Dict[str, List[Node]] = {}
    for n in nodes:
        for x in n.inputs:
            if x:
                out.setdefault(x, []).append(n)
    return out


def _implicit(nodes: List[Node]) -> Set[str]:
    names: Set[str] = set()
    for n in nodes:
        if n.proto is not None:
            names.update(graph.implicit_inputs(n.proto))
    return names


def _sole_consumer(name: str, cons: Dict[str, List[Node]], pinned: Set[str]) -> Optional[Node]:
    users = cons.get(name, [])
    if name in pinned or len(users) != 1:
        return None
    return users[0]


def _bias_of(mm: Node, add: Optional[Node], consts: Dict[str, np.ndarray]) -> Optional[str]:
    """The bias input of ``add`` if it adds a constant 1-D float vector, as long as the
    constant 2-D weight's last axis, to ``mm``'s product (so the sum has the product's
    shape and can be formed in place)."""
    if add is None or add.domain != "" or add.op_type != "Add" or add.version < 7 \
            or len(add.inputs) != 2 or len(add.outputs) != 1:
        return None
    other = add.inputs[1] if add.inputs[0] == mm.outputs[0] else add.inputs[0]
    if other == mm.outputs[0] or other not in consts or mm.inputs[1] not in consts:
        return None
    w, c = np.asarray(consts[mm.inputs[1]]), np.asarray(consts[other])
    if w.ndim != 2 or c.ndim != 1 or c.shape[0] != w.shape[1] \
            or w.dtype not in (np.float32, np.float64) or c.dtype != w.dtype:
        return None
    return other


def _inference_bn(bn: Node) -> bool:
    """An inference-mode BatchNormalization with per-channel (spatial) parameters."""
    return (bn.domain == "" and bn.op_type == "BatchNormalization" and len(bn.outputs) == 1
            and len(bn.inputs) == 5 and all(bn.inputs)
            and not (bn.version >= 14 and bn.attr("training_mode", 0))
            and not (bn.version < 9 and not bn.attr("spatial", 1)))


def _act_bounds(act: Node, consts: Dict[str, np.ndarray]):
    """(lo, hi) of a Relu / Clip with constant bounds, or None."""
    if act.domain != "" or len(act.outputs) != 1:
        return None
    if act.op_type == "Relu":
        return 0.0, np.inf
    if act.op_type != "Clip":
        return None
    if act.version < 11:
        return float(act.attr("min", -np.inf)), float(act.attr("max", np.inf))
    bounds = []
    for k, default in ((1, -np.inf), (2, np.inf)):
        name = act.inputs[k] if len(act.inputs) > k else ""
        if not name:
            bounds.append(default)
        elif name in consts and np.asarray(consts[name]).size == 1:
            bounds.append(float(np.asarray(consts[name]).reshape(())))
        else:
            return None
    return bounds[0], bounds[1]


# Elementwise ops audited to compute on strided views with numpy ufuncs (order 'K': an NHWC
# view in gives an NHWC view out): they pass the layout on to their consumers.
_LAYOUT_KEEPING = {("", "Add"), ("", "Sub"), ("", "Mul"), ("", "Div"), ("", "Relu"),
                   ("", "Clip"), (DOMAIN, "FusedAdd")}
# Keep 2-D 3x3 stride-1 group-1 convs with >= this many channels NCHW: they run Winograd
# (nn_conv.py), which has no NHWC path, so an NHWC input would cost it a copy.
_WINOGRAD_MIN_CHANNELS = 16


def _nhwc_conv(n: Node, consts: Dict[str, np.ndarray]) -> bool:
    """True for a float32 2-D conv with constant weights that nn_conv.py runs channels-last:
    depthwise with multiplier 1, or group 1 except the Winograd-sized 3x3 stride-1 ones."""
    if not ((n.domain == "" and n.op_type == "Conv")
            or (n.domain == DOMAIN and n.op_type == "FusedConv")) or len(n.inputs) < 2:
        return False
    w = consts.get(n.inputs[1])
    if not isinstance(w, np.ndarray) or w.ndim != 4 or w.dtype != np.float32:
        return False
    group = int(n.attr("group", 1))
    m, cg, kh, kw = w.shape
    if group != 1:
        return cg == 1 and m == group
    ones = [1, 1]
    return not ((kh, kw) == (3, 3) and list(n.attr("strides", ones)) == ones
                and list(n.attr("dilations", ones)) == ones
                and min(cg, m) >= _WINOGRAD_MIN_CHANNELS)


def mark_nhwc_outputs(nodes: List[Node], consts: Dict[str, np.ndarray], pinned: Set[str]
                      ) -> List[Node]:
    """``nodes`` with ``nhwc_out=1`` on every NHWC-path conv whose output may stay an NHWC
    view (the rule in the module docstring)."""
    cons = _consumers(nodes)
    memo: Dict[str, bool] = {}

    def view_ok(name: str) -> bool:
        if name in memo:
            return memo[name]
        memo[name] = False   # a cycle (impossible in a DAG) stays conservative
        ok = name not in pinned and bool(cons.get(name))
        for c in cons.get(name, []):
            if not ok:
                break
            if _nhwc_conv(c, consts):
                ok = c.inputs[0] == name and name not in c.inputs[1:]
            elif c.domain == "" and c.op_type == "GlobalAveragePool":
                ok = True
            elif c.domain == DOMAIN and c.op_type == "QuantizeF32":
                # quantizes in memory order: its u8 output is an NHWC view like the int8
                # layers' own outputs, which every consumer reads
                ok = c.inputs[0] == name and name not in c.inputs[1:]
            elif (c.domain, c.op_type) in _LAYOUT_KEEPING and len(c.outputs) == 1:
                ok = view_ok(c.outputs[0])
            else:
                ok = False
        memo[name] = ok
        return ok

    out = []
    for n in nodes:
        if _nhwc_conv(n, consts) and (len(n.outputs) == 1 or n.attr("sums_out")) \
                and view_ok(n.outputs[0]):
            n = Node(n.name, n.op_type, n.domain, n.version, n.opset,
                     dict(n.attrs, nhwc_out=1), n.inputs, n.outputs, n.proto)
        out.append(n)
    return out


def float_fusion_stage(nodes: List[Node], consts: Dict[str, np.ndarray], ctx: OpContext
                       ) -> List[Node]:
    implicit = _implicit(nodes)
    pinned = set(ctx.graph_outputs) | implicit
    # kept only for per-channel sums: the fused conv delivers them (second output)
    sums_ok = set(ctx.channel_sums) - implicit
    cons = _consumers(nodes)
    prod = {o: n for n in nodes for o in n.outputs if o}
    dropped: Set[int] = set()
    swap: Dict[int, Node] = {}
    for n in nodes:
        if n.domain != "" or id(n) in dropped:
            continue
        if n.op_type == "Erf" and len(n.inputs) == 1 and len(n.outputs) == 1:
            found = _erf_gelu(n, prod, cons, consts, pinned)
            if found is not None and not any(id(p) in dropped or id(p) in swap
                                             for p in found[1]):
                swap[id(n)] = found[0]
                dropped.update(id(p) for p in found[1] if p is not n)
            continue
        if n.op_type == "Conv" and len(n.outputs) == 1:
            attrs, inputs, outputs = dict(n.attrs), n.inputs, n.outputs
            nxt = _sole_consumer(outputs[0], cons, pinned)
            if nxt is not None and nxt.inputs[0] == outputs[0] and _inference_bn(nxt):
                # the fused kernel folds the parameters into W/B (once, if constant)
                b = inputs[2] if len(inputs) > 2 else ""
                inputs = (inputs[0], inputs[1], b) + tuple(nxt.inputs[1:])
                attrs["bn_epsilon"] = float(nxt.attr("epsilon", 1e-5))
                outputs = nxt.outputs
                dropped.add(id(nxt))
                nxt = _sole_consumer(outputs[0], cons, pinned)
            tap = ()
            if nxt is None and outputs[0] in sums_ok:
                # the activation's input is kept for its sums only: fuse it all the same
                nxt, tap = _sole_consumer(outputs[0], cons, pinned - {outputs[0]}), outputs
            bounds = None
            if nxt is not None and nxt.inputs and nxt.inputs[0] == outputs[0]:
                bounds = _act_bounds(nxt, consts)
            if bounds is not None:
                attrs.update(activation=nxt.op_type, act_min=bounds[0], act_max=bounds[1])
                if tap:
                    attrs["sums_out"] = 1
                outputs = tuple(nxt.outputs) + tuple(tap)
                dropped.add(id(nxt))
            if outputs != n.outputs:
                swap[id(n)] = Node(n.name, "FusedConv", DOMAIN, 1, n.opset, attrs,
                                   tuple(inputs), tuple(outputs), None)
        elif n.op_type == "MatMul" and len(n.outputs) == 1:
            nxt = _sole_consumer(n.outputs[0], cons, pinned)
            bias = _bias_of(n, nxt, consts)
            if bias is not None:
                swap[id(n)] = Node(n.name, "FusedMatMul", DOMAIN, 1, n.opset, {},
                                   (n.inputs[0], n.inputs[1], bias), nxt.outputs, None)
                dropped.add(id(nxt))
        elif ((n.op_type == "Add" and n.version >= 7) or n.op_type == "Sum") \
                and len(n.inputs) == 2 and all(n.inputs) and len(n.outputs) == 1:
            nxt = _sole_consumer(n.outputs[0], cons, pinned)
            if nxt is not None and nxt.op_type == "Relu" and nxt.domain == "":
                swap[id(n)] = Node(n.name, "FusedAdd", DOMAIN, 1, n.opset,
                                   {"activation": "Relu"}, n.inputs, nxt.outputs, None)
                dropped.add(id(nxt))
    layout_pinned = pinned - set(ctx.view_keep)
    if not swap:
        return mark_nhwc_outputs(nodes, consts, layout_pinned)
    out = [swap.get(id(n), n) for n in nodes if id(n) not in dropped]
    # intermediates that no longer exist: run_with_intermediates names them in its error
    gone = ctx.rewrites.setdefault("fused_away", set())
    gone.update(x for n in nodes for x in n.outputs if x)
    gone.difference_update(x for n in out for x in n.outputs if x)
    return mark_nhwc_outputs(out, consts, layout_pinned)


graph.GRAPH_REWRITES.append(float_fusion_stage)
