"""Experiment tracking on MLflow: the resolved config, per-epoch and final metrics, and the model card of a run.

``tracking.mlflow: true`` records to a local store beside ``output.dir`` (the SQLite file
``mlflow.db``, artifacts under ``mlartifacts/``; no server), a string is any tracking URI.
``cv`` and ``tune`` open a parent run and every fold or trial becomes its child; a run
started while a parent is open nests under it whatever the child's config says.

Only settings, numbers and clintune's own reports are logged, never the text of a row: the
model card and ``metrics.json`` hold counts, metrics and file digests, not examples.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clintune.config.schema import Config
from clintune.errors import ClintuneError
from clintune.runtime.system import is_main_process

logger = logging.getLogger(__name__)

STORE_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
PARAM_LIMIT = 500  # characters of one logged setting (MLflow allows 6,000; long lists are cut, not lost: config.yaml has them)
MODEL_FOLDER_ARTIFACTS = ("README.md", "metrics.json", "clintune.yaml", "labels.json", "run.json")


class Tracker:
    """Where a run's records go; a Tracker made without a run (tracking off) accepts everything and keeps nothing."""

    def __init__(self, mlflow: Any = None) -> None:
        self._mlflow = mlflow

    @property
    def enabled(self) -> bool:
        return self._mlflow is not None

    @property
    def run_id(self) -> str | None:
        return self._mlflow.active_run().info.run_id if self._mlflow is not None else None

    def log_config(self, config: Config) -> None:
        """Every setting as a parameter (``training.learning_rate`` ...), and the whole config as ``config.yaml``."""
        if self._mlflow is None:
            return
        import yaml

        settings = config.to_dict()
        settings.pop("search", None)
        params = {mlflow_name(key): _param_text(value) for key, value in flatten(settings).items()}
        self._mlflow.log_params(params)
        self._mlflow.log_text(yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True), "config.yaml")

    def log_metrics(self, metrics: dict[str, Any], prefix: str = "", step: int | None = None) -> None:
        """The numbers of ``metrics`` (nested mappings flattened with ``/``); lists, text and missing values are left out."""
        if self._mlflow is None:
            return
        numbers = {mlflow_name(f"{prefix}{key}"): float(value) for key, value in flatten(metrics, "/").items()
                   if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value}
        if numbers:
            self._mlflow.log_metrics(numbers, step=step)

    def log_model_folder(self, folder: Path) -> None:
        """The model card and the small JSON/YAML records of a model folder (not its weights)."""
        if self._mlflow is None:
            return
        for name in MODEL_FOLDER_ARTIFACTS:
            if (folder / name).is_file():
                self._mlflow.log_artifact(str(folder / name), artifact_path="model")

    def log_file(self, path: Path) -> None:
        if self._mlflow is not None and path.is_file():
            self._mlflow.log_artifact(str(path))

    def set_tags(self, tags: dict[str, str]) -> None:
        if self._mlflow is not None:
            self._mlflow.set_tags(tags)

    def trainer_callback(self) -> Any:
        """A Trainer callback that logs every evaluation (step = global step) and the training loss; None when off."""
        if self._mlflow is None:
            return None
        return _epoch_logger_class()(self)


def flatten(tree: dict[str, Any], separator: str = ".", prefix: str = "") -> dict[str, Any]:
    """``{"training": {"epochs": 3}}`` -> ``{"training.epochs": 3}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, separator, name + separator))
        else:
            flat[name] = value
    return flat


_NOT_IN_A_NAME = re.compile(r"[^\w\-. :/]")


def mlflow_name(key: str) -> str:
    """A parameter or metric name MLflow accepts (letters, digits, ``_-. :/``): class names such as
    ``D/LT+Serious`` or ``FAM/SOCHX`` become ``D/LT_Serious``, ``FAM/SOCHX``."""
    return _NOT_IN_A_NAME.sub("_", key)


def _param_text(value: Any) -> str:
    text = "null" if value is None else str(value)
    return text if len(text) <= PARAM_LIMIT else text[: PARAM_LIMIT - 3] + "..."


def store_uri(config: Config) -> str | None:
    """The tracking URI the config asks for, or None when tracking is off."""
    setting = config.tracking.mlflow
    if setting is False:
        return None
    if setting is True:
        return f"sqlite:///{(Path(config.output.dir).absolute().parent / STORE_FILE)}"
    return str(setting)


def _mlflow_module() -> Any:
    try:
        import mlflow
    except ImportError as exc:
        raise ClintuneError("tracking.mlflow: MLflow is not installed\n  fix: pip install 'clintune[tracking]' "
                            "(or mlflow-skinny), or set tracking.mlflow: false") from exc
    return mlflow


def _open_experiment(mlflow: Any, uri: str, name: str, config: Config) -> None:
    """Point MLflow at ``uri`` and the experiment ``name`` (created with its artifacts beside a local store)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        mlflow.set_tracking_uri(uri)
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            location = None
            if config.tracking.mlflow is True:
                location = (Path(config.output.dir).absolute().parent / ARTIFACTS_DIR).as_uri()
            mlflow.create_experiment(name, artifact_location=location)
        mlflow.set_experiment(name)
    except ClintuneError:
        raise
    except Exception as exc:  # MLflow raises its own and the database driver's errors
        raise ClintuneError(f"tracking.mlflow: cannot open the tracking store {without_password(uri)}: {str(exc).splitlines()[0]}\n"
                            "  fix: check the URI (sqlite:///path/file.db, http://host:port, postgresql://...), "
                            "or set tracking.mlflow: false") from exc


def check_store(config: Config) -> None:
    """Open the configured store now, so that a wrong URI stops a run before any work (exit 2), not after it."""
    uri = store_uri(config)
    if uri is None or not is_main_process() or _active_run() is not None:  # inside cv or tune: their store is open
        return
    mlflow = _mlflow_module()
    _open_experiment(mlflow, uri, config.tracking.experiment or config.task.name, config)


@contextmanager
def tracked_run(config: Config, run_name: str, kind: str) -> Iterator[Tracker]:
    """A run recording ``config`` (a child of the open run if there is one); a no-op Tracker when tracking is off.

    ``kind`` (train, cv or tune) is stored as the ``clintune.kind`` tag. The run
    ends FAILED if the body raises, and KILLED when it is interrupted.
    """
    parent = _active_run()
    uri = store_uri(config)
    if (parent is None and uri is None) or not is_main_process():
        yield Tracker()
        return
    mlflow = _mlflow_module()
    if parent is None:
        _open_experiment(mlflow, uri or "", config.tracking.experiment or config.task.name, config)
    run = mlflow.start_run(run_name=run_name, nested=parent is not None)
    tracker = Tracker(mlflow)
    try:
        tracker.set_tags({"clintune.kind": kind})
        tracker.log_config(config)
        logger.info("tracking %s run %s (%s) in %s", kind, run.info.run_id, run_name, without_password(mlflow.get_tracking_uri()))
        yield tracker
    except KeyboardInterrupt:
        mlflow.end_run(status="KILLED")
        raise
    except BaseException as exc:  # a search's pruned trial says it was stopped on purpose (run_status KILLED)
        mlflow.end_run(status=getattr(exc, "run_status", "FAILED"))
        raise
    mlflow.end_run()


def _active_run() -> Any:
    """The open MLflow run of this process, if MLflow is loaded at all (it is never imported just to ask)."""
    import sys

    mlflow = sys.modules.get("mlflow")
    return mlflow.active_run() if mlflow is not None else None


def _epoch_logger_class() -> Any:
    from transformers import TrainerCallback

    class EpochLogger(TrainerCallback):
        """Logs the Trainer's training loss and every evaluation's metrics (``epoch/...``) to the open run."""

        def __init__(self, tracker: Tracker) -> None:
            self.tracker = tracker

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if not state.is_world_process_zero or not logs:
                return
            if "loss" in logs:
                self.tracker.log_metrics({"train_loss": logs["loss"]}, prefix="epoch/", step=state.global_step)
            evaluation = {key.removeprefix("eval_"): value for key, value in logs.items() if key.startswith("eval_")}
            if evaluation:
                self.tracker.log_metrics({**evaluation, "epoch": logs.get("epoch")}, prefix="epoch/", step=state.global_step)

    return EpochLogger


def without_password(url: str) -> str:
    """A URL as it may be logged or written: ``postgresql://user:***@host/db``."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{password}@", ":***@")))
