"""Labelled data: readers of tables and annotated documents, label encoding, checks, splits, leakage, tokenisation.

Imports ``config``, ``runtime`` and ``errors``; knows nothing of models. No message here quotes a note.
"""
