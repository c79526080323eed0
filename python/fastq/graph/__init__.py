"""fastq.graph: a small editable IR over an ONNX graph (``ir.Graph``) and the float transforms
run before placement (``transforms.prepare``): identity removal, BatchNormalization folding,
constant folding, shape inference. Every transform preserves the graph's outputs."""

from .ir import Graph, load_model
from .transforms import prepare

__all__ = ["Graph", "load_model", "prepare"]
