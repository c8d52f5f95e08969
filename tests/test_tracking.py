"""``tracking.mlflow``: a run records its settings, per-epoch and final metrics and its model card in a local
store; ``cv`` nests a run per fold; no row's text reaches the store. Read back with sqlite3, not MLflow."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, invoke_cli

from clintune import api
from clintune.config.loading import load_config

pytest.importorskip("mlflow")

CONFIG = REPO / "configs" / "tiny" / "diagnosis.yaml"


def tracked(tmp: Path, *overrides: str):
    return load_config(CONFIG, [f"output.dir={tmp / 'runs' / 'model'}", "training.epochs=2", "tracking.mlflow=true",
                                "evaluation.bootstrap_resamples=0", *overrides])


def query(database: Path, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(database) as connection:
        return connection.execute(sql, args).fetchall()


def training_texts(config) -> list[str]:  # noqa: ANN001
    frame = pd.read_csv(config.data.train)
    return [text for text in frame[config.data.text_column].astype(str) if len(text) >= 20]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, dict]:
    tmp = tmp_path_factory.mktemp("tracked")
    config = tracked(tmp)
    result = api.train(config)
    return tmp, config, result.metrics


def test_a_training_run_records_settings_epochs_final_metrics_and_card(trained: tuple) -> None:
    tmp, config, metrics = trained
    database = tmp / "runs" / "mlflow.db"  # beside output.dir
    runs = query(database, "SELECT run_uuid, name, status, artifact_uri FROM runs")
    assert len(runs) == 1 and runs[0][1] == "model" and runs[0][2] == "FINISHED"
    run = runs[0][0]
    params = dict(query(database, "SELECT key, value FROM params WHERE run_uuid = ?", run))
    assert float(params["training.learning_rate"]) == config.training.learning_rate
    resolved = api.resolve_paths(config)  # what the run read: paths made absolute
    assert params["data.train"] == resolved.data.train and Path(params["data.train"]).is_absolute() and params["task.type"] == "binary"
    final = dict(query(database, "SELECT key, value FROM latest_metrics WHERE run_uuid = ?", run))
    saved = json.loads((Path(config.output.dir) / "metrics.json").read_text())
    for key in ("f1", "precision", "recall", "accuracy"):
        assert final[f"validation/{key}"] == pytest.approx(saved["validation"][key])
        assert final[f"test/{key}"] == pytest.approx(saved["test"][key])
    epochs = query(database, "SELECT step, value FROM metrics WHERE run_uuid = ? AND key = 'epoch/f1' ORDER BY step", run)
    log = json.loads((Path(config.output.dir) / "training_log.json").read_text())
    logged = [(entry["step"], entry["eval_f1"]) for entry in log if "eval_f1" in entry]
    assert len(epochs) == 2 and [step for step, _ in epochs] == [step for step, _ in logged]
    assert [value for _, value in epochs] == pytest.approx([value for _, value in logged])
    artifacts = Path(runs[0][3].removeprefix("file://"))
    assert artifacts.is_relative_to(tmp / "runs" / "mlartifacts")
    assert (artifacts / "model" / "README.md").read_text() == (Path(config.output.dir) / "README.md").read_text()
    assert load_config(artifacts / "config.yaml") == resolved


def test_no_text_of_a_row_reaches_the_store(trained: tuple) -> None:
    tmp, config, _ = trained
    stored = (tmp / "runs" / "mlflow.db").read_bytes().decode("utf-8", "replace")
    stored += "".join(p.read_text(errors="replace") for p in (tmp / "runs" / "mlartifacts").rglob("*") if p.is_file())
    texts = training_texts(config)
    assert len(texts) > 50 and texts[0][:20] in Path(config.data.train).read_text()  # the check could find them
    leaked = [text for text in texts if text[:40] in stored]
    assert not leaked, leaked[:3]


def test_cross_validation_is_a_parent_run_with_a_child_per_fold(tmp_path: Path) -> None:
    config = tracked(tmp_path, "training.epochs=1")
    api.cross_validate(config, 2, output=tmp_path / "cv")
    database = tmp_path / "runs" / "mlflow.db"
    kinds = dict(query(database, "SELECT run_uuid, value FROM tags WHERE key = 'clintune.kind'"))
    parents = [run for run, kind in kinds.items() if kind == "cv"]
    assert len(parents) == 1 and sorted(kinds.values()) == ["cv", "train", "train"]
    children = query(database, "SELECT r.name FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                               "WHERE t.key = 'mlflow.parentRunId' AND t.value = ? ORDER BY r.name", parents[0])
    assert [name for (name,) in children] == ["fold-1", "fold-2"]
    pooled = dict(query(database, "SELECT key, value FROM latest_metrics WHERE run_uuid = ?", parents[0]))
    report = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert pooled["pooled/f1"] == pytest.approx(report["pooled"]["f1"])
    assert pooled["cv_mean/f1"] == pytest.approx(report["summary"]["f1"]["mean"])


def test_a_tracking_store_that_cannot_be_opened_stops_before_training(tmp_path: Path) -> None:
    result = invoke_cli("train", str(CONFIG), "--set", f"output.dir={tmp_path / 'model'}", "--set", "tracking.mlflow=nosuch://store")
    assert result.returncode == 2, result.stderr
    assert "tracking.mlflow: cannot open the tracking store nosuch://store" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "model").exists()


def test_class_names_become_names_mlflow_accepts() -> None:
    from mlflow.utils.validation import _validate_metric_name, _validate_param_name

    from clintune.training.tracking import mlflow_name, without_password

    for key in ("decision.must_not_miss.D/LT+Serious", "per_class/Heart (R&L), other/f1"):
        with pytest.raises(Exception):  # noqa: B017, PT011 - MLflow's own check refuses the raw name ...
            _validate_param_name(key)
        _validate_param_name(mlflow_name(key))  # ... and accepts clintune's
        _validate_metric_name(mlflow_name(key))
    assert mlflow_name("decision.must_not_miss.D/LT+Serious") == "decision.must_not_miss.D/LT_Serious"
    assert without_password("postgresql://me:secret@db/x") == "postgresql://me:***@db/x"
