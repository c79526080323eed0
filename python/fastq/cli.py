"""The ``fastq`` command line. ``fastq info`` prints the CPU features and kernels."""

from __future__ import annotations

import argparse
import sys


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastq", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="print CPU features and the kernels this CPU can run")
    p.set_defaults(func=_info)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Exception as e:  # one-line error, non-zero exit
        from fastq.errors import FastqError

        if isinstance(e, FastqError):
            print(f"fastq: error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
