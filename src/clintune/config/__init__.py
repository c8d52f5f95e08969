"""A task config: the schema, loading YAML (``extends``, ``--set``, ``${ENV}``) and every check of its keys.

Imports only ``runtime`` and ``errors``; nothing heavy (no torch), so ``clintune validate`` starts at once.
"""
