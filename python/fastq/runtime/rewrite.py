"""Graph-rewrite helpers for ``graph.GRAPH_REWRITES`` stages: finding QDQ int8 layers.

Contract: ``find_qdq_layers(nodes, consts)`` returns every ``DequantizeLinear(x) -> Conv |
MatMul | Gemm <- DequantizeLinear(w)`` where ``w`` (the quantized weight, its scale and zero
point) is constant, with the optional ``QuantizeLinear`` that is the layer's only consumer. A
stage can replace each match by one fused node (e.g. domain "fastq") whose prepare hook packs
``w`` once; nodes left unmatched keep running in float. Nothing here changes the graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from .registry import Node

LAYER_OPS = ("Conv", "MatMul", "Gemm")


@dataclass(frozen=True)
class QdqLayer:
    layer: Node                      # the Conv / MatMul / Gemm
    x_dq: Node                       # DequantizeLinear of the activation (input 0)
    w_dq: Node                       # DequantizeLinear of the constant weight (input 1)
    bias: Optional[str]              # float bias input name (Conv/Gemm input 2), if any
    y_q: Optional[Node]              # QuantizeLinear consuming the output, if it is the only one

    @property
    def nodes(self) -> List[Node]:
        """Nodes a fused replacement may remove (x_dq only if nothing else reads it)."""
        return [n for n in (self.w_dq, self.layer, self.y_q) if n is not None]


def _maps(nodes: Sequence[Node]):
    producer: Dict[str, Node] = {}
    consumers: Dict[str, List[Node]] = {}
    for n in nodes:
        for o in n.outputs:
            if o:
                producer[o] = n
        for x in n.inputs:
            if x:
                consumers.setdefault(x, []).append(n)
    return producer, consumers


def find_qdq_layers(nodes: Sequence[Node], consts: Dict[str, np.ndarray]) -> List[QdqLayer]:
    producer, consumers = _maps(nodes)
    found = []
    for n in nodes:
        if n.domain != "" or n.op_type not in LAYER_OPS or len(n.inputs) < 2:
            continue
        x_dq, w_dq = producer.get(n.inputs[0]), producer.get(n.inputs[1])
        if x_dq is None or w_dq is None:
            continue
        if x_dq.op_type != "DequantizeLinear" or w_dq.op_type != "DequantizeLinear":
            continue
        if not all(x in consts for x in w_dq.inputs if x):
            continue  # the weight must be known at prepare time to be packed
        bias = n.inputs[2] if len(n.inputs) > 2 and n.inputs[2] else None
        users = consumers.get(n.outputs[0], [])
        y_q = users[0] if len(users) == 1 and users[0].op_type == "QuantizeLinear" else None
        found.append(QdqLayer(layer=n, x_dq=x_dq, w_dq=w_dq, bias=bias, y_q=y_q))
    return found
