"""Prediction: the ``Predictor`` (PyTorch or ONNX Runtime), chunked input sources and output sinks, Ray, ONNX export.

Imports ``modeling`` and below; independent of ``training`` and ``evaluation``.
"""
