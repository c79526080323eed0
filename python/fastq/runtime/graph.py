"""A graph compiled once for execution: ordered steps, folded constants, planned lifetimes.

Contract: ``CompiledGraph(graph, opsets, ctx)`` resolves every node against the registry (an
unsupported op fails here, never mid-run), orders nodes topologically (a cycle is a
``ModelError`` naming a node on it), runs the graph rewrites, folds constant subgraphs, lets
ops prepare kernels, and plans when each intermediate dies (after its last consumer). ``run``
executes a flat plan (step, input slots, output slots, slots freed after it): values live in a
per-run list indexed by slot, so no name is looked up while running; subgraphs (If/Loop/Scan
bodies) are CompiledGraphs run with outer values.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import DataError, FastqError, ModelError, UnsupportedOpError
from . import registry
from .registry import Node, OpContext

# A folded constant bigger than this stays a node executed per run (memory beats time).
FOLD_LIMIT_BYTES = 64 << 20
# Ops never folded: their output is not a function of their inputs.
_NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                     "Multinomial", "Bernoulli"}

# Graph-rewrite stages, run in order on every compiled graph before constant folding:
# ``stage(nodes: list[Node], consts: dict[str, ndarray], ctx: OpContext) -> list[Node]``.
# A stage may replace node patterns by fused nodes (e.g. DequantizeLinear -> Conv <-
# DequantizeLinear(w) by one int8 layer in a "fastq" domain op registered in the registry).
GRAPH_REWRITES: List[Callable[[List[Node], Dict[str, np.ndarray], OpContext], List[Node]]] = []


def subgraph_names(g: onnx.GraphProto) -> Set[str]:
    """Names a graph reads from its enclosing scopes (implicit inputs), recursively."""
    defined = {i.name for i in g.input} | {i.name for i in g.initializer}
    defined |= {i.name for i in g.sparse_initializer}
    used: Set[str] = set()
    for n in g.node:
        used.update(x for x in n.input if x)
        for a in n.attribute:
            for sg in _graphs_of(a):
                used |= subgraph_names(sg)
        defined.update(n.output)
    return used - defined


def _graphs_of(a: onnx.AttributeProto) -> Iterable[onnx.GraphProto]:
    if a.type == onnx.AttributeProto.GRAPH:
        return [a.g]
    if a.type == onnx.AttributeProto.GRAPHS:
        return list(a.graphs)
    return []


def _nbytes(v: Any) -> int:
    if isinstance(v, np.ndarray):
        return v.nbytes
    if isinstance(v, list):
        return sum(_nbytes(x) for x in v)
    return 0


# Ops whose pre-opset-7 schemas (legacy ``broadcast``/``axis``) the implementations handle.
_PRE7_HANDLED = {"Add", "Sub", "Mul", "Div", "Pow", "PRelu"}


def pre7_unsupported(op_type: str, opset: int) -> bool:
    """True if ``op_type`` at a pre-7 ``opset`` has a schema fastq does not run: only schemas
    still in effect at opset 7 (or older ones the implementation handles) are run."""
    if opset >= 7 or op_type in _PRE7_HANDLED:
        return False
    try:
        return (onnx.defs.get_schema(op_type, 7, "").since_version
                != onnx.defs.get_schema(op_type, opset, "").since_version)
    except Exception:
        return True


def implicit_inputs(proto: onnx.NodeProto) -> List[str]:
    names: Set[str] = set()
    for a in proto.attribute:
        for sg in _graphs_of(a):
            names |= subgraph_names(sg)
    return sorted(names)


def topo_order(nodes: Sequence[onnx.NodeProto], available: Set[str]) -> List[int]:
    """Indices of ``nodes`` in a topological order, stable w.r.t. the given order."""
    producer: Dict[str, int] = {}
    for i, n in enumerate(nodes):
        for o in n.output:
            if o:
                producer[o] = i
    deps: List[Set[int]] = []
    for i, n in enumerate(nodes):
        d = set()
        for x in list(n.input) + implicit_inputs(n):
            if x and x not in available and x in producer:
                d.add(producer[x])
        deps.append(d)
    users: List[List[int]] = [[] for _ in nodes]
    indeg = [0] * len(nodes)
    for i, d in enumerate(deps):
        indeg[i] = len(d)
        for j in d:
            users[j].append(i)
    heap = [i for i in range(len(nodes)) if indeg[i] == 0]
    heapq.heapify(heap)
    order = []
    while heap:
        i = heapq.heappop(heap)
        order.append(i)
        for u in users[i]:
            indeg[u] -= 1
            if indeg[u] == 0:
                heapq.heappush(heap, u)
    if len(order) < len(nodes):
        left = {i for i in range(len(nodes)) if indeg[i] > 0}
        # Walk predecessors inside the leftover set until one repeats: that one is on a cycle.
        i, seen = min(left), []
        while i not in seen:
            seen.append(i)
            i = min(j for j in deps[i] if j in left)
        cyc = seen[seen.index(i):]
        names = [nodes[j].name or f"{nodes[j].op_type}_{j}" for j in cyc]
        raise ModelError(f"the graph has a cycle through node {names[0]!r} "
                         f"({nodes[i].op_type}); cycle: {' -> '.join(reversed(names))}")
    return order


class Step:
    __slots__ = ("node", "kernel", "inputs", "implicit", "outputs", "free", "ctx")

    def __init__(self, node: Node, implicit: List[str], ctx: Optional[OpContext]):
        self.node = node
        self.kernel: Callable = registry.bind(node, ctx)
        self.inputs = node.inputs
        self.implicit = implicit
        self.outputs = node.outputs
        self.free: Tuple[str, ...] = ()
        self.ctx = ctx


class CompiledGraph:
    def __init__(self, graph: onnx.GraphProto, opsets: Dict[str, int], base: OpContext,
                 outer: Set[str] = frozenset(), value_shapes: Optional[Dict[str, tuple]] = None):
        self.graph_name = graph.name
        self.opsets = opsets
        self.base = base
        init_names = {t.name for t in graph.initializer}
        # an initializer no node, subgraph or kept/graph output reads is never converted (a
        # weight a transform replaced would otherwise double the session's constant bytes)
        used = {o.name for o in graph.output} | set(base.graph_outputs)
        for n in graph.node:
            used.update(n.input)
            if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                   for a in n.attribute):
                used.update(implicit_inputs(n))
        self.consts: Dict[str, np.ndarray] = {}
        for t in graph.initializer:
            if t.name not in used:
                continue
            try:
                self.consts[t.name] = numpy_helper.to_array(t)
            except Exception as e:
                raise ModelError(f"initializer {t.name!r} cannot be read: {e}") from e
        for st in graph.sparse_initializer:
            dense = numpy_helper.to_array(st.values)
            arr = np.zeros(tuple(st.dims), dtype=dense.dtype)
            idx = numpy_helper.to_array(st.indices)
            if idx.ndim == 1:
                arr.reshape(-1)[idx] = dense
            else:
                arr[tuple(idx.T)] = dense
            self.consts[st.values.name] = arr
        self.input_names = [i.name for i in graph.input if i.name not in init_names]
        self.output_names = [o.name for o in graph.output]
        self.value_shapes = value_shapes or {}

        protos = list(graph.node)
        available = set(self.input_names) | set(self.consts) | set(outer)
        order = topo_order(protos, available)
        nodes: List[Node] = []
        for k in order:
            # A detached copy: a sub-message would keep the whole model (all initializer
            # bytes) alive for the session's lifetime.
            p = onnx.NodeProto()
            p.CopyFrom(protos[k])
            node = registry.make_node(p, opsets, k, check=False)
            if node.domain == "" and pre7_unsupported(node.op_type, node.opset):
                raise UnsupportedOpError(f"{node.where()}: this op's schema before opset 7 "
                                         "is not supported")
            nodes.append(node)
        # stages must keep these produced: the graph's outputs and what the caller keeps
        base.graph_outputs = tuple(self.output_names) + tuple(base.graph_outputs)
        for stage in GRAPH_REWRITES:
            nodes = stage(nodes, self.consts, base)
        for node in nodes:
            registry.lookup(node)  # an op still unsupported after the rewrites fails here

        # Check every input is defined somewhere before anything runs.
        defined = set(available)
        for node in nodes:
            for x in node.inputs:
                if x and x not in defined:
                    raise ModelError(f"{node.where()}: input {x!r} is not produced by any node, "
                                     "initializer or graph input")
            defined.update(o for o in node.outputs if o)
        for o in self.output_names:
            if o not in defined:
                raise ModelError(f"graph output {o!r} is not produced by any node")

        self.steps: List[Step] = []
        visible = defined
        for node in nodes:
            imp = implicit_inputs(node.proto) if node.proto is not None else []
            ctx = None
            if registry.wants_context(node) or registry.prepare_hook(node) is not None:
                graphs = {}
                if node.proto is not None:
                    for a in node.proto.attribute:
                        if a.type == onnx.AttributeProto.GRAPH:
                            graphs[a.name] = CompiledGraph(a.g, opsets, base, visible,
                                                           value_shapes).run_subgraph
                ctx = OpContext(arith=base.arith, impl=base.impl, graphs=graphs)
            elif imp:
                raise UnsupportedOpError(f"{node.where()}: subgraphs are not supported here")
            self.steps.append(Step(node, imp, ctx))
        self._fold_constants()
        self._prepare_kernels()
        self._plan_lifetimes()
        self._build_plan()

    # -- preparation ---------------------------------------------------------------------
    def _fold_constants(self) -> None:
        kept = []
        for st in self.steps:
            node = st.node
            ins = [x for x in st.inputs if x] + st.implicit
            foldable = (node.op_type not in _NONDETERMINISTIC and not st.implicit
                        and all(x in self.consts for x in ins)
                        and all(not o or self._small(o) for o in st.outputs))
            if foldable:
                try:
                    with np.errstate(all="ignore"):
                        outs = registry.as_outputs(st.kernel(
                            *[self.consts[x] if x else None for x in st.inputs]))
                except Exception:
                    foldable = False  # leave it to run time, where the error names the feed
                else:
                    if sum(_nbytes(o) for o in outs) > FOLD_LIMIT_BYTES:
                        foldable = False
                    else:
                        for name, o in zip(st.outputs, outs):
                            if name and o is not None:
                                self.consts[name] = o
            if not foldable:
                kept.append(st)
        self.steps = kept

    def _small(self, name: str) -> bool:
        shape = self.value_shapes.get(name)
        if shape is None or any(not isinstance(d, int) for d in shape):
            return True  # unknown: decide after running it
        return int(np.prod(shape, dtype=np.int64)) * 4 <= FOLD_LIMIT_BYTES

    def _prepare_kernels(self) -> None:
        released: Set[str] = set()
        for st in self.steps:
            hook = registry.prepare_hook(st.node)
            if hook is None:
                continue
            consts = [self.consts.get(x) if x else None for x in st.inputs]
            k = hook(st.node, consts, st.ctx)
            if k is not None:
                st.kernel = k
                # A kernel that holds its constant inputs in its own layout (attribute
                # ``runtime_inputs``: how many leading inputs it still reads) lets the
                # originals go, so a session does not keep two copies of the weights.
                n_rt = getattr(k, "runtime_inputs", None)
                if n_rt is not None and all(x in self.consts for x in st.inputs[n_rt:] if x):
                    released.update(x for x in st.inputs[n_rt:] if x)
                    st.inputs = st.inputs[:n_rt]
        if released:
            used = {x for st in self.steps for x in list(st.inputs) + st.implicit if x}
            used |= set(self.output_names) | set(self.base.graph_outputs)
            for name in released - used:
                del self.consts[name]

    def _plan_lifetimes(self) -> None:
        last: Dict[str, int] = {}
        for i, st in enumerate(self.steps):
            for x in list(st.inputs) + st.implicit:
                if x:
                    last[x] = i
            for o in st.outputs:
                if o and o not in last:
                    last[o] = i  # produced, never read: dies right away
        keep = set(self.output_names)
        frees: List[List[str]] = [[] for _ in self.steps]
        for name, i in last.items():
            if name not in keep and name not in self.consts:
                frees[i].append(name)
        for st, f in zip(self.steps, frees):
            st.free = tuple(f)
        self.producers = {o: i for i, st in enumerate(self.steps) for o in st.outputs if o}

    def _build_plan(self) -> None:
        """Slots instead of names: every value the graph reads or writes gets an index into a
        per-run list, so a step gathers its arguments by list indexing. Slot 0 always holds
        None (an empty optional input), slot 1 takes outputs named ""."""
        slot: Dict[str, int] = {}

        def at(name: str) -> int:
            if not name:
                return 0
            if name not in slot:
                slot[name] = len(slot) + 2
            return slot[name]

        for name in self.input_names:
            at(name)
        for name in self.consts:
            at(name)
        plan = []
        first_use: Dict[str, int] = {}
        for k, st in enumerate(self.steps):
            for x in list(st.inputs) + st.implicit:
                if x:
                    first_use.setdefault(x, k)
            ins = tuple(at(x) for x in st.inputs)
            outs = tuple(at(o) if o else 1 for o in st.outputs)
            sub = st.ctx is not None and bool(st.ctx.graphs)
            one = outs[0] if len(outs) == 1 else -1    # the slot of a single output
            plan.append((st, ins, outs, one, tuple(at(x) for x in st.free), sub))
        for o in self.output_names:
            at(o)
        self._plan = plan
        self._known: Optional[frozenset] = None
        self._partials: Dict[tuple, Tuple[list, frozenset, list]] = {}
        self._slot = slot
        self._first_use = first_use
        # names this graph reads but does not define: a subgraph's outer-scope values
        local = set(self.input_names) | set(self.consts) | set(self.producers)
        self._outer_slots = [(n, i) for n, i in slot.items() if n not in local]
        init: List[Any] = [None] * (len(slot) + 2)
        for name, v in self.consts.items():
            init[slot[name]] = v
        self._init = init
        self._input_slots = [slot[n] for n in self.input_names]
        self._output_slots = [(o, slot[o]) for o in self.output_names]

    # -- execution -----------------------------------------------------------------------
    def known_names(self) -> Set[str]:
        if self._known is None:   # fixed once compiled; asked on every run naming outputs
            self._known = frozenset(self.input_names) | frozenset(self.consts) | \
                frozenset(self.producers)
        return self._known

    def _unavailable(self, name: str, k: Optional[int] = None) -> ModelError:
        k = self._first_use.get(name) if k is None else k
        where = self.steps[k].node.where() if k is not None else f"graph {self.graph_name!r}"
        return ModelError(f"{where}: input {name!r} is not available when the node runs")

    def run(self, feeds: Dict[str, np.ndarray], outer: Optional[Dict[str, Any]] = None,
            want: Optional[Set[str]] = None,
            callback: Optional[Callable[[str, np.ndarray], None]] = None) -> Dict[str, Any]:
        """Execute; returns the graph outputs by name (inputs/consts when they are outputs)."""
        vals = self._init.copy()
        for name, i in zip(self.input_names, self._input_slots):
            vals[i] = feeds[name]
        return self._execute(vals, outer, want, callback)

    def downstream(self, given: frozenset, skip: frozenset = frozenset(),
                   available: frozenset = frozenset()) -> Tuple[list, frozenset, list]:
        """What a run from the tensors ``given`` executes: (the steps, in order, that read a
        tensor computed from them, and the steps computing what those read that is neither
        ``available`` nor constant -- never a step that writes a name in ``skip`` or
        ``given``; the tensors the plan reads and does not compute, which the caller must
        supply; the graph outputs computed from ``given``). Cached per arguments."""
        key = (given, skip, available)
        hit = self._partials.get(key)
        if hit is not None:
            return hit
        steps = self.steps

        def ins(st: Step) -> List[str]:
            return [x for x in list(st.inputs) + st.implicit if x]

        skip = skip | given               # the given values are never recomputed
        dirty = set(given)
        chosen: Set[int] = set()
        for k, st in enumerate(steps):
            if any(o in skip for o in st.outputs if o) or not any(x in dirty for x in ins(st)):
                continue
            chosen.add(k)
            dirty.update(o for o in st.outputs if o)
        done = set(dirty)
        todo = list(chosen)
        while todo:                       # producers of what the chosen steps read
            for x in ins(steps[todo.pop()]):
                if x in done or x in available or x in self.consts:
                    continue
                done.add(x)
                j = self.producers.get(x)
                if j is not None and j not in chosen and \
                        not any(o in skip for o in steps[j].outputs if o):
                    chosen.add(j)
                    todo.append(j)
        plan = [self._plan[k] for k in sorted(chosen)]
        made = {o for k in chosen for o in steps[k].outputs if o}
        required = frozenset(x for k in chosen for x in ins(steps[k])
                             if x not in made and x not in given and x not in self.consts)
        produced = [o for o in self.output_names if o in dirty and o not in given]
        hit = (plan, required, produced)
        self._partials[key] = hit
        return hit

    def run_downstream(self, part: Tuple[list, frozenset, list],
                       feeds: Dict[str, Any]) -> Dict[str, Any]:
        """Run the steps of ``part`` (from ``downstream``) on ``feeds`` (the given tensors
        and the required ones); returns the graph outputs they produce."""
        plan, _, produced = part
        vals = self._init.copy()
        slot = self._slot
        for name, v in feeds.items():
            i = slot.get(name)
            if i is not None:
                vals[i] = v
        res = self._execute(vals, None, None, None, plan)
        return {o: res[o] for o in produced}

    def _execute(self, vals: List[Any], outer: Optional[Dict[str, Any]],
                 want: Optional[Set[str]], callback: Optional[Callable],
                 plan: Optional[list] = None) -> Dict[str, Any]:
        if outer is not None:
            for name, i in self._outer_slots:
                try:
                    vals[i] = outer[name]
                except KeyError:
                    raise self._unavailable(name) from None
        watch: Dict[int, str] = {}
        if want and callback is not None:
            slot = self._slot
            for name in want:
                i = slot.get(name)
                if i is None:
                    continue
                if name in self.consts or name in self.input_names:
                    callback(name, vals[i])
                elif name in self.producers:
                    watch[i] = name
        with np.errstate(all="ignore"):
            for st, ins, outs, one, free, sub in (self._plan if plan is None else plan):
                args = [vals[i] for i in ins]
                fn = st.kernel
                if sub:
                    fn = registry.bind(st.node, OpContext(
                        arith=st.ctx.arith, impl=st.ctx.impl, graphs=st.ctx.graphs,
                        outer=_SlotScope(self._slot, vals, outer)))
                try:
                    out = fn(*args)
                except FastqError as e:
                    if st.node.where() in str(e):
                        raise
                    raise type(e)(f"{st.node.where()}: {e}") from e
                except Exception as e:
                    shapes = ", ".join(f"{x}{tuple(a.shape)}:{a.dtype}" if isinstance(
                        a, np.ndarray) else f"{x}" for x, a in zip(st.inputs, args))
                    raise DataError(f"{st.node.where()} failed on inputs [{shapes}]: "
                                    f"{type(e).__name__}: {e}") from e
                if one >= 0 and type(out) is np.ndarray:
                    vals[one] = out
                else:
                    out = registry.as_outputs(out)
                    if len(out) < len(outs):
                        self._short(st, len(out))
                    for i, o in zip(outs, out):
                        vals[i] = o
                if watch:
                    for i in outs:
                        if i in watch:
                            callback(watch[i], vals[i])
                for i in free:
                    vals[i] = None
        return {o: vals[i] for o, i in self._output_slots}

    def _short(self, st: Step, n: int) -> None:
        """A kernel returned fewer values than the node declares outputs: fine unless a
        missing one is read later (or is a graph output)."""
        for name in st.outputs[n:]:
            if name and name in self._first_use:
                raise self._unavailable(name)
            if name and name in self.output_names:
                raise ModelError(f"graph output {name!r} was not produced by "
                                 f"{st.node.where()}")

    def run_subgraph(self, inputs: Sequence[Any], outer: Optional[Dict[str, Any]]) -> list:
        """Subgraph call: positional inputs, outer-scope values; returns outputs in order."""
        if len(inputs) != len(self.input_names):
            raise ModelError(f"subgraph {self.graph_name!r} takes {len(self.input_names)} "
                             f"inputs, got {len(inputs)}")
        vals = self._init.copy()
        for i, v in zip(self._input_slots, inputs):
            vals[i] = v
        res = self._execute(vals, outer, None, None)
        return [res[o] for o in self.output_names]


class _SlotScope(Mapping):
    """The values a subgraph sees while its node runs: this graph's live slots by name, then
    the enclosing scope (read-only, like the ChainMap it replaces)."""

    __slots__ = ("_slot", "_vals", "_outer")

    def __init__(self, slot: Dict[str, int], vals: List[Any], outer: Optional[Mapping]):
        self._slot, self._vals, self._outer = slot, vals, outer

    def __getitem__(self, name: str) -> Any:
        i = self._slot.get(name)
        if i is not None:
            return self._vals[i]
        if self._outer is None:
            raise KeyError(name)
        return self._outer[name]

    def __iter__(self):
        seen = set(self._slot)
        yield from self._slot
        if self._outer is not None:
            yield from (n for n in self._outer if n not in seen)

    def __len__(self) -> int:
        return sum(1 for _ in self)
