"""What the model sees at prediction time: text preprocessed once, long texts' windows averaged as probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, write

# The speaker-tag pattern of configs/section_header.yaml removes "Doctor:" once, leaving
# "Documented: yes"; a second pass would also remove "Documented:" and leave "yes".
TAGGED = "Doctor: Documented: yes"
ONCE = "Documented: yes"


def _model_probabilities(predictor, text: str | list[int], temperature: float = 1.0) -> np.ndarray:
    """The folder's model run by hand on one already-preprocessed text or token id list (no Predictor logic)."""
    if isinstance(text, str):
        inputs = predictor.tokenizer([text], return_tensors="pt")
    else:
        inputs = {"input_ids": torch.tensor([text]), "attention_mask": torch.ones(1, len(text), dtype=torch.long)}
    with torch.inference_mode():
        logits = predictor.model.eval()(**inputs).logits[0].double()
    return torch.softmax(logits / temperature, dim=-1).numpy()


def test_eval_and_predict_preprocess_the_text_exactly_once(trained_models: dict[str, Path], tmp_path: Path) -> None:
    from clintune.api import evaluate, predict
    from clintune.inference.predictor import Predictor

    folder = trained_models["section_header"]
    expected = _model_probabilities(Predictor.from_folder(folder), ONCE)
    assert np.abs(expected - _model_probabilities(Predictor.from_folder(folder), "yes")).max() > 1e-3, "the test needs texts that differ"
    data = write(tmp_path / "tagged.csv", f'dialogue,section_header\n"{TAGGED}",ALLERGY\n')
    evaluated = evaluate(folder, data, resamples=0)
    assert list(evaluated.records[0]["probabilities"].values()) == pytest.approx(expected, abs=1e-5)
    predicted = predict(folder, [TAGGED])[0]
    assert list(predicted.probabilities.values()) == pytest.approx(expected, abs=1e-5)


def test_training_and_baseline_inputs_are_preprocessed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clintune import api
    from clintune.config.loading import load_config
    from clintune.evaluation import tfidf_baseline as baseline
    from clintune.modeling.loading import load_tokenizer
    from clintune.modeling.tasks import task_for
    from clintune.workflows.train import _encode

    rows = [f'"{TAGGED}",ALLERGY', '"Patient: No allergies",ALLERGY', '"Doctor: Any fever?",ROS', '"Doctor: Any chills?",ROS']
    train = write(tmp_path / "train.csv", "dialogue,section_header\n" + "\n".join(rows) + "\n")
    config = api.resolve_paths(load_config(REPO / "configs/tiny/section_header.yaml",
                                           [f"data.train={train}", f"data.validation={train}", "data.test=null"]))
    data = api.prepare_data(config)
    assert data.train.texts[0] == TAGGED, "data is read as the file holds it"
    tokenizer = load_tokenizer(config.model.name_or_path)
    encoded = _encode(task_for("multiclass"), data.train, tokenizer, data.encoder, config, "train")
    assert encoded.dataset[0]["input_ids"] == tokenizer(ONCE)["input_ids"]

    seen: list[list[str]] = []
    fit = baseline.fit_tfidf_logistic_regression
    monkeypatch.setattr(baseline, "fit_tfidf_logistic_regression", lambda train, *a, **k: seen.append(train.texts) or fit(train, *a, **k))
    baseline.run_baseline(config, data.train, {"validation": data.validation}, data.encoder)
    assert seen[0][0] == ONCE


def test_window_probabilities_are_averaged_by_hand() -> None:
    from clintune.modeling.decision import WindowLogits

    # text 0 has two windows, text 1 one. softmax([2, 0]) = (0.880797, 0.119203), softmax([0, 0]) = (0.5, 0.5);
    # at temperature 2, softmax([1, 0]) = (0.731059, 0.268941).
    scores = WindowLogits(np.array([[2.0, 0.0], [0.0, 0.0], [1.0, 1.0]]), np.array([0, 0, 1]), 2)
    assert scores.probabilities() == pytest.approx(np.array([[0.690399, 0.309601], [0.5, 0.5]]), abs=1e-6)
    assert scores.probabilities(2.0) == pytest.approx(np.array([[0.615529, 0.384471], [0.5, 0.5]]), abs=1e-6)
    # averaging the logits instead would give softmax([1, 0]) = 0.731 for text 0


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_chunked_text_gets_the_mean_of_its_windows_probabilities(trained_models: dict[str, Path], temperature: float) -> None:
    from clintune.inference.predictor import Predictor
    from clintune.modeling.decision import DecisionRule

    predictor = Predictor.from_folder(trained_models["section_header"])
    predictor.config.model.long_text, predictor.config.model.max_length, predictor.config.model.stride = "chunk", 16, 4
    predictor.decision = DecisionRule(temperature=temperature)
    text = "Any chest pain or shortness of breath? No allergies to penicillin. Any fever or chills at night? " * 3
    windows = predictor.tokenizer(text, truncation=True, max_length=16, stride=4, return_overflowing_tokens=True)["input_ids"]
    assert len(windows) >= 3
    by_hand = np.mean([_model_probabilities(predictor, window, temperature) for window in windows], axis=0)
    assert predictor.classify([text])[0].probabilities == pytest.approx(dict(zip(predictor.encoder.classes, by_hand)), abs=1e-5)


def test_texts_and_sentences_read_in_chunks_get_the_same_answers_as_read_at_once(
        trained_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Chunks bound the memory of eval and the end of training; they must not change a single number, nor the
    order, nor merge windows of texts from different chunks (long texts sit on the chunk edges here)."""
    from clintune.data.readers import read_split
    from clintune.inference import predictor as prediction
    from clintune.inference.predictor import Predictor

    classifier = Predictor.from_folder(trained_models["section_header"])
    classifier.config.model.long_text, classifier.config.model.max_length, classifier.config.model.stride = "chunk", 24, 4
    texts = read_split(classifier.config, str(REPO / "data" / "section_header" / "test.csv")).texts[:11]
    texts[2] = texts[3] = " ".join(texts[:4])  # two windows or more, at the edge of the first 3-text chunk
    tagger = Predictor.from_folder(trained_models["ner"])
    sentences = read_split(tagger.config, str(REPO / "data" / "ner" / "test.conll")).tokens[:10]
    sentences[5] = [word for sentence in sentences[:6] for word in sentence] * 3  # windows at a chunk edge
    def notes() -> list[str]:
        return [record.message for record in caplog.records if "exceed model.max_length" in record.message]

    caplog.clear()
    whole = classifier.window_logits(texts), tagger.tag_sentences(sentences)
    notes_whole = notes()
    monkeypatch.setattr(prediction, "ENCODE_CHUNK", 3)
    caplog.clear()
    chunked = classifier.window_logits(texts), tagger.tag_sentences(sentences)
    assert chunked[0].n_examples == 11 and (chunked[0].example_index == whole[0].example_index).all()
    np.testing.assert_allclose(chunked[0].logits, whole[0].logits, atol=1e-5)
    np.testing.assert_allclose(chunked[0].probabilities(), whole[0].probabilities(), atol=1e-5)
    assert chunked[1][0] == whole[1][0]
    np.testing.assert_allclose(np.concatenate(chunked[1][1]), np.concatenate(whole[1][1]), atol=1e-5)
    assert notes() == notes_whole and len(notes_whole) == 2  # one note for all the chunks, with the totals
    assert notes_whole[0].startswith("8 of 11 example(s)") and notes_whole[1].startswith("1 of 10 example(s)")


@pytest.mark.parametrize(("lengths", "batch_size", "expected"), [
    ([10, 11, 12], 8, [[0, 1, 2]]),                 # 36 positions, 3 of them padding: one batch
    ([100, 10], 8, [[1], [0]]),                    # together 90 of 200 positions would be padding
    ([12, 10, 10, 10, 10], 2, [[1, 2], [3, 4], [0]]),  # the size cap, equal lengths kept in input order
    ([20, 16, 16, 16, 16], 8, [[1, 2, 3, 4, 0]]),  # 100 positions, 16 padding: under a fifth
    ([22, 16, 16, 16, 16], 8, [[1, 2, 3, 4], [0]]),  # 110 positions, 24 padding: over a fifth
    ([5, 3], 8, [[1, 0]]),                          # exactly a fifth (2 of 10 positions): still one batch
    ([5, 2], 8, [[1], [0]]),                        # 3 of 10: cut
    ([], 8, []),
])
def test_forward_batches_are_cut_where_padding_would_pass_a_fifth(lengths: list[int], batch_size: int,
                                                                 expected: list[list[int]]) -> None:
    from clintune.inference.predictor import length_batches

    assert length_batches(lengths, batch_size, max_padding=0.2) == expected


def test_gathered_requests_of_mixed_lengths_waste_little_on_padding() -> None:
    """Eight lengths drawn as a web service gathers them: every batch of two or more stays within the padding
    bound, and no two neighbouring batches could have been one (each cut had a reason)."""
    from clintune.inference.predictor import length_batches

    rng = np.random.default_rng(3)
    for _ in range(200):
        lengths = [int(n) for n in rng.integers(5, 257, size=8)]
        batches = length_batches(lengths, 8, max_padding=0.2)
        assert sorted(i for batch in batches for i in batch) == list(range(8))
        for batch, following in zip(batches, batches[1:] + [None]):
            rows = [lengths[i] for i in batch]
            assert rows == sorted(rows)
            positions = max(rows) * len(rows)
            assert positions - sum(rows) <= 0.2 * positions
            if following is not None:
                joined = rows + [lengths[following[0]]]
                joined_positions = max(joined) * len(joined)
                assert joined_positions - sum(joined) > 0.2 * joined_positions


@pytest.mark.parametrize("task_name", ["section_header", "ner"])
def test_a_lone_row_is_collated_as_the_tasks_collator_would(task_name: str) -> None:
    """One text per pass skips the collator (nothing to pad); its inputs must be the collator's, value for
    value and of its dtype, and more than one row still goes through the collator."""
    from conftest import TINY_MODEL

    from clintune.data.tokenization import encode_texts, encode_words
    from clintune.inference.predictor import collate_rows
    from clintune.modeling.loading import load_tokenizer
    from clintune.modeling.tasks import SequenceClassification, TokenClassification

    tokenizer = load_tokenizer(str(TINY_MODEL))
    if task_name == "ner":
        task = TokenClassification()
        rows = encode_words(tokenizer, [["Familial", "adenomatous", "polyposis"], ["no", "disease"]], 32, [[1, 2, 2], [0, 0]]).features
    else:
        task = SequenceClassification()
        rows = encode_texts(tokenizer, ["Doctor: any chest pain?", "Patient: no"], 32, [3, 1]).features
    collator = task.collator(tokenizer)
    for row in rows:
        ours = collate_rows(collator, [row])
        theirs = collator([{k: v for k, v in row.items() if k != "labels"}])
        assert set(ours) == set(theirs) and "labels" not in ours
        for name, value in theirs.items():
            assert ours[name].dtype == value.numpy().dtype
            np.testing.assert_array_equal(ours[name], value.numpy())
    both = collate_rows(collator, rows)
    assert isinstance(both["input_ids"], torch.Tensor) and both["input_ids"].shape[0] == 2


def test_gpu_padding_multiple_is_auto_on_a_gpu_only() -> None:
    from clintune.modeling.tasks import GPU_PAD_MULTIPLE, padding_multiple

    assert padding_multiple("auto", on_gpu=True) == GPU_PAD_MULTIPLE
    assert padding_multiple("auto", on_gpu=False) is None
    assert padding_multiple(8, on_gpu=False) == 8
    assert padding_multiple(None, on_gpu=True) is None


@pytest.mark.parametrize("task_name", ["section_header", "ner"])
def test_rounded_padding_gives_few_shapes_and_the_same_rows(task_name: str) -> None:
    """Padded to a multiple of 16, capped at the longest a row may be; each row's values, mask and labels are
    those of plain padding, with padding (mask 0, label -100) after them."""
    from conftest import TINY_MODEL

    from clintune.data.tokenization import IGNORE_INDEX, encode_texts, encode_words
    from clintune.modeling.loading import load_tokenizer
    from clintune.modeling.tasks import RoundedPadding, SequenceClassification, TokenClassification

    tokenizer = load_tokenizer(str(TINY_MODEL))
    words = [["pain"] * n for n in (3, 17, 21)]
    if task_name == "ner":
        task = TokenClassification()
        rows = encode_words(tokenizer, words, 40, [[1] + [0] * (len(w) - 1) for w in words]).features
    else:
        task = SequenceClassification()
        rows = encode_texts(tokenizer, [" ".join(w) for w in words], 40, [0, 1, 2]).features
    lengths = [len(r["input_ids"]) for r in rows]
    assert lengths == [5, 19, 23]
    rounded, plain = RoundedPadding(task, tokenizer, 16, limit=40), task.collator(tokenizer)
    for batch, width in (([0], 16), ([0, 1], 32), ([1, 2], 32)):
        ours, theirs = rounded([rows[i] for i in batch]), plain([rows[i] for i in batch])
        assert tuple(ours["input_ids"].shape) == (len(batch), width)
        longest = theirs["input_ids"].shape[1]
        for name in theirs:  # a text's label is one number; tokens' labels and inputs are rows
            torch.testing.assert_close(ours[name][:, :longest] if theirs[name].ndim == 2 else ours[name], theirs[name])
        assert int(ours["attention_mask"][:, longest:].sum()) == 0
        assert (ours["input_ids"][:, longest:] == tokenizer.pad_token_id).all()
        if task_name == "ner":
            assert (ours["labels"][:, longest:] == IGNORE_INDEX).all()
    capped = RoundedPadding(task, tokenizer, 64, limit=40)([rows[2]])
    assert capped["input_ids"].shape[1] == 40, "never past the longest a row may be"


def test_padding_to_a_multiple_leaves_probabilities_as_they_were(trained_models: dict[str, Path]) -> None:
    """Padding is masked out: the same texts padded to a multiple of 64 give the probabilities of plain padding."""
    from clintune.inference.predictor import Predictor

    texts = ["Doctor: any allergies?", "Patient: I take lisinopril every morning for my blood pressure.", "no"]
    plain = Predictor.from_folder(trained_models["section_header"])
    assert plain.pad_multiple is None, "on a CPU batches are padded to the longest row"
    rounded = Predictor.from_folder(trained_models["section_header"])
    rounded.pad_multiple = 64
    expected = [list(p.probabilities.values()) for p in plain.classify(texts)]
    got = [list(p.probabilities.values()) for p in rounded.classify(texts)]
    assert np.abs(np.array(expected) - np.array(got)).max() < 1e-5
