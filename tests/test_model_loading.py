"""Loading a model folder: every weight from the folder or an error, remote code as trained, no silent pipeline."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TINY_MODEL, invoke_cli, run_cli


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / folder.name
    shutil.copytree(folder, target)
    return target


def _relabel(folder: Path, classes: list[str]) -> None:
    """Make labels.json and config.json agree on ``classes`` (as if mixed from another run), weights untouched."""
    labels = json.loads((folder / "labels.json").read_text())
    (folder / "labels.json").write_text(json.dumps(labels | {"classes": classes}))
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {str(i): c for i, c in enumerate(classes)}
    config["label2id"] = {c: i for i, c in enumerate(classes)}
    (folder / "config.json").write_text(json.dumps(config))


def test_a_head_that_disagrees_with_labels_json_is_a_model_folder_error(trained_models: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(trained_models["seriousness"], tmp_path)  # trained with 3 classes
    _relabel(folder, ["D/LT", "Fatal", "Non-serious", "Serious"])
    result = run_cli("predict", "--model", str(folder), "--text", "the patient died")
    assert result.returncode == 2, result.stdout
    assert "3 outputs" in result.stderr and "4 classes" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("task", ["diagnosis", "section_header"])
def test_weights_missing_from_the_folder_are_an_error_not_a_random_init(
    trained_models: dict[str, Path], tmp_path: Path, task: str
) -> None:
    from clintune.api import predict
    from clintune.errors import ModelFolderError

    folder = _copy(trained_models[task], tmp_path)
    shutil.copy(TINY_MODEL / "model.safetensors", folder / "model.safetensors")  # the bare encoder: no classifier
    with pytest.raises(ModelFolderError, match="missing from the weights file: .*classifier"):
        predict(folder, ["Any chest pain?"])


def test_training_start_replaces_a_checkpoints_head_and_says_so(trained_models: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    from clintune.data.labels import LabelEncoder
    from clintune.modeling.loading import load_model
    from clintune.modeling.tasks import task_for

    encoder = LabelEncoder(("invalid", "valid"), "binary", "valid")
    with caplog.at_level(logging.INFO, logger="clintune"):
        model = load_model(task_for("binary"), str(trained_models["seriousness"]), encoder)
    assert model.classifier.out_features == 2
    assert "classifier.weight has shape (3, 32) there; replaced" in caplog.text


# -- trust_remote_code ---------------------------------------------------------------

REMOTE_CONFIG = """from transformers import BertConfig


class TinyRemoteConfig(BertConfig):
    model_type = "tinyremote"
"""
REMOTE_MODELING = """from transformers import BertForSequenceClassification, BertModel

from .configuration_tinyremote import TinyRemoteConfig


class TinyRemoteModel(BertModel):
    config_class = TinyRemoteConfig


class TinyRemoteForSequenceClassification(BertForSequenceClassification):
    config_class = TinyRemoteConfig
"""


@pytest.fixture(scope="module")
def remote_code_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT as a checkpoint whose model type only its own code (in the folder) defines."""
    folder = tmp_path_factory.mktemp("remote") / "encoder"
    shutil.copytree(TINY_MODEL, folder)
    config = json.loads((TINY_MODEL / "config.json").read_text()) | {
        "model_type": "tinyremote",
        "architectures": ["TinyRemoteModel"],
        "auto_map": {"AutoConfig": "configuration_tinyremote.TinyRemoteConfig", "AutoModel": "modeling_tinyremote.TinyRemoteModel",
                     "AutoModelForSequenceClassification": "modeling_tinyremote.TinyRemoteForSequenceClassification"},
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_tinyremote.py").write_text(REMOTE_CONFIG)
    (folder / "modeling_tinyremote.py").write_text(REMOTE_MODELING)
    return folder


def _train_remote(encoder: Path, folder: Path, env: dict[str, str], pooling: str) -> None:
    result = run_cli("train", "configs/tiny/seriousness.yaml", "--set", f"model.name_or_path={encoder}", "--set", "training.epochs=1",
                     "--set", "model.trust_remote_code=true", "--set", f"model.pooling={pooling}", "--set", f"output.dir={folder}", env=env)
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_model_that_needs_remote_code_evaluates_as_trained(remote_code_encoder: Path, tmp_path: Path) -> None:
    env = {"HF_MODULES_CACHE": str(tmp_path / "modules")}
    folder = tmp_path / "model"
    _train_remote(remote_code_encoder, folder, env, "cls")
    result = run_cli("eval", "--model", str(folder), "--data", "data/seriousness/test.csv", "--bootstrap", "0",
                     "--trust-remote-code", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    # the caller's flag decides, not the folder's own setting (its clintune.yaml says true)
    refused = invoke_cli("predict", "--model", str(folder), "--text", "the patient died")
    assert refused.returncode == 2 and "--trust-remote-code" in refused.stderr


def test_a_mean_pooled_model_that_needs_remote_code_predicts_and_exports(remote_code_encoder: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    env = {"HF_MODULES_CACHE": str(tmp_path / "modules")}
    folder = tmp_path / "model"
    _train_remote(remote_code_encoder, folder, env, "mean")
    assert (folder / "modeling_tinyremote.py").is_file(), "the folder carries the encoder's code"
    text = "Patient died of cardiac arrest after the second infusion."
    torch_run = run_cli("predict", "--model", str(folder), "--text", text, "--json", "--probabilities", "--trust-remote-code", env=env)
    assert torch_run.returncode == 0, torch_run.stderr[-3000:]
    exported = run_cli("export", "--model", str(folder), "--output", str(tmp_path / "onnx"), "--trust-remote-code", env=env)
    assert exported.returncode == 0, exported.stderr[-3000:]
    onnx_run = run_cli("predict", "--model", str(tmp_path / "onnx"), "--text", text, "--json", "--probabilities",
                       "--trust-remote-code", env=env)
    assert onnx_run.returncode == 0, onnx_run.stderr[-3000:]
    expected = json.loads(torch_run.stdout)[0]["probabilities"]
    assert json.loads(onnx_run.stdout)[0]["probabilities"] == pytest.approx(expected, abs=1e-4)


# -- transformers.pipeline and a mean-pooled folder ----------------------------------

def test_pipeline_refuses_a_mean_pooled_folder_instead_of_random_weights(trained_models: dict[str, Path]) -> None:
    folder = trained_models["section_header"]  # model.pooling: mean
    script = (
        "import sys\nfrom transformers import pipeline\n"
        f"classify = pipeline('text-classification', model={str(folder)!r}, device='cpu')\n"
        "print(classify('Any allergies?'))\n"
        "assert 'clintune' not in sys.modules\n"
    )
    plain = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert plain.returncode != 0, f"transformers loaded the folder without clintune: {plain.stdout}"
    assert "clintune_mean_pooled" in plain.stderr
    imported = "import clintune\n" + script.replace("assert 'clintune' not", "assert 'clintune'")
    with_clintune = subprocess.run([sys.executable, "-c", imported], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert with_clintune.returncode != 0 and "clintune_mean_pooled" in with_clintune.stderr


def test_mean_pooled_folder_written_before_the_model_type_still_loads(trained_models: dict[str, Path], tmp_path: Path) -> None:
    from clintune.api import predict

    folder = _copy(trained_models["section_header"], tmp_path)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "clintune_mean_pooled"
    config["model_type"] = config.pop("clintune_backbone_model_type")
    (folder / "config.json").write_text(json.dumps(config))
    texts = ["Doctor: Any allergies?\nPatient: Penicillin gives me a rash."]
    assert predict(folder, texts)[0].probabilities == pytest.approx(predict(trained_models["section_header"], texts)[0].probabilities)
