"""Float transforms run before placement; each keeps the graph's outputs (names and values up
to float rounding): Constant nodes -> initializers, identity-like nodes removed (Identity,
Dropout in inference), two-input Sum -> Add, constant subgraphs folded, BatchNormalization folded into the preceding
Conv/ConvTranspose/Gemm, shapes inferred. ``prepare`` runs them in that order.
"""

from __future__ import annotations

from typing import List

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import ModelError
from .ir import Graph, attrs
from .light import LARGE, check_and_infer

MIN_OPSET = 13                  # per-axis DequantizeLinear needs opset 13
FOLD_LIMIT_BYTES = 64 << 20     # a folded tensor bigger than this is left to run
_NO_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
            "Multinomial", "Bernoulli", "QuantizeLinear", "DequantizeLinear"}


def upgrade_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    """Models below opset 13 are converted with onnx.version_converter (a clear error if the
    converter cannot)."""
    ver = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if ver is None or ver >= MIN_OPSET:
        return model
    from onnx import version_converter
    try:
        out = version_converter.convert_version(model, MIN_OPSET)
    except Exception as e:
        raise ModelError(f"the model's opset {ver} is below 13 (needed for per-channel "
                         f"DequantizeLinear) and onnx.version_converter failed: {e}") from None
    # the converter keeps the IR version; IR < 4 would need every initializer listed as a
    # graph input, which the graph IR does not keep
    out.ir_version = max(out.ir_version, helper.find_min_ir_version_for(
        [helper.make_opsetid("", MIN_OPSET)]))
    return out


def constants_to_initializers(g: Graph) -> None:
    keep = []
    for n in g.nodes:
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and len(n.attribute) == 1 \
                and n.attribute[0].name == "value":
            g.inits[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        else:
            keep.append(n)
    g.nodes = keep


def _rename_input(g: Graph, old: str, new: str) -> None:
    for n in g.nodes:
        for i, x in enumerate(n.input):
            if x == old:
                n.input[i] = new


def remove_identities(g: Graph) -> List[str]:
    """Identity, and Dropout whose mask output is unused (inference: y = x). Returns the
    removed node names. When the removed output is a graph output, the producer is renamed
    to write it directly (if the producer's own output is not a graph output or input)."""
    removed = []
    outs = set(g.output_names)
    for n in list(g.nodes):
        if n.op_type not in ("Identity", "Dropout") or n.domain not in ("", "ai.onnx"):
            continue
        if n.op_type == "Dropout" and (len(n.output) > 1 and n.output[1]):
            cons = g.consumers()
            if n.output[1] in cons or n.output[1] in outs:
                continue
        x, y = n.input[0], n.output[0]
        if y in outs:
            prod = g.producers().get(x)
            if prod is None or x in outs:
                continue
            for i, o in enumerate(prod.output):
                if o == x:
                    prod.output[i] = y
            _rename_input(g, x, y)
        else:
            _rename_input(g, y, x)
        g.nodes.remove(n)
        removed.append(n.name)
    return removed


def sum_to_add(g: Graph) -> List[str]:
    """Sum of exactly two inputs (old exporters' residual connection) becomes Add, the op
    ONNX Runtime fuses into QLinearAdd; same values (x + y). Returns the rewritten nodes."""
    done = []
    for n in g.nodes:
        if n.op_type == "Sum" and n.domain in ("", "ai.onnx") and len(n.input) == 2:
            n.op_type = "Add"
            done.append(n.name)
    return done


def fold_batchnorm(g: Graph) -> List[str]:
    """BatchNormalization (inference form, 5 inputs, one output) after a Conv, ConvTranspose
    (group 1) or Gemm whose output only it reads: W' = W * s along the output channel,
    b' = (b - mean) * s + beta with s = gamma / sqrt(var + eps). Returns folded BN names."""
    folded = []
    for bn in list(g.nodes):
        if bn.op_type != "BatchNormalization" or len([o for o in bn.output if o]) != 1:
            continue
        if not all(g.is_const(x) for x in bn.input[1:5]):
            continue
        prods, cons = g.producers(), g.consumers()
        p = prods.get(bn.input[0])
        if p is None or p.op_type not in ("Conv", "ConvTranspose", "Gemm") or \
                len(cons.get(bn.input[0], [])) != 1 or bn.input[0] in g.output_names:
            continue
        if not g.is_const(p.input[1]) or (len(p.input) > 2 and p.input[2]
                                          and not g.is_const(p.input[2])):
            continue
        a = attrs(p)
        w = g.inits[p.input[1]].astype(np.float64)
        if p.op_type == "Conv":
            axis = 0
        elif p.op_type == "ConvTranspose":
            if a.get("group", 1) != 1:
                continue
            axis = 1
        else:
            if a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0 or w.ndim != 2:
                continue
            axis = 0 if a.get("transB", 0) else 1
        gamma, beta, mean, var = (g.inits[x].astype(np.float64) for x in bn.input[1:5])
        s = gamma / np.sqrt(var + attrs(bn).get("epsilon", 1e-5))
        if s.shape[0] != w.shape[axis]:
            continue
        shape = [1] * w.ndim
        shape[axis] = -1
        b = (g.inits[p.input[2]].astype(np.float64) if len(p.input) > 2 and p.input[2]
             else np.zeros(w.shape[axis]))
        wname, bname = g.fresh(p.input[1] + "_bnfold"), g.fresh(p.name + "_bias_bnfold")
        g.inits[wname] = (w * s.reshape(shape)).astype(np.float32)
        g.inits[bname] = ((b - mean) * s + beta).astype(np.float32)
        p.input[1] = wname
        if len(p.input) > 2:
            p.input[2] = bname
        else:
            p.input.append(bname)
        p.output[0] = bn.output[0]
        g.nodes.remove(bn)
        folded.append(bn.name)
    g.remove_unused()
    return folded


def fold_constants(g: Graph) -> int:
    """Nodes whose inputs are all initializers are evaluated once (onnx.reference) and become
    initializers. Returns the number folded."""
    from onnx.reference import ReferenceEvaluator
    count = 0
    for n in list(g.nodes):
        if n.op_type in _NO_FOLD or n.domain not in ("", "ai.onnx") or not n.input or \
                any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                    for a in n.attribute):
            continue
        if not all((x == "" or g.is_const(x)) for x in n.input):
            continue
        if any(o in g.output_names for o in n.output):
            continue
        ins = [helper.make_tensor_value_info(x, helper.np_dtype_to_tensor_dtype(
            g.inits[x].dtype), g.inits[x].shape) for x in n.input if x]
        outs = [helper.make_empty_tensor_value_info(o) for o in n.output if o]
        m = helper.make_model(helper.make_graph([n], "fold", ins, outs),
                              opset_imports=[helper.make_opsetid("", g.opset)])
        try:
            res = ReferenceEvaluator(m).run(None, {x: g.inits[x] for x in n.input if x})
        except Exception:
            continue
        if sum(np.asarray(r).nbytes for r in res) > FOLD_LIMIT_BYTES:
            continue
        for o, r in zip([o for o in n.output if o], res):
            g.inits[o] = np.asarray(r)
        g.nodes.remove(n)
        count += 1
    g.remove_unused()
    return count


def infer_shapes(g: Graph) -> None:
    try:
        m = check_and_infer(g.to_model(value_info=False, large_as_inputs=LARGE), check=False)
    except Exception:
        return
    g.value_info = {vi.name: vi for vi in m.graph.value_info}


def prepare(g: Graph) -> dict:
    """All float transforms in order; returns what each did (for the report)."""
    constants_to_initializers(g)
    g.topo_sort()
    removed = remove_identities(g)
    sums = sum_to_add(g)
    folded = fold_constants(g)          # first: weights computed by constant subgraphs
    bn = fold_batchnorm(g)              # become initializers the BN fold can scale
    infer_shapes(g)
    return {"identities_removed": removed, "batchnorms_folded": bn, "constants_folded": folded,
            **({"sum_to_add": sums} if sums else {})}
