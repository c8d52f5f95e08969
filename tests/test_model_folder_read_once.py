"""A model folder is read once: ``predict`` opens each of the folder's files once, and what it builds from them
(the tokenizer from tokenizer.json and tokenizer_config.json) is what transformers' Auto classes build.

``open`` is patched at every door Python has (``builtins.open``, ``io.open``, ``os.open``); the weights are
read by safetensors' Rust reader, which these do not see, so the weights file is not counted.
"""

from __future__ import annotations

import builtins
import io
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import TASKS

TEXTS = ["Patient reports fever and a dry cough since Monday.", "No complaints; follow-up in 6 weeks 😀"]


@contextmanager
def opens_under(folder: Path) -> Iterator[Counter[str]]:
    """Count, by file name, every open of a file inside ``folder`` while the block runs."""
    folder = folder.resolve()
    counts: Counter[str] = Counter()
    real_open, real_io_open, real_os_open = builtins.open, io.open, os.open

    def note(file: object) -> None:
        if isinstance(file, (str, bytes, os.PathLike)):
            path = Path(os.fsdecode(file)).resolve()
            if folder in path.parents:
                counts[path.relative_to(folder).as_posix()] += 1

    def patched_open(file: object, *args: object, **kwargs: object) -> object:
        note(file)
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    def patched_os_open(file: object, *args: object, **kwargs: object) -> int:
        note(file)
        return real_os_open(file, *args, **kwargs)  # type: ignore[arg-type]

    builtins.open, io.open, os.open = patched_open, patched_open, patched_os_open  # type: ignore[assignment]
    try:
        yield counts
    finally:
        builtins.open, io.open, os.open = real_open, real_io_open, real_os_open


@pytest.mark.parametrize("task", TASKS)
def test_predict_opens_each_file_of_the_model_folder_once(task: str, trained_models: dict[str, Path], tmp_path: Path) -> None:
    from clintune import api

    folder = trained_models[task]
    with opens_under(folder) as counts:
        api.predict(folder, TEXTS)
    needed = {"labels.json", "config.json", "clintune.yaml", "tokenizer.json", "tokenizer_config.json"}
    needed |= {"decision.json"} if (folder / "decision.json").is_file() else set()
    assert needed <= set(counts), counts
    assert all(count == 1 for count in counts.values()), counts

    source = tmp_path / "notes.csv"
    source.write_text("text\n" + "".join(f'"{text}"\n' for text in TEXTS), encoding="utf-8")
    with opens_under(folder) as counts:
        api.predict_file(folder, source, None, text_column="text")
    assert needed <= set(counts) and all(count == 1 for count in counts.values()), counts


@pytest.mark.parametrize("task", ["ner", "diagnosis"])
def test_the_tokenizer_built_from_the_folder_files_is_the_auto_tokenizer(task: str, trained_models: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    from clintune.modeling.folder import read_model_folder
    from clintune.modeling.loading import load_tokenizer

    folder = read_model_folder(trained_models[task])
    built = load_tokenizer(str(folder.path), tokenizer_config=folder.tokenizer_config)
    auto = AutoTokenizer.from_pretrained(str(folder.path))
    assert type(built) is type(auto)
    assert built.special_tokens_map == auto.special_tokens_map and built.model_max_length == auto.model_max_length
    texts = [*TEXTS, "Émile's BP 120/80 — ok", "word " * 400]
    for pair in ((texts, None), (["a", "b"], ["c d e", "f"])):
        ours = built(*pair, truncation=True, max_length=32, padding=True, return_offsets_mapping=True)
        theirs = auto(*pair, truncation=True, max_length=32, padding=True, return_offsets_mapping=True)
        assert ours.data == theirs.data
        assert [ours.word_ids(i) for i in range(len(pair[0]))] == [theirs.word_ids(i) for i in range(len(pair[0]))]
    words = [["Patient", "has", "cystic", "fibrosis", "."]]
    assert built(words, is_split_into_words=True).data == auto(words, is_split_into_words=True).data


def test_predicting_a_document_folder_as_brat_opens_each_file_of_the_model_folder_once(
        trained_models: dict[str, Path], tmp_path: Path) -> None:
    from clintune import api

    folder = trained_models["ner"]
    documents = tmp_path / "notes"
    documents.mkdir()
    for number, text in enumerate(TEXTS):
        (documents / f"note{number}.txt").write_text(text, encoding="utf-8")
    request = api.PredictRequest(folder, input_path=documents, output_path=tmp_path / "ann", output_format="brat")
    with opens_under(folder) as counts:
        outcome = api.run_predict(request)
    assert outcome.written == len(TEXTS) and sorted(p.name for p in (tmp_path / "ann").glob("*.ann")) == ["note0.ann", "note1.ann"]
    assert {"labels.json", "config.json", "clintune.yaml", "tokenizer.json", "tokenizer_config.json"} <= set(counts)
    assert all(count == 1 for count in counts.values()), counts
