"""Test models built with onnx.helper (random weights, seeded): a ResNet-style CNN with residual
Adds and a Concat, a depthwise MobileNet-style CNN, a BERT-style encoder block. Each builder
returns (ModelProto, make_data(n, seed) -> list of sample dicts)."""
