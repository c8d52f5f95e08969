"""Scoring predictions on labelled data: metrics, thresholds, reports, plots, the model card and the TF-IDF baseline.

Functions of arrays and labelled data, no model run here. Imports ``modeling`` and below; independent of
``training`` and ``inference``.
"""
