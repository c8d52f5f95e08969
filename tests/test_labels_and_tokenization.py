from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY_MODEL

from clintune.data.labels import LabelEncoder, balanced_class_weights, class_weights_from_config
from clintune.data.tokenization import IGNORE_INDEX, align_labels_to_subwords, b_to_i_map, encode_texts, encode_words, split_words
from clintune.errors import ModelFolderError


@pytest.fixture(scope="module")
def tokenizer():
    from clintune.modeling.loading import load_tokenizer

    return load_tokenizer(str(TINY_MODEL))


def test_encoder_sorted_and_explicit_order() -> None:
    assert LabelEncoder.fit(["b", "a", "b"], "multiclass").classes == ("a", "b")
    explicit = LabelEncoder.fit(["b", "a"], "multiclass", explicit=["b", "a", "c"])
    assert explicit.encode(["a", "c"]) == [1, 2]
    assert explicit.decode([0]) == ["b"]


def test_binary_positive_defaults_to_second_class() -> None:
    assert LabelEncoder.fit(["valid", "invalid"], "binary").positive == "valid"
    assert LabelEncoder.fit(["valid", "invalid"], "binary", positive="invalid").positive_id == 0


def test_ner_encoder_always_has_outside_tag() -> None:
    assert LabelEncoder.fit(["B-X", "I-X"], "ner").classes == ("O", "B-X", "I-X")


def test_encoder_json_round_trip(tmp_path: Path) -> None:
    encoder = LabelEncoder.fit(["D/LT", "Serious", "Non-serious"], "multiclass")
    encoder.save(tmp_path)
    assert LabelEncoder.load(tmp_path) == encoder
    assert (tmp_path / "labels.json").read_text().startswith("{")
    (tmp_path / "labels.json").write_text("not json")
    with pytest.raises(ModelFolderError, match="unreadable"):
        LabelEncoder.load(tmp_path)


def test_balanced_weights_match_sklearn() -> None:
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0] * 60 + [1] * 30 + [2] * 10)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    assert balanced_class_weights({0: 60, 1: 30, 2: 10}, 3) == pytest.approx(expected.tolist())


def test_unseen_class_gets_the_largest_weight() -> None:
    weights = balanced_class_weights({0: 90, 1: 10}, 3)
    assert weights[2] == weights[1] == max(weights)


def test_weights_from_config_settings() -> None:
    encoder = LabelEncoder.fit(["a", "b"], "multiclass")
    assert class_weights_from_config("none", encoder, {0: 1, 1: 1}) is None
    assert class_weights_from_config({"b": 3.0}, encoder, {0: 1, 1: 1}) == [1.0, 3.0]
    assert class_weights_from_config("balanced", encoder, {0: 3, 1: 1}) == pytest.approx([2 / 3, 2.0])


def test_first_subword_alignment() -> None:
    # [CLS] cyst ##ic fib ##rosis was [SEP]   words: cystic fibrosis was
    word_ids = [None, 0, 0, 1, 1, 2, None]
    assert align_labels_to_subwords(word_ids, [1, 2, 0]) == [IGNORE_INDEX, 1, IGNORE_INDEX, 2, IGNORE_INDEX, 0, IGNORE_INDEX]


def test_all_subwords_alignment_turns_b_into_i() -> None:
    classes = ("O", "B-Disease", "I-Disease")
    word_ids = [None, 0, 0, 1, 1, None]
    aligned = align_labels_to_subwords(word_ids, [1, 2], label_all_subwords=True, b_to_i=b_to_i_map(classes))
    assert aligned == [IGNORE_INDEX, 1, 2, 2, 2, IGNORE_INDEX]


def test_encode_words_aligns_with_real_tokenizer(tokenizer) -> None:
    words = ["Adrenoleukodystrophy", "xqzv", "."]
    encoded = encode_words(tokenizer, [words], 64, [[1, 0, 0]])
    labels = encoded.features[0]["labels"]
    ids = encoded.word_ids[0]
    assert len(labels) == len(encoded.features[0]["input_ids"]) == len(ids)
    firsts = [i for i, w in enumerate(ids) if w is not None and (i == 0 or ids[i - 1] != w)]
    assert [labels[i] for i in firsts] == [1, 0, 0]
    assert sum(label != IGNORE_INDEX for label in labels) == 3
    assert encoded.too_long == 0


def test_long_sentence_becomes_overlapping_windows_losing_no_word(tokenizer) -> None:
    words = [f"w{i}" for i in range(40)]
    tags = [i % 3 for i in range(40)]
    encoded = encode_words(tokenizer, [words, ["short"]], 16, [tags, [0]], stride=4)
    assert encoded.too_long == 1
    assert encoded.example_index.count(0) > 2 and encoded.example_index.count(1) == 1
    labelled_words = set()
    for feature, word_ids, starts, example in zip(encoded.features, encoded.word_ids, encoded.word_starts, encoded.example_index):
        assert len(feature["input_ids"]) <= 16
        for position, (word, start) in enumerate(zip(word_ids, starts)):
            if example == 0 and start:
                assert feature["labels"][position] == tags[word]
                labelled_words.add(word)
    assert labelled_words == set(range(40))


def test_window_starting_mid_word_does_not_label_the_continuation() -> None:
    word_ids = [None, 3, 4, 4, None]
    starts = [False, False, True, False, False]
    expected = [IGNORE_INDEX, IGNORE_INDEX, 2, IGNORE_INDEX, IGNORE_INDEX]
    assert align_labels_to_subwords(word_ids, [0, 0, 0, 1, 2], word_starts=starts) == expected


def test_long_texts_truncated_or_chunked(tokenizer) -> None:
    truncated = encode_texts(tokenizer, ["short", "word " * 100], 16, labels=[0, 1])
    assert truncated.too_long == 1
    assert len(truncated) == 2 and max(len(f["input_ids"]) for f in truncated.features) == 16
    chunked = encode_texts(tokenizer, ["short", "word " * 100], 16, labels=[0, 1], long_text="chunk", stride=4)
    assert chunked.too_long == 1
    assert len(chunked) > 2
    assert all(f["labels"] == 1 for f, e in zip(chunked.features, chunked.example_index) if e == 1)


def test_split_words_offsets() -> None:
    text = "Pt has  BRCA1-linked breast cancer."
    words = split_words(text)
    assert all(text[start:end] == word for word, start, end in words)
    assert [w for w, _, _ in words] == ["Pt", "has", "BRCA1", "-", "linked", "breast", "cancer", "."]


def test_weight_power_softens_balanced_weights() -> None:
    encoder = LabelEncoder.fit(["a", "b"], "multiclass")
    full = class_weights_from_config("balanced", encoder, {0: 90, 1: 10})
    soft = class_weights_from_config("balanced", encoder, {0: 90, 1: 10}, power=0.5)
    assert soft == pytest.approx([w**0.5 for w in full])
    assert soft[1] / soft[0] == pytest.approx(3.0)
