"""MinMax placement: which tensors get quantizers, with what settings — one ``Plan`` object.

Rules (POT's CPU hardware config, expressed as ONNX QDQ that ONNX Runtime fuses): weights of
Conv/ConvTranspose/MatMul/Gemm per output channel; activations per tensor at the inputs of
those ops, of Add with two runtime inputs (QLinearAdd), of Concat (one shared range, so the
int8 concat is a copy) and of pooling (MaxPool shares its input's range with its output, so
ORT drops the Q/DQ pair). Only op *inputs* are quantized, so no Q/DQ ever sits between a Conv
and the Relu it fuses with: a Relu output read by a quantized op carries the quantizer.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import onnx

from ..config import ResolvedLayer, effective_ignored, resolve_layer
from ..config.types import Granularity, Mode, ModelType, Role, SaturationFix
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


@dataclass
class ActivationQuantizer:
    tensor: str
    layer: ResolvedLayer
    consumers: List[Tuple[str, int]] = field(default_factory=list)   # (node, input index)
    group: Optional[str] = None   # quantizers with one group share one range
    channel_axis: Optional[int] = None
    reasons: List[str] = field(default_factory=list)


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
                plan.weights[n.name] = WeightQuantizer(n.name, n.op_type, w, axis, w_layer)
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
    _mark_saturation_fix(g, plan, sat)
    return plan


_PASS = ("Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze")


def _mark_saturation_fix(g: Graph, plan: Plan, sat: SaturationFix) -> None:
    # auto: chosen after the ranges, by measuring each layer (algorithms/saturation_fix.py)
    if sat in (SaturationFix.NO, SaturationFix.AUTO) or not plan.weights:
        return
    if sat is SaturationFix.ALL:
        for w in plan.weights.values():
            w.saturation_fix = True
        return
    # first_layer: on every path from a model input, the first Conv/ConvTranspose/MatMul/Gemm
    # (a MatMul of two activations ends the path too, as POT's traversal stops at MatMul)
    cons = g.consumers()
    for inp in g.input_names:
        seen, stack = set(), [inp]
        while stack:
            t = stack.pop()
            for c, _ in cons.get(t, []):
                if c.name in seen:
                    continue
                seen.add(c.name)
                if c.name in plan.weights:
                    plan.weights[c.name].saturation_fix = True
                elif c.op_type not in WEIGHTED:
                    stack.extend(o for o in c.output if o)
