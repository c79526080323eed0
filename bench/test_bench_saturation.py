"""Saturation analysis benchmarks (1 thread): ``fastq.analyze_saturation`` on a QDQ model
against a plain sat16pair session running the same samples (issue 7's target: the analysis
<= 2x that run), per model: a ResNet-style CNN (3x3 convs at 56x56), a MobileNet-style
depthwise CNN and bench/_models.py's ``mobilenet_v2_like`` (112x112), all quantized by fastq
with ``saturation_fix: no`` so there is saturation to find. Reported twice: runs only (session
creation excluded on both sides: the analysis' own ``timings`` against ``sess.run`` of a
prepared session) and end to end (creation included on both sides: the analysis builds an
exact32 and a sat16pair session), with and without the whole-model (target) run. And the counting conv kernel
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
from fastq.runtime.qdq_layers import _steady_heap

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import _models as BM  # noqa: E402
import _qdq_models as M  # noqa: E402
from _timing import best_time  # noqa: E402

SAMPLES = 8
MODELS = {  # name: (float model, calibration data)
    "resnet56": lambda: _with_data(M.cnn_model(hw=56, c=64, blocks=2)),
    "mobilenet56": lambda: _with_data(M.depthwise_model(hw=112, c=64, blocks=4)),
    "mobilenet_v2_like": lambda: _bench_model("mobilenet_v2_like"),
}


def _with_data(m):
    m = typed_outputs(m)
    return m, M.calibration(m, SAMPLES)


def _bench_model(name):
    m = BM.MODELS[name]()
    return m, BM.calibration(name, m, SAMPLES)
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
        m, data = MODELS[name]()
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


def runs_only(q, data, whole_model):
    """The analysis' time without its session creation (its own timings)."""
    t = fastq.analyze_saturation(q, data, whole_model=whole_model).timings
    return t["baseline_runs_with_counting"] + t["target_runs"]


@pytest.mark.parametrize("name", list(MODELS))
def test_analysis_ratio_report(name):
    q, data = case(name)
    sess = fastq.InferenceSession(q, arith="sat16pair")
    t_run = best_time(lambda: [sess.run(None, x) for x in data], reps=3)
    t_ra = min(runs_only(q, data, True) for _ in range(3))
    t_rl = min(runs_only(q, data, False) for _ in range(3))
    t_s = best_time(lambda: evaluate(q, data, "sat16pair"), reps=3)
    t_e = best_time(lambda: evaluate(q, data, "exact32"), reps=3)
    t_a = best_time(lambda: fastq.analyze_saturation(q, data), reps=3)
    skipped = fastq.analyze_saturation(q, data).target_runs_skipped
    t_l = best_time(lambda: fastq.analyze_saturation(q, data, whole_model=False), reps=3)
    print(f"\n{name} ({SAMPLES} samples), against a plain sat16pair session (target <= 2):\n"
          f"  runs only (creation excluded): sat16pair {t_run * 1e3:.1f} ms; analysis "
          f"{t_ra * 1e3:.1f} ms (a: ratio {t_ra / t_run:.2f}); per-layer only "
          f"{t_rl * 1e3:.1f} ms (b: ratio {t_rl / t_run:.2f})\n"
          f"  end to end (creation included): sat16pair {t_s * 1e3:.1f} ms (exact32 "
          f"{t_e * 1e3:.1f} ms); analysis {t_a * 1e3:.1f} ms (a: ratio {t_s and t_a / t_s:.2f}); "
          f"per-layer only {t_l * 1e3:.1f} ms (b: ratio {t_l / t_s:.2f})\n"
          f"  target runs skipped (no accumulator changed on the sample): {skipped} of "
          f"{SAMPLES}")


# ----------------------------------------------------------------------- conv counting kernel
IMPL = "avx512vnni" if "avx512vnni" in kernels.available_impls() else "ref"
# Both sides allocate their outputs per call; an int8 session earlier in the process keeps
# freed buffers in the heap (qdq_layers._steady_heap), else every call page-faults them in
# again and the two-output counting call pays twice: set it here so order does not matter.
_steady_heap()
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


def conv_operands(name, fill="uniform"):
    """``uniform``: activations and weights uniform over their whole ranges, the worst case
    (about a quarter of all pairs can reach a limit wherever they meet large activations).
    ``relu``: what a trained ReLU network quantized per channel looks like -- activations
    |N(0, 60)| (most far below 255), weights N(0, 1) scaled so each output channel's largest
    is 127."""
    xs, ws, group, st, pd, pairing = CONVS[name]
    rng = np.random.default_rng(0)
    if fill == "uniform":
        x = rng.integers(0, 256, xs, dtype=np.uint8)
        wq = rng.integers(-128, 128, ws, dtype=np.int8)
    else:
        x = np.clip(np.abs(rng.normal(0, 60, xs)), 0, 255).astype(np.uint8)
        wf = rng.normal(size=ws)
        wq = np.round(wf / np.abs(wf).reshape(ws[0], -1).max(axis=1).reshape(-1, 1, 1, 1)
                      * 127).astype(np.int8)
    w = kernels.pack_conv_weights(wq, group=group, pairing=pairing)
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


def nhwc_layer(x, w, kw, counting):
    """A requantized layer as the int8 executor runs it (NHWC u8 in and out): the plain
    sat16pair layer, or the analysis' counting pass (exact32 base)."""
    oc = w.shape[0]
    st, pd, zp = kw["strides"], kw["pads"], kw["x_zero_point"]
    zc, mult = np.zeros(oc, np.int64), np.full(oc, 1e-4, np.float32)
    if counting:
        return _core.qconv_requant_satstats_nhwc(x, w, st, pd, (1, 1), zp, "nhwc", IMPL, True,
                                                 np.ones(oc), zc, mult, 0, False,
                                                 np.zeros(4 + oc, np.int64), np.zeros(2))
    return _core.qconv_requant_nhwc(x, w, st, pd, (1, 1), zp, "nhwc", zc, mult, 0, False,
                                    "sat16pair", IMPL)


@pytest.mark.parametrize("fill", ["uniform", "relu"])
def test_conv_satcount_ratio_report(fill):
    lines = []
    for name in CONVS:
        x, w, kw = conv_operands(name, fill)
        xn = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        assert np.array_equal(nhwc_layer(xn, w, kw, True), _core.qconv_requant_nhwc(
            xn, w, kw["strides"], kw["pads"], (1, 1), kw["x_zero_point"], "nhwc",
            np.zeros(w.shape[0], np.int64), np.full(w.shape[0], 1e-4, np.float32), 0, False,
            "exact32", IMPL))
        t_c = best_time(lambda: kernels.conv_u8s8_satcount(x, w, impl=IMPL, **kw))
        t_a = best_time(lambda: satstats(x, w, kw))
        t_s = best_time(lambda: kernels.conv_u8s8(x, w, arith="sat16pair", impl=IMPL, **kw))
        t_nc = best_time(lambda: nhwc_layer(xn, w, kw, True))
        t_ns = best_time(lambda: nhwc_layer(xn, w, kw, False))
        inert = "" if w.can_saturate else \
            " [weights cannot reach a limit: the analysis runs the plain layer, ratio 1]"
        lines.append(f"{name}: NCHW sat16pair conv {t_s * 1e3:.2f} ms; satcount (2 outputs) "
                     f"{t_c * 1e3:.2f} ms, ratio {t_c / t_s:.2f}; satstats (NCHW pass) "
                     f"{t_a * 1e3:.2f} ms, ratio {t_a / t_s:.2f} | NHWC requantized layer: "
                     f"sat16pair {t_ns * 1e3:.2f} ms, counting pass {t_nc * 1e3:.2f} ms, "
                     f"ratio {t_nc / t_ns:.2f} (target 2){inert}")
    print(f"\nconv counting kernel, impl {IMPL}, {fill} data:\n" + "\n".join(lines))
