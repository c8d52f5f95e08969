#!/usr/bin/env python3
"""Build clintune's embedded tiny BERT (models/tiny-bert) deterministically.

A real BERT architecture, just small: 2 layers, width 32, 2 heads, and an
uncased WordPiece vocabulary made of the words in the synthetic sample data
plus every single character (so any text tokenises without [UNK] floods).
The NER validation and test files are left out of the vocabulary: their
disease names are meant to be unseen, so they reach the model as word pieces.
It is saved with ``save_pretrained`` and loaded by clintune through the same
``from_pretrained`` path as Bio_ClinicalBERT. Random weights, seeded: it is a
smoke-test encoder, not a pretrained one.

    python scripts/build_tiny_model.py [--output models/tiny-bert]
"""

from __future__ import annotations

import argparse
import re
import string
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SEED = 0
HELD_OUT = ("ner/validation.conll", "ner/test.conll")


def build_vocab(data_dir: Path, max_words: int = 900) -> list[str]:
    """Special tokens, characters, ##characters, then frequent sample-data words (sorted, stable)."""
    counts: Counter[str] = Counter()
    for path in sorted(data_dir.rglob("*")):
        if path.suffix in (".csv", ".jsonl", ".conll") and path.relative_to(data_dir).as_posix() not in HELD_OUT:
            counts.update(re.findall(r"[a-z0-9]+", path.read_text(encoding="utf-8").lower()))
    characters = list(string.ascii_lowercase + string.digits + string.punctuation)
    words = [w for w, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if len(w) > 1][:max_words]
    return SPECIAL + characters + ["##" + c for c in string.ascii_lowercase + string.digits] + sorted(words)


def build(output: Path) -> None:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = build_vocab(ROOT / "data")
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    torch.manual_seed(SEED)
    model = BertModel(config)
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    (output / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    print(f"tiny BERT ({sum(p.numel() for p in model.parameters()):,} parameters, vocab {len(vocab)}) written to {output}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "models" / "tiny-bert")
    build(parser.parse_args().output)


if __name__ == "__main__":
    main()
