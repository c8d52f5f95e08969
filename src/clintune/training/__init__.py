"""Training with the Hugging Face Trainer (weighted losses, checkpoints, progress) and experiment tracking on MLflow.

Imports ``modeling`` and below; independent of ``inference`` and ``evaluation``.
"""
