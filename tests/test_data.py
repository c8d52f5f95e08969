from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, write

from clintune.config.checks import validate_config
from clintune.config.schema import PreprocessingSection
from clintune.data.checks import check_label_sets, repair_bio
from clintune.data.examples import TextExamples, preprocess_text
from clintune.data.readers import read_split
from clintune.data.splits import stratified_split
from clintune.errors import DataError


def make_config(train: Path, task_type: str = "multiclass", **data: object):
    raw = {
        "task": {"type": task_type},
        "data": {"train": str(train), **data},
        "model": {"name_or_path": "m"},
        "output": {"dir": "o"},
    }
    return validate_config(raw)


def test_csv_with_bom_and_windows_line_ends(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "\ufefftext,label\r\nchest pain,valid\r\n\"two\r\nlines\",invalid\r\n")
    data = read_split(make_config(path), str(path))
    assert data.texts == ["chest pain", "two\nlines"]  # as the file holds them; preprocessing comes later, once
    assert data.labels == ["valid", "invalid"]
    assert data.rows == [2, 3]


def test_missing_column_suggests_the_close_one(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "txt,label\na,b\n")
    with pytest.raises(DataError, match=r"missing column 'text' \(did you mean 'txt'\?\)"):
        read_split(make_config(path), str(path))


def test_empty_texts_error_names_rows(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "text,label\na,x\n,y\n  ,x\nb,\n")
    with pytest.raises(DataError) as caught:
        read_split(make_config(path), str(path))
    message = str(caught.value)
    assert "2 empty text(s)" in message and "rows 3, 4" in message
    assert "1 empty label(s)" in message and "row 5" in message
    assert "data.on_empty=drop" in message


def test_empty_texts_dropped_on_request(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "text,label\na,x\n,y\nb,y\n")
    data = read_split(make_config(path, on_empty="drop"), str(path))
    assert data.texts == ["a", "b"]
    assert data.rows == [2, 4]


def test_not_utf8_names_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"text,label\ncaf\xe9,x\n")
    with pytest.raises(DataError, match="byte offset 14"):
        read_split(make_config(path), str(path))


def test_jsonl_reader_and_bad_line(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", '{"text": "a", "label": "x"}\n\n{"text": "b", "label": "y"}\n')
    data = read_split(make_config(path), str(path))
    assert data.texts == ["a", "b"] and data.rows == [1, 3]
    bad = write(tmp_path / "bad.jsonl", '{"text": "a", "label": "x"}\n{"text": \n')
    with pytest.raises(DataError, match="line 2: not valid JSON"):
        read_split(make_config(bad), str(bad))


def test_parquet_reader(tmp_path: Path) -> None:
    import pandas as pd

    path = tmp_path / "t.parquet"
    pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]}).to_parquet(path)
    assert read_split(make_config(path), str(path)).labels == ["x", "y"]


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "")
    with pytest.raises(DataError, match="empty"):
        read_split(make_config(path), str(path))


def test_conll_reader(tmp_path: Path) -> None:
    path = write(tmp_path / "t.conll", "-DOCSTART-\tO\n\nCystic\tB-Disease\nfibrosis\tI-Disease\n\n\nNo\tO\n")
    data = read_split(make_config(path, "ner"), str(path))
    assert data.tokens == [["Cystic", "fibrosis"], ["No"]]
    assert data.tags == [["B-Disease", "I-Disease"], ["O"]]
    assert data.rows == [3, 7]


def test_conll_stray_column_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "t.conll", "a\tO\nb\tNN\tO\n")
    with pytest.raises(DataError, match="line 2: expected 'token<TAB>tag', found 3 column"):
        read_split(make_config(path, "ner"), str(path))


def test_invalid_bio_is_an_error_or_repaired(tmp_path: Path) -> None:
    path = write(tmp_path / "t.conll", "the\tO\ncancer\tI-Disease\n\nok\tO\n")
    with pytest.raises(DataError, match="data.invalid_bio=repair"):
        read_split(make_config(path, "ner"), str(path))
    data = read_split(make_config(path, "ner", invalid_bio="repair"), str(path))
    assert data.tags[0] == ["O", "B-Disease"]
    assert data.repaired == 1


def test_unknown_tag_syntax(tmp_path: Path) -> None:
    path = write(tmp_path / "t.conll", "the\tO\ncancer\tDisease\n")
    with pytest.raises(DataError, match="not O, B-TYPE or I-TYPE"):
        read_split(make_config(path, "ner"), str(path))


def test_ner_jsonl_length_mismatch(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", '{"tokens": ["a", "b"], "tags": ["O"]}\n')
    with pytest.raises(DataError, match="2 tokens, 1 tags"):
        read_split(make_config(path, "ner"), str(path))


def test_repair_bio() -> None:
    assert repair_bio(["I-A", "I-A", "O", "I-B", "B-A", "I-B"]) == ["B-A", "I-A", "O", "B-B", "B-A", "B-B"]


def test_speaker_tags_removed() -> None:
    steps = PreprocessingSection(remove_patterns=[r"(?m)^\s*(?:Doc\w*|Patient\w*|Gu?est\w*)\s*:"])
    text = "Doctor: Any allergies?\nPatient:  No.\nGuest_family_1: She is allergic to penicillin.\nDoctor_2: Okay."
    assert preprocess_text(text, steps) == "Any allergies? No. She is allergic to penicillin. Okay."


def test_nfkc_normalises_compatibility_characters() -> None:
    assert preprocess_text("ﬁbrosis　５mg", PreprocessingSection()) == "fibrosis 5mg"


def test_label_set_checks() -> None:
    train = TextExamples(["a", "b"], ["x", "x"], [2, 3], "train.csv")
    with pytest.raises(DataError, match="1 distinct label"):
        check_label_sets(train, {}, ["x"])
    train = TextExamples(["a", "b"], ["x", "y"], [2, 3], "train.csv")
    val = TextExamples(["a", "b", "c"], ["x", "Y", "Y"], [2, 3, 4], "val.csv")
    with pytest.raises(DataError, match=r"never saw: 'Y' \(2\)"):
        check_label_sets(train, {"validation": val}, ["x", "y"])


def test_stratified_split_keeps_every_class() -> None:
    labels = ["a"] * 40 + ["b"] * 10
    data = TextExamples([str(i) for i in range(50)], labels, list(range(50)), "t.csv")
    train, val = stratified_split(data, 0.2, seed=1)
    assert len(train) == 40 and len(val) == 10
    assert val.labels.count("b") == 2
    assert not set(train.texts) & set(val.texts)
    again, _ = stratified_split(data, 0.2, seed=1)
    assert again.texts == train.texts


@pytest.mark.parametrize("singles", [["c"], ["c", "d"]])
def test_a_class_with_one_example_does_not_cost_the_others_their_stratification(singles: list[str]) -> None:
    labels = ["a"] * 60 + ["b"] * 20 + singles
    data = TextExamples([str(i) for i in range(len(labels))], labels, list(range(len(labels))), "t.csv")
    for seed in range(5):  # a random split would put 4 +- 1.8 of the b rows in validation; stratified, always 4
        _, val = stratified_split(data, 0.2, seed=seed)
        assert val.labels.count("b") == 4 and val.labels.count("a") in (12, 13), (seed, val.labels)


def test_sample_ner_evaluation_entities_never_occur_in_training() -> None:
    """The synthetic validation and test sentences name diseases training never shows, so the tiny
    model's scores measure tagging, not recall of memorised strings."""
    from seqeval.metrics.sequence_labeling import get_entities

    def entity_strings(split: str) -> set[str]:
        config = make_config(REPO / "data/ner/train.conll", "ner", format="conll")
        data = read_split(config, str(REPO / f"data/ner/{split}.conll"))
        return {" ".join(words[first : last + 1]).lower() for words, tags in zip(data.tokens, data.tags)
                for _, first, last in get_entities(tags)}

    train = entity_strings("train")
    for split in ("validation", "test"):
        held_out = entity_strings(split)
        assert len(held_out) >= 5 and not held_out & train, split


@pytest.mark.parametrize("first_row", [
    '"Mr John Smith, DOB 1950-01-02, MRN 12345, complains of chest pain",valid',  # a long field
    "Jane Doe,12345,Serious,seizure",  # only short fields: they read like column names, and are not
])
def test_a_file_without_a_header_row_is_named_without_showing_its_first_row(tmp_path: Path, first_row: str) -> None:
    """The README promises messages never show a row's text: a headerless file's first row is patient text."""
    path = write(tmp_path / "t.csv", f'{first_row}\n"fever",invalid\n')
    with pytest.raises(DataError) as caught:
        read_split(make_config(path), str(path))
    message = str(caught.value)
    assert "missing column 'text', 'label'; the first row names none of them" in message
    assert "not shown" in message and "add one naming its columns" in message
    for cell in ("Smith", "Jane", "Doe", "12345", "Serious", "seizure", "'valid'"):
        assert cell not in message, message


def test_a_header_that_names_one_column_is_listed(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "note,label\nfever,x\n")
    with pytest.raises(DataError, match=r"missing column 'text'; the file has columns \['note', 'label'\]"):
        read_split(make_config(path), str(path))


def test_a_damaged_csv_is_located_without_its_text(tmp_path: Path) -> None:
    ragged = write(tmp_path / "r.csv", "text,label\na,x\nZyx Qwerty,MRN,8675309\n")
    with pytest.raises(DataError, match=r"r.csv: cannot be read as csv: row 3 \(line 3\) has 3 fields, the first row 2") as caught:
        read_split(make_config(ragged), str(ragged))
    assert "Qwerty" not in str(caught.value) and "8675309" not in str(caught.value)
    unclosed = write(tmp_path / "u.csv", 'text,label\na,x\n\n"Zyx Qwerty, MRN 8675309,y\nb,x\n')
    with pytest.raises(DataError, match=r"row 3 \(line 4\): a quote mark that does not close its field") as caught:
        read_split(make_config(unclosed), str(unclosed))
    assert "Qwerty" not in str(caught.value) and "8675309" not in str(caught.value)
    assert caught.value.__cause__ is not None  # the parser's own message stays in the chain, for --verbose
