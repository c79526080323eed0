"""``InferenceSession``: ONNX-Runtime-shaped entry point of the fastq executor.

Contract: the model (path, bytes or ModelProto, never mutated) is loaded, checked, shape-inferred
and compiled once; ``run`` validates feeds (names, dtypes, ranks, fixed dims) and raises
``DataError`` naming the input; ``run_with_intermediates`` hands chosen tensors to a callback as
they are produced, for statistics collectors that reduce each one and keep nothing alive.
``arith=None`` is a float session (int8 ops follow ONNX, i.e. exact32); ``exact32``/``sat16pair``
pick the int8 arithmetic the int8 ops emulate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import onnx
from onnx import helper

from .. import kernels
from ..errors import ConfigError, DataError, ModelError
from . import ops  # noqa: F401  (registers every op)
from . import qdq_layers  # fused int8 QDQ layers (a GRAPH_REWRITES stage)
from . import float_fusion  # noqa: F401  Conv+BN+Relu, Add+Relu (stage after qdq_layers)
from .graph import CompiledGraph, topo_order
from .parallel import blas_capped
from .registry import OpContext

ARITHS = (None, "exact32", "sat16pair")


@dataclass(frozen=True)
class NodeArg:
    """An input or output as ONNX Runtime describes it."""
    name: str
    shape: Optional[List[Union[int, str, None]]]   # None: rank unknown; str: symbolic dim
    type: str                                      # "tensor(float)", "tensor(int64)", ...
    dtype: Optional[np.dtype] = None


def _type_string(elem_type: int) -> str:
    return f"tensor({onnx.TensorProto.DataType.Name(elem_type).lower()})"


def _np_dtype(elem_type: int) -> Optional[np.dtype]:
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:
        return None


def _shape_of(tt: onnx.TypeProto.Tensor) -> Optional[list]:
    if not tt.HasField("shape"):
        return None
    dims: list = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dims


def _type_name(t: onnx.TypeProto) -> str:
    kind = t.WhichOneof("value")
    if kind == "tensor_type":
        return _type_string(t.tensor_type.elem_type)
    if kind == "sequence_type":
        return f"seq({_type_name(t.sequence_type.elem_type)})"
    if kind == "optional_type":
        return f"optional({_type_name(t.optional_type.elem_type)})"
    raise ModelError(f"type {kind!r} is not supported (tensors, sequences and optionals are)")


def _node_arg(vi: onnx.ValueInfoProto) -> NodeArg:
    t = vi.type
    if t.WhichOneof("value") != "tensor_type":  # sequences/optionals: no shape or dtype check
        try:
            return NodeArg(vi.name, None, _type_name(t), None)
        except ModelError as e:
            raise ModelError(f"graph input/output {vi.name!r}: {e}") from None
    tt = t.tensor_type
    return NodeArg(vi.name, _shape_of(tt), _type_string(tt.elem_type), _np_dtype(tt.elem_type))


def load_any(model: Any) -> onnx.ModelProto:
    """Path, bytes or ModelProto -> ModelProto; ModelError on anything else or bad bytes."""
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        try:
            return onnx.load_from_string(bytes(model))
        except Exception as e:
            raise ModelError(f"the bytes are not an ONNX model: {e}") from e
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.exists(path):
            raise ModelError(f"model file {path!r} does not exist")
        try:
            return onnx.load(path)  # external data resolved relative to the file
        except Exception as e:
            raise ModelError(f"cannot load ONNX model {path!r}: {e}") from e
    raise ModelError(f"model must be a path, bytes or onnx.ModelProto, got "
                     f"{type(model).__name__}")


def _sorted_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its top-level nodes topologically sorted (a copy only if needed)."""
    g = model.graph
    avail = {i.name for i in g.input} | {t.name for t in g.initializer}
    avail |= {t.values.name for t in g.sparse_initializer}
    order = topo_order(list(g.node), avail)
    if order == list(range(len(g.node))):
        return model
    m = onnx.ModelProto()
    m.CopyFrom(model)
    nodes = [onnx.NodeProto() for _ in order]
    for dst, k in zip(nodes, order):
        dst.CopyFrom(g.node[k])
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    return m


def _root(a: Any) -> Any:
    """The object at the end of an array's ``.base`` chain (the array itself if it owns its
    memory)."""
    while isinstance(a, np.ndarray) and a.base is not None:
        a = a.base
    return a


class InferenceSession:
    """Run an ONNX model on the CPU with fastq's kernels.

    ``sess = InferenceSession(model, arith=None, impl="auto")``;
    ``sess.run(None, {"x": x}) -> [y, ...]``.
    """

    def __init__(self, model: Any, *, arith: Optional[str] = None, impl: str = "auto",
                 conv_pairing: str = "per_tap", keep: Iterable[str] = (),
                 channel_sums: Iterable[str] = (), keep_views: bool = False):
        if arith not in ARITHS:
            raise ConfigError(f"unknown arith {arith!r}; valid: None, exact32, sat16pair")
        if conv_pairing not in kernels.PAIRINGS:
            raise ConfigError(f"unknown conv_pairing {conv_pairing!r}; valid: per_tap, flat")
        if impl != "auto":
            kernels._resolve_impl(impl, arith or "exact32")  # IsaError early if unusable
        self.arith = arith
        self.impl = impl
        from ..graph.light import check_and_infer   # (fastq.graph imports this module)
        proto = _sorted_copy(load_any(model))
        # checker, then shape inference (a help for folding limits and shapes, not required);
        # both on a copy without the large weights (graph/light.py)
        try:
            inferred = check_and_infer(proto)
        except onnx.checker.ValidationError as e:
            raise ModelError(f"the model fails the ONNX checker: {e}") from e
        except ValueError as e:  # > 2 GB protos cannot be checked in memory
            if "2GB" not in str(e) and "2 GB" not in str(e):
                raise ModelError(f"the model fails the ONNX checker: {e}") from e
            inferred = check_and_infer(proto, check=False)
        g = inferred.graph
        self._inputs = [_node_arg(vi) for vi in g.input
                        if vi.name not in {t.name for t in g.initializer}]
        self._outputs = [_node_arg(vi) for vi in g.output]
        shapes: Dict[str, tuple] = {}
        for vi in list(g.value_info) + list(g.output):
            if vi.type.WhichOneof("value") == "tensor_type":
                s = _shape_of(vi.type.tensor_type)
                if s is not None:
                    shapes[vi.name] = tuple(s)
        self.opsets = {("" if o.domain in ("", "ai.onnx") else o.domain): o.version
                       for o in inferred.opset_import}
        self.ir_version = inferred.ir_version
        # ``keep``: intermediate tensors a caller will request from run_with_intermediates;
        # rewrite stages (int8 layer fusion) keep them produced, as they keep graph outputs.
        # For a statistics collector (quantize.py): ``channel_sums`` names kept tensors it only
        # reduces to per-channel (axis 1) sums, which a fused Conv+Relu/Clip may deliver as a
        # ``registry.ChannelSums`` instead of the tensor (so the fusion survives); with
        # ``keep_views`` kept tensors may arrive as channels-last views (the float convs keep
        # their NHWC layout through them). Graph outputs are never affected.
        keep = tuple(keep)
        outs = {o.name for o in self._outputs}
        self._graph = CompiledGraph(
            inferred.graph, self.opsets,
            OpContext(arith=arith, impl=impl, conv_pairing=conv_pairing, graph_outputs=keep,
                      channel_sums=tuple(n for n in channel_sums if n in keep and n not in outs),
                      view_keep=tuple(n for n in keep if n not in outs) if keep_views else ()),
            value_shapes=shapes)
        # per-run feed checks decided once: (name, NodeArg, fixed dims or None)
        self._expected = {a.name: a for a in self._inputs}
        self._checks = [(a.name, a, None if a.shape is None or a.dtype is None
                         or not a.type.startswith("tensor(") else
                         [(k, d) for k, d in enumerate(a.shape) if isinstance(d, int)])
                        for a in self._inputs]
        self._const_roots = {id(_root(c)) for c in self._graph.consts.values()
                             if isinstance(c, np.ndarray)}

    # -- description ---------------------------------------------------------------------
    def get_inputs(self) -> List[NodeArg]:
        return list(self._inputs)

    def get_outputs(self) -> List[NodeArg]:
        return list(self._outputs)

    def get_providers(self) -> List[str]:
        return ["FastqCPUExecutionProvider"]

    def int8_layers(self) -> list:
        """QDQ layers fused into int8 kernels in this session's arith (qdq_layers.py)."""
        return qdq_layers.fused_layers(self._graph.base)

    def unfused_qdq_layers(self) -> list:
        """QDQ layers left in float (sat16pair not emulated for them), with the reason."""
        return qdq_layers.unfused_layers(self._graph.base)

    # -- execution -----------------------------------------------------------------------
    def _check_feeds(self, feeds: Any, check_finite: bool) -> Dict[str, np.ndarray]:
        if not isinstance(feeds, dict):
            raise DataError(f"feeds must be a dict input-name -> array, got "
                            f"{type(feeds).__name__}")
        expected = self._expected
        if len(feeds) != len(expected) or not all(n in expected for n in feeds):
            self._check_names(feeds)
        out: Dict[str, np.ndarray] = {}
        for name, arg, fixed in self._checks:
            x = feeds[name]
            if type(x) is np.ndarray and fixed is not None and x.dtype == arg.dtype and \
                    x.ndim == len(arg.shape) and all(x.shape[a] == d for a, d in fixed) and \
                    not (check_finite and x.dtype.kind in "fc"):
                out[name] = x        # known tensor of the right dtype and shape: nothing to do
                continue
            out[name] = self._check_feed(name, arg, x, check_finite)
        return out

    def _check_names(self, feeds: Dict[str, Any]) -> None:
        expected = self._expected
        for name in feeds:
            if name not in expected:
                raise DataError(f"unexpected feed {name!r}; the model's inputs are "
                                f"{', '.join(map(repr, expected)) or 'none'}")
        for name, arg in expected.items():
            if name not in feeds:
                raise DataError(f"missing feed for input {name!r} ({arg.type}, shape "
                                f"{arg.shape})")

    def _check_feed(self, name: str, arg: NodeArg, x: Any, check_finite: bool) -> Any:
        if not arg.type.startswith("tensor("):
            if arg.type.startswith("seq(") and x is not None:
                if not isinstance(x, (list, tuple)):
                    raise DataError(f"input {name!r} is a sequence ({arg.type}); feed a "
                                    f"list of arrays, got {type(x).__name__}")
                x = [np.asarray(v) for v in x]
            return x
        if not isinstance(x, np.ndarray):
            x = np.asarray(x)
            if arg.dtype is not None and x.dtype != arg.dtype and x.dtype.kind in "fiub" \
                    and np.can_cast(x.dtype, arg.dtype, "same_kind") and x.ndim == 0:
                x = x.astype(arg.dtype)
        if arg.dtype is not None and x.dtype != arg.dtype:
            raise DataError(f"input {name!r} expects {arg.type} ({arg.dtype}), got an array "
                            f"of dtype {x.dtype}")
        if arg.shape is not None:
            if x.ndim != len(arg.shape):
                raise DataError(f"input {name!r} expects rank {len(arg.shape)} (shape "
                                f"{arg.shape}), got shape {x.shape}")
            for axis, (want, got) in enumerate(zip(arg.shape, x.shape)):
                if isinstance(want, int) and want != got:
                    raise DataError(f"input {name!r} expects dimension {axis} = {want} "
                                    f"(shape {arg.shape}), got shape {x.shape}")
        if check_finite and x.dtype.kind in "fc" and not np.all(np.isfinite(x)):
            bad = np.argwhere(~np.isfinite(x))[0]
            raise DataError(f"input {name!r} holds NaN/Inf (first at index "
                            f"{tuple(int(i) for i in bad)})")
        return x

    def _output_list(self, output_names: Optional[Sequence[str]]) -> List[str]:
        if output_names is None:
            return [o.name for o in self._outputs]
        known = self._graph.known_names()
        for n in output_names:
            if n not in known:
                raise ModelError(f"no tensor named {n!r} in the model; outputs are "
                                 f"{', '.join(o.name for o in self._outputs)}")
        return list(output_names)

    def run(self, output_names: Optional[Sequence[str]], feeds: Dict[str, Any],
            run_options: Any = None) -> List[np.ndarray]:
        """Outputs ``output_names`` (None: all graph outputs, in order) for ``feeds``.

        NaN/Inf in feeds are accepted, as ONNX Runtime does; they propagate.
        """
        names = self._output_list(output_names)
        x = self._check_feeds(feeds, check_finite=False)
        extra = {n for n in names if n not in self._graph.output_names}
        got: Dict[str, np.ndarray] = {}
        with blas_capped():
            res = self._graph.run(x, want=extra, callback=got.__setitem__ if extra else None)
        return [self._own(res[n] if n in res else got[n], x) for n in names]

    def _own(self, y: np.ndarray, feeds: Dict[str, np.ndarray]) -> np.ndarray:
        """Outputs never alias a feed or a constant of the session (callers may write them)."""
        if not isinstance(y, np.ndarray):
            return list(y) if isinstance(y, list) else y
        r = _root(y)
        if isinstance(r, np.ndarray) and r.base is None and id(r) not in self._const_roots \
                and all(r is not _root(f) for f in feeds.values()):
            # its memory is an allocation of this run: no feed's, no constant's; int8 layers
            # hand on NHWC-ordered views, callers get plain C-order arrays
            return y if y.flags.c_contiguous else np.ascontiguousarray(y)
        if y.base is None and all(y is not f for f in feeds.values()) and all(
                y is not c for c in self._graph.consts.values()):
            # owns its buffer, and that buffer is no feed's or constant's
            return y if y.flags.c_contiguous else np.ascontiguousarray(y)
        shared = any(np.may_share_memory(y, f) for f in feeds.values()
                     if isinstance(f, np.ndarray)) or any(
            np.may_share_memory(y, c) for c in self._graph.consts.values()
            if isinstance(c, np.ndarray))
        # int8 layers hand on NHWC-ordered views; callers get plain C-order arrays
        return y.copy() if shared else y if y.flags.c_contiguous else y.copy(order="C")

    def run_views(self, feeds: Dict[str, Any]) -> Dict[str, Any]:
        """The graph outputs by name as the session holds them: any layout (int8 layers hand
        on channels-last views) and possibly sharing memory with a feed or constant, so
        read-only. For a caller that passes them on to another session (``run_from``)
        without the copies to C order that ``run`` makes."""
        x = self._check_feeds(feeds, check_finite=False)
        with blas_capped():
            return self._graph.run(x)

    def plan_from(self, given: Iterable[str], skip: Iterable[str] = (),
                  available: Iterable[str] = ()) -> Any:
        """A partial run of this session: the steps downstream of the tensors ``given``
        (every step that reads one of them or a tensor computed from them), with the steps
        that compute what those read unless it is ``available``, leaving out every step
        that writes a name in ``skip`` or ``given``. Returns a plan for ``run_from``; its
        ``required`` attribute names the tensors the plan reads and does not compute (the
        caller supplies them), ``produced`` the graph outputs computed from ``given``. For a
        caller that replaces part of the graph (AccuracyAware's ranking runs its reverted
        layers in a small model and the unchanged rest here); the caller must check that
        ``required`` holds only values its replacement leaves unchanged."""
        return _Partial(self._graph.downstream(frozenset(given), frozenset(skip),
                                               frozenset(available)))

    def run_from(self, plan: Any, feeds: Dict[str, Any]) -> Dict[str, np.ndarray]:
        """Run a ``plan_from`` plan: ``feeds`` holds the given and the required tensors (as
        arrays this session would hold: any layout, read-only); returns the graph outputs
        the plan computes, by name. No feed checks: the values are the caller's tensors."""
        missing = [n for n in plan.required if n not in feeds]
        if missing:
            raise DataError(f"run_from: tensors {sorted(missing)} are required and not fed")
        with blas_capped():
            return self._graph.run_downstream(plan.part, feeds)

    def run_with_intermediates(self, feeds: Dict[str, Any], names: Iterable[str],
                               callback: Optional[Callable[[str, np.ndarray], None]] = None,
                               *, check_finite: bool = True) -> Dict[str, np.ndarray]:
        """Run once and deliver the tensors ``names`` (inputs, constants or intermediates).

        With ``callback``, ``callback(name, array)`` is called as each one is produced (inputs
        and constants first) and nothing is retained: the executor frees the tensor after its
        last consumer as usual, so a statistics collector that reduces each tensor in the
        callback keeps memory at the executor's live set. Without a callback, the tensors are
        returned in a dict. The array passed to the callback must not be modified.
        ``check_finite`` (default True, the calibration path) rejects NaN/Inf feeds with
        ``DataError`` naming the input; pass False to accept them like ``run`` does.
        """
        want = set(names)
        known = self._graph.known_names()
        for n in want:
            if n not in known and n in self._graph.base.rewrites.get("fused_away", ()):
                raise ModelError(f"tensor {n!r} was fused away (e.g. Conv+Relu run as one "
                                 "op); name it in InferenceSession(..., keep=[...]) to request "
                                 "it")
            if n not in known:
                raise ModelError(f"no tensor named {n!r} in the model (folded constants and "
                                 "top-level tensors can be requested; subgraph tensors cannot)")
        x = self._check_feeds(feeds, check_finite=check_finite)
        got: Dict[str, np.ndarray] = {}
        with blas_capped():
            self._graph.run(x, want=want, callback=callback if callback is not None
                            else got.__setitem__)
        return got


class _Partial:
    """A ``plan_from`` result: the compiled graph's partial plan, what it needs and yields."""

    __slots__ = ("part",)

    def __init__(self, part: Tuple[list, frozenset, list]):
        self.part = part

    @property
    def required(self) -> frozenset:
        return self.part[1]

    @property
    def produced(self) -> List[str]:
        return list(self.part[2])
