"""The fastq executor: runs float ONNX models and QDQ int8 models in a chosen arithmetic."""

from .registry import supported_ops
from .session import InferenceSession, NodeArg

__all__ = ["InferenceSession", "NodeArg", "supported_ops"]
