"""Shared helpers of the heavy float ops (nn_*.py): input checks that raise errors naming
the node, float dtype handling, and the sliding-window geometry (auto_pad, explicit pads,
ceil_mode) that Conv, ConvTranspose and the pools share. Registers no op.

Geometry convention: ``pads`` lists begin pads then end pads, one per spatial axis, as ONNX
does; the C++ kernels take begin pads and the output extent.
"""

from __future__ import annotations

from os import environ as _environ
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ... import kernels as _kernels
from ...errors import ModelError, UnsupportedOpError
from ..registry import Node

MAX_SPATIAL = 3  # the C++ window kernels are 1-D, 2-D or 3-D


def fail(node: Node, msg: str) -> ModelError:
    return ModelError(f"{node.where()}: {msg}")


def need(node: Node, x: Optional[np.ndarray], what: str) -> np.ndarray:
    if x is None:
        raise fail(node, f"input {what} is required")
    return np.asarray(x)


def float_in(node: Node, x: np.ndarray, what: str = "X") -> np.ndarray:
    """C-contiguous float32/float64 view of x; other floats (float16...) compute in float32."""
    if x.dtype == np.float32 or x.dtype == np.float64:
        return np.ascontiguousarray(x)
    if np.issubdtype(x.dtype, np.floating):
        return np.ascontiguousarray(x, dtype=np.float32)
    raise UnsupportedOpError(f"{node.where()}: input {what} has dtype {x.dtype}; "
                             "this op takes floating-point tensors")


def spatial_rank(node: Node, x: np.ndarray, what: str = "X", max_nd: int = MAX_SPATIAL) -> int:
    if x.ndim < 3:
        raise fail(node, f"input {what} must be (N, C, spatial...), got shape {x.shape}")
    nd = x.ndim - 2
    if nd > max_nd:
        raise UnsupportedOpError(f"{node.where()}: {nd} spatial dims; fastq supports 1 to "
                                 f"{max_nd}")
    return nd


def ints_attr(node: Node, name: str, nd: int, default: int) -> List[int]:
    v = node.attr(name)
    if v is None:
        return [default] * nd
    v = [int(e) for e in v]
    if len(v) != nd:
        raise fail(node, f"attribute {name}={v} must have {nd} entries (one per spatial axis)")
    if name in ("strides", "dilations") and any(e < 1 for e in v):
        raise fail(node, f"attribute {name}={v} must be >= 1")
    return v


def pads_attr(node: Node, nd: int) -> List[int]:
    v = node.attr("pads")
    if v is None:
        return [0] * (2 * nd)
    v = [int(e) for e in v]
    if len(v) != 2 * nd:
        raise fail(node, f"attribute pads={v} must have {2 * nd} entries")
    if any(e < 0 for e in v):
        raise fail(node, f"attribute pads={v} must be >= 0")
    return v


def auto_pad(node: Node) -> str:
    ap = node.attr("auto_pad", "NOTSET")
    if ap not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise fail(node, f"auto_pad={ap!r} is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
    return ap


def window_geometry(node: Node, in_shape: Sequence[int], kernel: Sequence[int],
                    strides: Sequence[int], dilations: Sequence[int],
                    ceil_mode: bool = False) -> Tuple[List[int], List[int], List[int]]:
    """(out extent, begin pads, end pads) of a Conv/pool window per ONNX's auto_pad rules."""
    nd = len(in_shape)
    ap = auto_pad(node)
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    if ap in ("SAME_UPPER", "SAME_LOWER"):
        out = [-(-i // s) for i, s in zip(in_shape, strides)]
        total = [max(0, (o - 1) * s + e - i) for o, s, e, i in zip(out, strides, eff, in_shape)]
        if ap == "SAME_UPPER":   # the extra pad goes at the end
            begin = [t // 2 for t in total]
        else:
            begin = [t - t // 2 for t in total]
        end = [t - b for t, b in zip(total, begin)]
        return out, begin, end
    if ap == "VALID":
        begin, end = [0] * nd, [0] * nd
    else:
        p = pads_attr(node, nd)
        begin, end = p[:nd], p[nd:]
    out = []
    for a in range(nd):
        span = in_shape[a] + begin[a] + end[a] - eff[a]
        if span < 0:
            raise fail(node, f"kernel extent {eff[a]} exceeds padded input extent "
                             f"{in_shape[a] + begin[a] + end[a]} on spatial axis {a}")
        if ceil_mode:
            o = -(-span // strides[a]) + 1
            # A window must start inside the input or its begin pad, never in the end pad.
            if (o - 1) * strides[a] >= in_shape[a] + begin[a]:
                o -= 1
        else:
            o = span // strides[a] + 1
        out.append(o)
    return out, begin, end


def channel_axis_shape(ndim: int, n: int) -> Tuple[int, ...]:
    """Shape that broadcasts a length-n per-channel vector along axis 1 of an ndim tensor."""
    return (1, n) + (1,) * (ndim - 2)


def nhwc_view(x) -> "np.ndarray | None":
    """The C-contiguous NHWC buffer behind a 4-D NCHW-shaped view (what the channels-last
    convs return: ``y_nhwc.transpose(0, 3, 1, 2)``), or None for a C-contiguous (NCHW) or
    otherwise strided array."""
    if type(x) is not np.ndarray or x.ndim != 4 or x.flags.c_contiguous:
        return None
    t = x.transpose(0, 2, 3, 1)
    return t if t.flags.c_contiguous else None


def float_impl() -> str:
    """Impl of the float kernels, from the int8 default (best built impl this CPU runs,
    capped by FASTQ_ISA / kernels.use_impl), except that a VNNI host runs the AVX2 build:
    the 16-lane AVX-512 build measured slower on common rows (56/28/14 wide round up to whole
    16-float blocks). Every impl computes the same results up to rounding (the depthwise conv
    fuses multiply-adds in its SIMD builds); only speed varies. Called once per float node
    run, so memoized on the raw (use_impl cap, FASTQ_ISA) pair: ~0.7 us, not ~2 us."""
    raw = (getattr(_kernels._override, "impl", None), _environ.get("FASTQ_ISA"))
    impl = _FLOAT_IMPL_RAW.get(raw)
    if impl is None:
        cap = _kernels._cap()   # validates FASTQ_ISA; the CPU/build probe is memoized per cap
        impl = _FLOAT_IMPL.get(cap)
        if impl is None:
            best = _kernels.default_impl()
            impl = _FLOAT_IMPL[cap] = "avx2" if best == "avx512vnni" else best
        _FLOAT_IMPL_RAW[raw] = impl
    return impl


_FLOAT_IMPL_RAW: dict = {}   # (use_impl cap, FASTQ_ISA text) -> float impl


def nhwc_impls() -> tuple:
    """(GEMM impl, depthwise impl) of the channels-last conv kernels: float_impl() and the
    best built impl itself (also AVX-512: the channels-last depthwise loop is load-bound, and
    16-lane loads measured ~20% faster on every MobileNet layer; its GEMM is not, so it
    keeps float_impl's AVX2 build). Memoized like float_impl."""
    raw = (getattr(_kernels._override, "impl", None), _environ.get("FASTQ_ISA"))
    got = _NHWC_IMPLS_RAW.get(raw)
    if got is None:
        got = _NHWC_IMPLS_RAW[raw] = (float_impl(), _kernels.default_impl())
    return got


_NHWC_IMPLS_RAW: dict = {}   # (use_impl cap, FASTQ_ISA text) -> (GEMM impl, depthwise impl)
_FLOAT_IMPL: dict = {}   # cap (None, "ref", "avx2", ...) -> float impl; the CPU never changes
