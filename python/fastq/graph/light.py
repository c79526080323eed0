"""The ONNX checker and shape inference without serializing the weights: both take a model as
bytes, so on a transformer they spent most of their time copying megabytes of initializers
that neither reads (shapes come from dims). ``light_copy`` gives the model with every large
initializer (> ``LARGE`` elements) turned into a typed graph input; ``check_and_infer`` runs
checker + inference on that and hands back the inferred model with the real initializers
put back, after checking their data sizes itself (what the checker did for them). Small
initializers (shape tensors, scales) stay, so data propagation still sees them.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
import onnx
from onnx import helper

LARGE = 4096   # elements; shape tensors and scalars stay far below
DIRECT_BYTES = 4 << 20   # below this much weight data the plain calls are as fast


def _numel(t: onnx.TensorProto) -> int:
    return int(np.prod(t.dims)) if len(t.dims) else 1


def light_copy(model: onnx.ModelProto, large: int = LARGE
               ) -> Tuple[onnx.ModelProto, List[onnx.TensorProto], int]:
    """(light model, the large initializers, number of real graph inputs). The caller's model
    is not modified."""
    g = model.graph
    big = [t for t in g.initializer if _numel(t) > large]
    m = onnx.ModelProto()
    _copy_fields(model, m, skip="graph")
    _copy_fields(g, m.graph, skip="initializer")
    big_names = {t.name for t in big}
    m.graph.initializer.extend(t for t in g.initializer if t.name not in big_names)
    n_inputs = len(m.graph.input)
    listed = {vi.name for vi in g.input}
    m.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                         for t in big if t.name not in listed)
    return m, big, n_inputs


def _copy_fields(src, dst, skip: str) -> None:
    for fd, v in src.ListFields():
        if fd.name == skip:
            continue
        if fd.is_repeated:
            getattr(dst, fd.name).extend(v)
        elif fd.message_type is not None:
            getattr(dst, fd.name).CopyFrom(v)
        else:
            setattr(dst, fd.name, v)


def _check_data(t: onnx.TensorProto) -> Optional[str]:
    """Why a large initializer's stored data does not match its dims (None if it does)."""
    if t.data_location == onnx.TensorProto.EXTERNAL:
        return None
    n = _numel(t)
    if t.HasField("raw_data"):
        try:
            item = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
        except (KeyError, TypeError, ValueError):
            return None
        return None if len(t.raw_data) == n * item else \
            f"initializer {t.name!r}: raw_data holds {len(t.raw_data)} bytes, dims " \
            f"{list(t.dims)} need {n * item}"
    for field in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data",
                  "string_data"):
        k = len(getattr(t, field))
        if k:
            return None if k == n or (field == "float_data" and t.data_type in (
                onnx.TensorProto.COMPLEX64,) and k == 2 * n) else \
                f"initializer {t.name!r}: {field} holds {k} values, dims {list(t.dims)} " \
                f"need {n}"
    return f"initializer {t.name!r} has dims {list(t.dims)} but no data"


def _check_opset(model: onnx.ModelProto) -> None:
    """The checker takes a default-domain opset newer than the installed onnx defines, and
    the executor would then run each op as the newest version it knows: a silent guess."""
    known = onnx.defs.onnx_opset_version()
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx") and o.version > known:
            raise onnx.checker.ValidationError(
                f"the model imports opset {o.version} of the default ONNX domain; the installed "
                f"onnx {onnx.__version__} defines opsets up to {known}, so what its operators "
                f"mean is unknown here")


def check_and_infer(model: onnx.ModelProto, *, check: bool = True, infer: bool = True,
                    data_prop: bool = True) -> onnx.ModelProto:
    """Checker (raises onnx.checker.ValidationError) and shape inference on the light copy;
    returns the inferred model holding all of ``model``'s initializers (``model`` itself when
    it is small and not inferred). When inference fails, the model uninferred."""
    light, big, n_inputs = light_copy(model)
    if sum(len(t.raw_data) for t in big) < DIRECT_BYTES:
        light, big, n_inputs = model, [], len(model.graph.input)   # copying costs more
    if check:
        _check_opset(model)
        onnx.checker.check_model(light)
        for t in big:
            why = _check_data(t)
            if why:
                raise onnx.checker.ValidationError(why)
    out = light
    if infer:
        try:
            out = onnx.shape_inference.infer_shapes(light, data_prop=data_prop)
        except Exception:
            out = light
    if big:
        del out.graph.input[n_inputs:]
        out.graph.initializer.extend(big)
    return out
