"""``fastq.analyze_saturation``: what AVX2's ``vpmaddubsw`` (``sat16pair``) does to an int8 QDQ
model, per int8 layer, measured on any host against ``exact32`` (VNNI).

Contract: the model runs ONCE per sample in the ``baseline`` arithmetic, in a session whose
fused int8 layers run the C++ counting kernels (both arithmetics' sums and the int16-limit
pair counts in one pass, reduced to the layer's figures in C++) on their quantized input and
return their baseline output from the same pass's base sums; so every layer is measured on
the inputs the baseline gives it (its figures isolate that layer) and no layer is computed
twice. Requantized 2-D convs -- nearly every layer of a QDQ CNN -- run in the plain int8
path's NHWC u8 layout (``qconv_requant_satstats_nhwc``, row blocks reduced and requantized in
cache); other layers through ``conv_u8s8_satstats`` / ``gemm_u8s8_satstats``. A second run
per sample in the ``target`` arithmetic gives the whole-model output difference (and the
metric difference for labelled data); ``whole_model=False`` skips it. A layer whose weights
cannot bring any pair to an int16 limit whatever its u8 input (``packed.can_saturate`` false:
every same-sign weight pair sums to at most 128 in magnitude, as in every per-tap depthwise
conv) has equal sums in both arithmetics by construction: it runs its plain kernel and adds
only its output count -- no saturation, no change, SQNR +inf -- at no cost over a plain run.
A sample on which no layer changed a single accumulator needs no target run either: every
int8 layer computed equal sums in both arithmetics on equal inputs, so by induction over the
graph the target run's outputs are the baseline run's. Its target run is skipped (counted in
``SaturationAnalysis.target_runs_skipped``) unless the model has int8 work the counters do not
see (ConvInteger, QLinearConv, MatMulInteger, QLinearMatMul nodes, subgraphs).

Samples run on ``fastq.get_num_threads()`` threads (runtime/parallel.py): each sample's
figures add up in that thread's own partial arrays (``_Partials``), which join the layers'
totals in sample order, so every figure is the same on any thread count.
"""

from __future__ import annotations

import itertools
import numbers
import threading
import time
from typing import Any, Iterable, List, Optional

import numpy as np
import onnx

from . import _core, kernels
from .data import input_specs, iter_samples
from .errors import ConfigError, DataError, ModelError
from .runtime.parallel import ordered_map
from .runtime.qdq_layers import memory_order
from .saturation_result import LayerSaturation, OutputDiff, SaturationAnalysis

ARITHS = ("exact32", "sat16pair")


class _Counter:
    """One fused int8 layer of the analysis' own session, installed as its step kernel: each
    call counts saturation on the layer's quantized input (both arithmetics, one C++ pass)
    and returns the layer's output in the baseline arithmetic, formed from the base sums of
    that same pass (requantized, or the float epilogue) instead of a second conv/GEMM. The
    first call checks that output against the layer's own kernel bit for bit; on any
    difference the counter keeps running the layer's kernel for outputs (never wrong, only
    slower). A requantized 2-D conv runs as the plain layer does -- NHWC u8 in, the base
    arithmetic's requantized NHWC u8 out (``_core.qconv_requant_satstats_nhwc``) -- and its
    figures add up in C++ (``totals`` / ``ftotals``), so a call costs one C++ call."""

    def __init__(self, step, op_type: str, impl: str, base_is_exact: bool):
        self.layer = lay = step.kernel
        self.orig = step.kernel
        self.impl = impl
        self.base_is_exact = base_is_exact
        self.fast, self.checked = True, False
        node = step.node
        self.conv = node.op_type == "QdqConv"
        if self.conv:
            oc, cg, kh, kw = lay.packed.shape
            k, ppo, n_out = kh * kw * cg, kernels.conv_pairs_per_output(lay.packed), oc
        else:
            k, n_out = lay.k, lay.n
            ppo = (k + 1) // 2
        colsum = lay.packed.colsum.astype(np.int64)
        # the layer's real-valued output y = (acc - zc[c]) * scale[c] + bias[c], in float64
        self.scale = np.ascontiguousarray(np.float64(lay.scale) * lay.ws.astype(np.float64))
        # its float epilogue as the executor computes it (float32, zp of the u8 input)
        self.zc_epi = np.ascontiguousarray(np.int64(lay.zp_u) * colsum)
        self.s32 = np.ascontiguousarray(np.float32(lay.scale) * lay.ws, np.float32)
        if lay.requant:             # int32 bias folded into the zero-point term
            self.zc = np.ascontiguousarray(lay.zcomp, np.int64)
            self.bias = None
        else:
            self.zc = self.zc_epi
            self.bias = None if lay.bias is None else np.ascontiguousarray(lay.bias, np.float64)
        self._rec = LayerSaturation(name=node.name, op_type=op_type, input=node.inputs[0], k=k,
                                    pairs_per_output=ppo, channels=n_out,
                                    channel_counts=np.zeros(n_out, np.int64))
        self.nhwc = self.conv and lay.requant and lay.nd == 2
        self.inert = not lay.packed.can_saturate   # both arithmetics agree on any input
        # [outputs, changed, max_abs, sum_abs, counts...], [signal, noise]: the layer's totals
        # (views into its _Partials' arrays once layer_counters groups the layers)
        self.totals = np.zeros(4 + n_out, np.int64)
        self.ftotals = np.zeros(2, np.float64)
        self._group: Optional["_Partials"] = None
        self._at = (0, 0)                  # offsets in the group's int and float arrays

    def _part(self) -> tuple:
        """Where this call's figures go: the running sample's partial on this thread (between
        ``_Partials.begin`` and ``end``), else (a caller running the session itself) the
        totals directly."""
        part = getattr(self._group._tls, "part", None) if self._group is not None else None
        if part is None:
            return self.totals, self.ftotals
        o, f = self._at
        return part[0][o:o + self.totals.size], part[1][f:f + 2]

    @property
    def rec(self) -> LayerSaturation:
        """The layer's figures so far."""
        r = self._rec
        t, f = self.totals, self.ftotals
        r.outputs = int(t[0])
        r.pairs = r.outputs * r.pairs_per_output
        r.channel_counts = t[4:].copy()
        r.saturated_pairs = int(r.channel_counts.sum())
        r.changed_outputs, r.max_abs_error = int(t[1]), int(t[2])
        r.sum_abs_error, r.signal, r.noise = float(t[3]), float(f[0]), float(f[1])
        return r

    def count_nhwc(self, x: np.ndarray) -> np.ndarray:
        """Adds this input's figures to the thread's partial; returns the base arithmetic's
        requantized output as the plain layer does (an NCHW view of an NHWC buffer)."""
        lay = self.layer
        st, pd, dl = lay.geometry(x)
        if x.dtype != lay.xdt:
            lay.u8(x)  # raises the dtype error
        buf, nhwc = memory_order(x)
        if lay.xdt == np.int8:
            buf = buf.view(np.uint8) ^ np.uint8(0x80)
        y = _core.qconv_requant_satstats_nhwc(
            buf, lay.packed, st, pd, dl, lay.zp_u, "nhwc" if nhwc else "nchw", self.impl,
            self.base_is_exact, self.scale, lay.zcomp, lay.mult, lay.yz, lay.ysigned,
            *self._part())
        return y.transpose(0, 3, 1, 2)

    def count(self, x: np.ndarray, want_base: bool):
        """Adds this input's figures to the thread's partial; returns the base sums (or
        None)."""
        lay = self.layer
        epi = (self.impl, self.base_is_exact, self.zc, self.scale, self.bias, want_base)
        if self.conv:
            st, pd, dl = lay.geometry(x)
            x4 = x[:, :, None, :] if lay.nd == 1 else x
            counts, e, acc = _core.conv_u8s8_satstats(lay.u8(x4), lay.packed, st, pd, dl,
                                                      lay.zp_u, *epi)
            size = _core_out_size(x4, lay, st, pd, dl)
        else:
            if x.ndim < 1 or x.shape[-1] != lay.k:
                raise ModelError(f"layer {self.rec.name!r}: input has shape {x.shape}; the "
                                 f"weights need K={lay.k} in the last dimension")
            a2 = lay.u8(x.reshape(-1, lay.k))
            counts, e, acc = _core.gemm_u8s8_satstats(a2, lay.packed, *epi)
            size = a2.shape[0] * lay.n
        t, f = self._part()
        t[0] += size
        t[1] += int(e["changed"])
        t[2] = max(int(t[2]), int(e["max_abs"]))
        t[3] += int(e["sum_abs"])
        t[4:] += counts
        f[0] += float(e["signal"])
        f[1] += float(e["noise"])
        return acc

    def output(self, acc: np.ndarray, x: np.ndarray, args) -> np.ndarray:
        """What the layer's kernel returns, from its base sums (mirrors qdq_layers' layers)."""
        lay = self.layer
        b = args[5] if len(args) > 5 else None
        if lay.requant:
            y = lay.requantize(acc, 1)
            return (y[:, :, 0, :] if lay.nd == 1 else y) if self.conv else \
                y.reshape(x.shape[:-1] + (lay.n,))
        y = _core.acc_epilogue(acc, 1, self.zc_epi, self.s32, lay.bias)
        if self.conv:
            if lay.bias is None and b is not None:
                y += np.asarray(b, np.float32).reshape((1, -1) + (1,) * lay.nd)
            return y[:, :, 0, :] if lay.nd == 1 else y
        y = y.reshape(x.shape[:-1] + (lay.n,))
        if lay.late is not None:
            y += lay.late
        elif lay.bias is None and b is not None:
            y += np.asarray(b, np.float32) * lay.beta
        return y

    def __call__(self, *args):
        x = args[0]
        if self.inert:
            y = self.orig(*args)
            self._part()[0][0] += y.size
            return y
        if self.nhwc:
            y = self.count_nhwc(x)
            if not self.fast:
                return self.orig(*args)
        elif not self.fast:
            self.count(x, False)
            return self.orig(*args)
        else:
            y = self.output(self.count(x, True), x, args)
        if not self.checked:
            self.checked = True
            ref = self.orig(*args)
            if not (isinstance(ref, np.ndarray) and ref.dtype == y.dtype and
                    ref.shape == y.shape and np.array_equal(ref, y)):
                self.fast = False
                return ref
        return y


def _core_out_size(x4: np.ndarray, lay, st, pd, dl) -> int:
    """Outputs of a conv layer for this input: N * OC * OH * OW."""
    n, _, h, w = x4.shape
    kh, kw = lay.packed.shape[2:]
    oh = (h + pd[0] + pd[2] - dl[0] * (kh - 1) - 1) // st[0] + 1
    ow = (w + pd[1] + pd[3] - dl[1] * (kw - 1) - 1) // st[1] + 1
    return int(n * lay.oc * oh * ow)


def _session(model, arith: str, impl: str, conv_pairing: str):
    from .runtime import InferenceSession
    return InferenceSession(model, arith=arith, impl=impl, conv_pairing=conv_pairing)


class _Partials:
    """The figures of a session's counters, one int64 and one float64 array with a slice per
    layer (each counter's ``totals`` / ``ftotals`` are views into them). A sample run on any
    thread between ``begin`` and ``end`` adds into a fresh pair of arrays of that layout;
    ``merge`` adds one sample's pair to the totals -- in sample order, so the float sums are
    the same on any thread count -- with the max-abs-error columns taking the maximum."""

    def __init__(self, counters: List[_Counter]):
        ni = sum(c.totals.size for c in counters)
        self.totals = np.zeros(ni, np.int64)
        self.ftotals = np.zeros(2 * len(counters), np.float64)
        self._tls = threading.local()
        o, maxes = 0, []
        for k, c in enumerate(counters):
            n = c.totals.size
            c.totals, c.ftotals = self.totals[o:o + n], self.ftotals[2 * k:2 * k + 2]
            c._group, c._at = self, (o, 2 * k)
            maxes.append(o + 2)
            o += n
        self._max = np.array(maxes, np.intp)
        self._changed = self._max - 1      # each layer's changed-outputs column

    def changed_any(self, part: tuple) -> bool:
        """Whether a layer changed an accumulator in this sample's partial."""
        return bool(part[0][self._changed].any())

    def begin(self) -> None:
        self._tls.part = (np.zeros_like(self.totals), np.zeros_like(self.ftotals))

    def end(self) -> tuple:
        part, self._tls.part = self._tls.part, None
        return part

    def merge(self, part: tuple) -> None:
        t, f = part
        m = np.maximum(self.totals[self._max], t[self._max])
        self.totals += t
        self.totals[self._max] = m
        self.ftotals += f


def layer_counters(sess, impl: str = "auto", base_is_exact: bool = True) -> List[_Counter]:
    """Install a counter as the kernel of each fused int8 layer of ``sess`` (an
    InferenceSession with an arith, owned by the caller: its layers count from now on); in
    execution order. ModelError when there is none."""
    ops = {r.name: r.op_type for r in sess.int8_layers()}
    steps = [st for st in sess._graph.steps
             if st.node.domain == "fastq" and st.node.op_type in ("QdqConv", "QdqLinear")
             and hasattr(st.kernel, "packed")]
    if not steps:
        unfused = sess.unfused_qdq_layers()
        why = ("; QDQ layers left in float: " + "; ".join(f"{u.name} ({u.op_type}): {u.reason}"
                                                           for u in unfused)) if unfused else \
            " (no DequantizeLinear -> Conv/MatMul/Gemm <- DequantizeLinear(constant weight))"
        raise ModelError("the model has no int8 layers to analyze: saturation analysis needs "
                         "a quantized QDQ model" + why)
    impl = kernels._satcount_impl("ref" if impl == "ref" else "auto")
    counters = []
    for st in steps:
        c = _Counter(st, ops.get(st.node.name, st.node.op_type), impl, base_is_exact)
        st.kernel = c          # this session is the analysis' own: its layers count
        counters.append(c)
    _Partials(counters)
    return counters


# int8 ops that run in the session's arith but are not fused layers the counters replace
_UNCOUNTED_INT8 = frozenset({"ConvInteger", "QLinearConv", "MatMulInteger", "QLinearMatMul"})


def _counters_see_all_int8(proto, sess, counters: List[_Counter]) -> bool:
    """Whether every computation that depends on the arith is a counted layer: then a sample
    with no changed accumulator has equal outputs in both arithmetics."""
    for n in proto.graph.node:
        if n.domain in ("", "ai.onnx") and n.op_type in _UNCOUNTED_INT8:
            return False
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for a in n.attribute):
            return False
    counted = {id(c) for c in counters}
    return all(id(st.kernel) in counted for st in sess._graph.steps
               if st.node.domain == "fastq" and st.node.op_type in ("QdqConv", "QdqLinear"))


def _fused(sess) -> set:
    return {(r.name, r.op_type, r.fused_as, r.output) for r in sess.int8_layers()}


def _model_inputs(proto) -> list:
    init = {t.name for t in proto.graph.initializer}
    return [vi for vi in proto.graph.input if vi.name not in init]


def analyze_saturation(model: Any, data: Iterable, *, baseline: str = "exact32",
                       target: str = "sat16pair", metric: Any = None,
                       conv_pairing: str = "per_tap", impl: str = "auto",
                       limit: Optional[int] = None, whole_model: bool = True
                       ) -> SaturationAnalysis:
    """Measure, per int8 layer of the QDQ ``model`` (path, bytes or ModelProto), what running
    it in ``target`` arithmetic changes against ``baseline`` (default: AVX2 ``sat16pair``
    against VNNI ``exact32``).

    ``data``: an iterable of samples as ``fastq.quantize`` takes calibration data (a dict
    input-name -> array, a tuple in input order, or one array for a one-input model); with a
    ``metric`` (callable ``metric(outputs, annotation) -> float`` or a ``fastq.metrics``
    object/name), ``(inputs, annotation)`` pairs. ``limit``: use the first ``limit`` samples.
    ``conv_pairing``: how ``sat16pair`` pairs products of convs with odd channel counts
    (``per_tap`` or ``flat``). ``whole_model=False`` skips the target run (no output/metric
    difference; per-layer figures only). ``impl``: the kernels of the layers that do not
    count (``auto``, ``ref``, ``avx2``, ``avx512vnni``, as ``InferenceSession`` takes it); the
    counting kernels run the reference with ``ref``, else the fastest this CPU runs.

    Returns a ``SaturationAnalysis``: ``.layers`` sorted by harm (lowest layer-output SQNR
    first), ``.outputs`` (per model output), ``.metric``, ``to_dict/to_json/to_markdown/
    to_table``. Raises ModelError for a model without int8 layers, DataError naming the
    sample for bad data, ConfigError for bad options.
    """
    from .runtime.session import load_any
    for what, v in (("baseline", baseline), ("target", target)):
        if v not in ARITHS:
            raise ConfigError(f"{what}: unknown arith {v!r}; valid: {', '.join(ARITHS)}")
    if baseline == target:
        raise ConfigError(f"baseline and target are both {baseline!r}; give two different "
                          f"arithmetics ({', '.join(ARITHS)})")
    if conv_pairing not in kernels.PAIRINGS:
        raise ConfigError(f"conv_pairing: unknown value {conv_pairing!r}; valid: "
                          f"{', '.join(kernels.PAIRINGS)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, numbers.Integral)
                              or limit < 1):
        raise ConfigError(f"limit must be a positive number of samples, got {limit!r}")
    if not isinstance(whole_model, (bool, np.bool_)):
        raise ConfigError(f"whole_model must be True or False, got {whole_model!r}")
    met = None
    if metric is not None and not whole_model:
        raise ConfigError("metric needs the target run: drop whole_model=False")
    if metric is not None:
        from .metrics import as_metric
        met = as_metric(metric)
    proto = load_any(model)
    t0 = time.perf_counter()
    sess = _session(proto, baseline, impl, conv_pairing)
    counters = layer_counters(sess, impl, baseline == "exact32")
    sess_t = _session(proto, target, impl, conv_pairing) if whole_model else None
    # (and the target session fused the same layers: an unfused one would run in float)
    reuse = sess_t is not None and _counters_see_all_int8(proto, sess, counters) and \
        _fused(sess) == _fused(sess_t)
    t_setup = time.perf_counter() - t0
    out_names = [o.name for o in sess.get_outputs()]
    specs = input_specs(_model_inputs(proto))
    outputs = {n: OutputDiff(n) for n in out_names}
    m_base: List[float] = []
    m_target: List[float] = []
    t_base = t_target = 0.0
    n = 0

    def one(item):
        """One sample on this thread: the counting baseline run (figures into this thread's
        partials), then the target run."""
        i, feeds, annotation = item
        t1 = time.perf_counter()
        partials.begin()
        try:
            got = sess.run(None, feeds)                     # the layers count here
        except DataError as e:
            raise DataError(f"sample {i}: {e}") from e
        finally:
            part = partials.end()
        t2 = time.perf_counter()
        if sess_t is None:
            return i, annotation, got, None, part, t2 - t1, 0.0
        if reuse and not partials.changed_any(part):
            return i, annotation, got, got, part, t2 - t1, None   # target run = baseline run
        try:
            ys = sess_t.run(None, feeds)
        except DataError as e:
            raise DataError(f"sample {i}: {e}") from e
        return i, annotation, got, ys, part, t2 - t1, time.perf_counter() - t2

    samples = iter_samples(data, specs, labelled=met is not None, what="sample")
    if limit is not None:
        samples = itertools.islice(samples, int(limit))
    # samples on fastq's threads (OpenBLAS held at one: its threads would only contend),
    # partial figures merged in sample order
    partials = counters[0]._group
    skipped = 0
    for i, annotation, got, ys, part, dt_base, dt_target in ordered_map(one, samples):
        partials.merge(part)
        t_base += dt_base
        if dt_target is None:
            skipped += 1
        else:
            t_target += dt_target
        if ys is not None:
            for name, y_base, y in zip(out_names, got, ys):
                outputs[name].add(y_base, y)
            if met is not None:
                m_base.append(met.per_sample(list(got), annotation, i))
                m_target.append(met.per_sample(list(ys), annotation, i))
        n += 1
    if n == 0:
        raise DataError("the dataset is empty: saturation analysis needs at least one sample")
    metric_res = None
    if met is not None and sess_t is not None:
        b, t = met.aggregate(np.asarray(m_base)), met.aggregate(np.asarray(m_target))
        metric_res = {"name": met.name, "baseline": b, "target": t,
                      "drop": met.drop(b, t, relative=False),
                      "higher_is_better": met.higher_is_better}
    order = {c.rec.name: k for k, c in enumerate(counters)}
    layers = sorted((c.rec for c in counters), key=lambda r: r.harm_key(order[r.name]))
    return SaturationAnalysis(
        baseline=baseline, target=target, conv_pairing=conv_pairing, samples=n,
        layers=layers, outputs=outputs if sess_t is not None else {}, metric=metric_res,
        unfused=[{"name": u.name, "op_type": u.op_type, "reason": u.reason}
                 for u in sess.unfused_qdq_layers()],
        timings={"setup": t_setup, "baseline_runs_with_counting": t_base,
                 "target_runs": t_target},
        target_runs_skipped=skipped)
