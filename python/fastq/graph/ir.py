"""``Graph``: the top-level ONNX graph as mutable node protos plus initializers as numpy arrays.

Contract: ``Graph.from_model`` copies (the caller's model is never mutated), names every node
uniquely (``{op_type}_{i}`` for unnamed ones) and keeps model metadata; ``to_model`` rebuilds
a ModelProto. ``producers``/``consumers`` are recomputed on demand (graphs are edited in place).
"""

from __future__ import annotations

import itertools
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import ModelError
from ..runtime.session import load_any


def load_model(model: Any) -> onnx.ModelProto:
    """Path, bytes or ModelProto -> ModelProto (the executor's loader; a path's external data
    is loaded), refusing a graph without nodes: there is nothing to quantize."""
    m = load_any(model)
    if not m.graph.node:
        raise ModelError("the model has no nodes (is it an ONNX model?)")
    return m


def attrs(node: onnx.NodeProto) -> Dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def set_attr(node: onnx.NodeProto, name: str, value: Any) -> None:
    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(name, value))


class Graph:
    def __init__(self, model: onnx.ModelProto):
        model = _copy(model)
        g = model.graph
        self.inits: Dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t)
                                             for t in g.initializer}
        self.nodes: List[onnx.NodeProto] = [_cp(n) for n in g.node]
        self.inputs = [_cp(vi) for vi in g.input if vi.name not in self.inits]
        self.outputs = [_cp(vi) for vi in g.output]
        self.value_info: Dict[str, onnx.ValueInfoProto] = {vi.name: _cp(vi)
                                                           for vi in g.value_info}
        del g.node[:], g.initializer[:], g.value_info[:], g.input[:], g.output[:]
        self._meta = model
        used = {n.name for n in self.nodes if n.name}
        seen: set = set()
        for i, n in enumerate(self.nodes):
            if not n.name or n.name in seen:
                base = f"{n.op_type}_{i}"
                name = base
                while name in used:
                    name += "_"
                n.name = name
                used.add(name)
            seen.add(n.name)
        self._uniq = 0
        self._reserved: set = set()
        self._names_cache = None

    from_model = classmethod(lambda cls, m: cls(m))

    def copy(self) -> "Graph":
        """An independent graph (nodes, value infos, metadata copied) sharing this one's
        initializer arrays: callers replace arrays, never write into them -- without the
        proto round trip of ``Graph(g.to_model())``, which held every weight twice more."""
        e = Graph.__new__(Graph)
        e.inits = dict(self.inits)
        e.nodes = [_cp(n) for n in self.nodes]
        e.inputs = [_cp(vi) for vi in self.inputs]
        e.outputs = [_cp(vi) for vi in self.outputs]
        e.value_info = {k: _cp(vi) for k, vi in self.value_info.items()}
        e._meta = _copy(self._meta)
        e._uniq = self._uniq
        e._reserved = set(self._reserved)
        e._names_cache = None
        return e

    @property
    def opset(self) -> int:
        for o in self._meta.opset_import:
            if o.domain in ("", "ai.onnx"):
                return o.version
        return 1

    def set_opset(self, version: int) -> None:
        for o in self._meta.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = version

    def fresh(self, base: str) -> str:
        """A tensor/node name not used anywhere in the graph (nor handed out before: new
        names are meant to be added to the graph, so they are reserved at once)."""
        taken = self._names()
        inits = self.inits
        name = base
        while name in taken or name in inits or name in self._reserved:
            self._uniq += 1
            name = f"{base}_{self._uniq}"
        self._reserved.add(name)
        return name

    def _names(self) -> set:
        """Every node, node input/output and graph input name (a superset: names of removed
        tensors may stay); initializer names are not in it (they change anywhere: ``fresh``
        checks ``inits`` itself). Cached; when nodes were only appended since (the export's
        pattern: the node that was last is still at its place) only the new ones are
        scanned, so a run of fresh() calls is linear in the graph, not quadratic. Input
        names are re-added on every call."""
        nodes = self.nodes
        c = self._names_cache
        if (c is not None and c["nodes_id"] == id(nodes) and c["n_nodes"] <= len(nodes)
                and (c["n_nodes"] == 0 or nodes[c["n_nodes"] - 1] is c["last"])):
            s = c["names"]
            for n in itertools.islice(nodes, c["n_nodes"], None):
                s.add(n.name)
                s.update(n.input)
                s.update(n.output)
            s.update(vi.name for vi in self.inputs)
            c.update(n_nodes=len(nodes), last=nodes[-1] if nodes else None)
            return s
        s = {vi.name for vi in self.inputs} | {n.name for n in nodes}
        for n in nodes:
            s.update(n.input)
            s.update(n.output)
        self._names_cache = {"nodes_id": id(nodes), "n_nodes": len(nodes),
                             "last": nodes[-1] if nodes else None, "names": s}
        return s

    def producers(self) -> Dict[str, onnx.NodeProto]:
        return {o: n for n in self.nodes for o in n.output if o}

    def consumers(self) -> Dict[str, List[Tuple[onnx.NodeProto, int]]]:
        c: Dict[str, List[Tuple[onnx.NodeProto, int]]] = {}
        for n in self.nodes:
            for i, x in enumerate(n.input):
                if x:
                    c.setdefault(x, []).append((n, i))
        return c

    def node(self, name: str) -> onnx.NodeProto:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def is_const(self, name: str) -> bool:
        return name in self.inits

    @property
    def output_names(self) -> List[str]:
        return [o.name for o in self.outputs]

    @property
    def input_names(self) -> List[str]:
        return [i.name for i in self.inputs]

    def elem_type(self, name: str) -> Optional[int]:
        if name in self.inits:
            return helper.np_dtype_to_tensor_dtype(self.inits[name].dtype)
        for vi in list(self.inputs) + list(self.outputs) + list(self.value_info.values()):
            if vi.name == name and vi.type.HasField("tensor_type"):
                return vi.type.tensor_type.elem_type
        return None

    def shape(self, name: str) -> Optional[Tuple]:
        if name in self.inits:
            return self.inits[name].shape
        for vi in list(self.inputs) + list(self.outputs) + list(self.value_info.values()):
            if vi.name == name and vi.type.tensor_type.HasField("shape"):
                return tuple(d.dim_value if d.HasField("dim_value") else None
                             for d in vi.type.tensor_type.shape.dim)
        return None

    def topo_sort(self) -> None:
        """Order the nodes so every input is produced before it is read. The order is the
        repeated-pass one (each pass takes, in the current order, every node whose inputs
        are ready) computed in one sweep: a node's pass is the largest over its producers of
        their pass, plus one for a producer placed after it; nodes sort by (pass, position)."""
        avail = set(self.inits) | set(self.input_names) | {""}
        nodes = list(self.nodes)
        prod: Dict[str, int] = {}
        for i, n in enumerate(nodes):
            for o in n.output:
                if not o:
                    continue
                if o in prod or o in avail:
                    return self._topo_sort_passes()       # a name written twice: rare
                prod[o] = i
        deps: List[List[int]] = []
        users: List[List[int]] = [[] for _ in nodes]
        indeg = [0] * len(nodes)
        for i, n in enumerate(nodes):
            need = (set(n.input) | _outer_names(n)) - avail
            d = sorted({prod[x] for x in need if x in prod})
            deps.append(d)
            indeg[i] = len(d) + (1 if any(x not in prod for x in need) else 0)
            for j in d:
                users[j].append(i)
        ready = [i for i in range(len(nodes)) if indeg[i] == 0]
        level = [1] * len(nodes)
        seen = 0
        while ready:
            i = ready.pop()
            seen += 1
            for j in deps[i]:
                level[i] = max(level[i], level[j] + (j > i))
            for u in users[i]:
                indeg[u] -= 1
                if indeg[u] == 0:
                    ready.append(u)
        if seen < len(nodes):
            bad = next(n for i, n in enumerate(nodes) if indeg[i] > 0)
            raise ModelError(f"the graph has a cycle or a missing input at node "
                             f"{bad.name!r} ({bad.op_type})")
        self.nodes = [nodes[i] for i in sorted(range(len(nodes)),
                                               key=lambda i: (level[i], i))]

    def _topo_sort_passes(self) -> None:
        avail = set(self.inits) | set(self.input_names) | {""}
        pending, done = list(self.nodes), []
        while pending:
            rest = []
            for n in pending:
                need = set(n.input) | _outer_names(n)
                if need <= avail:
                    done.append(n)
                    avail.update(n.output)
                else:
                    rest.append(n)
            if len(rest) == len(pending):
                raise ModelError(f"the graph has a cycle or a missing input at node "
                                 f"{rest[0].name!r} ({rest[0].op_type})")
            pending = rest
        self.nodes = done

    def remove_unused(self) -> None:
        """Drop nodes whose outputs nobody reads and initializers nobody reads."""
        while True:
            used = set(self.output_names)
            for n in self.nodes:
                used.update(n.input)
                used |= _outer_names(n)
            keep = [n for n in self.nodes if any(o in used for o in n.output if o)]
            if len(keep) == len(self.nodes):
                break
            self.nodes = keep
        for k in [k for k in self.inits if k not in used]:
            del self.inits[k]

    def to_model(self, value_info: bool = True, large_as_inputs: int = 0) -> onnx.ModelProto:
        """The graph as a model. ``large_as_inputs``: initializers with more elements than
        this become typed graph inputs instead (for shape inference, which only reads their
        dims; no weight bytes are converted)."""
        m = onnx.ModelProto()
        m.CopyFrom(self._meta)
        g = m.graph
        del g.input[:], g.output[:]
        g.input.extend(self.inputs)
        g.output.extend(self.outputs)
        g.node.extend(self.nodes)
        big = {k for k, v in self.inits.items()
               if large_as_inputs and np.size(v) > large_as_inputs}
        g.initializer.extend(numpy_helper.from_array(np.asarray(v), k)
                             for k, v in self.inits.items() if k not in big)
        g.input.extend(helper.make_tensor_value_info(
            k, helper.np_dtype_to_tensor_dtype(np.asarray(self.inits[k]).dtype),
            list(np.shape(self.inits[k]))) for k in big)
        if value_info:
            known = set(self.producers())
            g.value_info.extend(v for k, v in self.value_info.items() if k in known)
        return m


_SUBGRAPH_ATTRS = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)


def _outer_names(n: onnx.NodeProto) -> set:
    """The outer-scope names a node's subgraphs read (empty for a node without any)."""
    if not n.attribute or not any(a.type in _SUBGRAPH_ATTRS for a in n.attribute):
        return set()
    from ..runtime.graph import implicit_inputs
    return set(implicit_inputs(n))


def _cp(p):
    c = type(p)()
    c.CopyFrom(p)
    return c


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m
