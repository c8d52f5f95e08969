"""A model folder never runs the Python code it ships unless the caller asks, on every load.

The folder here is the tiny diagnosis model with an ``auto_map`` that points transformers at
``marker_model.py`` beside it, a module that writes a marker file (``$CLINTUNE_TEST_MARKER``)
when imported: the marker is the proof that the folder's code ran.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from conftest import invoke_cli, require_module, run_cli, write

from clintune.errors import ModelFolderError

MARKER_ENV = "CLINTUNE_TEST_MARKER"
MARKER_MODULE = f"""import os

from transformers import BertConfig, BertForSequenceClassification

if os.environ.get({MARKER_ENV!r}):
    with open(os.environ[{MARKER_ENV!r}], "a") as handle:
        handle.write("imported\\n")


class MarkerConfig(BertConfig):
    pass


class MarkerModel(BertForSequenceClassification):
    config_class = MarkerConfig
"""
AUTO_MAP = {"AutoConfig": "marker_model.MarkerConfig", "AutoModelForSequenceClassification": "marker_model.MarkerModel"}
TEXT = "Patient: 56-year-old male. Symptoms: right lower quadrant pain. Proposed diagnosis: acute appendicitis."
# clintune.yaml's model.trust_remote_code: the folder's word, which decides nothing either way
VARIANTS = {"yaml-true": True, "yaml-false": False}


@pytest.fixture(scope="module")
def code_folders(trained_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny diagnosis model, copied once per variant, shipping ``marker_model.py`` through its config.json."""
    root = tmp_path_factory.mktemp("remote-code")
    folders = {}
    for name, yaml_says in VARIANTS.items():
        folder = root / name
        shutil.copytree(trained_models["diagnosis"], folder)
        config_path = folder / "config.json"
        config_path.write_text(json.dumps(json.loads(config_path.read_text()) | {"auto_map": AUTO_MAP}))
        (folder / "marker_model.py").write_text(MARKER_MODULE)
        settings = folder / "clintune.yaml"
        text = settings.read_text()
        assert "trust_remote_code: false" in text
        settings.write_text(text.replace("trust_remote_code: false", f"trust_remote_code: {str(yaml_says).lower()}"))
        folders[name] = folder
    return folders


@pytest.fixture
def marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "marker"
    monkeypatch.setenv(MARKER_ENV, str(path))
    return path


def _inputs(tmp_path: Path) -> dict[str, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    documents = tmp_path / "documents"
    write(documents / "note.txt", TEXT)
    parquet = tmp_path / "notes.parquet"
    pq.write_table(pa.table({"text": [TEXT], "id": ["n1"]}), parquet)
    return {"csv": write(tmp_path / "notes.csv", f'text,label\n"{TEXT}",1\n'), "documents": documents, "parquet": parquet}


# -- which folders need their own code ----------------------------------------------

def test_shipped_code_names_the_modules_of_config_and_tokenizer_auto_maps(tmp_path: Path) -> None:
    from clintune.modeling.folder import shipped_code

    write(tmp_path / "config.json", json.dumps({"auto_map": {
        "AutoConfig": "configuration_tiny.TinyConfig", "AutoModel": "hub-org/repo--modeling_tiny.TinyModel"}}))
    write(tmp_path / "tokenizer_config.json", json.dumps({"auto_map": ["tokenization_tiny.TinyTokenizer", None]}))
    assert shipped_code(tmp_path) == ["configuration_tiny.py", "modeling_tiny.py", "tokenization_tiny.py"]
    write(tmp_path / "config.json", json.dumps({"model_type": "bert"}))
    (tmp_path / "tokenizer_config.json").unlink()
    assert shipped_code(tmp_path) == []


def test_a_folder_whose_clintune_yaml_asks_for_code_is_refused_without_the_flag(trained_models: dict[str, Path]) -> None:
    from clintune.modeling.folder import check_remote_code, read_model_folder

    found = read_model_folder(trained_models["diagnosis"])
    check_remote_code(found, trust_remote_code=False)  # a plain folder needs no flag
    found.config.model.trust_remote_code = True
    with pytest.raises(ModelFolderError, match="clintune.yaml sets model.trust_remote_code: true") as refused:
        check_remote_code(found, trust_remote_code=False)
    assert "pass --trust-remote-code (api: trust_remote_code=True)" in str(refused.value)
    check_remote_code(found, trust_remote_code=True)


# -- without the flag: refused, nothing of the folder's runs -------------------------

CLI_CALLS = {
    "predict --text": lambda m, i, o: ["predict", "--model", m, "--text", TEXT],
    "predict --input file": lambda m, i, o: ["predict", "--model", m, "--input", str(i["csv"]), "--output", str(o / "out.jsonl")],
    "predict --input documents": lambda m, i, o: ["predict", "--model", m, "--input", str(i["documents"])],
    "predict --engine ray": lambda m, i, o: ["predict", "--model", m, "--engine", "ray", "--input", str(i["parquet"]),
                                             "--id-column", "id", "--output", str(o / "ray-out")],
    "eval": lambda m, i, o: ["eval", "--model", m, "--data", str(i["csv"]), "--bootstrap", "0"],
    "export": lambda m, i, o: ["export", "--model", m, "--output", str(o / "onnx")],
    "serve": lambda m, i, o: ["serve", "--model", m, "--port", "0"],
}
NEEDS = {"export": "onnxscript", "serve": "fastapi"}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("verb", CLI_CALLS)
def test_every_verb_refuses_a_folder_that_ships_code_without_the_flag(
    code_folders: dict[str, Path], variant: str, verb: str, marker: Path, tmp_path: Path,
) -> None:
    if verb in NEEDS:
        require_module(NEEDS[verb])
    result = invoke_cli(*CLI_CALLS[verb](str(code_folders[variant]), _inputs(tmp_path), tmp_path))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "asks to run Python code it ships (marker_model.py)" in result.stderr
    assert "pass --trust-remote-code" in result.stderr
    assert not marker.exists(), "the folder's code ran"
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "onnx").exists() and not (tmp_path / "ray-out").exists()


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_api_refuses_a_folder_that_ships_code_without_the_flag(
    code_folders: dict[str, Path], variant: str, marker: Path, tmp_path: Path,
) -> None:
    from clintune import api
    from clintune.inference.predictor import Predictor

    folder = code_folders[variant]
    inputs = _inputs(tmp_path)
    calls = {
        "predict": lambda: api.predict(folder, [TEXT]),
        "predict_file": lambda: api.predict_file(folder, inputs["csv"], tmp_path / "out.jsonl"),
        "predict_documents": lambda: api.predict_documents(folder, inputs["documents"]),
        "evaluate": lambda: api.evaluate(folder, inputs["csv"], resamples=0),
        "Predictor.from_folder": lambda: Predictor.from_folder(folder),
    }
    if importlib.util.find_spec("fastapi") is not None:
        calls["create_app"] = lambda: api.create_app(folder)
    for name, call in calls.items():
        with pytest.raises(ModelFolderError, match="pass --trust-remote-code") as refused:
            call()
        assert "api: trust_remote_code=True" in str(refused.value), name
        assert not marker.exists(), f"{name}: the folder's code ran"


# -- with the flag: the folder's code runs, and the verbs work ------------------------

def test_with_the_flag_predict_and_eval_run_the_folder_code(code_folders: dict[str, Path], tmp_path: Path) -> None:
    folder = str(code_folders["yaml-false"])  # the flag alone decides: the folder's own setting says no
    marker = tmp_path / "marker"
    env = {MARKER_ENV: str(marker), "HF_HOME": str(tmp_path / "hf"), "HF_MODULES_CACHE": str(tmp_path / "hf-modules")}
    predicted = run_cli("predict", "--model", folder, "--text", TEXT, "--json", "--trust-remote-code", env=env)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert json.loads(predicted.stdout)[0]["label"] in ("valid", "invalid")
    assert marker.read_text() == "imported\n"
    marker.unlink()
    evaluated = run_cli("eval", "--model", folder, "--data", "data/diagnosis/test.csv", "--bootstrap", "0", "--json",
                        "--trust-remote-code", env=env)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "f1" in json.loads(evaluated.stdout)
    assert marker.read_text() == "imported\n"
