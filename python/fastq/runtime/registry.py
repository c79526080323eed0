"""Operator registry: where ONNX nodes meet their implementations.

Contract: an implementation is ``fn(node: Node, *inputs) -> ndarray | tuple[ndarray, ...]``.
``inputs`` follow the node's input list; an optional input left empty in the graph arrives
as ``None``. ``node.version`` is the since-version of the op's schema in effect for the
model's opset import (so one function handles every version and branches on it), and
``node.attrs`` holds every attribute the node sets, decoded to Python/numpy values. Defaults
are the implementation's business (``node.attr(name, default)``).

Extensions (the plain contract above keeps working): ``register(op, context=True)`` makes the
executor pass ``ctx=`` (an ``OpContext``: the session's arith/impl, subgraph runners);
``register(op, prepare=fn)`` gives an op a once-per-session hook ``fn(node, consts, ctx)``
that may return a specialised kernel ``kernel(*inputs)`` (e.g. with prepacked weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import UnsupportedOpError

OpFn = Callable[..., Any]


@dataclass(frozen=True)
class Node:
    name: str
    op_type: str
    domain: str
    version: int                      # schema since-version in effect
    opset: int                        # the model's opset import for this domain
    attrs: Dict[str, Any] = field(default_factory=dict)
    inputs: Tuple[str, ...] = ()
    outputs: Tuple[str, ...] = ()
    proto: Optional[onnx.NodeProto] = field(default=None, compare=False, repr=False)

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    def where(self) -> str:
        """How error messages name this node."""
        return f"node {self.name!r} ({self.op_type}, opset {self.opset})"


@dataclass(frozen=True)
class ChannelSums:
    """What a fused conv delivers for a tensor kept in ``OpContext.channel_sums``: the float64
    per-channel (axis 1) sums of its float32 values (stats_sum's order over the buffer the
    kernel wrote), their count per channel and the tensor's shape; ``bad`` holds a copy of the
    tensor when it has NaN/Inf (``nonfinite``), for the caller's error message."""
    sums: np.ndarray
    count: int
    shape: Tuple[int, ...]
    nonfinite: bool = False
    bad: Optional[np.ndarray] = None

    @property
    def ndim(self) -> int:
        return len(self.shape)


@dataclass
class OpContext:
    """What an op registered with ``context=True`` receives as ``ctx``.

    ``arith`` is the session's integer arithmetic (None: float session, int8 ops use the ONNX
    semantics, i.e. exact32); ``impl`` the kernel impl; ``graphs`` maps a graph attribute name
    to a callable ``run(inputs: list, outer: dict) -> list`` (subgraph ops); ``outer`` holds
    the values visible to subgraphs while the node runs.
    """
    arith: Optional[str] = None
    impl: str = "auto"
    graphs: Dict[str, Callable] = field(default_factory=dict)
    outer: Optional[Dict[str, Any]] = None
    conv_pairing: str = "per_tap"    # sat16pair conv pairing (kernels.PAIRINGS), session option
    graph_outputs: Tuple[str, ...] = ()  # outputs of the graph a rewrite stage is rewriting
    rewrites: Dict[str, Any] = field(default_factory=dict)  # what rewrite stages recorded
    # kept tensors the caller reduces to per-channel (axis 1) sums only: a fused conv may
    # deliver a ``ChannelSums`` for one in place of the tensor (float_fusion.py)
    channel_sums: Tuple[str, ...] = ()
    # kept tensors the caller accepts as strided (channels-last) views: the float layout
    # rule does not pin them to NCHW
    view_keep: Tuple[str, ...] = ()

    @property
    def int_arith(self) -> str:
        return self.arith or "exact32"


# (domain, op_type) -> implementation. Domain "" and "ai.onnx" are the same.
_REGISTRY: Dict[Tuple[str, str], OpFn] = {}
# (domain, op_type) -> (wants ctx, prepare hook or None)
_META: Dict[Tuple[str, str], Tuple[bool, Optional[Callable]]] = {}


# Domains whose schemas the onnx package defines; ops elsewhere carry no onnx schema.
_ONNX_DOMAINS = ("", "ai.onnx.ml", "ai.onnx.preview.training", "ai.onnx.preview")


def _norm_domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def register(op_type: str, domain: str = "", *, context: bool = False,
             prepare: Optional[Callable] = None) -> Callable[[OpFn], OpFn]:
    """Decorator: ``@register("Relu")`` makes ``fn`` the implementation of Relu.

    ``context=True``: ``fn(node, *inputs, ctx=OpContext)``. ``prepare``: see module doc.
    """

    def deco(fn: OpFn) -> OpFn:
        key = (_norm_domain(domain), op_type)
        if key in _REGISTRY:
            raise RuntimeError(f"op {op_type!r} (domain {domain!r}) registered twice")
        _REGISTRY[key] = fn
        _META[key] = (context, prepare)
        return fn

    return deco


def is_registered(op_type: str, domain: str = "") -> bool:
    return (_norm_domain(domain), op_type) in _REGISTRY


def supported_ops(domain: str = "") -> list:
    """Sorted op types with an implementation in ``domain``."""
    d = _norm_domain(domain)
    return sorted(op for (dom, op) in _REGISTRY if dom == d)


def decode_attribute(a: onnx.AttributeProto) -> Any:
    v = helper.get_attribute_value(a)
    if a.type == onnx.AttributeProto.STRING:
        return v.decode("utf-8")
    if a.type == onnx.AttributeProto.STRINGS:
        return [s.decode("utf-8") for s in v]
    if a.type == onnx.AttributeProto.TENSOR:
        return numpy_helper.to_array(v)
    if a.type == onnx.AttributeProto.TENSORS:
        return [numpy_helper.to_array(t) for t in v]
    if a.type in (onnx.AttributeProto.INTS, onnx.AttributeProto.FLOATS):
        return list(v)
    return v  # INT, FLOAT, GRAPH(S), SPARSE_TENSOR(S), TYPE_PROTO(S) as given


def make_node(proto: onnx.NodeProto, opset_imports: Dict[str, int], index: int = 0,
              check: bool = True) -> Node:
    """Resolve a NodeProto against the model's opset imports; unknown ops raise here.

    ``check=False`` skips the registry lookup (graph rewrites may still replace the node).
    """
    domain = _norm_domain(proto.domain)
    name = proto.name or f"{proto.op_type}_{index}"
    opset = opset_imports.get(domain, opset_imports.get("ai.onnx", 0))
    where = f"node {name!r} ({proto.op_type}, domain {domain or 'ai.onnx'!r}, opset {opset})"
    if check and (domain, proto.op_type) not in _REGISTRY:
        raise UnsupportedOpError(f"{where}: operator is not supported by fastq")
    try:
        schema = onnx.defs.get_schema(proto.op_type, opset, domain)
        version = schema.since_version
    except Exception as e:  # no schema at that opset: the op did not exist yet
        if domain in _ONNX_DOMAINS:
            raise UnsupportedOpError(f"{where}: no schema for this op at this opset") from e
        version = opset  # a non-ONNX domain (fastq's own fused ops): its import is its version
    attrs = {a.name: decode_attribute(a) for a in proto.attribute}
    return Node(name=name, op_type=proto.op_type, domain=domain, version=version, opset=opset,
                attrs=attrs, inputs=tuple(proto.input), outputs=tuple(proto.output),
                proto=proto)


def lookup(node: Node) -> OpFn:
    try:
        return _REGISTRY[(node.domain, node.op_type)]
    except KeyError:
        dom = f" in domain {node.domain!r}" if node.domain else ""
        raise UnsupportedOpError(f"{node.where()}: operator is not supported by fastq{dom}") \
            from None


def wants_context(node: Node) -> bool:
    return _META.get((node.domain, node.op_type), (False, None))[0]


def prepare_hook(node: Node) -> Optional[Callable]:
    return _META.get((node.domain, node.op_type), (False, None))[1]


def bind(node: Node, ctx: Optional[OpContext] = None) -> Callable:
    """The node's kernel ``kernel(*inputs) -> raw outputs`` with ``node`` (and ctx) bound."""
    fn = lookup(node)
    # functools.partial, not a lambda: called once per node per run, it adds no Python frame
    if wants_context(node):
        return partial(fn, node, ctx=ctx if ctx is not None else OpContext())
    return partial(fn, node)


def as_outputs(out: Any) -> list:
    """One value per output. A list *inside* the returned tuple is a sequence value (kept);
    None is an absent/empty optional; a ``ChannelSums`` stays one; anything else becomes an
    ndarray."""
    if type(out) is np.ndarray:   # the common case, decided without the generic checks
        return [out]
    if isinstance(out, np.ndarray) or np.isscalar(out):
        out = [out]
    return [o if o is None or isinstance(o, (np.ndarray, list, ChannelSums)) else np.asarray(o)
            for o in out]


def run_node(node: Node, inputs: Sequence[Optional[np.ndarray]],
             ctx: Optional[OpContext] = None) -> list:
    """Run one node; always returns a list with one array per declared output."""
    return as_outputs(bind(node, ctx)(*inputs))
