"""ONNX in and out: the one package that imports `onnx` (export, model reading, import)."""
