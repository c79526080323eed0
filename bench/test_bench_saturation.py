"""Saturation analysis benchmarks (1 thread): ``fastq.analyze_saturation`` on a QDQ model
against a plain exact32 evaluation of the same model and samples (session creation included
on both sides: the analysis builds an exact32 and a sat16pair session), per model: a
ResNet-style CNN (3x3 convs at 56x56) and a MobileNet-style depthwise CNN, quantized by fastq
with ``saturation_fix: no`` so there is saturation to find. And the counting conv kernel
against the plain sat16pair conv on the same impl (target <= 2x), per conv shape: as
``conv_u8s8_satcount`` (two output arrays) and as the analysis' ``conv_u8s8_satstats`` (counts
and error figures only). Results are asserted before timing; ``test_*_report`` print the
ratios from one run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import fastq
from fastq import _core, kernels

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import _qdq_models as M  # noqa: E402
from _timing import best_time  # noqa: E402

SAMPLES = 8
MODELS = {
    "resnet56": lambda: M.cnn_model(hw=56, c=64, blocks=2),
    "mobilenet56": lambda: M.depthwise_model(hw=112, c=64, blocks=4),
}
_CACHE: dict = {}


def typed_outputs(m):
    """The float model with its outputs typed by shape inference (fastq.quantize runs the ONNX
    checker, which wants output shapes; these builders leave them out)."""
    import onnx
    g = onnx.shape_inference.infer_shapes(m).graph
    inferred = {vi.name: vi for vi in list(g.value_info) + list(g.output)}
    for vi in m.graph.output:
        if not vi.type.tensor_type.HasField("shape") and vi.name in inferred:
            vi.CopyFrom(inferred[vi.name])
    return m


def case(name):
    if name not in _CACHE:
        m = typed_outputs(MODELS[name]())
        data = M.calibration(m, SAMPLES)
        q = fastq.quantize(m, data, {"name": "DefaultQuantization",
                                     "params": {"saturation_fix": "no"}}, progress=False).model
        a = fastq.analyze_saturation(q, data)
        assert a.samples == SAMPLES and a.layers
        # the analysis' whole-model difference is the two plain runs' difference
        out = next(iter(a.outputs))
        e = fastq.InferenceSession(q, arith="exact32")
        s = fastq.InferenceSession(q, arith="sat16pair")
        # (in float64, as the analysis takes the difference)
        d = [s.run(None, x)[0].astype(np.float64) - e.run(None, x)[0] for x in data]
        assert a.outputs[out].max_abs == max(float(np.max(np.abs(v))) for v in d)
        _CACHE[name] = (q, data)
    return _CACHE[name]


def evaluate(q, data, arith):
    s = fastq.InferenceSession(q, arith=arith)
    for x in data:
        s.run(None, x)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("what", ["analysis", "exact32", "sat16pair"])
def test_bench_analysis(benchmark, name, what):
    q, data = case(name)
    benchmark.group = f"saturation analysis {name} x{SAMPLES}"
    if what == "analysis":
        benchmark.pedantic(fastq.analyze_saturation, args=(q, data), rounds=3, iterations=1)
    else:
        benchmark.pedantic(evaluate, args=(q, data, what), rounds=3, iterations=1)


@pytest.mark.parametrize("name", list(MODELS))
def test_analysis_ratio_report(name):
    q, data = case(name)
    t_a = best_time(lambda: fastq.analyze_saturation(q, data), reps=3)
    t_e = best_time(lambda: evaluate(q, data, "exact32"), reps=3)
    t_s = best_time(lambda: evaluate(q, data, "sat16pair"), reps=3)
    t_l = best_time(lambda: fastq.analyze_saturation(q, data, whole_model=False), reps=3)
    print(f"\n{name} ({SAMPLES} samples): exact32 evaluation {t_e * 1e3:.1f} ms, sat16pair "
          f"{t_s * 1e3:.1f} ms; analysis {t_a * 1e3:.1f} ms (ratio {t_a / t_e:.2f} vs exact32), "
          f"per-layer only (no target run) {t_l * 1e3:.1f} ms (ratio {t_l / t_e:.2f})")


# ----------------------------------------------------------------------- conv counting kernel
IMPL = "avx512vnni" if "avx512vnni" in kernels.available_impls() else "ref"
CONVS = {  # name: (x shape, w shape, group, strides, pads, pairing)
    "3x3 64->64 56x56": ((1, 64, 56, 56), (64, 64, 3, 3), 1, (1, 1), (1, 1, 1, 1), "per_tap"),
    "stem 3->32 s2 224x224": ((1, 3, 224, 224), (32, 3, 3, 3), 1, (2, 2), (1, 1, 1, 1),
                              "per_tap"),
    "1x1 128->256 28x28": ((1, 128, 28, 28), (256, 128, 1, 1), 1, (1, 1), (0, 0, 0, 0),
                           "per_tap"),
    "dw 3x3 128 56x56": ((1, 128, 56, 56), (128, 1, 3, 3), 128, (1, 1), (1, 1, 1, 1),
                         "per_tap"),
    "dw 3x3 128 56x56 flat": ((1, 128, 56, 56), (128, 1, 3, 3), 128, (1, 1), (1, 1, 1, 1),
                              "flat"),
}


def conv_operands(name):
    xs, ws, group, st, pd, pairing = CONVS[name]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, xs, dtype=np.uint8)
    w = kernels.pack_conv_weights(rng.integers(-128, 128, ws, dtype=np.int8), group=group,
                                  pairing=pairing)
    kw = dict(strides=st, pads=pd, x_zero_point=3)
    sat, exact, _ = kernels.conv_u8s8_satcount(x, w, impl=IMPL, **kw)
    assert np.array_equal(sat, kernels.conv_u8s8(x, w, arith="sat16pair", impl=IMPL, **kw))
    assert np.array_equal(exact, kernels.conv_u8s8(x, w, arith="exact32", impl=IMPL, **kw))
    return x, w, kw


@pytest.mark.parametrize("name", list(CONVS))
@pytest.mark.parametrize("what", ["satcount", "sat16pair"])
def test_bench_conv_satcount(benchmark, name, what):
    x, w, kw = conv_operands(name)
    benchmark.group = f"conv satcount {name}"
    if what == "satcount":
        benchmark(kernels.conv_u8s8_satcount, x, w, impl=IMPL, **kw)
    else:
        benchmark(kernels.conv_u8s8, x, w, arith="sat16pair", impl=IMPL, **kw)


def satstats(x, w, kw):
    """The analysis' per-layer pass: counts and error figures, no output arrays."""
    oc = w.shape[0]
    st, pd = kw["strides"], kw["pads"]
    return _core.conv_u8s8_satstats(x, w, st, pd, (1, 1), kw["x_zero_point"], IMPL, True,
                                    np.zeros(oc, np.int64), np.ones(oc), None)


def test_conv_satcount_ratio_report():
    lines = []
    for name in CONVS:
        x, w, kw = conv_operands(name)
        t_c = best_time(lambda: kernels.conv_u8s8_satcount(x, w, impl=IMPL, **kw))
        t_a = best_time(lambda: satstats(x, w, kw))
        t_s = best_time(lambda: kernels.conv_u8s8(x, w, arith="sat16pair", impl=IMPL, **kw))
        lines.append(f"{name}: sat16pair conv {t_s * 1e3:.2f} ms; satcount (2 outputs) "
                     f"{t_c * 1e3:.2f} ms, ratio {t_c / t_s:.2f}; satstats (analysis pass) "
                     f"{t_a * 1e3:.2f} ms, ratio {t_a / t_s:.2f} (target 2)")
    print(f"\nconv counting kernel, impl {IMPL}:\n" + "\n".join(lines))
