"""MinMax placement: which tensors get quantizers, with what settings — one ``Plan`` object.

Rules (POT's CPU hardware config, expressed as ONNX QDQ that ONNX Runtime fuses): weights of
Conv/ConvTranspose/MatMul/Gemm per output channel; activations per tensor at the inputs of
those ops, of Add with two runtime inputs (QLinearAdd), of Concat (one shared range, so the
int8 concat is a copy) and of pooling (MaxPool shares its input's range with its output, so
ORT drops the Q/DQ pair). No Q/DQ ever sits between a Conv and the Relu/Clip it fuses with:
the activation's output carries the quantizer. For ONNX Runtime (``_close_for_ort``): every
quantized Conv/Add/Concat/pool also gets a quantizer on its output read by all its consumers
(ORT fuses DQ -> op -> Q only then); an op one of whose readers must stay float (user-ignored)
is left in float instead, and so is an Add none of whose readers computes in int8 (e.g. the
masked attention scores before a Softmax, a residual before a LayerNorm); a MatMul's constant bias Add becomes int32 when ORT will fuse the
pair into QGemm. Each such decision is recorded in ``Plan.decisions`` / ``Plan.ignored``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import onnx

from ..config import ResolvedLayer, effective_ignored, resolve_layer
from ..config.types import Granularity, IgnoredScope, Mode, ModelType, Role, SaturationFix
from ..errors import ConfigError
from ..graph.ir import Graph, attrs

WEIGHTED = ("Conv", "ConvTranspose", "MatMul", "Gemm")
POOLS = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool")
_FLOAT = (onnx.TensorProto.FLOAT,)     # unknown types are never quantized


@dataclass
class WeightQuantizer:
    node: str                     # the layer (Conv/ConvTranspose/MatMul/Gemm)
    op_type: str
    tensor: str                   # initializer name
    axis: Optional[int]           # channel axis of the weight; None per tensor
    layer: ResolvedLayer
    saturation_fix: bool = False
    bias_add: Optional[Tuple[str, int]] = None   # MatMul: (Add node, bias input index)


@dataclass
class ActivationQuantizer:
    tensor: str
    layer: ResolvedLayer
    consumers: List[Tuple[str, int]] = field(default_factory=list)   # (node, input index)
    group: Optional[str] = None   # quantizers with one group share one range
    channel_axis: Optional[int] = None
    reasons: List[str] = field(default_factory=list)
    graph_output: bool = False    # the tensor is a graph output: the export renames its
                                  # producer's output and the DequantizeLinear writes it


@dataclass
class Plan:
    weights: Dict[str, WeightQuantizer] = field(default_factory=dict)      # by layer name
    activations: Dict[str, ActivationQuantizer] = field(default_factory=dict)  # by tensor
    ignored: Dict[str, str] = field(default_factory=dict)                  # node -> why
    layers: List[str] = field(default_factory=list)   # weighted layers, topological order
    decisions: List[str] = field(default_factory=list)
    joint: set = field(default_factory=set)   # nodes whose int8 form needs every input

    def drop(self, tensor: str) -> List[str]:
        """Remove a quantizer; a joint node it fed loses its other input quantizers too.
        Returns every tensor removed."""
        q = self.activations.pop(tensor, None)
        if q is None:
            return []
        gone = [tensor]
        for node, _ in q.consumers:
            if node not in self.joint:
                continue
            for t, other in list(self.activations.items()):
                other.consumers = [e for e in other.consumers if e[0] != node]
                if not other.consumers:
                    gone += self.drop(t)
        return gone

    def release(self, node: str, why: str) -> List[str]:
        """Leave ``node`` in float: its weight quantizer and its input edges go (a quantizer
        left without consumers is removed). Returns the removed tensors."""
        self.weights.pop(node, None)
        if node in self.layers:
            self.layers.remove(node)
        self.joint.discard(node)
        self.ignored[node] = why
        gone: List[str] = []
        for t, q in list(self.activations.items()):
            if any(e[0] == node for e in q.consumers):
                q.consumers = [e for e in q.consumers if e[0] != node]
                if not q.consumers and not q.graph_output:
                    gone += self.drop(t)
        return gone

    def summary(self) -> dict:
        return {
            "weights": {k: {"tensor": w.tensor, "axis": w.axis, "bits": w.layer.bits,
                            "mode": str(w.layer.mode), "granularity": str(w.layer.granularity),
                            "saturation_fix": w.saturation_fix}
                        for k, w in self.weights.items()},
            "activations": {k: {"bits": a.layer.bits, "mode": str(a.layer.mode),
                                "granularity": str(a.layer.granularity), "group": a.group,
                                "consumers": [f"{n}:{i}" for n, i in a.consumers],
                                "range_estimator": _est(a.layer)}
                            for k, a in self.activations.items()},
            "ignored": dict(self.ignored),
        }


def _est(layer: ResolvedLayer) -> dict:
    re_ = layer.range_estimator
    return {s: (None if getattr(re_, s) is None else
                {"type": str(getattr(re_, s).type), "aggregator": str(getattr(re_, s).aggregator)
                 if getattr(re_, s).aggregator else None})
            for s in ("min", "max")}


def check_scope(params, names: List[str]) -> None:
    """Every ``ignored.scope`` name must match a node; otherwise a ConfigError listing near
    matches."""
    known = set(names)
    for s in params.ignored.scope:
        if s not in known:
            near = difflib.get_close_matches(s, names, n=5, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, near))}?" if near else ""
            raise ConfigError(f"ignored.scope: no node named {s!r} in the model{hint}")


def _weight_axis(node: onnx.NodeProto, w_shape) -> Optional[int]:
    a = attrs(node)
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1 if a.get("group", 1) == 1 else None
    if node.op_type == "Gemm":
        return 0 if a.get("transB", 0) else 1
    return len(w_shape) - 1           # MatMul weight [..., K, N]: per N


def build_plan(g: Graph, params) -> Plan:
    plan = Plan()
    ignored = effective_ignored(params)
    transformer = params.model_type is ModelType.TRANSFORMER
    sat = params.effective_saturation_fix
    w_layer = resolve_layer(params, Role.WEIGHTS)
    act_layers = {m: resolve_layer(params, Role.ACTIVATIONS, mode=m) for m in Mode}
    act_default = resolve_layer(params, Role.ACTIVATIONS)
    if act_default.granularity is Granularity.PERCHANNEL:
        # ONNX Runtime's int8 ops (QLinearConv, QLinearAdd, QLinearGlobalAveragePool, ...)
        # take one activation scale; a per-axis activation Q/DQ would fuse and then fail.
        raise ConfigError("activations.granularity: 'perchannel' is not supported by the QDQ "
                          "export (ONNX Runtime's int8 ops take per-tensor activation "
                          "scales); use 'pertensor'")

    alias: Dict[str, str] = {}
    unknown: set = set()

    def is_float_act(t: str) -> bool:
        if not t or g.is_const(t):
            return False
        et = g.elem_type(t)
        if et is None and t not in unknown:
            unknown.add(t)
            plan.decisions.append(f"not quantized: {t} (its type is unknown: ONNX shape "
                                  "inference could not type it)")
        return et in _FLOAT

    def want(t: str, node: onnx.NodeProto, idx: int, why: str, mode: Optional[Mode] = None,
             group: Optional[str] = None) -> ActivationQuantizer:
        q = plan.activations.get(t)
        layer = act_layers[mode] if mode is not None else act_default
        if q is None:
            q = plan.activations[t] = ActivationQuantizer(
                t, layer, channel_axis=1 if layer.granularity is Granularity.PERCHANNEL
                else None)
        elif mode is Mode.SYMMETRIC and q.layer.mode is not Mode.SYMMETRIC:
            q.layer = layer                       # a symmetric requirement wins
        if (node.name, idx) not in q.consumers:
            q.consumers.append((node.name, idx))
        if why not in q.reasons:
            q.reasons.append(why)
        if group is not None:
            while group in alias:
                group = alias[group]
            if q.group is None:
                q.group = group
            elif q.group != group:            # a Concat input that is also a pool output
                alias[group] = q.group
                for other in plan.activations.values():
                    if other.group == group:
                        other.group = q.group
        return q

    cons = g.consumers()
    for n in g.nodes:
        a = attrs(n)
        if ignored.is_ignored(n.name, n.op_type, a):
            why = ("ignored.scope" if n.name in ignored.scope else
                   "ignored.patterns" if not any(o.matches(n.op_type, a)
                                                 for o in ignored.operations)
                   else ("model_type transformer" if transformer and n.op_type not in
                         {o.type for o in params.ignored.operations}
                         else "ignored.operations"))
            if n.op_type in WEIGHTED or n.op_type in ("Add", "Concat") + POOLS:
                plan.ignored[n.name] = why
            continue
        if n.domain not in ("", "ai.onnx"):
            continue
        if n.op_type in WEIGHTED:
            x, w = n.input[0], n.input[1]
            if g.is_const(w) and g.inits[w].dtype.kind == "f" and is_float_act(x) and \
                    not (n.op_type == "MatMul" and g.inits[w].ndim < 2):
                axis = _weight_axis(n, g.inits[w].shape)
                if w_layer.granularity is Granularity.PERTENSOR:
                    axis = None
                plan.weights[n.name] = WeightQuantizer(n.name, n.op_type, w, axis, w_layer,
                                                       bias_add=_bias_add(g, cons, n, ignored))
                if plan.weights[n.name].bias_add:
                    plan.decisions.append(
                        f"{n.name}: the constant bias of {plan.weights[n.name].bias_add[0]} "
                        "is stored as int32 (scale s_x * s_w) so ONNX Runtime fuses MatMul + "
                        "Add into QGemm")
                plan.layers.append(n.name)
                want(x, n, 0, f"input of {n.op_type}")
            elif n.op_type == "MatMul" and is_float_act(x) and is_float_act(w):
                mode = Mode.SYMMETRIC if transformer else None
                plan.joint.add(n.name)
                want(x, n, 0, "MatMul of two activations", mode)
                want(w, n, 1, "MatMul of two activations", mode)
            else:
                plan.ignored[n.name] = "no constant float weight in the supported position"
        elif n.op_type == "Add" and len(n.input) == 2 and all(map(is_float_act, n.input)):
            plan.joint.add(n.name)
            for i, t in enumerate(n.input):
                want(t, n, i, "input of Add of two activations")
        elif n.op_type == "Concat" and all(map(is_float_act, n.input)):
            plan.joint.add(n.name)
            for i, t in enumerate(n.input):
                want(t, n, i, "Concat input (shared range)", group=f"concat:{n.name}")
        elif n.op_type in POOLS and is_float_act(n.input[0]):
            y = n.output[0]
            if not any(c.op_type in WEIGHTED + ("Add", "Concat") + POOLS + _PASS
                       for c, _ in cons.get(y, [])):
                continue                         # int8 would stop right after the pool
            grp = f"pool:{n.name}" if n.op_type in ("MaxPool", "GlobalMaxPool") else None
            want(n.input[0], n, 0, f"input of {n.op_type}", group=grp)
            for c, i in cons.get(y, []):
                if not ignored.is_ignored(c.name, c.op_type, attrs(c)):
                    want(y, c, i, f"output of {n.op_type}", group=grp)
    _close_for_ort(g, plan, params.ignored, want)
    _mark_saturation_fix(g, plan, sat)
    return plan


def _bias_add(g: Graph, cons, n: onnx.NodeProto, ignored) -> Optional[Tuple[str, int]]:
    """A MatMul whose only reader is ``Add(y, b)`` with a constant float ``b`` of shape [N]:
    the export stores ``b`` as int32 behind a DequantizeLinear (scale s_x * s_w), so ONNX
    Runtime fuses MatMul + Add into QGemm (float output); with a float ``b`` it builds a float
    Gemm on dequantized weights, slower than the float model. ORT fuses MatMul + Add only for
    a rank-2 or fully static input; otherwise (dynamic axes) it runs MatMulIntegerToFloat and
    a float Add, and ``b`` stays float (a DequantizeLinear there would run every inference)."""
    if n.op_type != "MatMul" or n.output[0] in g.output_names:
        return None
    shape = g.shape(n.input[0])          # ORT's MatMulAddFusion: a rank-2 input, or a fully
    if shape is None or (len(shape) != 2 and None in shape):   # static one it reshapes
        return None
    users = cons.get(n.output[0], [])
    if len(users) != 1 or users[0][0].op_type != "Add" or len(users[0][0].input) != 2:
        return None
    add, i = users[0]
    other = add.input[1 - i]
    w = g.inits[n.input[1]]
    if other not in g.inits or g.inits[other].dtype != np.float32 or \
            g.inits[other].shape != (w.shape[-1],) or w.ndim != 2 or add.name in ignored.scope:
        return None
    return add.name, 1 - i


# ops ONNX Runtime fuses into an int8 kernel only when every reader of their output is a
# QuantizeLinear (DQ -> op -> Q): QLinearConv, QLinearAdd, QLinearConcat, QLinear*Pool.
# MatMul/Gemm are not here: MatMulIntegerToFloat and QGemm write float.
_NEEDS_Q_OUT = ("Conv", "ConvTranspose", "Add", "Concat") + POOLS
_FUSED_ACT = ("Relu", "Clip")      # ORT folds them into the Q after a Conv/Add


def _close_for_ort(g: Graph, plan: Plan, ignored: IgnoredScope, want) -> None:
    """Every quantized op of ``_NEEDS_Q_OUT`` gets a quantizer on its output (after a Relu/
    Clip it fuses with) read by *all* its consumers, as ONNX Runtime's own quantizer does:
    an op whose output is also read in float stays a float op on dequantized inputs in ORT,
    slower than the float model. When a consumer must keep a float input (it is in the
    user's ignored scope), the op is left in float instead; an Add whose output no reader
    takes quantized (directly or through ``_PASS`` ops; not a graph output) is left in float
    too (a QLinearAdd there would only round its output); repeated to a fixed point."""
    user_ignored = {n.name for n in g.nodes if ignored.is_ignored(n.name, n.op_type, attrs(n))}
    outs = set(g.output_names)
    released: set = set()
    closing: set = set()         # (tensor, consumer, index) edges added here, not int8 reads
    changed = True
    while changed:
        changed = False
        cons = g.consumers()
        for n in g.nodes:
            if n.name in released or not _quantized_needing_q(plan, n):
                continue
            t, act = n.output[0], None
            users = cons.get(t, [])
            if len(users) == 1 and users[0][0].op_type in _FUSED_ACT and users[0][1] == 0 \
                    and t not in outs and users[0][0].name not in user_ignored:
                act = users[0][0]
                t = act.output[0]
                users = cons.get(t, [])
            q = plan.activations.get(t)
            read = set(q.consumers) if q else set()
            float_users = [(c, i) for c, i in users if (c.name, i) not in read]
            blocked = [c.name for c, _ in float_users if c.name in user_ignored]
            int8_reads = {e for e in read if (t,) + e not in closing}
            if n.op_type == "Add" and users and not int8_reads and t not in outs and \
                    not any(_quantized_after_pass(plan, cons, c, closing) for c, _ in users):
                # no reader computes in int8 (e.g. Softmax/LayerNorm after a masked-score or
                # residual Add): QLinearAdd -> DQ would only add a rounding of the output --
                # which, on attention scores plus a -1e4 mask, erases the scores -- and run
                # slower than a float Add. POT/NNCF leave such an output unquantized too.
                released.add(n.name)
                for c, i in users:
                    if (t, c.name, i) in closing and q is not None:
                        q.consumers = [e for e in q.consumers if e != (c.name, i)]
                if q is not None and not q.consumers and not q.graph_output:
                    plan.drop(t)
                _release(plan, n.name, "left in float: no reader of its output computes in "
                         "int8, so a QLinearAdd would only round its output")
                changed = True
                break
            if blocked:
                released.add(n.name)     # it may still read a dequantized input
                _release(plan, n.name, f"left in float for ONNX Runtime: its output is read "
                         f"by {', '.join(blocked)} (ignored: keeps a float input), and ORT runs "
                         f"a {n.op_type} in int8 only when every reader takes its quantized "
                         "output")
                changed = True
                break
            why = (f"output of int8 {n.op_type} {n.name}"
                   + (f" (after the {act.op_type} it fuses with)" if act else "")
                   + ": ORT fuses it only with a QuantizeLinear on the output")
            for c, i in float_users:
                want(t, c, i, why)
                closing.add((t, c.name, i))
            if t in outs and not (q and q.graph_output):
                q = plan.activations.get(t)
                if q is None:
                    q = want(t, n, -1, why)
                    q.consumers.clear()
                q.graph_output = True
                plan.decisions.append(f"quantized graph output {t}: {why}")
            elif float_users and (q is None or not read):
                plan.decisions.append(f"quantized {t}: {why}")


def _release(plan: Plan, name: str, why: str) -> None:
    """Leave ``name`` in float for ``why``; the decision lists the quantizers that went."""
    gone = plan.release(name, why)
    plan.decisions.append(f"{name}: {plan.ignored[name]}"
                          + (f"; quantizers removed: {', '.join(gone)}" if gone else ""))


def _quantized_after_pass(plan: Plan, cons, c: onnx.NodeProto, closing: set) -> bool:
    """Whether ``c`` is a data-movement op (``_PASS``) whose output, maybe through more of
    them, is read quantized by a placement (not closing) edge."""
    if c.op_type not in _PASS or not c.output:
        return False
    t = c.output[0]
    q = plan.activations.get(t)
    if q is not None and any((t,) + e not in closing for e in q.consumers):
        return True
    return any(_quantized_after_pass(plan, cons, d, closing) for d, _ in cons.get(t, []))


def _quantized_needing_q(plan: Plan, n: onnx.NodeProto) -> bool:
    if n.op_type not in _NEEDS_Q_OUT or n.domain not in ("", "ai.onnx"):
        return False
    if n.op_type in ("Conv", "ConvTranspose"):
        return n.name in plan.weights
    if n.op_type in ("Add", "Concat"):
        return n.name in plan.joint and all(
            t in plan.activations and (n.name, i) in plan.activations[t].consumers
            for i, t in enumerate(n.input))
    q = plan.activations.get(n.input[0])
    return q is not None and (n.name, 0) in q.consumers


_PASS = ("Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze")


def _mark_saturation_fix(g: Graph, plan: Plan, sat: SaturationFix) -> None:
    # auto: chosen after the ranges, by measuring each layer (algorithms/saturation_fix.py)
    if sat in (SaturationFix.NO, SaturationFix.AUTO) or not plan.weights:
        return
    if sat is SaturationFix.ALL:
        for w in plan.weights.values():
            w.saturation_fix = True
        return
    # first_layer (DESIGN.md section 3): the first Conv/MatMul (any quantized layer with a
    # constant weight) reached from each model input -- a layer whose activation input depends
    # on no other quantized layer. The walk from the inputs stops at such a layer and never
    # passes a node that also reads something a quantized layer computed: a residual Add or a
    # Concat joining a branch that went through a layer ends it. (Walking through those, as
    # fastq did before, reached every block of a transformer through its residual stream and
    # halved the weight grids of all its QKV and FFN MatMuls.) POT's get_first_convolutions
    # looks for group-1 Convs only; on CNNs both choose the stem conv(s).
    cons = g.consumers()
    tainted: set = set()        # tensors computed downstream of a quantized layer
    todo = [o for n in g.nodes if n.name in plan.weights for o in n.output if o]
    while todo:
        t = todo.pop()
        if t not in tainted:
            tainted.add(t)
            todo.extend(o for c, _ in cons.get(t, []) for o in c.output if o)
    seen: set = set()
    stack = list(g.input_names)
    while stack:
        t = stack.pop()
        for c, _ in cons.get(t, []):
            if c.name in seen or any(i in tainted for i in c.input if i):
                continue
            seen.add(c.name)
            if c.name in plan.weights:
                plan.weights[c.name].saturation_fix = True
            else:
                stack.extend(o for o in c.output if o)
