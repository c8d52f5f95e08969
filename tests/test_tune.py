"""``clintune tune``: the search space is checked like the rest of the config, a killed search resumes to
N finished trials, a trial behind the median is pruned, two workers share one SQLite study, and the
report agrees with the study's own database."""

from __future__ import annotations

import csv
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, invoke_cli, write

from clintune import api
from clintune.config.loading import load_config
from clintune.config.schema import SearchRange
from clintune.errors import ClintuneError, ConfigError
from clintune.workflows import tune as tune_module

optuna = pytest.importorskip("optuna")

CONFIG = REPO / "configs" / "tiny" / "diagnosis.yaml"
SEARCH = """
search:
  training.learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}
  training.batch_size: {choices: [8, 16]}
"""


def search_config(tmp: Path, search: str = SEARCH, *overrides: str) -> Path:
    return write(tmp / "search.yaml", f"extends: {CONFIG}\ntraining:\n  epochs: 1\noutput:\n  dir: {tmp}/model\n{search}")


@pytest.mark.parametrize(("search", "message"), [
    ("training.learnig_rate: {low: 1.0e-5, high: 1.0e-4}", "search.training.learnig_rate: unknown key 'training.learnig_rate' "
                                                             "(did you mean 'learning_rate'?)"),
    ("training.epochs: {low: 4, high: 2}", "search.training.epochs: empty range: low 4 is not below high 2"),
    ("training.batch_size: {choices: []}", "search.training.batch_size.choices: an empty list of choices"),
    ("training.batch_size: {choices: [8, 0]}", "search.training.batch_size: 0 is not a valid training.batch_size"),
    ("training.warmup_ratio: {low: 0.0, high: 0.2, log: true}", "log: true needs low > 0"),
    ("model: {choices: [x]}", "search.model: model is a section"),
    ("output.dir: {choices: [a, b]}", "search.output.dir: output.* cannot be searched"),
    ("training.lr_scheduler: {choices: [linear, cosin]}", "'cosin' is not a valid training.lr_scheduler"),
    ("training.metric_for_best_model: {choices: [accuracy, f1_macro]}", "search.training.metric_for_best_model: cannot be searched: "
                                                                      "it is the objective itself"),
    ("data.split_seed: {low: 1, high: 5}", "search.data.split_seed: cannot be searched: each trial must be scored on the same examples"),
    ("decision.temperature: {low: 0.5, high: 2.0}", "search.decision.temperature: cannot be searched: trials are scored by the most"),
])
def test_a_bad_search_space_is_a_config_error(tmp_path: Path, search: str, message: str) -> None:
    path = search_config(tmp_path, f"search:\n  {search}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert message in str(caught.value)


def test_a_problem_of_the_base_config_is_reported_once_not_once_per_candidate(tmp_path: Path) -> None:
    search = "search:\n  training.learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}\n  training.batch_size: {choices: [8, 16, 32]}\n"
    path = write(tmp_path / "search.yaml", f"extends: {CONFIG}\ntraining:\n  epochs: 1\n  metric_for_best_model: bleu\n"
                                            f"output:\n  dir: {tmp_path}/model\n{search}")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).count("bleu") == 1, str(caught.value)


def test_ranges_sample_the_right_kind_of_value() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    integer, logged, choice = SearchRange(low=2, high=5), SearchRange(low=1e-5, high=1e-3, log=True), SearchRange(choices=["a", "b"])
    assert integer.is_integer and not logged.is_integer
    values = []
    for _ in range(40):
        trial = study.ask()
        values.append((tune_module.suggest(trial, "i", integer), tune_module.suggest(trial, "f", logged),
                       tune_module.suggest(trial, "c", choice)))
    assert all(isinstance(i, int) and 2 <= i <= 5 for i, _, _ in values)
    assert {i for i, _, _ in values} == {2, 3, 4, 5}
    assert all(1e-5 <= f <= 1e-3 for _, f, _ in values)
    assert sum(f < 1e-4 for _, f, _ in values) >= 10  # log-uniform: half the draws fall in the lower decade, not 9%
    assert {c for _, _, c in values} == {"a", "b"}
    assert study.trials[0].distributions["f"].log is True


def test_a_trial_behind_the_median_is_pruned_by_its_evaluation_callback() -> None:
    pytest.importorskip("transformers")
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0))
    distributions = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for value in (0.8, 0.85, 0.9):
        study.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions=distributions, value=value,
                                                  intermediate_values={0: value}))
    callback = tune_module._pruning_callback_class()
    good, bad = study.ask(), study.ask()
    callback(good, "f1").on_evaluate(None, None, None, metrics={"eval_f1": 0.95})  # above the median: goes on
    with pytest.raises(optuna.TrialPruned):
        callback(bad, "f1").on_evaluate(None, None, None, metrics={"eval_f1": 0.2})
    assert good.storage.get_trial(good._trial_id).intermediate_values == {0: 0.95}


def test_the_study_prunes_a_trial_from_its_third_evaluation_not_its_first(tmp_path: Path) -> None:
    """Early epochs (learning-rate warm-up, a new head) say little about the end: a trial far behind after
    one or two evaluations runs on, and is stopped at the third if still behind."""
    study = tune_module._open_study(optuna, f"sqlite:///{tmp_path / 's.db'}", "s", "maximize", 0, {}, False,
                                    warmup=tune_module.PRUNE_FROM_EVALUATION - 1)
    distributions = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for value in (0.8, 0.85, 0.9):
        study.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions=distributions, value=value,
                                                  intermediate_values={0: value, 1: value, 2: value}))
    callback = tune_module._pruning_callback_class()(study.ask(), "f1")
    callback.on_evaluate(None, None, None, metrics={"eval_f1": 0.1})
    callback.on_evaluate(None, None, None, metrics={"eval_f1": 0.2})
    with pytest.raises(optuna.TrialPruned):
        callback.on_evaluate(None, None, None, metrics={"eval_f1": 0.3})


def study_rows(database: Path) -> list[tuple[int, str]]:
    """(number, state) of every trial, read with sqlite3 from Optuna's tables, not through Optuna."""
    with sqlite3.connect(database) as connection:
        return sorted(connection.execute("SELECT number, state FROM trials").fetchall())


def test_a_killed_search_resumes_to_n_finished_trials_and_reports_the_best(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(search_config(tmp_path))
    out = tmp_path / "search"
    real_train = tune_module.train
    calls: list[str] = []

    def killed_in_the_second_trial(trial_config, **kwargs):  # noqa: ANN001, ANN202
        calls.append(trial_config.output.dir)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_train(trial_config, **kwargs)

    monkeypatch.setattr(tune_module, "train", killed_in_the_second_trial)
    with pytest.raises(KeyboardInterrupt):
        api.tune(config, 3, output=out, seed=1)
    database = tmp_path / "search.optuna.db"
    assert [state for _, state in study_rows(database)] == ["COMPLETE", "FAIL"]
    assert not out.exists()
    (tmp_path / ".search.trials" / "search-trial-1" / "model.work").mkdir(parents=True)  # as a kill -9 would leave it
    monkeypatch.setattr(tune_module, "train", real_train)
    summary = api.tune(config, 3, output=out, seed=1).summary  # the same command again: two more finished trials, not three
    rows = study_rows(database)
    assert [state for _, state in rows].count("FAIL") == 1
    finished = [number for number, state in rows if state in ("COMPLETE", "PRUNED")]
    assert len(finished) == 3 and len(rows) == 4
    with (out / "trials.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [int(row["number"]) for row in table] == [number for number, _ in rows]
    complete = [row for row in table if row["state"] == "complete"]
    best = max(complete, key=lambda row: float(row["value"]))
    assert summary["best"]["trial"] == int(best["number"])
    ready = load_config(out / "best.yaml")
    assert ready.training.learning_rate == pytest.approx(float(best["training.learning_rate"]))
    assert ready.training.batch_size == int(best["training.batch_size"])
    assert ready.search == {} and ready.output.dir == config.output.dir
    assert (out / "search_history.png").stat().st_size > 1000
    assert not (tmp_path / ".search.trials").exists() and not list(tmp_path.glob("**/model"))  # trial models deleted


def test_a_study_started_with_other_settings_is_not_mixed_in(tmp_path: Path) -> None:
    config = load_config(search_config(tmp_path))
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(storage=storage, study_name="search").set_user_attr("clintune", {"config": "something else"})
    with pytest.raises(ClintuneError, match="was started with other settings"):
        api.tune(config, 1, output=tmp_path / "search", storage=storage)
    assert not (tmp_path / "search").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--trials", "0"], "--trials 0: needs at least one trial"),
    (["--trials", "1", "--cv", "1"], "--folds 1: cross-validation needs at least 2 folds"),
    (["--trials", "1", "--cv", "300"], "--folds 300: "),
    (["--trials", "1", "--storage", "sqlite:////no/such/folder/study.db"], "--storage: cannot open sqlite:////no/such/folder/study.db"),
    (["--trials", "1", "--storage", "nosuchdb://x"], "--storage: cannot open nosuchdb://x"),
    (["--trials", "1", "--storage", "postgresql://me:secret@127.0.0.1:1/db"], "--storage: cannot open postgresql://me:***@127.0.0.1:1/db"),
    (["--trials", "1", "--cv", "2", "--set", "training.metric_for_best_model=loss"], "--cv: the folds are scored by their metrics"),
])
def test_bad_tune_arguments_exit_2_and_write_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    path = search_config(tmp_path)
    result = invoke_cli("tune", str(path), "--output", str(tmp_path / "out"), *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr and "secret" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["search.yaml"]


def test_a_config_without_a_search_space_is_refused(tmp_path: Path) -> None:
    result = invoke_cli("tune", str(CONFIG), "--trials", "1", "--output", str(tmp_path / "out"))
    assert result.returncode == 2 and "the config has no search space" in result.stderr


def test_two_workers_share_one_sqlite_study(tmp_path: Path) -> None:
    path = search_config(tmp_path)
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    command = [sys.executable, "-m", "clintune", "tune", str(path), "--trials", "4", "--storage", storage, "--study-name", "shared"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen([*command, "--output", str(tmp_path / f"report-{i}")], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr
    rows = study_rows(tmp_path / "shared.db")
    numbers = [number for number, _ in rows]
    assert numbers == list(range(len(rows)))  # every trial numbered once, none lost or duplicated
    assert all(state in ("COMPLETE", "PRUNED") for _, state in rows)
    assert 4 <= len(rows) <= 5  # N finished; a second worker may start one more while the last one runs
    with sqlite3.connect(tmp_path / "shared.db") as connection:
        workers_seen = {value for (value,) in connection.execute(
            "SELECT value_json FROM trial_user_attributes WHERE key = 'worker'")}
    assert len(workers_seen) == 2, f"one worker ran every trial: {workers_seen}"
    last = max((tmp_path / f"report-{i}" / "trials.csv" for i in range(2)), key=lambda p: p.stat().st_mtime)
    assert len(last.read_text().splitlines()) == len(rows) + 1
