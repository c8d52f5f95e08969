"""``clintune tune``: a hyperparameter search on Optuna over the config's ``search:`` section.

Each trial trains the config with one choice of the searched settings through the normal
training path; its objective is the validation metric the run selects its checkpoint on
(``training.metric_for_best_model``), or that metric's mean over ``--cv K`` folds. Trials
report after every evaluation (or fold) and the median pruner stops ones that fall behind.

The study lives in a database: by default the SQLite file ``OUTPUT.optuna.db`` beside the
output folder, so a killed search run again with the same command goes on where it
stopped; ``--storage`` takes any URL Optuna supports, and several workers (processes or
machines) running the same command against one database share one study. ``--trials N``
counts the finished (complete or pruned) trials in the study: a worker starts another
trial while fewer have finished, so W workers may end up to W-1 trials past N.

The output folder (``best.yaml``, ``trials.csv``, ``tune.json``, two plots) is written from
the study when a worker finishes; trial models are deleted as each trial ends.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clintune.config.checks import validate_config
from clintune.config.schema import Config, SearchRange, default_metric, set_dotted
from clintune.errors import ClintuneError
from clintune.runtime import guards
from clintune.runtime.files import publish, remove_stale, staging_dir_for, write_json, write_text_atomic
from clintune.training.tracking import tracked_run, without_password
from clintune.workflows.cv import cross_validate, fold_assignment
from clintune.workflows.prepare import prepare_data, resolve_paths, training_inputs
from clintune.workflows.train import train

logger = logging.getLogger(__name__)
# A trial is judged from its third evaluation on, not its first: while the learning rate warms up and the new
# head catches up, early scores say little about the end. On MTS-Dialog (MiniLM, 2026-11-24) a trial at 0.14
# macro-F1 after one epoch ended at 0.63, one at 0.45 ended at 0.75; a trial at 0.29 was pruned after one epoch.
PRUNE_FROM_EVALUATION = 3

BEST_FILE = "best.yaml"
TRIALS_FILE = "trials.csv"
SUMMARY_FILE = "tune.json"
HISTORY_PLOT = "search_history.png"
IMPORTANCE_PLOT = "parameter_importances.png"
OUTPUT_FILES = frozenset({BEST_FILE, TRIALS_FILE, SUMMARY_FILE, HISTORY_PLOT, IMPORTANCE_PLOT})
HEARTBEAT_SECONDS = 30  # a trial whose worker stopped beating for GRACE_SECONDS is failed and its settings tried again
GRACE_SECONDS = 120


def default_output(config: Config) -> Path:
    return Path(config.output.dir).with_name(Path(config.output.dir).name + "-tune")


def default_storage(output: Path) -> str:
    return f"sqlite:///{output.absolute().with_name(output.name + '.optuna.db')}"


def objective_metric(config: Config) -> tuple[str, str]:
    """The metric the search optimises (the one the run selects its checkpoint on) and its direction."""
    metric = config.training.metric_for_best_model or default_metric(config.task.type)
    return metric, "minimize" if metric == "loss" else "maximize"


@dataclass(frozen=True)
class SearchResult:
    """What ``tune`` wrote: the summary (best trial, settings, every trial; ``search.json``) and its folder."""

    output_dir: Path
    summary: dict[str, Any]


def tune(
    config: Config, trials: int, *, output: str | Path | None = None, storage: str | None = None, study_name: str | None = None,
    cv_folds: int | None = None, overwrite: bool = False, seed: int | None = None,
) -> SearchResult:
    """Run trials until the study holds ``trials`` finished ones, then write the report; returns ``tune.json``'s content."""
    optuna = _optuna()
    config = resolve_paths(config)
    if not config.search:
        raise ClintuneError("search: the config has no search space\n  fix: add a search: section, e.g.\n"
                            "  search:\n    training.learning_rate: {low: 1.0e-5, high: 1.0e-4, log: true}\n"
                            "    training.batch_size: {choices: [8, 16, 32]}")
    if trials < 1:
        raise ClintuneError(f"--trials {trials}: needs at least one trial")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ClintuneError("clintune tune runs its trials one after another in one process; under torchrun or accelerate "
                            "every process would run a study of its own\n  fix: run tune without a launcher (several workers: "
                            "the same command on each, with one --storage)")
    if cv_folds is not None and objective_metric(config)[0] == "loss":
        raise ClintuneError("--cv: the folds are scored by their metrics, which hold no validation loss\n"
                            "  fix: set training.metric_for_best_model to a metric (f1, f1_macro, accuracy, ...), or leave --cv out")
    out = Path(output) if output is not None else default_output(config)
    storage = storage or default_storage(out)
    trials_dir = out.with_name(f".{out.name}.trials")
    outputs = [guards.Output("--output", out), guards.Output("--output's work folder", staging_dir_for(out)),
               guards.Output("the trials' work folder", trials_dir)]
    if storage.startswith("sqlite:///"):
        outputs.append(guards.Output("--storage", Path(storage.removeprefix("sqlite:///"))))
    guards.check_outputs("tune", training_inputs(config), outputs)
    guards.check_replaceable(out, "--output", lambda name: name in OUTPUT_FILES, (SUMMARY_FILE,), "search folder")
    if cv_folds is not None:
        fold_assignment(prepare_data(config).train, cv_folds, config.data.split_seed)  # too many folds: say so before any trial
    else:
        prepare_data(config)  # bad data: say so before the study is made
    metric, direction = objective_metric(config)
    name = study_name or out.name
    study = _open_study(optuna, storage, name, direction, seed, _identity(config, cv_folds), overwrite,
                        warmup=0 if cv_folds else PRUNE_FROM_EVALUATION - 1)
    logger.info("study %r in %s: %d of %d trials finished", name, without_password(storage), _finished(study), trials)
    _remove_failed_trial_folders(study, trials_dir)
    objective = _Objective(config, metric, cv_folds, trials_dir)
    with tracked_run(config, name, "tune") as tracker:
        if _finished(study) < trials:  # the callback stops this worker once all workers together have finished them
            study.optimize(objective, catch=(), callbacks=[optuna.study.MaxTrialsCallback(
                trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))])
        if _complete(study):
            tracker.log_metrics({f"best_{metric}": study.best_value, "trials_finished": _finished(study)})
    summary = _write_report(optuna, study, config, metric, direction, out, storage, cv_folds)
    if trials_dir.is_dir() and not any(trials_dir.iterdir()):
        trials_dir.rmdir()
    return SearchResult(out, summary)


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:
        raise ClintuneError("clintune tune needs Optuna\n  fix: pip install 'clintune[tune]'") from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # clintune reports each trial itself
    return optuna


def _identity(config: Config, cv_folds: int | None) -> dict[str, Any]:
    """What makes two runs the same study: the settings (output folder aside), the search space and the objective."""
    settings = config.to_dict()
    settings.pop("output", None)
    settings.pop("tracking", None)
    return {"config": settings, "cv_folds": cv_folds}


def _open_study(optuna: Any, storage: str, name: str, direction: str, seed: int | None, identity: dict[str, Any],
                overwrite: bool, warmup: int = 0) -> Any:
    """The study ``name`` in ``storage``, created, or loaded when it was started with the same settings."""
    from optuna import storages

    engine_kwargs = {"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else {}
    try:
        rdb = _storage(storages, storage, engine_kwargs)
    except Exception as exc:  # SQLAlchemy's and the driver's errors: a bad URL, a missing folder, no server
        raise ClintuneError(f"--storage: cannot open {without_password(storage)}: {str(exc).splitlines()[0]}\n"
                            "  fix: give a URL Optuna supports (sqlite:///path/file.db, postgresql://user@host/db, "
                            "mysql://...) whose folder or server exists") from exc
    existing = {summary.study_name for summary in optuna.get_all_study_summaries(rdb)}
    if name in existing and overwrite:
        optuna.delete_study(study_name=name, storage=rdb)
        logger.info("--overwrite: study %r deleted from %s", name, storage)
    elif name in existing:
        study = optuna.load_study(study_name=name, storage=rdb)
        started_with = study.user_attrs.get("clintune")  # None: another worker made the study a moment ago
        if started_with is not None and started_with != identity:
            raise ClintuneError(f"--storage: the study {name!r} in {storage} was started with other settings (config, search "
                                "space or --cv)\n  fix: run with the same settings, --study-name to start another study, "
                                "or --overwrite to delete this one")
    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=warmup)  # steps count from 0
    study = optuna.create_study(storage=rdb, study_name=name, direction=direction, sampler=sampler, pruner=pruner,
                                load_if_exists=True)
    if "clintune" not in study.user_attrs:
        study.set_user_attr("clintune", identity)
    return study


def _storage(storages: Any, url: str, engine_kwargs: dict[str, Any], attempts: int = 5) -> Any:
    """Optuna's database storage with heartbeats (a trial whose worker died is failed and its settings retried).

    Workers started together on a new database race to create its tables; the loser sees a
    unique-constraint error and simply tries again once the tables exist.
    """
    import time
    import warnings

    from optuna.exceptions import ExperimentalWarning
    from sqlalchemy.exc import IntegrityError, OperationalError

    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna's words, and say so on every call
        warnings.simplefilter("ignore", ExperimentalWarning)
        if hasattr(storages, "RetryHeartbeatStaleTrialCallback"):  # Optuna 4.9 renamed the retry of a stale trial
            retry = {"heartbeat_stale_trial_callback": storages.RetryHeartbeatStaleTrialCallback(max_retry=1)}
        else:
            retry = {"failed_trial_callback": storages.RetryFailedTrialCallback(max_retry=1)}
        for attempt in range(attempts):
            try:
                return storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_SECONDS,
                                           grace_period=GRACE_SECONDS, **retry)
            except (IntegrityError, OperationalError) as exc:
                if attempt == attempts - 1 or ("UNIQUE" not in str(exc) and "already exists" not in str(exc)):
                    raise
                time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _remove_failed_trial_folders(study: Any, trials_dir: Path) -> None:
    """The work folders a killed worker left behind (a failed trial is running nowhere, whichever worker asks)."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        folder = trial_folder(trials_dir, study.study_name, trial.number)
        if folder.is_dir():
            shutil.rmtree(folder)
            logger.info("removed %s, left by failed trial %d", folder, trial.number)


def trial_folder(trials_dir: Path, study_name: str, number: int) -> Path:
    """A trial's work folder: named by study and trial, so studies sharing an output folder never share one."""
    return trials_dir / f"{study_name}-trial-{number}"


def _finished(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _complete(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def suggest(trial: Any, key: str, searched: SearchRange) -> Any:
    """One value of a searched setting: a choice, an integer or a float in its range (log-uniform with ``log``)."""
    if searched.choices is not None:
        return trial.suggest_categorical(key, searched.choices)
    if searched.is_integer:
        return trial.suggest_int(key, int(searched.low), int(searched.high), log=searched.log)  # type: ignore[arg-type]
    return trial.suggest_float(key, float(searched.low), float(searched.high), log=searched.log)  # type: ignore[arg-type]


def with_settings(config: Config, settings: dict[str, Any], output_dir: str | None = None) -> Config:
    """``config`` with the dotted ``settings`` applied (and validated), its search section dropped."""
    raw = config.to_dict()
    raw["search"] = {}
    for key, value in settings.items():
        set_dotted(raw, key, value, f"search.{key}")
    if output_dir is not None:
        raw["output"]["dir"] = output_dir
    return validate_config(raw, source="search settings")


class _Objective:
    """One trial: sample the settings, train (or cross-validate), report and prune, return the metric."""

    def __init__(self, config: Config, metric: str, cv_folds: int | None, trials_dir: Path) -> None:
        self.config, self.metric, self.cv_folds, self.trials_dir = config, metric, cv_folds, trials_dir

    def __call__(self, trial: Any) -> float:
        settings = {key: suggest(trial, key, searched) for key, searched in self.config.search.items()}
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        folder = trial_folder(self.trials_dir, trial.study.study_name, trial.number)
        remove_stale(folder)
        logger.info("trial %d: %s", trial.number, ", ".join(f"{key}={value}" for key, value in settings.items()))
        try:
            if self.cv_folds is not None:
                value, metrics = self._cross_validated(trial, settings, folder)
            else:
                value, metrics = self._trained(trial, settings, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        trial.set_user_attr("metrics", metrics)
        if math.isnan(value):  # a diverged run: finished, and no better than any other
            raise _pruned(trial, self.metric, value, "training (its metric is NaN: the run diverged)")
        logger.info("trial %d: %s %.4f", trial.number, self.metric, value)
        return value

    def _trained(self, trial: Any, settings: dict[str, Any], folder: Path) -> tuple[float, dict[str, float]]:
        from clintune.training.trainer import scalar_metrics

        config = with_settings(self.config, settings, str(folder / "model"))
        config.decision.must_not_miss = {}  # the objective is the metric the checkpoint is chosen by, as with --cv
        result = train(config, overwrite=True, callbacks=[_pruning_callback_class()(trial, self.metric)],
                       run_name=f"trial-{trial.number}")
        validation = scalar_metrics(result.metrics.get("validation", {}))
        value = validation.get(self.metric)
        if value is None:  # the validation loss is the Trainer's, kept in the checkpoint selection record
            value = (result.metrics.get("selection") or {}).get("kept_value")
        if value is None:
            raise ClintuneError(f"trial {trial.number}: the run reported no validation {self.metric}")
        return float(value), validation

    def _cross_validated(self, trial: Any, settings: dict[str, Any], folder: Path) -> tuple[float, dict[str, float]]:
        import numpy as np

        config = with_settings(self.config, settings, str(folder / "model"))
        values: list[float] = []

        def report(fold: int, metrics: dict[str, Any]) -> None:
            values.append(float(metrics[self.metric]))
            trial.report(float(np.mean(values)), step=fold)
            if trial.should_prune():
                raise _pruned(trial, self.metric, float(np.mean(values)), f"fold {fold + 1}")

        report_json = cross_validate(config, self.cv_folds or 0, output=folder / "cv", on_fold=report,
                                     run_name=f"trial-{trial.number}")
        summary = report_json.report["summary"]
        if self.metric not in summary:
            raise ClintuneError(f"trial {trial.number}: cross-validation reported no {self.metric}")
        means = {f"cv_mean_{key}": spread["mean"] for key, spread in summary.items() if "mean" in spread}
        stds = {f"cv_std_{key}": spread["std"] for key, spread in summary.items() if "std" in spread}
        return float(summary[self.metric]["mean"]), {**means, **stds}


def _pruned(trial: Any, metric: str, value: float, after: str) -> Exception:
    """Optuna's pruned-trial signal, said in the log; an MLflow run it ends is marked KILLED (stopped on purpose), not FAILED."""
    import optuna

    class Pruned(optuna.TrialPruned):
        run_status = "KILLED"

    logger.info("trial %d: pruned after %s (%s %.4f, behind the median of earlier trials there)", trial.number, after, metric, value)
    return Pruned(f"trial {trial.number} pruned after {after}")


def _pruning_callback_class() -> Any:
    from transformers import TrainerCallback

    class PruningCallback(TrainerCallback):
        """Reports each evaluation's metric to the trial (step: the evaluation's number) and stops a trial the pruner drops."""

        def __init__(self, trial: Any, metric: str) -> None:
            self.trial, self.metric, self.evaluations = trial, metric, 0

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
            value = (metrics or {}).get(f"eval_{self.metric}")
            if value is None:
                return
            self.trial.report(float(value), step=self.evaluations)
            self.evaluations += 1
            if self.trial.should_prune():
                raise _pruned(self.trial, self.metric, float(value), f"evaluation {self.evaluations}")

    return PruningCallback


# --------------------------------------------------------------------------
# The report


def _write_report(optuna: Any, study: Any, config: Config, metric: str, direction: str, out: Path, storage: str,
                  cv_folds: int | None) -> dict[str, Any]:
    """best.yaml, trials.csv, tune.json and the plots, read from the study and published together into ``out``;
    workers sharing one output folder take turns (the last to finish writes the fullest report)."""
    from clintune.config.loading import save_config

    with _report_lock(out):
        trials = study.get_trials(deepcopy=False)
        complete = _complete(study)
        states: dict[str, int] = {}
        for trial in trials:
            states[trial.state.name.lower()] = states.get(trial.state.name.lower(), 0) + 1
        summary: dict[str, Any] = {
            "study": study.study_name, "storage": without_password(storage), "metric": metric, "direction": direction,
            "objective": f"mean {metric} over {cv_folds} folds" if cv_folds else f"validation {metric}",
            "trials": states, "search": {key: searched.model_dump(exclude_none=True) for key, searched in config.search.items()},
        }
        staging = staging_dir_for(out)
        remove_stale(staging)
        staging.mkdir(parents=True)
        if complete:
            best = study.best_trial
            summary["best"] = {"trial": best.number, "value": best.value, "settings": best.params,
                               "metrics": best.user_attrs.get("metrics", {})}
            save_config(with_settings(config, best.params), staging / BEST_FILE)
            _plot_history(trials, metric, direction, staging / HISTORY_PLOT)
            importances = _importances(optuna, study)
            if importances:
                summary["importances"] = importances
                _plot_importances(importances, staging / IMPORTANCE_PLOT)
        write_text_atomic(staging / TRIALS_FILE, trials_csv(trials, list(config.search)))
        write_json(staging / SUMMARY_FILE, summary)
        publish(staging, out)
    logger.info("search report written to %s", out)
    return summary


@contextmanager
def _report_lock(out: Path) -> Iterator[None]:
    """An exclusive lock on the file ``.OUT.lock`` beside the output folder, for the time the report is written."""
    import fcntl

    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(f".{out.name}.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def trials_csv(trials: list[Any], keys: list[str]) -> str:
    """One row per trial: number, state, value, each searched setting, worker, start and duration."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["number", "state", "value", *keys, "worker", "started", "seconds"])
    for trial in trials:
        start, end = trial.datetime_start, trial.datetime_complete
        seconds = (end - start).total_seconds() if start and end else ""
        writer.writerow([trial.number, trial.state.name.lower(), "" if trial.value is None else trial.value,
                         *[trial.params.get(key, "") for key in keys], trial.user_attrs.get("worker", ""),
                         trial.datetime_start.isoformat(timespec="seconds") if trial.datetime_start else "",
                         f"{seconds:.1f}" if seconds != "" else ""])
    return buffer.getvalue()


def _importances(optuna: Any, study: Any) -> dict[str, float]:
    """Optuna's parameter importances (fANOVA), once there are enough complete trials to estimate them."""
    if len(_complete(study)) < 3 or len(study.best_trial.params) < 1:
        return {}
    try:
        return {key: float(value) for key, value in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError) as exc:  # e.g. every complete trial had the same settings
        logger.info("parameter importances not estimated: %s", exc)
        return {}


def _plot_history(trials: list[Any], metric: str, direction: str, path: Path) -> None:
    from optuna.trial import TrialState

    from clintune.evaluation.plots import save, search_history_figure

    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    pruned = [(trial.number, float(trial.intermediate_values[max(trial.intermediate_values)]))
              for trial in trials if trial.state == TrialState.PRUNED and trial.intermediate_values]
    numbers = [trial.number for trial in complete]
    values = [float(trial.value) for trial in complete]
    save(search_history_figure(numbers, values, metric, direction == "maximize", pruned), path)


def _plot_importances(importances: dict[str, float], path: Path) -> None:
    from clintune.evaluation.plots import importance_figure, save

    save(importance_figure(importances), path)
