"""A training run killed with SIGKILL resumes and ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, run_cli

SETTINGS = ["--set", "training.epochs=4", "--set", "training.batch_size=8", "--set", "training.save_total_limit=10"]


def wait_for_checkpoint(work: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if list(work.glob("checkpoints/checkpoint-*/trainer_state.json")):
            return
        if process.poll() is not None:
            pytest.fail("training finished before it could be interrupted")
        time.sleep(0.02)
    pytest.fail("no checkpoint appeared")


def test_killed_run_resumes_to_the_same_metrics(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    result = run_cli("train", "configs/tiny/ner.yaml", *SETTINGS, "--set", f"output.dir={reference}")
    assert result.returncode == 0, result.stderr

    interrupted = tmp_path / "interrupted"
    work = interrupted.with_name("interrupted.work")
    process = subprocess.Popen(
        [sys.executable, "-m", "clintune", "train", "configs/tiny/ner.yaml", *SETTINGS, "--set", f"output.dir={interrupted}"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    wait_for_checkpoint(work, process)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not interrupted.exists(), "a killed run must not leave a model folder"

    again = run_cli("train", "configs/tiny/ner.yaml", *SETTINGS, "--set", f"output.dir={interrupted}")
    assert again.returncode == 2 and "--resume" in again.stderr

    changed = run_cli("train", "configs/tiny/ner.yaml", *SETTINGS, "--set", "training.learning_rate=0.1",
                      "--set", f"output.dir={interrupted}", "--resume")
    assert changed.returncode == 2 and "training.learning_rate" in changed.stderr

    resumed = run_cli("train", "configs/tiny/ner.yaml", *SETTINGS, "--set", f"output.dir={interrupted}", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr
    expected = json.loads((reference / "metrics.json").read_text())["validation"]
    actual = json.loads((interrupted / "metrics.json").read_text())["validation"]
    for key in ("f1", "precision", "recall", "accuracy"):
        assert actual[key] == pytest.approx(expected[key], abs=1e-6), key
    reference_log = json.loads((reference / "training_log.json").read_text())
    resumed_log = json.loads((interrupted / "training_log.json").read_text())
    final_loss = lambda log: [e["eval_loss"] for e in log if "eval_loss" in e][-1]  # noqa: E731
    assert final_loss(resumed_log) == pytest.approx(final_loss(reference_log), rel=1e-4)
    assert not work.exists()
