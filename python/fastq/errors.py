"""fastq's exception hierarchy.

Every error fastq raises on bad input is a ``FastqError``. The subclasses also derive from
``ValueError`` so callers that already catch ValueError keep working. Messages name the
thing at fault: the ONNX node, the config key path, the sample index, the kernel argument.
"""


class FastqError(Exception):
    """Root of every error fastq raises on purpose."""


class ConfigError(FastqError, ValueError):
    """A configuration key or value is unknown or invalid; the message names the key path."""


class ModelError(FastqError, ValueError):
    """The ONNX model is malformed or cannot be handled; the message names the node."""


class UnsupportedOpError(ModelError):
    """The model uses an operator (or opset version of it) fastq does not implement."""


class DataError(FastqError, ValueError):
    """Input data (a feed or a calibration sample) has the wrong shape, dtype or NaN/Inf."""


class KernelError(FastqError, ValueError):
    """A kernel was called with arguments it cannot take (dtype, rank, shape, arith, impl)."""


class IsaError(KernelError):
    """The requested impl cannot run on this CPU; the message names the missing feature."""
