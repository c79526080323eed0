"""fastq.export: the QDQ ONNX writer (``qdq.build``) and atomic saving (``save.save_model``)."""

from .qdq import build
from .save import save_model

__all__ = ["build", "save_model"]
