"""Checkpoint selection: the epoch kept is the best by the numbers ``clintune eval`` prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, run_cli


def evaluations(folder: Path, metric: str) -> list[dict]:
    log = json.loads((folder / "training_log.json").read_text())
    return [entry for entry in log if f"eval_{metric}" in entry]


def check_kept_checkpoint_is_scored_like_eval(folder: Path, data: str, metric: str) -> None:
    from clintune.api import evaluate

    scored = evaluations(folder, metric)
    # The Trainer keeps the first evaluation that beat every earlier one: the first maximum.
    best = max(scored, key=lambda entry: entry[f"eval_{metric}"])
    evaluated = evaluate(folder, data, resamples=0).metrics[metric]
    assert best[f"eval_{metric}"] == pytest.approx(evaluated, abs=1e-9), "the kept epoch was chosen by another metric than eval's"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["validation"][metric] == pytest.approx(evaluated, abs=1e-9)
    selection = metrics["selection"]
    assert selection["metric"] == metric
    kept = (selection["kept_step"], selection["kept_epoch"], selection["kept_value"])
    assert kept == (best["step"], best["epoch"], best[f"eval_{metric}"])
    assert (selection["last_step"], selection["last_value"]) == (scored[-1]["step"], scored[-1][f"eval_{metric}"])
    card = (folder / "README.md").read_text()
    assert f"epoch {best['epoch']:g} (step {best['step']})" in card


def test_ner_checkpoint_is_chosen_by_word_level_entity_f1(trained_models: dict[str, Path]) -> None:
    """The tiny NER config labels every subword (label_all_subwords: true); per-subword seqeval scores
    differ from the word-level entity F1 that eval reports on this data."""
    check_kept_checkpoint_is_scored_like_eval(trained_models["ner"], "data/ner/validation.conll", "f1")


def test_chunked_classification_checkpoint_is_chosen_by_document(tmp_path: Path) -> None:
    """With long_text: chunk every window is scored on its own during training (here the words that
    decide the class often sit in the last window), but eval scores whole documents."""
    folder = tmp_path / "chunked"
    result = run_cli("train", "configs/tiny/seriousness.yaml", "--set", f"output.dir={folder}", "--set", "model.long_text=chunk",
                     "--set", "model.max_length=16", "--set", "model.stride=4", "--set", "training.epochs=3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "read in overlapping windows" in result.stderr
    long_notes = [line for line in result.stderr.splitlines() if "exceed model.max_length" in line]
    assert [note.split(":")[1].strip() for note in long_notes] == ["train", "validation", "test"], \
        f"each split's long texts are counted once, not again at every evaluation: {long_notes}"
    check_kept_checkpoint_is_scored_like_eval(folder, "data/seriousness/validation.csv", "f1_macro")


def test_early_stopping_follows_the_evaluator(tmp_path: Path) -> None:
    """Patience counts evaluations by eval's metric: training stops ``patience`` evaluations after the best."""
    folder = tmp_path / "ner"
    result = run_cli("train", "configs/tiny/ner.yaml", "--set", f"output.dir={folder}", "--set", "training.epochs=8",
                     "--set", "training.early_stopping_patience=1")
    assert result.returncode == 0, result.stderr[-3000:]
    scored = [entry["eval_f1"] for entry in evaluations(folder, "f1")]
    best = scored.index(max(scored))
    assert len(scored) == best + 2 < 8, f"should stop one evaluation after the best: {scored}"
    assert json.loads((folder / "metrics.json").read_text())["selection"]["evaluations"] == len(scored)


def test_selection_summary_names_the_kept_and_the_last_evaluation() -> None:
    from clintune.training.trainer import selection_summary

    log = [
        {"loss": 1.0, "step": 10, "epoch": 1.0},
        {"eval_f1": 0.5, "eval_loss": 0.9, "step": 10, "epoch": 1.0},
        {"eval_f1": 0.7, "eval_loss": 0.8, "step": 20, "epoch": 2.0},
        {"eval_f1": 0.6, "eval_loss": 0.7, "step": 30, "epoch": 3.0},
        {"train_runtime": 3.0, "step": 30, "epoch": 3.0},
    ]
    assert selection_summary(log, "f1", 20) == {
        "metric": "f1", "split": "validation", "kept_step": 20, "kept_epoch": 2.0, "kept_value": 0.7,
        "last_step": 30, "last_epoch": 3.0, "last_value": 0.6, "evaluations": 3,
    }
    assert selection_summary(log, "loss", 30)["kept_value"] == 0.7
    assert selection_summary(log, "f1", None) is None


class FakeTrainer:
    """Stands in for one rank of a sharded run: ``save_model`` is the collective that gathers the weights."""

    def __init__(self, rank: int, writes_weights: bool) -> None:
        self.rank, self.writes_weights, self.saved_to = rank, writes_weights, []

    def is_world_process_zero(self) -> bool:
        return self.rank == 0

    def save_model(self, output_dir: str) -> None:
        self.saved_to.append(Path(output_dir))
        if self.rank == 0:
            Path(output_dir).mkdir(parents=True)
            (Path(output_dir) / "training_args.bin").write_bytes(b"pickle")
            if self.writes_weights:
                (Path(output_dir) / "model.safetensors").write_bytes(b"weights")


def test_every_rank_saves_through_the_trainer(tmp_path: Path) -> None:
    from clintune.workflows.train import _save_weights

    for rank in (1, 0):
        trainer = FakeTrainer(rank, writes_weights=True)
        _save_weights(trainer, tmp_path / "final")
        assert trainer.saved_to == [tmp_path / "final"], f"rank {rank} must join the save"
    assert sorted(p.name for p in (tmp_path / "final").iterdir()) == ["model.safetensors"], "no pickled Trainer arguments"


def test_a_save_without_weights_is_an_error(tmp_path: Path) -> None:
    from clintune.errors import ClintuneError
    from clintune.workflows.train import _save_weights

    with pytest.raises(ClintuneError, match="stage3_gather_16bit_weights_on_model_save"):
        _save_weights(FakeTrainer(0, writes_weights=False), tmp_path / "final")


def test_train_saves_the_final_weights_with_trainer_save_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import Trainer

    from clintune import api
    from clintune.config.loading import load_config

    calls = []
    original = Trainer.save_model

    def recording(self: Trainer, output_dir: str | None = None, _internal_call: bool = False) -> None:
        calls.append(Path(output_dir).name)
        original(self, output_dir, _internal_call)

    monkeypatch.setattr(Trainer, "save_model", recording)
    monkeypatch.chdir(REPO)
    folder = tmp_path / "diagnosis"
    api.train(load_config("configs/tiny/diagnosis.yaml", [f"output.dir={folder}", "training.epochs=1"]))
    assert calls[-1] == "final"
    assert (folder / "model.safetensors").is_file() and not (folder / "training_args.bin").exists()
