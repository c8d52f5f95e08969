"""What the CLI prints: clintune's own progress and results, without the libraries' chatter unless --verbose."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
from conftest import REPO, TASKS, run_cli

# What transformers, torch and friends print on their own, as seen at 6ae6c87.
NOISE = {
    "Trainer log dictionary": re.compile(r"\{'(loss|eval_loss|train_runtime)': "),
    "Python warning": re.compile(r"\w+Warning: "),
    "load report": re.compile(r"LOAD REPORT"),
    "ANSI escape code": re.compile(r"\x1b\["),
    "weight loading bar": re.compile(r"Loading weights"),
    "checkpoint writing bar": re.compile(r"Writing model shards"),
    "transformers notice": re.compile(r"\[transformers\]"),
    "torch.onnx log": re.compile(r"torchvision is not installed"),
    "root-logger warning": re.compile(r"WARNING:root:"),
}


def noise_in(text: str) -> list[str]:
    return [name for name, pattern in NOISE.items() if pattern.search(text)]


def assert_own_progress(stdout: str, stderr: str, epochs: int) -> None:
    """clintune's progress lines and summary are there."""
    assert re.search(r"^clintune: data: \d+ train, \d+ validation", stderr, re.M)
    for epoch in range(1, epochs + 1):
        assert re.search(rf"clintune: epoch {epoch}/{epochs}: (train loss [\d.]+, )?validation loss [\d.]+, \w+ [\d.]+$", stderr, re.M)
    assert re.search(r"^clintune: best validation \w+ [\d.]+", stderr, re.M)
    assert re.search(r"^clintune: model folder written to ", stderr, re.M)
    assert "validation metrics (" in stdout


@pytest.mark.parametrize("task", TASKS)
def test_training_prints_progress_and_no_library_chatter(trained_models: dict[str, Path], task: str) -> None:
    root = trained_models[task].parent
    stdout, stderr = (root / f"{task}.stdout").read_text(), (root / f"{task}.stderr").read_text()
    assert noise_in(stdout) == [] and noise_in(stderr) == []
    if task == "ner":  # configs/tiny/ner.yaml: 4 epochs, no early stop on this data
        assert_own_progress(stdout, stderr, epochs=4)
    assert not stdout.lstrip().startswith("{"), "stdout holds the results, starting with the metrics"


def test_verbose_shows_the_libraries_output_too(tmp_path: Path) -> None:
    result = run_cli("--verbose", "train", "configs/tiny/ner.yaml", "--set", f"output.dir={tmp_path / 'ner'}",
                     "--set", "training.epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    shown = set(noise_in(result.stdout + result.stderr))
    assert {"Trainer log dictionary", "load report", "weight loading bar", "checkpoint writing bar"} <= shown
    assert_own_progress(result.stdout, result.stderr, epochs=1)


def test_training_arguments_use_no_deprecated_names(tmp_path: Path) -> None:
    """The FutureWarning is fixed at its source, not only hidden."""
    from clintune.config.loading import load_config
    from clintune.training.trainer import training_arguments

    config = load_config(REPO / "configs/tiny/ner.yaml", ["training.gradient_checkpointing=true"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        args = training_arguments(config, tmp_path, "fp32", True)
    assert args.activation_checkpointing is True
    assert [str(w.message) for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))] == []


def test_checkpointing_under_the_name_the_installed_transformers_knows() -> None:
    """transformers 5.17 (the GPU image's) refuses ``activation_checkpointing``; 5.25 warns on the old name."""
    import dataclasses

    from clintune.training.trainer import _checkpointing_argument

    @dataclasses.dataclass
    class Older:
        gradient_checkpointing: bool = False

    @dataclasses.dataclass
    class Newer:
        gradient_checkpointing: bool = False
        activation_checkpointing: bool = False

    assert Older(**_checkpointing_argument(Older, True)) == Older(gradient_checkpointing=True)
    assert Newer(**_checkpointing_argument(Newer, True)) == Newer(activation_checkpointing=True)


def test_describe_evaluation() -> None:
    from clintune.training.trainer import describe_evaluation

    logs = {"eval_loss": 0.37831, "eval_f1": 0.964285, "eval_precision": 0.9, "epoch": 2.0}
    assert describe_evaluation(logs, 0.62981, "f1", 26, 4) == "epoch 2/4: train loss 0.6298, validation loss 0.3783, f1 0.9643"
    logs = {"eval_loss": 0.5, "epoch": 1.5384615}
    assert describe_evaluation(logs, None, "loss", 20, 4) == "step 20 (epoch 1.54/4): validation loss 0.5"
