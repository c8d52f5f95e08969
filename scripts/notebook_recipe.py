"""The notebook recipe that clintune replaces, written the way the notebooks write it.

Used by the benchmark scripts as the side-by-side reference, never by clintune:
- sequence classification: sklearn-style label ids, every text padded to
  ``max_length`` (256/512), plain cross-entropy (no class weights), learning
  rate 2e-5, no warmup, the model after the last epoch (no best-checkpoint
  selection), no text preprocessing;
- NER: words padded to 128 subwords, first subword labelled (the Hugging Face
  tutorial alignment), same training settings;
- inference: ``transformers.pipeline(...)`` called once per text.

``pad_to_max_length=False`` keeps every setting but pads per batch instead:
the attention mask makes padded positions inert, so the model learns the same
function (up to float rounding), at a fraction of the cost. The quality
benchmark uses it to fit in its time; the speed benchmark measures the real
padding.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

NOTEBOOK_LEARNING_RATE = 2e-5


class ListDataset:
    def __init__(self, features: list[dict[str, Any]]) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.features[index]


def _trainer(
    model: Any, tokenizer: Any, features: list[dict[str, Any]], output: Path, epochs: float, batch_size: int, collator: Any,
) -> Any:
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(
        output_dir=str(output),
        num_train_epochs=epochs,
        learning_rate=NOTEBOOK_LEARNING_RATE,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        seed=42,
        use_cpu=True,
        disable_tqdm=True,
        logging_strategy="no",
        dataloader_pin_memory=False,
    )
    return Trainer(model=model, args=args, train_dataset=ListDataset(features), data_collator=collator, processing_class=tokenizer)


def train_classifier(
    model_path: str, train_texts: list[str], train_labels: list[str], max_length: int, epochs: float,
    batch_size: int, output: Path, pad_to_max_length: bool = True,
) -> dict[str, Any]:
    """Fine-tune as the notebooks do; returns the trained model, its tokenizer, classes and timing."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, set_seed

    set_seed(42)
    classes = sorted(set(train_labels))
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    padding = "max_length" if pad_to_max_length else False
    encoded = tokenizer(train_texts, truncation=True, max_length=max_length, padding=padding)
    label_ids = [classes.index(label) for label in train_labels]
    features = [{"input_ids": ids, "attention_mask": mask, "labels": label}
                for ids, mask, label in zip(encoded["input_ids"], encoded["attention_mask"], label_ids)]
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=len(classes))
    trainer = _trainer(model, tokenizer, features, output, epochs, batch_size, DataCollatorWithPadding(tokenizer))
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    return {"model": trainer.model, "tokenizer": tokenizer, "classes": classes, "train_seconds": seconds,
            "train_samples_per_second": len(features) * epochs / seconds}


def classify(
    model: Any, tokenizer: Any, texts: list[str], max_length: int, batch_size: int = 32, pad_to_max_length: bool = True,
) -> np.ndarray:
    """Predicted class ids, batched in input order (the notebooks' evaluation loop)."""
    import torch

    model.eval()
    predictions = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size], truncation=True, max_length=max_length,
                              padding="max_length" if pad_to_max_length else True, return_tensors="pt")
            predictions.append(model(**batch).logits.argmax(-1).numpy())
    return np.concatenate(predictions)


def align_first_subword(word_ids: list[int | None], word_labels: list[int]) -> list[int]:
    labels, previous = [], None
    for word_id in word_ids:
        labels.append(-100 if word_id is None or word_id == previous else word_labels[word_id])
        previous = word_id
    return labels


def train_tagger(
    model_path: str, sentences: list[list[str]], tags: list[list[str]], max_length: int, epochs: float,
    batch_size: int, output: Path, pad_to_max_length: bool = True,
) -> dict[str, Any]:
    """Token classification the notebook way; returns model, tokenizer, tag list and timing."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification, set_seed

    set_seed(42)
    classes = sorted({t for sentence in tags for t in sentence})
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    padding = "max_length" if pad_to_max_length else False
    encoded = tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=max_length, padding=padding)
    features = []
    for i, sentence_tags in enumerate(tags):
        labels = align_first_subword(encoded.word_ids(i), [classes.index(t) for t in sentence_tags])
        features.append({"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i], "labels": labels})
    model = AutoModelForTokenClassification.from_pretrained(model_path, num_labels=len(classes))
    trainer = _trainer(model, tokenizer, features, output, epochs, batch_size, DataCollatorForTokenClassification(tokenizer))
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    return {"model": trainer.model, "tokenizer": tokenizer, "classes": classes, "train_seconds": seconds,
            "train_samples_per_second": len(features) * epochs / seconds}


def tag(
    model: Any, tokenizer: Any, sentences: list[list[str]], classes: list[str], max_length: int, batch_size: int = 32,
) -> list[list[str]]:
    """Word tags read from first subwords (words cut off by truncation get ``O``)."""
    import torch

    model.eval()
    predicted = []
    with torch.no_grad():
        for start in range(0, len(sentences), batch_size):
            chunk = sentences[start : start + batch_size]
            batch = tokenizer(chunk, is_split_into_words=True, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            ids = model(**batch).logits.argmax(-1).numpy()
            for row, words in enumerate(chunk):
                word_tags, previous = ["O"] * len(words), None
                for position, word_id in enumerate(batch.word_ids(row)):
                    if word_id is not None and word_id != previous:
                        word_tags[word_id] = classes[ids[row, position]]
                    previous = word_id
                predicted.append(word_tags)
    return predicted


def load_pipeline(model_folder: str) -> Any:
    """The notebooks' ``pipeline("text-classification")`` on CPU."""
    from transformers import pipeline

    return pipeline("text-classification", model=model_folder, device="cpu")


def pipeline_loop(classifier: Any, texts: list[str], max_length: int) -> list[str]:
    """One ``pipeline()`` call per text, as the notebooks predict."""
    return [classifier(text, truncation=True, max_length=max_length)[0]["label"] for text in texts]
