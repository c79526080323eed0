"""The fastq executor: runs float ONNX models and QDQ int8 models in a chosen arithmetic."""
