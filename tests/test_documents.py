"""Annotated documents in: brat, doccano and Label Studio readers, sentences and words, grouped splits,
leakage, overlap F1, labels.map, and brat in eval and predict (issue #16)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, run_cli, write

from clintune import api
from clintune.config.loading import load_config
from clintune.data.documents import Document, ReadReport, Span, read_brat_folder, read_span_records
from clintune.data.examples import TextExamples
from clintune.data.leakage import find_leaks
from clintune.data.readers import read_split
from clintune.data.sentences import sentence_bounds
from clintune.data.splits import stratified_split
from clintune.data.tagging import tag_documents
from clintune.errors import ConfigError, DataError
from clintune.evaluation.metrics import ner_metrics, overlap_entity_scores

get_entities = pytest.importorskip("seqeval.metrics.sequence_labeling").get_entities

NCBI_TYPES = ["SpecificDisease", "DiseaseClass", "Modifier", "CompositeMention"]
MERGE = [f"labels.map.{t}=Disease" for t in NCBI_TYPES]

# Offsets counted by hand:  0         1         2         3         4         5         6         7
#                           0123456789012345678901234567890123456789012345678901234567890123456789012345
TEXT = "Mutations cause breast cancer. Dr. Lee saw hyperthyroidism in 2 . 5 % of cases.\nNo tumour seen.\n"
ANN = (
    "T1\tSpecificDisease 16 29\tbreast cancer\n"
    "N1\tReference T1 MeSH:D001943\n"
    "T2\tModifier 48 58\tthyroidism\n"        # edge inside the word 'hyperthyroidism' (43-58)
    "#1\tAnnotatorNotes T2\tcheck\n"
    "T3\tDiseaseClass 80 82;83 89\tNo tumour\n"  # discontinuous: 'No' + 'tumour'
    "A1\tNegated T3\n"
)


def brat_folder(root: Path, text: str = TEXT, ann: str = ANN, name: str = "doc1") -> Path:
    write(root / f"{name}.txt", text)
    write(root / f"{name}.ann", ann)
    return root


def ner_config(train: Path | str, *overrides: str) -> object:
    return load_config(REPO / "configs/tiny/ner_brat.yaml",
                       [f"data.train={train}", "data.validation=null", "data.test=null", "data.format=auto", *overrides])


def test_brat_folder_becomes_bio_sentences_by_hand(tmp_path: Path) -> None:
    documents, report = read_brat_folder(brat_folder(tmp_path))
    tagged = tag_documents(documents, report, dict.fromkeys(NCBI_TYPES, "Disease"), {"Disease"})
    assert tagged.tokens == [
        ["Mutations", "cause", "breast", "cancer", "."],
        ["Dr", ".", "Lee", "saw", "hyperthyroidism", "in", "2", ".", "5", "%", "of", "cases", "."],  # 'Dr.' and '2 . 5' do not end it
        ["No", "tumour", "seen", "."],
    ]
    assert tagged.tags == [
        ["O", "O", "B-Disease", "I-Disease", "O"],
        ["O", "O", "O", "O", "B-Disease", "O", "O", "O", "O", "O", "O", "O", "O"],  # widened to the whole word
        ["B-Disease", "I-Disease", "O", "O"],  # the covering span of the two fragments
    ]
    assert tagged.rows == ["doc1@0", "doc1@31", "doc1@80"] and tagged.groups == ["doc1"] * 3
    assert report.other_lines == Counter({"N": 1, "#": 1, "A": 1})
    assert report.spans == Counter({"SpecificDisease": 1, "Modifier": 1, "DiseaseClass": 1})
    assert report.discontinuous == ["doc1.ann line 5 (80 82;83 89)"]
    assert report.widened == ["doc1 48-58 (doc1.ann line 3)"]
    notes = "\n".join(report.notes())
    assert "N 1" in notes and "1 discontinuous" in notes and "1 entity edge(s) inside a word" in notes


def test_sentences_are_never_cut_inside_an_entity() -> None:
    text = "Patients had breast cancer. Type 2 diabetes was rare. Nothing else."
    assert [text[s:e] for s, e in sentence_bounds(text)] == ["Patients had breast cancer.", "Type 2 diabetes was rare.", "Nothing else."]
    crossing = Span(13, 34, "Disease", "x")  # 'breast cancer. Type 2'
    assert [text[s:e] for s, e in sentence_bounds(text, [crossing])] == [
        "Patients had breast cancer. Type 2 diabetes was rare.", "Nothing else."]


def test_doccano_and_label_studio_read_like_brat(tmp_path: Path) -> None:
    spans = [(16, 29, "SpecificDisease"), (48, 58, "Modifier"), (80, 89, "DiseaseClass")]
    doccano = write(tmp_path / "d.jsonl", json.dumps({"id": 7, "text": TEXT, "label": [list(s) for s in spans]}) + "\n")
    studio = write(tmp_path / "ls.json", json.dumps([{"id": 3, "data": {"text": TEXT}, "annotations": [{"result": [
        {"type": "labels", "value": {"start": s, "end": e, "text": TEXT[s:e], "labels": [t]}} for s, e, t in spans
    ] + [{"type": "relation", "from_id": "a", "to_id": "b"}]}]}]))
    mapping = dict.fromkeys(NCBI_TYPES, "Disease")
    brat_docs, brat_report = read_brat_folder(brat_folder(tmp_path / "brat"))
    expected = tag_documents(brat_docs, brat_report, mapping)
    for path in (doccano, studio):
        documents, report = read_span_records(path)
        tagged = tag_documents(documents, report, mapping)
        assert (tagged.tokens, tagged.tags) == (expected.tokens, expected.tags), path.name
    assert read_span_records(studio)[1].other_lines == Counter({"relation": 1})
    # read through the config: .jsonl and .json are told apart from token lists by their keys
    assert read_split(ner_config(doccano, *[f"labels.map.{t}=Disease" for t in NCBI_TYPES]), str(doccano)).tags == expected.tags


def test_overlapping_spans_are_an_error_or_the_longest_by_rule(tmp_path: Path) -> None:
    ann = "T1\tSpecificDisease 16 29\tbreast cancer\nT2\tModifier 23 29\tcancer\nT3\tSpecificDisease 16 29\tbreast cancer\n"
    folder = brat_folder(tmp_path, ann=ann)
    with pytest.raises(DataError, match=r"doc1.ann line 2 \(Modifier 23-29\) overlaps doc1.ann line 1"):
        classes = "labels.classes=[O, B-SpecificDisease, I-SpecificDisease, B-Modifier, I-Modifier]"
        read_split(ner_config(folder, "labels.map=null", classes), str(folder))
    documents, report = read_brat_folder(folder)
    tagged = tag_documents(documents, report, overlapping="longest")
    assert tagged.tags[0] == ["O", "O", "B-SpecificDisease", "I-SpecificDisease", "O"]
    assert report.overlaps_dropped == ["doc1.ann line 2"] and report.duplicates == ["doc1.ann line 3"]


BAD = {
    "offsets outside the text": ({"d.txt": "short text\n", "d.ann": "T1\tDisease 5 40\tx\n"}, ["d.ann line 1", "5-40", "outside"]),
    ".ann without its .txt": ({"a.txt": "x\n", "a.ann": "", "b.ann": "T1\tDisease 0 1\tx\n"}, ["b.ann", "no b.txt beside it"]),
    "unknown type": ({"d.txt": "a cancer\n", "d.ann": "T1\tTumour 2 8\tcancer\n"}, ["d.ann line 1", "'Tumour'", "not in labels.classes"]),
    "mismatched span text": ({"d.txt": "a cancer here\n", "d.ann": "\nT1\tDisease 2 8\tcancre\n"},
                             ["d.ann line 2", "2-8 in d.txt", "6 and 6 characters, first differing at character 5"]),
    "malformed line": ({"d.txt": "a cancer here\n", "d.ann": "T1\tDisease 2 8 cancer here\n"},
                       ["d.ann line 1", "not a brat entity line", "2 tab-separated field(s), not 3"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_brat_input_names_file_and_line_and_writes_nothing(tmp_path: Path, case: str) -> None:
    files, words = BAD[case]
    for name, content in files.items():
        write(tmp_path / "in" / name, content)
    config = ner_config(tmp_path / "in", f"output.dir={tmp_path / 'out'}", "labels.map=null")
    with pytest.raises(DataError) as raised:
        api.train(config)
    for word in words:
        assert word in str(raised.value), str(raised.value)
    assert not {"cancre", "cancer", "short text"} & set(str(raised.value).replace("'", " ").split()), str(raised.value)
    assert not (tmp_path / "out").exists()


def test_label_studio_task_without_annotation(tmp_path: Path) -> None:
    path = write(tmp_path / "ls.json", json.dumps([
        {"id": 1, "data": {"text": "a cancer"}, "annotations": [{"result": []}]},
        {"id": 42, "data": {"text": "b"}, "annotations": [{"was_cancelled": True, "result": []}]},
    ]))
    with pytest.raises(DataError, match=r"ls.json task 42 \(record 2\): the task has no annotation"):
        read_span_records(path)


def test_bad_brat_folder_exits_2_through_the_cli(tmp_path: Path) -> None:
    write(tmp_path / "in" / "d.txt", "short\n")
    write(tmp_path / "in" / "d.ann", "T1\tSpecificDisease 0 50\tx\n")
    result = run_cli("train", "configs/tiny/ner_brat.yaml", "--set", f"data.train={tmp_path / 'in'}", "--set", "data.validation=null",
                     "--set", "data.test=null", "--set", f"output.dir={tmp_path / 'out'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "d.ann line 1: offsets 0-50 lie outside the text" in result.stderr
    assert not (tmp_path / "out").exists()


# -- splits and leakage --------------------------------------------------------------------


def test_validation_split_keeps_groups_whole_and_stratifies() -> None:
    groups = [f"patient{i // 3}" for i in range(60)]  # 20 patients, 3 notes each, one label per patient
    labels = ["yes" if (i // 3) % 4 == 0 else "no" for i in range(60)]
    data = TextExamples([f"note {i}" for i in range(60)], labels, list(range(2, 62)), "t.csv", groups=groups)
    train, validation = stratified_split(data, 0.25, seed=1)
    assert not set(train.groups) & set(validation.groups)
    assert len(train) + len(validation) == 60
    assert Counter(validation.labels)["yes"] >= 3 and Counter(validation.labels)["no"] >= 3  # both classes, a quarter each way


def test_explicit_splits_sharing_a_group_are_an_error(tmp_path: Path) -> None:
    rows = "text,label,patient\n" + "".join(f"note number {i} about things,{'valid' if i % 2 else 'invalid'},p{i}\n" for i in range(8))
    train = write(tmp_path / "train.csv", rows)
    validation = write(tmp_path / "validation.csv", "text,label,patient\nanother note,valid,p3\nmore,invalid,p5\nx,valid,p99\n")
    config = load_config(REPO / "configs/tiny/diagnosis.yaml", [f"data.train={train}", f"data.validation={validation}", "data.test=null",
                                                                "data.group_column=patient"])
    with pytest.raises(DataError, match=r"2 group\(s\) in both train \(2 example\(s\).*validation \(2 example\(s\).*: "
                                        r"row 5 = row 2, row 7 = row 3\n") as raised:
        api.prepare_data(config)
    assert "p3" not in str(raised.value) and "p5" not in str(raised.value)  # group ids are cells of the data


def test_leakage_finds_exact_and_near_duplicates_only() -> None:
    base = "Patient developed a generalized urticarial rash two hours after the second dose and recovered."
    train = ["  PATIENT developed a generalized  urticarial rash two hours after the second dose and recovered.",
             base.replace("two hours", "three hours"), "Injection site soreness for one day, no other complaints were noted."]
    other = [base, "Fever of 39 C with febrile seizure; admitted overnight for observation and discharged."]
    leak = find_leaks(("train", train, ["row 2", "row 3", "row 4"]), ("validation", other, ["row 2", "row 3"]), threshold=0.9)
    assert leak is not None
    assert leak.exact == [("row 2", "row 2")]  # case and whitespace do not hide a copy
    assert leak.near == []  # the text with an exact copy is reported once
    near = find_leaks(("train", train[1:], ["row 3", "row 4"]), ("validation", other, ["row 2", "row 3"]), threshold=0.9)
    assert near is not None and [(a, b) for a, b, _ in near.near] == [("row 3", "row 2")] and not near.exact
    assert find_leaks(("train", train[2:], ["row 4"]), ("validation", other, ["row 2", "row 3"]), threshold=0.9) is None


def test_on_leak_error_stops_with_names(tmp_path: Path) -> None:
    text = "A long enough clinical narrative about chest pain and shortness of breath"
    train = write(tmp_path / "train.csv", "text,label\n" + "".join(f"case {i} of something unrelated entirely,{i % 2}\n" for i in range(6))
                  + f"{text},1\n")
    validation = write(tmp_path / "v.csv", f"text,label\n{text.upper()},1\nshort,0\n")
    overrides = [f"data.train={train}", f"data.validation={validation}", "data.test=null"]
    summary = api.prepare_data(load_config(REPO / "configs/tiny/diagnosis.yaml", overrides)).summary()
    assert summary["leakage"][0]["exact_pairs"] == [["row 8", "row 2"]]
    with pytest.raises(DataError, match=r"train / validation: 1 exact duplicate\(s\) \(row 8 = row 2\)"):
        api.prepare_data(load_config(REPO / "configs/tiny/diagnosis.yaml", [*overrides, "data.on_leak=error"]))


# -- metrics ---------------------------------------------------------------------------------


def test_overlap_f1_by_hand() -> None:
    gold = [["B-D", "I-D", "O", "B-M", "O", "B-D"], ["B-D", "I-D", "I-D", "O"]]
    predicted = [["O", "B-D", "O", "B-D", "O", "B-D"], ["B-D", "O", "B-D", "O"]]
    # sentence 1: gold D[0-1], M[3], D[5]; predicted D[1] (overlaps gold D), D[3] (overlaps only M: wrong type), D[5] (exact)
    # sentence 2: gold D[0-2]; predicted D[0], D[2], both inside it
    # D: predicted 5, of which 4 overlap a gold D; gold D 3, all 3 overlapped -> P 0.8, R 1.0, F1 8/9
    # M: predicted 0, gold 1 -> 0 / 0 / 0. Overall: P 4/5, R 3/4, F1 24/31
    scores = overlap_entity_scores(gold, predicted)
    assert scores["per_class"]["D"] == pytest.approx({"precision": 0.8, "recall": 1.0, "f1": 8 / 9, "support": 3})
    assert scores["per_class"]["M"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1})
    assert (scores["precision"], scores["recall"], scores["f1"]) == pytest.approx((0.8, 0.75, 24 / 31))
    strict = ner_metrics(gold, predicted)
    assert strict["f1"] == pytest.approx(2 * (1 / 5) * (1 / 4) / (1 / 5 + 1 / 4))  # only D[5] matches exactly
    assert strict["per_class"]["D"]["overlap_f1"] == pytest.approx(8 / 9) and strict["overlap"]["f1"] == pytest.approx(24 / 31)


# -- the seeds' layouts ------------------------------------------------------------------------


def test_seed_layouts_read_with_the_shipped_configs(tmp_path: Path) -> None:
    vaers = write(tmp_path / "train.csv", "ID,Seriousness,Narrative\n0033001,Non-serious,pt vax; no adverse reactions.\n"
                  "0053056,Serious,hospitalized 3 days with fever\n0048158,D/LT,died\n0034885,Non-serious,redness\n")
    config = load_config(REPO / "configs/seriousness.yaml", [f"data.train={vaers}", f"data.validation={vaers}"])
    data = read_split(config, str(vaers))
    assert data.labels == ["Non-serious", "Serious", "D/LT", "Non-serious"] and data.texts[2] == "died"
    notebook = write(tmp_path / "d.csv", "text,label\nchest pain; proposed: MI,1\ncough; proposed: migraine,0\n")
    config = load_config(REPO / "configs/diagnosis.yaml", [f"data.train={notebook}"])
    assert read_split(config, str(notebook)).labels == ["valid", "invalid"]
    with open(REPO / "data/diagnosis/train.csv", newline="") as handle:
        assert {row["label"] for row in csv.DictReader(handle)} == {"0", "1"}


def test_label_map_must_lead_to_listed_classes() -> None:
    with pytest.raises(ConfigError, match=r"labels.map: maps to 'Valid', which is not among the labels.classes"):
        load_config(REPO / "configs/diagnosis.yaml", ["labels.map.1=Valid"])
    with pytest.raises(ConfigError, match=r"labels.map: maps to 'Disorder'.*entity types"):
        load_config(REPO / "configs/ner_brat.yaml", ["labels.map.Modifier=Disorder"])


# -- eval and predict on documents (the session's tiny NER model) ------------------------------------


def test_eval_on_brat_documents_equals_eval_on_the_same_conll_sentences(trained_models: dict[str, Path]) -> None:
    from_conll = api.evaluate(trained_models["ner"], REPO / "data/ner/test.conll", resamples=0).metrics
    merge = {"SpecificDisease": "Disease", "Modifier": "Disease"}  # the model trained on CoNLL's one type
    from_brat = api.evaluate(trained_models["ner"], REPO / "data/ner_brat/test", resamples=0, label_map=merge).metrics
    for key in ("precision", "recall", "f1", "n_entities", "n_sentences"):
        assert from_brat[key] == from_conll[key], key
    assert from_brat["overlap"] == from_conll["overlap"] and from_brat["overlap"]["f1"] >= from_brat["f1"]


def test_predict_folder_writes_ann_files_that_match_eval(trained_models: dict[str, Path], tmp_path: Path) -> None:
    documents = REPO / "data/ner_brat/test"
    out = tmp_path / "pred"
    result = run_cli("predict", "--model", str(trained_models["ner"]), "--input", str(documents), "--output", str(out), "--format", "brat")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in documents.iterdir())
    for text in documents.glob("*.txt"):
        assert (out / text.name).read_bytes() == text.read_bytes()
    predicted, report = read_brat_folder(out)  # the reader checks every offset against the text
    as_tags = tag_documents(predicted, report)
    merge = {"SpecificDisease": "Disease", "Modifier": "Disease"}
    evaluation = api.evaluate(trained_models["ner"], documents, resamples=0, label_map=merge)
    # the same entities as eval's word tags (an I- after O starts an entity, as seqeval reads it)
    assert [get_entities(tags) for tags in as_tags.tags] == [get_entities(r["predicted"]) for r in evaluation.records]
    assert sum(map(len, (get_entities(t) for t in as_tags.tags))) > 10
    again = run_cli("predict", "--model", str(trained_models["ner"]), "--input", str(documents), "--output", str(out), "--format", "brat")
    assert again.returncode == 2 and "never written into it" in again.stderr


def test_group_of_a_document_defaults_to_its_name() -> None:
    report = ReadReport("x")
    documents = [Document("a", "One sentence here. Another one here."), Document("b", "Third sentence.")]
    assert tag_documents(documents, report).groups == ["a", "a", "b"]


def test_label_studio_offsets_in_utf16_units_are_converted_by_the_quoted_text(tmp_path: Path) -> None:
    """Some Label Studio versions count offsets as JavaScript does (an emoji is two UTF-16 units), others in
    characters: the quoted region text says which, and both must give the same spans."""
    text = "Pt \U0001F637 seen. Has breast cancer \U0001FA7A and no asthma."
    words = ["breast cancer", "asthma"]
    def utf16(offset: int) -> int:  # independently: the length of the UTF-16 encoding of what precedes
        return len(text[:offset].encode("utf-16-le")) // 2
    spans = [(text.index(w), text.index(w) + len(w), w) for w in words]
    def task(task_id: int, convert: Any) -> dict:
        return {"id": task_id, "data": {"text": text}, "annotations": [{"result": [
            {"type": "labels", "value": {"start": convert(s), "end": convert(e), "text": w, "labels": ["Disease"]}} for s, e, w in spans]}]}
    assert [utf16(s) for s, _, _ in spans] != [s for s, _, _ in spans]  # the emoji shift the JavaScript offsets
    path = write(tmp_path / "ls.json", json.dumps([task(1, utf16), task(2, lambda offset: offset)]))
    documents, report = read_span_records(path)
    for document in documents:
        assert [(span.start, span.end) for span in document.spans] == [(s, e) for s, e, _ in spans]
        assert [document.text[span.start:span.end] for span in document.spans] == words
    assert report.utf16_offsets == [f"task 1 {utf16(s)}-{utf16(e)}" for s, e, _ in spans]
    assert sum(": 2 region(s) whose offsets count UTF-16 units" in note for note in report.notes()) == 1
    bad = task(3, lambda offset: offset)
    bad["annotations"][0]["result"][0]["value"]["text"] = "breast cancre"
    with pytest.raises(DataError) as raised:
        read_span_records(write(tmp_path / "bad.json", json.dumps([bad])))
    message = str(raised.value)  # where (file, task, offsets) and how the texts differ, never either text
    assert f"bad.json task 3: the text at {spans[0][0]}-{spans[0][1]} is not the text the export quotes for it" in message
    assert "(13 and 13 characters, first differing at character 12 of the span)" in message
    assert "cancre" not in message and "cancer" not in message and "breast" not in message


def test_a_brat_output_that_would_be_refused_is_refused_before_any_prediction(trained_models: dict[str, Path], tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-empty --output folder, or a classification model, was refused only after the whole folder was predicted."""
    from conftest import invoke_cli

    monkeypatch.setattr(api, "predict_documents", lambda *a, **k: pytest.fail("predicted first"))  # what the CLI calls
    documents = str(REPO / "data/ner_brat/test")
    busy = write(tmp_path / "busy" / "mine.ann", "T1\tDisease 0 5\tasthma\n").parent
    refused = invoke_cli("predict", "--model", str(trained_models["ner"]), "--input", documents, "--output", str(busy),
                         "--format", "brat")
    assert refused.returncode == 2 and "never written into it" in refused.stderr
    wrong = invoke_cli("predict", "--model", str(trained_models["diagnosis"]), "--input", documents, "--output",
                       str(tmp_path / "new"), "--format", "brat")
    assert wrong.returncode == 2 and "this is a classification model" in wrong.stderr
    assert not (tmp_path / "new").exists()
