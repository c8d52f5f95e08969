"""The real CLI on the tiny configs: train, eval, predict, reload."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TASKS, invoke_cli, run_cli, write

TEST_FILES = {
    "diagnosis": "data/diagnosis/test.csv",
    "section_header": "data/section_header/test.csv",
    "seriousness": "data/seriousness/test.csv",
    "ner": "data/ner/test.conll",
    "symptoms": "data/symptoms/test.csv",
}


@pytest.mark.parametrize("task", TASKS)
def test_model_folder_is_complete_and_named(trained_models: dict[str, Path], task: str) -> None:
    folder = trained_models[task]
    names = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "labels.json", "clintune.yaml", "metrics.json"} <= names
    assert not any(name.endswith((".bin", ".pkl", ".pickle", ".pt")) for name in names)
    labels = json.loads((folder / "labels.json").read_text())
    hf_config = json.loads((folder / "config.json").read_text())
    assert [hf_config["id2label"][str(i)] for i in range(len(labels["classes"]))] == labels["classes"]
    resolved = yaml.safe_load((folder / "clintune.yaml").read_text())
    assert Path(resolved["data"]["train"]).is_absolute()
    assert resolved["output"]["dir"] == str(folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert {"validation", "test", "data"} <= set(metrics)
    assert not folder.with_name(folder.name + ".work").exists()


def test_tiny_models_learn(trained_models: dict[str, Path]) -> None:
    """Wrong label alignment or a broken loss would keep these near chance."""
    ner = json.loads((trained_models["ner"] / "metrics.json").read_text())
    sections = json.loads((trained_models["section_header"] / "metrics.json").read_text())
    # Validation names diseases training never shows (some words unseen): the tiny random-init encoder tags
    # the training words it knows and misses unseen modifiers; a broken alignment or loss scores about 0.
    assert ner["validation"]["f1"] > 0.25
    assert sections["validation"]["f1_macro"] > 0.5


@pytest.mark.parametrize("task", TASKS)
def test_eval_writes_flat_metrics_matching_training(trained_models: dict[str, Path], task: str, tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = run_cli("eval", "--model", str(trained_models[task]), "--data", TEST_FILES[task], "--output", str(report))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((report / "metrics.json").read_text())
    trained = json.loads((trained_models[task] / "metrics.json").read_text())["test"]
    headline = {"binary": "f1", "multiclass": "f1_macro", "multilabel": "f1_micro", "ner": "f1"}[
        json.loads((trained_models[task] / "labels.json").read_text())["task_type"]
    ]
    assert metrics[headline] == pytest.approx(trained[headline])
    assert metrics["per_class"] == trained["per_class"]
    assert "precision" in result.stdout and "support" in result.stdout
    rows = (report / "predictions.jsonl").read_text().splitlines()
    expected_rows = {"ner": 50, "symptoms": 60}.get(task, 40)
    assert len(rows) == expected_rows


@pytest.mark.parametrize("task", ["diagnosis", "section_header", "seriousness"])
def test_predict_json_for_classification(trained_models: dict[str, Path], task: str) -> None:
    classes = json.loads((trained_models[task] / "labels.json").read_text())["classes"]
    result = run_cli("predict", "--model", str(trained_models[task]), "--text", "first text", "--text", "second",
                     "--json", "--probabilities")
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert len(records) == 2
    for record in records:
        assert record["label"] in classes
        assert 0 <= record["score"] <= 1
        assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert record["probabilities"][record["label"]] == pytest.approx(record["score"])


def test_predict_ner_entities_have_offsets(trained_models: dict[str, Path]) -> None:
    text = "Screening for  cystic fibrosis is recommended; Huntington disease was not observed."
    result = run_cli("predict", "--model", str(trained_models["ner"]), "--text", text, "--json")
    assert result.returncode == 0, result.stderr
    entities = json.loads(result.stdout)[0]["entities"]
    assert entities, "the tiny NER model should find the diseases it was trained on"
    for entity in entities:
        assert set(entity) == {"text", "label", "start", "end", "score"}
        assert text[entity["start"] : entity["end"]] == entity["text"]
    assert "cystic fibrosis" in [e["text"] for e in entities]


def test_plain_predict_output_names_the_input_of_every_line(trained_models: dict[str, Path], tmp_path: Path) -> None:
    texts = ["Screening for  cystic fibrosis is recommended; Huntington disease was not observed.", "The patient slept well ."]
    arguments = ["predict", "--model", str(trained_models["ner"]), "--text", texts[0], "--text", texts[1]]
    plain, as_json = run_cli(*arguments), run_cli(*arguments, "--json")
    assert plain.returncode == 0 and as_json.returncode == 0, plain.stderr
    expected = []
    for number, record in enumerate(json.loads(as_json.stdout), start=1):
        expected += [f"text {number}\t{e['label']}\t{e['start']}-{e['end']}\t{e['score']:.3f}\t{e['text']}" for e in record["entities"]]
        expected += [] if record["entities"] else [f"text {number}\tno entities"]
    assert plain.stdout.splitlines() == expected
    assert expected[0].startswith("text 1\tDisease\t") and expected[-1] == "text 2\tno entities"

    source = write(tmp_path / "texts.txt", "Doctor: Any allergies?\nPatient: Penicillin.\n\nDoctor: Do you smoke?\n")
    result = run_cli("predict", "--model", str(trained_models["section_header"]), "--input", str(source))
    assert result.returncode == 0, result.stderr
    classes = json.loads((trained_models["section_header"] / "labels.json").read_text())["classes"]
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [row[0] for row in rows] == ["line 1", "line 2", "line 4"]
    assert all(row[1] in classes and 0 <= float(row[2]) <= 1 for row in rows)


def test_predict_file_to_file(trained_models: dict[str, Path], tmp_path: Path) -> None:
    source = write(tmp_path / "texts.txt", "Doctor: Any allergies?\nPatient: Penicillin.\n\nDoctor: Do you smoke?\n")
    output = tmp_path / "out" / "predictions.jsonl"
    result = run_cli("predict", "--model", str(trained_models["section_header"]), "--input", str(source), "--output", str(output))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["line"] for r in records] == [1, 2, 4]


def test_predict_applies_training_preprocessing(trained_models: dict[str, Path]) -> None:
    from clintune.api import predict

    tagged = predict(trained_models["section_header"], ["Doctor: Are you taking any medicines?\nPatient: I take metformin."])
    plain = predict(trained_models["section_header"], ["Are you taking any medicines? I take metformin."])
    assert tagged[0].probabilities == pytest.approx(plain[0].probabilities)


def test_batched_sorted_prediction_equals_one_at_a_time(trained_models: dict[str, Path]) -> None:
    from clintune.data.readers import read_text_table
    from clintune.inference.predictor import Predictor

    texts = read_text_table(REPO / "data/section_header/test.csv", "csv", "dialogue", "section_header", True).texts
    batched = Predictor.from_folder(trained_models["section_header"], batch_size=8).classify(texts)
    single = Predictor.from_folder(trained_models["section_header"], batch_size=1).classify(texts)
    assert [p.label for p in batched] == [p.label for p in single]
    assert [p.score for p in batched] == pytest.approx([p.score for p in single], abs=1e-5)
    ner = Predictor.from_folder(trained_models["ner"], batch_size=16)
    sentences = ["Patients with breast cancer .", "No cases .", "The risk of colorectal carcinoma and cystic fibrosis increased with age ."]
    one_by_one = [ner.extract_entities([s])[0] for s in sentences]
    batched_entities = ner.extract_entities(sentences)
    key = lambda entities: [(e.text, e.label, e.start, e.end) for e in entities]  # noqa: E731
    assert [key(e) for e in batched_entities] == [key(e) for e in one_by_one]
    assert [e.score for es in batched_entities for e in es] == pytest.approx([e.score for es in one_by_one for e in es], abs=1e-5)


def test_transformers_pipeline_prints_real_label_names(trained_models: dict[str, Path]) -> None:
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(trained_models["seriousness"]), device="cpu")
    assert classify("the patient died")[0]["label"] in {"D/LT", "Serious", "Non-serious"}


def test_existing_output_is_not_overwritten(trained_models: dict[str, Path]) -> None:
    folder = trained_models["ner"]
    before = (folder / "model.safetensors").read_bytes()
    result = run_cli("train", "configs/tiny/ner.yaml", "--set", f"output.dir={folder}")
    assert result.returncode == 2
    assert "already exists" in result.stderr and "--overwrite" in result.stderr
    assert (folder / "model.safetensors").read_bytes() == before


def test_eval_rejects_labels_the_model_never_saw(trained_models: dict[str, Path], tmp_path: Path) -> None:
    data = write(tmp_path / "t.jsonl", '{"Narrative": "x", "Seriousness": "Fatal"}\n{"Narrative": "y", "Seriousness": "Serious"}\n')
    result = run_cli("eval", "--model", str(trained_models["seriousness"]), "--data", str(data))
    assert result.returncode == 2
    assert "'Fatal' (1)" in result.stderr


def test_incomplete_model_folder_says_what_is_missing(trained_models: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(trained_models["diagnosis"], broken)
    (broken / "labels.json").unlink()
    result = invoke_cli("predict", "--model", str(broken), "--text", "x")
    assert result.returncode == 2
    assert "missing labels.json" in result.stderr
    assert "Traceback" not in result.stderr


def test_mismatched_label_files_are_detected(trained_models: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(trained_models["diagnosis"], broken)
    (broken / "labels.json").write_text(json.dumps({"task_type": "binary", "classes": ["valid", "invalid"], "positive": "valid"}))
    result = invoke_cli("predict", "--model", str(broken), "--text", "x")
    assert result.returncode == 2
    assert "does not match" in result.stderr


def test_predict_needs_text_or_input(trained_models: dict[str, Path]) -> None:
    result = invoke_cli("predict", "--model", str(trained_models["diagnosis"]))
    assert result.returncode == 2
    assert "--text" in result.stderr


def test_entity_after_the_first_window_is_found(trained_models: dict[str, Path]) -> None:
    from clintune.inference.predictor import Predictor

    predictor = Predictor.from_folder(trained_models["ner"])
    predictor.config.model.max_length = 24
    predictor.config.model.stride = 6
    filler = "No cases were observed in the control group . " * 12
    text = filler + "Patients with cystic fibrosis were enrolled in the study ."
    assert len(predictor.tokenizer(text)["input_ids"]) > 4 * 24
    entities = predictor.extract_entities([text])[0]
    found = [e for e in entities if e.text == "cystic fibrosis"]
    assert found and found[0].start == len(filler) + len("Patients with ")


def test_an_empty_text_gets_no_label(trained_models: dict[str, Path]) -> None:
    """An empty, blank or tag-only note (empty once the speaker tags are removed) is refused, never labelled."""
    from clintune.api import predict
    from clintune.errors import DataError

    folder = trained_models["section_header"]
    note = "Doctor: Any allergies?\nPatient: Penicillin gives me a rash."
    texts = [note, "", "   ", "Doctor:", note]
    with pytest.raises(DataError, match=r"3 of 5 text\(s\).*text 2 \(empty\), text 3 \(empty\), text 4 \(empty\)"):
        predict(folder, texts)
    kept = predict(folder, texts, on_empty="drop")
    assert kept[1:4] == [None, None, None]
    alone = predict(folder, [note])[0]  # the kept texts' answers are their own, not a neighbour's (batching moves ~1e-8)
    assert [r.probabilities for r in (kept[0], kept[4])] == [pytest.approx(alone.probabilities)] * 2

    refused = invoke_cli("predict", "--model", str(folder), "--text", note, "--text", "Doctor:")
    assert refused.returncode == 2 and "text 2 (empty)" in refused.stderr and "Penicillin" not in refused.stderr
    dropped = invoke_cli("predict", "--model", str(folder), "--text", "", "--text", note, "--on-empty", "drop", "--json")
    assert dropped.returncode == 0 and "skipped (--on-empty drop): text 1" in dropped.stderr
    assert [record["text"] for record in json.loads(dropped.stdout)] == [2]


def test_an_empty_entity_text_gets_no_entities(trained_models: dict[str, Path]) -> None:
    from clintune.api import predict
    from clintune.errors import DataError

    with pytest.raises(DataError, match=r"text 1 \(empty\)"):
        predict(trained_models["ner"], [" \n", "Patients with cystic fibrosis."])
    assert predict(trained_models["ner"], ["", "Patients with cystic fibrosis."], on_empty="drop")[0] is None


@pytest.mark.parametrize("name", ["notes_copy.csv", "results.jsonl", "notes.parquet"])
def test_predict_never_replaces_a_file_it_did_not_write(trained_models: dict[str, Path], tmp_path: Path, name: str) -> None:
    """A file of the user's that shares the --output name is refused; clintune's own earlier output is replaced."""
    import pandas as pd

    folder, source = str(trained_models["section_header"]), str(REPO / TEST_FILES["section_header"])
    mine = tmp_path / name
    if name.endswith(".parquet"):
        pd.DataFrame({"note_id": [1], "text": ["chest pain"]}).to_parquet(mine)
    else:
        write(mine, "id,text\n1,chest pain\n" if name.endswith(".csv") else '{"id": 1, "text": "chest pain"}\n')
    before = mine.read_bytes()
    refused = invoke_cli("predict", "--model", folder, "--input", source, "--output", str(mine))
    assert refused.returncode == 2 and "is never replaced" in refused.stderr and "chest pain" not in refused.stderr
    assert mine.read_bytes() == before

    ours = tmp_path / ("ours.parquet" if name.endswith(".parquet") else "ours.jsonl")
    for _ in range(2):  # the second run replaces the first one's predictions
        assert invoke_cli("predict", "--model", folder, "--input", source, "--output", str(ours)).returncode == 0
    rows = len(pd.read_csv(source))
    written = pd.read_parquet(ours) if ours.suffix == ".parquet" else pd.read_json(ours, lines=True)
    assert len(written) == rows and {"label", "score"} <= set(written.columns)
