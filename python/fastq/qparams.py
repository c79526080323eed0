"""Range -> (scale, zero_point) with OpenVINO POT's rules, vectorized over channels, plus numpy
references of ONNX QuantizeLinear/DequantizeLinear (float32 divide, round half to even).
Zero is always an integer level; every scale is finite and > 0 (POT's zero-range floors).
"""

from __future__ import annotations

# The rules, from POT tools/pot/openvino/tools/pot/algorithms/quantization/fake_quantize.py,
# restated for QDQ (where the zero point is an integer):
# - symmetric: range [-max, max], ``max`` from the max estimator (abs_max by default; min only
#   decides the sign); zero point 0 (the grid's midpoint if an unsigned grid is forced on
#   signed data); scale = max / (qmax - zp). Weights int8 -127..127. Activations uint8 0..255
#   when every min >= 0, else int8 -128..127 (POT's min = -max*L/(L-2) with L = 256 levels is
#   exactly -128 * max/127).
# - asymmetric: ranges narrower than 8e-4 widen by 8e-4 per side (fix_zero_filters_asymmetric),
#   then extend to include 0, then nudge_zero_range (POT tune_range) moves one end outward so
#   0.0 is a level. Activations uint8; weights int8 with a zero point (u8 x s8 kernels).
# - symmetric floors: max(8e-5, 1% of the largest channel's max) (fix_zero_filters_symmetric).

from dataclasses import dataclass, replace
from typing import Any, Optional, Tuple, Union

import numpy as np

from .config.parse import SUPPORTED_BITS
from .config.types import Mode, Role
from .errors import ConfigError, DataError

SYM_FLOOR_ABS = 8e-5          # fix_zero_filters_symmetric: lower_threshold = max(8e-5, eps*max)
SYM_FLOOR_REL = 0.01
ASYM_MIN_RANGE = 8e-4         # fix_zero_filters_asymmetric: min_correction = 8 * 10e-5
SATURATION_FIX_FACTOR = 2.0   # fake_quantize.py set_rescaling_factors(scaling_factor=2.0)


@dataclass(frozen=True, eq=False)
class QParams:
    """Quantization parameters of one quantizer. ``scale`` (float32) and ``zero_point``
    (int32, values inside [qmin, qmax]) have the range's shape: 0-d per tensor, (C,) per
    channel. ``dtype`` is the QDQ storage type; ``zero_point_typed`` casts to it."""
    scale: np.ndarray
    zero_point: np.ndarray
    dtype: type
    qmin: int
    qmax: int
    signed: bool
    mode: Mode
    role: Role
    bits: int

    @property
    def per_channel(self) -> bool:
        return self.scale.ndim > 0 and self.scale.size > 1

    @property
    def zero_point_typed(self) -> np.ndarray:
        return self.zero_point.astype(self.dtype)


def _grid(bits: int, mode: Mode, role: Role, nonneg: bool, narrow: Optional[bool],
          level_low: Optional[int], level_high: Optional[int]) -> Tuple[int, int]:
    half = 1 << (bits - 1)
    if role is Role.WEIGHTS:
        signed = True                                  # s8 weights for u8 x s8 kernels
        narrow = (mode is Mode.SYMMETRIC) if narrow is None else narrow
    else:
        signed = mode is Mode.SYMMETRIC and not nonneg
        if level_low is not None:
            signed = level_low < 0                     # POT: 'signed' iff level_low < 0
        narrow = bool(narrow)
    if signed:
        lo, hi = (-(half - 1) if narrow else -half), half - 1
    else:
        lo, hi = 0, (2 * half - 2 if narrow else 2 * half - 1)
    if level_low is not None:
        lo = level_low
        if level_high is None:
            hi = half - 1 if level_low < 0 else 2 * half - 1
    if level_high is not None:
        hi = level_high
        if level_low is None and hi > half - 1:
            lo = 0
    if not (-half <= lo < hi <= 2 * half - 1) or (lo < 0 and hi > half - 1):
        raise ConfigError(f"level_low/level_high: [{lo}, {hi}] is not a {bits}-bit grid "
                          f"(signed [-{half}, {half - 1}] or unsigned [0, {2 * half - 1}])")
    return lo, hi


def nudge_zero_range(lo: np.ndarray, hi: np.ndarray, n_steps: int
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """POT tune_range: with lo <= 0 <= hi and ``n_steps`` = qmax - qmin, round the zero level
    q0 = round(-lo * n / (hi - lo)) (half to even), then either keep hi and move lo to
    q0 * hi / (q0 - n), or keep lo and move hi to (q0 - n) * lo / q0 -- whichever gives the
    wider range, so neither end moves inward and 0.0 lands exactly on level q0. Where the
    alternative is undefined (q0 == n resp. q0 == 0) that end stays; POT then keeps the
    original range and the zero point is the nearest level (within half a step)."""
    q0 = np.rint(-lo * (n_steps / (hi - lo)))
    with np.errstate(divide="ignore", invalid="ignore"):
        lo_alt = np.where(q0 < n_steps, q0 / (q0 - n_steps) * hi, lo)
        hi_alt = np.where(q0 > 0, (q0 - n_steps) / q0 * lo, hi)
    move_lo = (hi - lo_alt) > (hi_alt - lo)
    return np.where(move_lo, lo_alt, lo), np.where(move_lo, hi, hi_alt)


def _as_range(v: Any, name: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(np.atleast_1d(a)))[0][0]
        raise DataError(f"{name} is not finite at index {bad}: {np.atleast_1d(a)[bad]!r}")
    return a


def compute_qparams(min_val: Any, max_val: Any, *, bits: int = 8,
                    mode: Union[Mode, str] = Mode.SYMMETRIC,
                    role: Union[Role, str] = Role.ACTIVATIONS,
                    narrow_range: Optional[bool] = None, level_low: Optional[int] = None,
                    level_high: Optional[int] = None) -> QParams:
    """(scale, zero_point) for a range; scalars per tensor, arrays (C,) per channel.

    ``narrow_range`` drops one level (signed: -127..127; unsigned: 0..254); default True for
    symmetric weights only. ``level_low``/``level_high`` override the grid (POT keys); a grid
    is signed iff level_low < 0. ``min_val`` may be None for symmetric weights (POT ignores it).
    """
    mode, role = Mode(mode), Role(role)
    if isinstance(bits, bool) or bits not in SUPPORTED_BITS:
        raise ConfigError(f"bits: {bits!r} is not a supported bit width; allowed: "
                          f"{', '.join(map(str, SUPPORTED_BITS))}")
    hi = _as_range(max_val, "max_val")
    if min_val is None:
        if not (mode is Mode.SYMMETRIC and role is Role.WEIGHTS):
            raise DataError("min_val is required except for symmetric weights")
        lo = -np.abs(hi)
    else:
        lo = _as_range(min_val, "min_val")
    lo, hi = np.broadcast_arrays(lo, hi)
    nonneg = bool(np.all(lo >= 0)) and role is Role.ACTIVATIONS
    qmin, qmax = _grid(bits, mode, role, nonneg, narrow_range, level_low, level_high)

    if mode is Mode.SYMMETRIC:
        floor = np.maximum(SYM_FLOOR_ABS, SYM_FLOOR_REL * np.max(hi))
        mag = np.maximum(hi, floor)
        if qmin < 0 or nonneg:
            zp = 0 if qmin < 0 else qmin
        else:                                   # unsigned grid forced on signed data
            zp = (qmin + qmax + 1) // 2
        scale = (mag / (qmax - zp)).astype(np.float32)
        zero_point = np.full(scale.shape, zp, dtype=np.int32)
    else:
        bad = np.argwhere(np.atleast_1d(lo > hi))
        if bad.size:
            i = bad[0][0]
            raise DataError(f"min_val > max_val at index {i}: "
                            f"{np.atleast_1d(lo)[i]!r} > {np.atleast_1d(hi)[i]!r}")
        small = (hi - lo) <= ASYM_MIN_RANGE
        lo = np.minimum(np.where(small, lo - ASYM_MIN_RANGE, lo), 0.0)
        hi = np.maximum(np.where(small, hi + ASYM_MIN_RANGE, hi), 0.0)
        lo, hi = nudge_zero_range(lo, hi, qmax - qmin)
        scale = ((hi - lo) / (qmax - qmin)).astype(np.float32)
        zp = qmin + np.rint(-lo / scale.astype(np.float64))
        zero_point = np.clip(zp, qmin, qmax).astype(np.int32)
    assert np.all(scale > 0) and np.all(np.isfinite(scale))
    return QParams(scale=scale, zero_point=zero_point, dtype=np.int8 if qmin < 0 else np.uint8,
                   qmin=qmin, qmax=qmax, signed=qmin < 0, mode=mode, role=role, bits=bits)


def clip_range(min_val: Any, max_val: Any, range_estimator: Any) -> Tuple[Any, Any]:
    """Apply the estimator's ``clipping_value``s: min is raised to min.clipping_value, max
    lowered to max.clipping_value. POT clips the FakeQuantize range after tune_range, which
    can move 0.0 off the grid; fastq clips the statistics first, so the zero stays exact."""
    lo_side, hi_side = range_estimator.min, range_estimator.max
    if min_val is not None and lo_side is not None and lo_side.clipping_value is not None:
        min_val = np.maximum(min_val, lo_side.clipping_value)
    if hi_side is not None and hi_side.clipping_value is not None:
        max_val = np.minimum(max_val, hi_side.clipping_value)
    return min_val, max_val


def from_layer(layer: Any, min_val: Any, max_val: Any) -> QParams:
    """``compute_qparams`` with bits/mode/levels from a ``config.ResolvedLayer``, after its
    range estimator's clipping values."""
    min_val, max_val = clip_range(min_val, max_val, layer.range_estimator)
    return compute_qparams(min_val, max_val, bits=layer.bits, mode=layer.mode, role=layer.role,
                           level_low=layer.level_low, level_high=layer.level_high)


def apply_saturation_fix(qp: QParams, factor: float = SATURATION_FIX_FACTOR) -> QParams:
    """POT's saturation fix for a weight quantizer: the float range is doubled while the
    integer grid stays 8-bit, i.e. the scale doubles and the zero point stays. POT divides
    the weights by 2 and doubles the FakeQuantize output range; in QDQ that is one scale.
    Symmetric int8 weights then lie in [-64, 64] (|w| / (2 max/127) <= 63.5, rounded to
    even), so a u8 x s8 pair sum is at most 2*255*64 = 32640 and vpmaddubsw never saturates."""
    if qp.role is not Role.WEIGHTS:
        raise ConfigError("saturation_fix applies to weight quantizers only, got a "
                          f"{qp.role.value} quantizer")
    return replace(qp, scale=(qp.scale.astype(np.float64) * factor).astype(np.float32))


def _along(a: np.ndarray, ndim: int, axis: Optional[int], per_channel: bool) -> np.ndarray:
    if not per_channel:
        return a.reshape(())
    if axis is None:
        raise ValueError("per-channel qparams need the channel axis")
    shape = [1] * ndim
    shape[axis] = -1
    return a.reshape(shape)


def quantize(x: Any, qp: QParams, axis: Optional[int] = None) -> np.ndarray:
    """ONNX QuantizeLinear: round_half_even(x / scale) + zero_point, saturated to [qmin, qmax]
    (the grid; ONNX saturates to the dtype's range, the same for the default grids)."""
    x = np.asarray(x, dtype=np.float32)
    scale = _along(qp.scale, x.ndim, axis, qp.per_channel)
    zp = _along(qp.zero_point, x.ndim, axis, qp.per_channel)
    q = np.rint(x / scale).astype(np.float64) + zp
    return np.clip(q, qp.qmin, qp.qmax).astype(qp.dtype)


def dequantize(q: Any, qp: QParams, axis: Optional[int] = None) -> np.ndarray:
    """ONNX DequantizeLinear: (q - zero_point) * scale in float32."""
    q = np.asarray(q)
    scale = _along(qp.scale, q.ndim, axis, qp.per_channel)
    zp = _along(qp.zero_point, q.ndim, axis, qp.per_channel)
    return (q.astype(np.int32) - zp).astype(np.float32) * scale


def fake_quantize(x: Any, qp: QParams, axis: Optional[int] = None) -> np.ndarray:
    return dequantize(quantize(x, qp, axis), qp, axis)
