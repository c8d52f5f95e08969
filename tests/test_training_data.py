"""Training data on ``datasets``: Arrow features equal the tokenizer's own output, the Arrow cache is reused,
kept out of home folders, and fails cleanly; the streamed leakage check equals scikit-learn's TF-IDF."""

from __future__ import annotations

import csv
import logging
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, invoke_cli, write

from clintune import api
from clintune.config.loading import load_config


def _config(name: str, *overrides: str):
    return api.resolve_paths(load_config(REPO / "configs" / "tiny" / f"{name}.yaml", list(overrides)))


def _features(config, split: str = "train", data=None):
    from clintune.modeling.loading import load_tokenizer
    from clintune.modeling.tasks import task_for
    from clintune.workflows.train import _encode, usable_cache

    data = data or api.prepare_data(config)
    tokenizer = load_tokenizer(config.model.name_or_path)
    examples = getattr(data, split)
    cache = usable_cache(config, data)
    return _encode(task_for(config.task.type), examples, tokenizer, data.encoder, config, split, cache), data, tokenizer


@pytest.mark.parametrize("long_text", ["truncate", "chunk"])
def test_text_features_are_the_tokenizers_own_output(long_text: str) -> None:
    config = _config("seriousness", f"model.long_text={long_text}", "model.max_length=12", "model.stride=4",
                     "data.tokenization_cache=false")
    features, data, tokenizer = _features(config)
    expected_ids, expected_labels, expected_examples = [], [], []
    for index, (text, label) in enumerate(zip(data.train.texts, data.train.labels)):
        windows = tokenizer(text, truncation=True, max_length=12, stride=4 if long_text == "chunk" else 0,
                            return_overflowing_tokens=True)["input_ids"]
        kept = windows if long_text == "chunk" else windows[:1]
        expected_ids += kept
        expected_labels += [data.encoder.classes.index(label)] * len(kept)
        expected_examples += [index] * len(kept)
    table = features.dataset
    assert table["input_ids"][:] == expected_ids
    assert table["labels"][:] == expected_labels and table["example_index"][:] == expected_examples
    assert features.lengths() == [len(ids) for ids in expected_ids]
    assert features.too_long == sum(len(tokenizer(t, truncation=False)["input_ids"]) > 12 for t in data.train.texts) > 0
    assert features.model_inputs().column_names == ["input_ids", "attention_mask", "token_type_ids", "labels"]


def test_ner_features_align_tags_to_first_subwords() -> None:
    config = _config("ner", "data.tokenization_cache=false")
    features, data, tokenizer = _features(config)
    for row in (0, len(data.train) // 2, len(data.train) - 1):
        words, tags = data.train.tokens[row], data.train.tags[row]
        encoding = tokenizer(words, is_split_into_words=True, truncation=True, max_length=config.model.max_length)
        expected, previous = [], None
        for word in encoding.word_ids():
            expected.append(-100 if word is None or word == previous else data.encoder.classes.index(tags[word]))
            previous = word
        position = features.dataset["example_index"][:].index(row)
        assert features.dataset[position]["input_ids"] == encoding["input_ids"]
        assert features.dataset[position]["labels"] == expected


def test_multilabel_features_are_multi_hot_rows() -> None:
    config = _config("symptoms", "data.tokenization_cache=false")
    features, data, _ = _features(config)
    first = features.dataset[0]
    assert first["labels"] == [1.0 if label in data.train.labels[0] else 0.0 for label in data.encoder.classes]
    assert len(features) == len(data.train)  # with labels a note is read in its first window only


def test_a_second_run_reads_the_arrow_cache_without_tokenising(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import clintune.modeling.tasks as tasks

    calls: list[int] = []
    encode_texts = tasks.encode_texts
    monkeypatch.setattr(tasks, "encode_texts",
                        lambda tokenizer, texts, *a, **k: calls.append(len(texts)) or encode_texts(tokenizer, texts, *a, **k))
    monkeypatch.setenv("CLINTUNE_CACHE_DIR", str(tmp_path / "cache"))
    results = []
    for run in ("cold", "warm"):
        config = load_config(REPO / "configs/tiny/diagnosis.yaml", ["training.epochs=2", f"output.dir={tmp_path}/{run}"])
        results.append(api.train(config).metrics)
        if run == "cold":
            data = api.prepare_data(api.resolve_paths(config))
            assert calls == [len(data.train), len(data.validation)]  # each split tokenised once, in one batch here
            calls.clear()
    assert calls == []
    assert results[0]["validation"] == results[1]["validation"] and results[0]["test"] == results[1]["test"]
    assert invoke_cli("cache", "info", "configs/tiny/diagnosis.yaml").stdout.startswith(f"{tmp_path}/cache/tokenized: 2 tokenised split(s)")
    cleared = invoke_cli("cache", "clear")
    assert cleared.returncode == 0 and cleared.stdout.startswith("removed 2 tokenised split(s)")
    assert not (tmp_path / "cache" / "tokenized").exists()


def test_a_file_that_changes_while_it_is_read_keeps_the_cache_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    import clintune.workflows.prepare as prepare

    train = write(tmp_path / "train.csv", (REPO / "data/diagnosis/train.csv").read_text(encoding="utf-8"))
    read_split = prepare.read_split

    def read_then_change(config, path):
        examples = read_split(config, path)
        if path == str(train):
            with open(train, "a", encoding="utf-8") as handle:
                handle.write("another note written while clintune read the file,valid\n")
        return examples

    monkeypatch.setattr(prepare, "read_split", read_then_change)
    monkeypatch.setenv("CLINTUNE_CACHE_DIR", str(tmp_path / "cache"))
    config = _config("diagnosis", f"data.train={train}")
    with caplog.at_level(logging.WARNING, logger="clintune"):
        features, _, _ = _features(config)
    assert f"{train} changed while this run read it" in caplog.text and "the tokenisation cache is not used" in caplog.text
    assert len(features) == 160 and not (tmp_path / "cache" / "tokenized").exists()


def test_an_unwritable_cache_folder_is_said_once_and_the_run_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    blocker = write(tmp_path / "a-file", "")  # a folder cannot be made under a file, even by root
    monkeypatch.setenv("CLINTUNE_CACHE_DIR", str(blocker / "cache"))
    config = _config("diagnosis")
    data = api.prepare_data(config)
    with caplog.at_level(logging.WARNING, logger="clintune"):
        train, _, _ = _features(config, "train", data)
        validation, _, _ = _features(config, "validation", data)
    assert caplog.text.count("is not writable") == 1 and "going on without the cache" in caplog.text
    assert (len(train), len(validation)) == (160, 40)


def _clean_environment(tmp_path: Path) -> dict[str, str]:
    folders = {name: tmp_path / name.lower() for name in ("HOME", "HF_HOME", "XDG_CACHE_HOME", "TMPDIR")}
    for folder in folders.values():
        folder.mkdir()
    return {**os.environ, "PYTHONUNBUFFERED": "1", **{name: str(folder) for name, folder in folders.items()},
            "CLINTUNE_CACHE_DIR": ""}


@pytest.mark.parametrize("cache", ["true", "false"])
def test_training_writes_nothing_under_home_folders(tmp_path: Path, cache: str) -> None:
    env = _clean_environment(tmp_path)
    run = subprocess.run([sys.executable, "-m", "clintune", "train", str(REPO / "configs/tiny/diagnosis.yaml"),
                          "--set", "training.epochs=1", "--set", f"output.dir={tmp_path}/runs/model",
                          "--set", f"data.tokenization_cache={cache}"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    for name in ("home", "hf_home", "xdg_cache_home", "tmpdir"):  # with the cache off, its scratch folder is gone too
        assert list((tmp_path / name).rglob("*")) == [], name
    cached = sorted(p.suffix for p in (tmp_path / "runs" / ".clintune-cache" / "tokenized").glob("*")) if cache == "true" else []
    assert cached == ([".arrow", ".arrow", ".json", ".json"] if cache == "true" else [])


def test_a_full_disk_while_the_cache_is_written_leaves_no_entry(tmp_path: Path) -> None:
    def small_files() -> None:  # a file size limit: writes past it fail with EFBIG, as a full disk fails with ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (12_000, 12_000))

    env = {**_clean_environment(tmp_path), "CLINTUNE_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-m", "clintune", "train", str(REPO / "configs/tiny/diagnosis.yaml"),
                          "--set", "training.epochs=1", "--set", f"output.dir={tmp_path}/runs/model"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300, preexec_fn=small_files)
    assert run.returncode == 2, run.stderr[-3000:]
    assert f"tokenising train: could not write the tokenised data to {tmp_path}/cache/tokenized: File too large" in run.stderr
    assert "Traceback" not in run.stderr and "fix: free space there" in run.stderr
    assert list((tmp_path / "cache" / "tokenized").iterdir()) == []


def test_streamed_near_duplicates_equal_scikit_learns_tfidf() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    from clintune.data.leakage import _near_pairs

    def texts(split: str) -> list[str]:
        with open(REPO / "data" / "seriousness" / f"{split}.csv", encoding="utf-8") as handle:
            return [row["Narrative"] for row in csv.DictReader(handle)]

    for a, b in ((texts("train"), texts("validation")), (texts("test"), texts("train"))):  # either side the larger
        vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(4, 4), sublinear_tf=True).fit(a + b)
        similarity = (vectorizer.transform(b) @ vectorizer.transform(a).T).toarray()
        best = similarity.argmax(axis=1)
        for threshold in (0.5, 0.9):
            expected = [(int(best[j]), j, similarity[j, best[j]]) for j in range(len(b)) if similarity[j, best[j]] >= threshold]
            found = _near_pairs(a, b, threshold)
            assert [pair[:2] for pair in found] == [pair[:2] for pair in expected] and expected
            assert np.allclose([pair[2] for pair in found], [pair[2] for pair in expected], atol=0.01)



def test_training_on_arrow_features_equals_training_on_in_memory_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same seed gives the same model whether the Trainer reads the memory-mapped Arrow file (batches grouped
    by its length column) or, as before the Arrow cache, rows made by calling the tokenizer text by text (batches
    grouped by the Trainer's own measure of each row)."""
    import datasets

    import clintune.workflows.train as train_module
    from clintune.data.examples import preprocessed
    from clintune.data.features import TrainingFeatures

    def in_memory(task, examples, tokenizer, encoder, config, name, cache=None):
        examples = preprocessed(examples, config.data.preprocessing)
        rows = []
        for index, (text, label) in enumerate(zip(examples.texts, encoder.encode(examples.labels))):
            row = dict(tokenizer(text, truncation=True, max_length=config.model.max_length), labels=label)
            rows.append({**row, "example_index": index, "length": len(row["input_ids"])})
        return ListFeatures(datasets.Dataset.from_list(rows), len(rows), 0)

    class ListFeatures(TrainingFeatures):
        def lengths(self) -> None:  # the Trainer's own sampler then measures every row's input_ids itself
            return None

    metrics = []
    for run in ("arrow", "lists"):
        if run == "lists":
            monkeypatch.setattr(train_module, "_encode", in_memory)
        config = load_config(REPO / "configs/tiny/diagnosis.yaml", ["training.epochs=2", f"output.dir={tmp_path}/{run}",
                                                                      "data.tokenization_cache=false"])
        metrics.append(api.train(config).metrics)
    assert metrics[0]["validation"] == metrics[1]["validation"] and metrics[0]["test"] == metrics[1]["test"]
    assert metrics[0]["selection"] == metrics[1]["selection"]
