"""Calibration data: any iterable of samples, checked as read. A sample is one feed of the
model (usually batch 1): a dict input-name -> array, a tuple/list in input order, or one array
for a one-input model. Shapes must match the model's fixed dims, dtypes its input types (same
kind casts such as float64 -> float32 are made); NaN/Inf and an empty dataset are DataErrors
naming the sample index. One numpy array of the input's rank for a one-input model is read
as samples along axis 0 (each ``x[i:i+1]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, List, Optional, Tuple

import numpy as np
from onnx import helper

from .errors import DataError


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: np.dtype
    shape: Optional[Tuple[Optional[int], ...]]     # None per dynamic dim


def input_specs(inputs) -> List[InputSpec]:
    out = []
    for vi in inputs:
        tt = vi.type.tensor_type
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        shape = (tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
                 if tt.HasField("shape") else None)
        out.append(InputSpec(vi.name, dtype, shape))
    return out


def _as_dict(sample: Any, specs: List[InputSpec], where: str) -> dict:
    names = [s.name for s in specs]
    if isinstance(sample, dict):
        extra = [k for k in sample if k not in names]
        missing = [k for k in names if k not in sample]
        if extra or missing:
            raise DataError(f"{where}: "
                            + (f"unknown input(s) {extra}; " if extra else "")
                            + (f"missing input(s) {missing}; " if missing else "")
                            + f"the model's inputs are {names}")
        return dict(sample)
    if isinstance(sample, (tuple, list)):
        if len(sample) != len(names):
            raise DataError(f"{where}: {len(sample)} arrays for "
                            f"{len(names)} model inputs {names}")
        return dict(zip(names, sample))
    if len(names) == 1:
        return {names[0]: sample}
    raise DataError(f"{where}: a {type(sample).__name__} for a model with "
                    f"{len(names)} inputs; give a dict or a tuple in input order {names}")


def check_sample(sample: Any, specs: List[InputSpec], i: int,
                 what: str = "calibration sample") -> dict:
    """The feeds of one sample, checked against the model's inputs (dtype cast within a
    kind, shape, NaN/Inf); errors name it as ``f"{what} {i}"``."""
    where = f"{what} {i}"
    feeds = _as_dict(sample, specs, where)
    for s in specs:
        x = feeds[s.name]
        try:
            x = np.asarray(x)
        except Exception:
            raise DataError(f"{where}: input {s.name!r} is not an array") \
                from None
        if x.dtype != s.dtype:
            if x.dtype.kind != s.dtype.kind and not (x.dtype.kind in "iu" and
                                                     s.dtype.kind in "iu"):
                raise DataError(f"{where}: input {s.name!r} expects {s.dtype}, "
                                f"got {x.dtype}")
            x = x.astype(s.dtype)
        if s.shape is not None:
            if x.ndim != len(s.shape) or any(w is not None and w != d
                                             for w, d in zip(s.shape, x.shape)):
                want = tuple("?" if w is None else w for w in s.shape)
                raise DataError(f"{where}: input {s.name!r} expects shape "
                                f"{want}, got {x.shape}")
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            bad = tuple(int(v) for v in np.argwhere(~np.isfinite(x))[0])
            raise DataError(f"{where}: input {s.name!r} holds NaN/Inf "
                            f"(first at index {bad})")
        feeds[s.name] = x if x.flags.c_contiguous else np.ascontiguousarray(x)  # (keeps 0-d)
    return feeds


def iter_samples(data: Iterable, specs: List[InputSpec], *, labelled: bool = False,
                 what: str = "calibration sample") -> Iterator[Tuple[int, dict, Any]]:
    """Stream ``(index, checked feeds, annotation)``; ``labelled``: each item is an
    ``(inputs, annotation)`` pair (annotation None otherwise). Nothing is retained."""
    if data is None:
        raise DataError("the dataset is None; give an iterable of samples")
    if not labelled and isinstance(data, np.ndarray) and len(specs) == 1 and \
            specs[0].shape is not None and data.ndim == len(specs[0].shape):
        arr = data                  # one array, samples along the (batch) axis 0: x[i:i+1]
        data = (arr[i:i + 1] for i in range(len(arr)))
    try:
        it = iter(data)
    except TypeError:
        raise DataError(f"the dataset must be an iterable of samples, got "
                        f"{type(data).__name__}") from None
    for i, item in enumerate(it):
        annotation = None
        if labelled:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise DataError(f"{what} {i}: with a metric each item must be an (inputs, "
                                f"annotation) pair, got {type(item).__name__}")
            item, annotation = item
        yield i, check_sample(item, specs, i, what), annotation


def read_samples(data: Iterable, specs: List[InputSpec], limit: Optional[int] = None,
                 shuffle: bool = False, seed: int = 0) -> List[dict]:
    """Validated samples: the first ``limit`` (all if None), or with ``shuffle`` a seeded
    random subset of ``limit`` of them."""
    if data is None:
        raise DataError("calibration_data is None; give an iterable of samples")
    if isinstance(data, np.ndarray) and len(specs) == 1 and specs[0].shape is not None \
            and data.ndim == len(specs[0].shape):
        arr = data                  # one array, samples along the (batch) axis 0: x[i:i+1]
        data = (arr[i:i + 1] for i in range(len(arr)))
    try:
        it = iter(data)
    except TypeError:
        raise DataError(f"calibration_data must be an iterable of samples, got "
                        f"{type(data).__name__}") from None
    out: List[dict] = []
    for i, sample in enumerate(it):
        if limit is not None and not shuffle and len(out) >= limit:
            break
        out.append(check_sample(sample, specs, i))
    if not out:
        raise DataError("the calibration dataset is empty")
    if shuffle and limit is not None and limit < len(out):
        idx = np.sort(np.random.default_rng(seed).choice(len(out), limit, replace=False))
        out = [out[k] for k in idx]
    return out
