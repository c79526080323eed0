"""Atomic model writing: a written model is complete or absent. The model goes to a temporary
file in the target directory and is renamed into place with ``os.replace``; models whose
initializers exceed ``external_threshold`` bytes (2 GB protobuf limit) store them as external
data next to the model, renamed the same way.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import onnx

from ..errors import FastqError

EXTERNAL_THRESHOLD = 2_000_000_000


def _initializer_bytes(model: onnx.ModelProto) -> int:
    return sum(t.ByteSize() for t in model.graph.initializer)


def save_model(model: onnx.ModelProto, path, external_threshold: int = EXTERNAL_THRESHOLD
               ) -> list:
    """Write ``model`` to ``path``; returns the files written."""
    path = os.path.abspath(os.fspath(path))
    d, base = os.path.split(path)
    if not os.path.isdir(d):
        raise FastqError(f"cannot write {path!r}: directory {d!r} does not exist")
    try:
        tmpdir = tempfile.mkdtemp(prefix=".fastq-", dir=d)
    except OSError as e:
        raise FastqError(f"cannot write {path!r}: {e.strerror or e}") from None
    try:
        external = _initializer_bytes(model) > external_threshold
        tmp = os.path.join(tmpdir, base)
        written = [path]
        if external:
            data = base + ".data"
            m = onnx.ModelProto()
            m.CopyFrom(model)
            onnx.save_model(m, tmp, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data, size_threshold=1024)
            os.replace(os.path.join(tmpdir, data), os.path.join(d, data))
            written.append(os.path.join(d, data))
        else:
            with open(tmp, "wb") as f:
                f.write(model.SerializeToString())
        os.replace(tmp, path)
        return written
    except OSError as e:
        raise FastqError(f"cannot write {path!r}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
