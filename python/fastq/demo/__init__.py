"""``fastq demo``: quantize the packaged digits CNN (8x8 scikit-learn digits, trained with
numpy by ``make_demo.py``) with the packaged calibration split, then report float vs int8
accuracy on the validation split in exact32 (VNNI) and sat16pair (AVX2) arithmetic.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Optional

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "digits_cnn.onnx")
CALIBRATION = os.path.join(HERE, "calibration.npz")
VALIDATION = os.path.join(HERE, "validation.npz")


def accuracy(session, images: np.ndarray, labels: np.ndarray, batch: int = 128) -> float:
    hits = 0
    for k in range(0, len(images), batch):
        logits = session.run(None, {"image": images[k:k + batch]})[0]
        hits += int(np.sum(np.argmax(logits, axis=1) == labels[k:k + batch]))
    return hits / len(images)


def run(output: Optional[str] = None, progress: bool = True, echo=print) -> dict:
    import fastq
    cal = np.load(CALIBRATION)["image"]
    val = np.load(VALIDATION)
    images, labels = val["image"], val["label"]
    t0 = time.perf_counter()
    result = fastq.quantize(MODEL, (cal[i:i + 1] for i in range(len(cal))), progress=progress)
    seconds = time.perf_counter() - t0
    if output is None:
        output = os.path.join(tempfile.mkdtemp(prefix="fastq-demo-"), "digits_cnn_int8.onnx")
    result.save(output)
    res = {"float": accuracy(fastq.InferenceSession(MODEL), images, labels),
           "int8 exact32": accuracy(fastq.InferenceSession(result.model, arith="exact32"),
                                    images, labels),
           "int8 sat16pair": accuracy(fastq.InferenceSession(result.model, arith="sat16pair"),
                                      images, labels),
           "calibration_seconds": seconds, "output": output, "samples": len(cal)}
    echo(f"digits CNN, {len(images)} validation images, {len(cal)} calibration samples")
    for k in ("float", "int8 exact32", "int8 sat16pair"):
        echo(f"  accuracy {k:<15} {res[k] * 100:6.2f} %")
    echo(f"  quantization took {seconds:.2f} s (statistics pass "
         f"{result.report.timings.get('statistics', 0):.2f} s)")
    echo(f"int8 model written to {output}")
    return res
