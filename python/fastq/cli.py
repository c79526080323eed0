"""The ``fastq`` command line: ``info`` (CPU features and kernels), ``quantize`` (float ONNX +
calibration .npz -> int8 QDQ ONNX, optional JSON report; AccuracyAware configs take
``--validation VAL.npz --metric top1|MODULE:FUNCTION``), ``saturation`` (per-layer sat16pair vs
exact32 table of a QDQ model, optional JSON and bar chart), ``demo`` (the packaged digits CNN).
Bad input exits with status 2 and one line ``fastq: error: ...`` on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def _info(_args) -> int:
    import fastq
    from fastq import kernels

    feats = fastq.cpu_features()
    print(f"fastq {fastq.__version__}")
    print("cpu features: " + ", ".join(k for k, v in feats.items() if v))
    print("available impls: " + ", ".join(kernels.available_impls()))
    for arith in kernels.ARITHS:
        print(f"default impl for {arith}: {kernels.default_impl(arith)}")
    print(f"threads: {fastq.get_num_threads()}")
    return 0


def npz_samples(path: str, inputs, what: str = "calibration data"):
    """A .npz with one array per input name, first axis = samples. An array with the
    input's rank is sliced [i:i+1] (batch of one); one with rank + 1 gives x[i]."""
    from fastq.errors import DataError
    try:
        z = np.load(path)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {what} {path!r}: {e}") from None
    names = [i.name for i in inputs]
    missing = [n for n in names if n not in z.files]
    if missing:
        raise DataError(f"{path}: no array for input(s) {missing}; it holds {z.files}")
    arrays = {n: z[n] for n in names}
    counts = {n: len(a) for n, a in arrays.items()}
    if len(set(counts.values())) != 1:
        raise DataError(f"{path}: arrays have different sample counts {counts}")
    n = next(iter(counts.values()))

    def gen():
        for i in range(n):
            s = {}
            for vi in inputs:
                a = arrays[vi.name]
                rank = len(vi.type.tensor_type.shape.dim)
                s[vi.name] = a[i:i + 1] if a.ndim == rank else a[i]
            yield s
    return gen()


def _quantize(args) -> int:
    import fastq
    from fastq.graph.ir import load_model

    _check_out(args.output, args.report)
    model = load_model(args.model)
    init = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init]
    data = npz_samples(args.data, inputs)
    kw = {}
    if args.validation is not None:
        kw["validation_data"] = npz_validation(args.validation, inputs)
    if args.metric is not None:
        kw["metric"] = load_metric(args.metric)
    result = fastq.quantize(model, data, args.config, progress=not args.no_progress, **kw)
    result.save(args.output)
    if args.report:
        _atomic_text(args.report, result.report.to_json())
    print(f"wrote {args.output} ({len(result.report.layers)} quantized layers, "
          f"{result.report.samples} samples, statistics "
          f"{result.report.timings.get('statistics', 0):.2f} s)", file=sys.stderr)
    a = result.report.accuracy_aware
    if a:
        print(f"accuracy-aware: {a['metric']} float {a['float_metric']:.6g}, final "
              f"{a['final_metric']:.6g}, drop {a['final_drop']:.6g} "
              f"({'reached' if a['reached'] else 'NOT reached'}: {a['stop_reason']}); "
              f"left in float: {', '.join(a['reverted_layers']) or 'none'}", file=sys.stderr)
    return 0


def npz_validation(path: str, inputs, what: str = "validation data"):
    """``(sample, label)`` pairs from a .npz holding the input arrays (as ``--data``) plus an
    array named ``labels`` with one entry per sample."""
    from fastq.errors import DataError
    try:
        z = np.load(path)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {what} {path!r}: {e}") from None
    if "labels" not in z.files:
        raise DataError(f"{path}: no array named 'labels'; it holds {z.files}")
    labels = z["labels"]
    samples = list(npz_samples(path, inputs, what))
    if len(labels) != len(samples):
        raise DataError(f"{path}: {len(labels)} labels for {len(samples)} samples")
    return list(zip(samples, labels))


def load_metric(spec: str):
    """``top1`` (or another name in fastq.metrics.NAMED) or ``MODULE:FUNCTION``."""
    import importlib
    from fastq import metrics
    from fastq.errors import ConfigError
    if ":" not in spec:
        if spec not in metrics.NAMED:
            raise ConfigError(f"--metric: unknown metric {spec!r}; give one of "
                              f"{sorted(metrics.NAMED)} or MODULE:FUNCTION")
        return metrics.NAMED[spec]
    mod, _, fn = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"--metric: cannot load {spec!r}: {e}") from None
    return obj


def _check_out(*paths) -> None:
    """Fails before any work when an output's directory is missing (as ``save_model`` would
    after it), so no run is wasted and no output is written without the others."""
    from fastq.errors import FastqError
    for path in paths:
        if path is None:
            continue
        d = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(d):
            raise FastqError(f"cannot write {path!r}: directory {d!r} does not exist")


def _atomic_text(path: str, text: str) -> None:
    import tempfile
    from fastq.errors import FastqError
    d = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".fastq-")
    except OSError as e:
        raise FastqError(f"cannot write {path!r}: {e.strerror or e}") from None
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _saturation(args) -> int:
    import fastq
    from fastq.runtime.session import load_any
    from fastq.saturation_result import require_matplotlib

    if args.plot:
        require_matplotlib()            # fail before the analysis, not after it
    _check_out(args.json, args.plot)
    model = load_any(args.model)
    init = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init]
    kw = {}
    if args.metric is not None:       # (sample, label) pairs from the same .npz
        data = npz_validation(args.data, inputs, "data")
        kw["metric"] = load_metric(args.metric)
    else:
        data = npz_samples(args.data, inputs, "data")
    a = fastq.analyze_saturation(model, data, conv_pairing=args.pairing, limit=args.limit, **kw)
    print(a.to_table(), end="")
    if args.json:
        _atomic_text(args.json, a.to_json())
    if args.plot:
        a.save_plot(args.plot)
    return 0


def _demo(args) -> int:
    from fastq import demo
    demo.run(args.output, progress=not args.no_progress)
    return 0


def _threads(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"--threads must be at least 1, got {n}")
    return n


def _threads_arg(p) -> None:
    p.add_argument("--threads", type=_threads, metavar="N",
                   help="threads for calibration and the int8 kernels (default: all cores)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastq", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="print CPU features and the kernels this CPU can run")
    p.set_defaults(func=_info)
    p = sub.add_parser("quantize", help="quantize a float ONNX model to int8 QDQ ONNX")
    p.add_argument("model", help="float ONNX model")
    p.add_argument("-o", "--output", required=True, help="where to write the int8 model")
    p.add_argument("--data", required=True,
                   help=".npz with one array per input name, first axis = samples")
    p.add_argument("--config", help="POT-style JSON config (default: DefaultQuantization)")
    p.add_argument("--report", help="write the JSON report here")
    p.add_argument("--validation", help="AccuracyAwareQuantization: .npz with the input "
                   "arrays (as --data) and an array 'labels'")
    p.add_argument("--metric", help="AccuracyAwareQuantization: top1, neg_mse or "
                   "MODULE:FUNCTION (metric(outputs, annotation) -> float, higher is better)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _threads_arg(p)
    p.set_defaults(func=_quantize)
    p = sub.add_parser("saturation", help="per int8 layer of a QDQ model: what AVX2 "
                       "(sat16pair) saturation changes against VNNI (exact32)")
    p.add_argument("model", help="quantized (QDQ) ONNX model")
    p.add_argument("--data", required=True,
                   help=".npz with one array per input name, first axis = samples")
    p.add_argument("--json", help="write the full analysis as JSON here")
    p.add_argument("--plot", help="draw a bar chart per layer here (needs matplotlib)")
    p.add_argument("--pairing", default="per_tap", choices=["per_tap", "flat"],
                   help="sat16pair pairing of convs with odd channel counts (default per_tap)")
    p.add_argument("--limit", type=int, help="analyze only the first LIMIT samples")
    p.add_argument("--metric", help="also compare a metric (top1, neg_mse or MODULE:FUNCTION) "
                   "on both arithmetics; DATA.npz then holds an array 'labels'")
    _threads_arg(p)
    p.set_defaults(func=_saturation)
    p = sub.add_parser("demo", help="quantize the packaged digits CNN and compare accuracy")
    p.add_argument("-o", "--output", help="where to write the int8 model (default: temp dir)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    if getattr(args, "threads", None) is not None:
        import fastq
        fastq.set_num_threads(args.threads)
    try:
        return args.func(args)
    except Exception as e:  # one-line error, non-zero exit
        from fastq.errors import FastqError

        if isinstance(e, FastqError):
            msg = " ".join(str(e).split())
            print(f"fastq: error: {msg}", file=sys.stderr)
            return 2
        raise

if __name__ == "__main__":
    sys.exit(main())
