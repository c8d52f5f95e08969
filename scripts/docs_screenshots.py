#!/usr/bin/env python3
"""Make the docs' pictures from synthetic data, never by hand: the serve page (by the browser test) and an
evaluation report's figures (by the report code).

    python scripts/docs_screenshots.py      # writes docs/assets/screenshots/*.png (make docs-screenshots)

The page's pictures are the ones ``tests/test_serve.py::test_the_page_shows_the_label_and_the_highlighted_entities``
takes after checking what the page shows (it copies them where ``$CLINTUNE_DOCS_SCREENSHOTS`` says). The report's
are ``clintune eval --output`` on the tiny binary and multiclass models, trained here on the sample data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "assets" / "screenshots"
REPORT_FIGURES = {  # tiny config -> the report figures kept from it
    "diagnosis": ("roc.png", "precision_recall.png"),
    "section_header": ("confusion_matrix.png", "reliability.png"),
}


def clintune(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "clintune", *args], cwd=ROOT, check=True)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CLINTUNE_DOCS_SCREENSHOTS": str(OUT)}
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "tests/test_serve.py::test_the_page_shows_the_label_and_the_highlighted_entities"], cwd=ROOT, env=env, check=True)
    with tempfile.TemporaryDirectory() as scratch:
        for task, figures in REPORT_FIGURES.items():
            model, report = Path(scratch) / task, Path(scratch) / f"{task}-report"
            clintune("train", f"configs/tiny/{task}.yaml", "--set", f"output.dir={model}")
            clintune("eval", "--model", str(model), "--data", f"data/{task}/test.csv", "--output", str(report))
            for name in figures:
                shutil.copyfile(report / name, OUT / f"report-{task}-{name}")
    print("\n".join(sorted(p.name for p in OUT.glob("*.png"))))


if __name__ == "__main__":
    main()
