"""fastq: post-training int8 quantization for ONNX, with bit-exact emulation of each CPU
ISA's int8 arithmetic (exact32 as VNNI computes, sat16pair as AVX2 vpmaddubsw computes).

The compiled core is ``fastq._core``; this package re-exports the public API.
"""

from . import _core, config, kernels, metrics, stats
from .errors import (ConfigError, DataError, FastqError, IsaError, KernelError, ModelError,
                     UnsupportedOpError)
from .runtime import InferenceSession, supported_ops
from .quantize import QuantizationResult, quantize
from .saturation import analyze_saturation
from .saturation_result import SaturationAnalysis

__version__ = "0.1.0"


def cpu_features() -> dict:
    """The CPU flags fastq uses, each True only if the CPU has it and the OS enables it."""
    return dict(_core.cpu_features())


def set_num_threads(n: int) -> None:
    """Threads the kernels may use (n <= 0: all cores), OpenBLAS's inside a session's run
    included. Results never depend on it."""
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    return int(_core.get_num_threads())


__all__ = [
    "ConfigError", "DataError", "FastqError", "InferenceSession", "IsaError", "KernelError",
    "ModelError", "QuantizationResult", "SaturationAnalysis", "UnsupportedOpError",
    "analyze_saturation", "config", "cpu_features", "get_num_threads", "kernels", "metrics",
    "quantize", "set_num_threads", "stats", "supported_ops",
]
