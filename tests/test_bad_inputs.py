"""A catalogue of bad inputs: each ends in exit status 2, a message naming what
is wrong and where, and no output folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import REPO, invoke_cli, run_cli, write

GOOD_CSV = "text,label\nchest pain and fever,valid\nheadache with aura,invalid\nrash,valid\ncough,invalid\n"
GOOD_CONLL = "Cystic\tB-Disease\nfibrosis\tI-Disease\n\nNo\tO\ncases\tO\n"


@dataclass
class Case:
    """Files to write, the CLI arguments (``{tmp}`` is the case folder) and words the message must hold."""

    files: dict[str, str | bytes]
    args: list[str]
    words: list[str]
    extra: list[str] = field(default_factory=list)


def train_args(config: str, *sets: str) -> list[str]:
    args = ["train", config, "--set", "output.dir={tmp}/out"]
    for item in sets:
        args += ["--set", item]
    return args


def diagnosis(train: str, *sets: str) -> list[str]:
    return train_args("configs/tiny/diagnosis.yaml", f"data.train={{tmp}}/{train}", "data.validation=null", "data.test=null", *sets)


def ner(train: str, *sets: str) -> list[str]:
    return train_args("configs/tiny/ner.yaml", f"data.train={{tmp}}/{train}", "data.test=null", *sets)


CASES = {
    # csv / tsv
    "csv missing file": Case({}, diagnosis("absent.csv"), ["absent.csv", "not found"]),
    "csv missing column": Case({"t.csv": "txt,label\na,valid\n"}, diagnosis("t.csv"), ["missing column 'text'", "did you mean 'txt'"]),
    "csv not utf-8": Case({"t.csv": b"text,label\ncaf\xe9 au lait,valid\n"}, diagnosis("t.csv"), ["not UTF-8", "byte offset 14", "t.csv"]),
    "csv empty file": Case({"t.csv": ""}, diagnosis("t.csv"), ["t.csv", "empty"]),
    "csv header only": Case({"t.csv": "text,label\n"}, diagnosis("t.csv"), ["no data rows"]),
    "csv empty text": Case({"t.csv": GOOD_CSV + ",valid\n"}, diagnosis("t.csv"), ["1 empty text", "row 6", "data.on_empty=drop"]),
    "csv empty label": Case({"t.csv": GOOD_CSV + "fever,\n"}, diagnosis("t.csv"), ["1 empty label", "row 6"]),
    "csv one class": Case({"t.csv": "text,label\na,valid\nb,valid\nc,valid\nd,valid\n"}, diagnosis("t.csv"), ["1 distinct label", "at least two"]),
    "csv label outside labels.classes": Case({"t.csv": GOOD_CSV + "x,Valid\n"}, diagnosis("t.csv"), ["not listed in labels.classes", "Valid"]),
    "csv validation label unseen": Case(
        {"t.csv": GOOD_CSV, "v.csv": "text,label\na,valid\nb,VALID\n"},
        diagnosis("t.csv", "data.validation={tmp}/v.csv", "labels.classes=null"), ["never saw", "'VALID' (1)"],
    ),
    "tsv wrong separator": Case({"t.tsv": GOOD_CSV}, diagnosis("t.tsv"), ["the file's separator is commas", "fix: set data.format: csv"]),
    # jsonl
    "jsonl broken line": Case({"t.jsonl": '{"text": "a", "label": "valid"}\n{"text": "b", \n'}, diagnosis("t.jsonl"), ["line 2", "not valid JSON"]),
    "jsonl not an object": Case({"t.jsonl": '["a", "valid"]\n'}, diagnosis("t.jsonl"), ["line 1", "JSON object"]),
    "jsonl missing key": Case({"t.jsonl": '{"txt": "a", "label": "valid"}\n'}, diagnosis("t.jsonl"), ["missing column 'text'"]),
    "ner jsonl length mismatch": Case(
        {"t.jsonl": '{"tokens": ["a", "b"], "tags": ["O", "O"]}\n{"tokens": ["a"], "tags": ["O", "B-Disease"]}\n'},
        ner("t.jsonl", "data.format=jsonl"), ["line 2", "1 tokens, 2 tags"],
    ),
    # conll
    "conll stray column": Case({"t.conll": "Cystic\tNN\tB-Disease\n"}, ner("t.conll"), ["line 1", "found 3 column"]),
    "conll I after O": Case({"t.conll": GOOD_CONLL + "\nthe\tO\ncancer\tI-Disease\n"}, ner("t.conll"), ["line 7", "data.invalid_bio=repair"]),
    "conll unknown tag syntax": Case({"t.conll": "cancer\tDisease\n"}, ner("t.conll"), ["not O, B-TYPE or I-TYPE", "'Disease'"]),
    "conll tag outside labels.classes": Case({"t.conll": GOOD_CONLL + "\naspirin\tB-Chemical\n"}, ner("t.conll"), ["not listed in labels.classes", "B-Chemical"]),
    "conll empty file": Case({"t.conll": "\n\n"}, ner("t.conll"), ["no sentences"]),
    # config
    "config misspelt key": Case({}, train_args("configs/tiny/ner.yaml", "training.learnig_rate=0.1"), ["training.learnig_rate", "did you mean 'learning_rate'"]),
    "config negative learning rate": Case({}, train_args("configs/tiny/ner.yaml", "training.learning_rate=-1"), ["training.learning_rate", "greater than 0"]),
    "config fp16 on cpu": Case({}, train_args("configs/tiny/ner.yaml", "training.precision=fp16"), ["training.precision", "CUDA"]),
    "config bad override": Case({}, ["train", "configs/tiny/ner.yaml", "--set", "training.epochs"], ["dotted.key=value"]),
    "config missing extends": Case({"c.yaml": "extends: nowhere.yaml\n"}, ["train", "{tmp}/c.yaml"], ["nowhere.yaml", "not found"]),
    "config stride too wide": Case({}, train_args("configs/tiny/ner.yaml", "model.stride=100"), ["model.stride", "half"]),
    "config bad yaml": Case({"c.yaml": "task: [unclosed\n"}, ["validate", "{tmp}/c.yaml"], ["not valid YAML"]),
    # model folder and predict input
    "model folder missing": Case({}, ["predict", "--model", "{tmp}/nothing", "--text", "x"], ["model folder not found"]),
    "model folder without weights": Case(
        {"m/config.json": "{}", "m/labels.json": "{}"}, ["predict", "--model", "{tmp}/m", "--text", "x"],
        ["incomplete model folder", "model.safetensors", "clintune.yaml"],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    for relative, content in case.files.items():
        path = tmp_path / relative
        if isinstance(content, bytes):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        else:
            write(path, content)
    result = invoke_cli(*[a.replace("{tmp}", str(tmp_path)) for a in case.args])
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stderr[-2000:]}"
    assert "Traceback" not in result.stderr
    for word in case.words:
        assert word in result.stderr, f"{word!r} not in:\n{result.stderr}"
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "out.work").exists() or not any((tmp_path / "out.work").rglob("checkpoint-*"))


def test_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(("\ufeff" + GOOD_CSV.replace("\n", "\r\n")).encode())
    result = invoke_cli("validate", "configs/tiny/diagnosis.yaml", "--set", f"data.train={path}", "--set", "data.validation=null",
                     "--set", "data.test=null", "--set", "data.validation_fraction=0.5")
    assert result.returncode == 0, result.stderr
    assert "train: 2, validation: 2" in result.stdout


def test_empty_rows_dropped_with_a_count(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", GOOD_CSV + ",valid\n\t,invalid\n")
    result = invoke_cli("validate", "configs/tiny/diagnosis.yaml", "--set", f"data.train={path}", "--set", "data.on_empty=drop")
    assert result.returncode == 0, result.stderr
    assert "dropped 2 row(s)" in result.stderr


def test_train_test_duplicates_are_counted() -> None:
    result = invoke_cli("validate", "configs/tiny/section_header.yaml")
    assert result.returncode == 0
    assert "possible leakage, train / test: 8 exact duplicate(s) (row 114 = row 6," in result.stdout


SECRET = "Jane Doe MRN 12345"
ECHOES = {  # each of these printed the secret before messages stopped quoting data
    "tag column holds words": ({"t.conll": f"O\t{SECRET}\n"}, ner("t.conll"), ["not O, B-TYPE or I-TYPE", "line 1"]),
    "csv without a header row": ({"t.csv": "Jane Doe,12345,Serious,seizure\n" + GOOD_CSV[11:]}, diagnosis("t.csv"),
                                 ["missing column 'text', 'label'", "names none of them"]),
    "label column holds notes": ({"t.csv": GOOD_CSV, "v.csv": f"text,label\na,valid\nb,{SECRET}\n"},
                                 diagnosis("t.csv", "data.validation={tmp}/v.csv", "labels.classes=null"),
                                 ["never saw", "1 value that looks like text, not shown", "row 3"]),
    "brat text changed": ({"in/d.txt": f"{SECRET} seen\n", "in/d.ann": "T1\tDisease 0 4\tJune\n"},
                          train_args("configs/tiny/ner_brat.yaml", "data.train={tmp}/in", "data.validation=null", "data.test=null"),
                          ["d.ann line 1", "0-4 in d.txt", "first differing at character 2"]),
}


@pytest.mark.parametrize("name", list(ECHOES))
def test_messages_do_not_echo_clinical_text(name: str, tmp_path: Path) -> None:
    files, args, words = ECHOES[name]
    for relative, content in files.items():
        write(tmp_path / relative, content)
    result = invoke_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.returncode == 2, result.stderr
    for word in words:  # the error met is the one that used to print the secret
        assert word in result.stderr, result.stderr
    output = result.stdout + result.stderr
    assert not [piece for piece in ("Jane", "Doe", "12345") if piece in output], output


def test_predict_input_with_empty_texts(trained_models: dict[str, Path], tmp_path: Path) -> None:
    source = write(tmp_path / "in.csv", "dialogue\nDoctor: any allergies?\n\"\"\n")
    result = run_cli("predict", "--model", str(trained_models["section_header"]), "--input", str(source),
                     "--output", str(tmp_path / "o.jsonl"))
    assert result.returncode == 2
    assert "1 empty text(s)" in result.stderr and "row 3" in result.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_help_and_validate_do_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from clintune.cli import app\n"
        "sys.argv = ['clintune', 'validate', 'configs/tiny/ner.yaml']\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        # scikit-learn may load: the leakage check compares the splits by TF-IDF
        "heavy = sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert "config and data are valid" in done.stdout
    assert "HEAVY []" in done.stdout, done.stdout


def test_a_file_of_the_wrong_kind_is_named_as_such(trained_models: dict[str, Path], tmp_path: Path) -> None:
    """CoNLL data for a classification model was read as Parquet ('magic bytes not found'); a spreadsheet as csv."""
    model = str(trained_models["section_header"])
    conll = invoke_cli("eval", "--model", model, "--data", str(REPO / "data" / "ner" / "test.conll"))
    assert conll.returncode == 2 and "conll is NER data" in conll.stderr and "Parquet" not in conll.stderr
    sheet = tmp_path / "notes.xlsx"
    sheet.write_bytes(b"PK\x03\x04" + bytes(200))  # a zip container, as an .xlsx is
    refused = invoke_cli("eval", "--model", model, "--data", str(sheet))
    assert refused.returncode == 2 and "spreadsheet" in refused.stderr and "save the sheet as CSV" in refused.stderr
