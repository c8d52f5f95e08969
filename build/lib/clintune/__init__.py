"""clintune: config-driven fine-tuning of BERT-family models on clinical text."""

__version__ = "0.1.0"
