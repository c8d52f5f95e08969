"""The model: task kinds (``tasks``), heads, loading from the Hub or a folder, the model folder, the decision rule.

Imports ``data``, ``config``, ``runtime`` and ``errors``; the layers above train, predict and score with it.
"""
