"""The fastq executor: runs float ONNX models and QDQ int8 models in a chosen arithmetic.

``session.py``  InferenceSession (ORT-shaped API, feed checks, run_with_intermediates)
``graph.py``    CompiledGraph: topological order, GRAPH_REWRITES stages, constant folding,
                prepare hooks, lifetime plan, execution (also of If/Loop/Scan bodies)
``registry.py`` the op contract (``@register``; ``context=True`` / ``prepare=`` extensions)
``rewrite.py``  helpers for rewrite stages (QDQ int8 layer matching)
``ops/``        one module per op family; every module is imported and registers itself
"""

from .registry import supported_ops
from .session import InferenceSession, NodeArg

__all__ = ["InferenceSession", "NodeArg", "supported_ops"]
