"""scripts/download_data.py against local copies (no network in tests)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from conftest import REPO, SHARED_DATA

spec = importlib.util.spec_from_file_location("download_data", REPO / "scripts" / "download_data.py")
download_data = importlib.util.module_from_spec(spec)
sys.modules["download_data"] = download_data
spec.loader.exec_module(download_data)  # type: ignore[union-attr]


def fake_copy(tmp_path: Path) -> Path:
    """A local 'upstream' whose files carry the expected checksums (patched to match)."""
    source = tmp_path / "upstream"
    for remote in download_data.FILES:
        path = source / remote.dataset / remote.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{remote.dataset}/{remote.name}\n")
    return source


@pytest.fixture
def patched_checksums(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    source = fake_copy(tmp_path)
    files = tuple(
        download_data.RemoteFile(r.dataset, r.name, r.url, download_data.sha256_of(source / r.dataset / r.name))
        for r in download_data.FILES
    )
    monkeypatch.setattr(download_data, "FILES", files)
    return source


def test_installs_verified_files_and_licence_notes(patched_checksums: Path, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    assert download_data.main(["--source", str(patched_checksums), "--dest", str(dest)]) == 0
    assert (dest / "mts-dialog" / "MTS-Dialog-TrainingSet.csv").is_file()
    assert (dest / "ncbi-disease" / "LICENSE").is_file()
    note = (dest / "mts-dialog" / "SOURCE.md").read_text()
    assert "CC BY 4.0" in note and "MTS-Dialog-ValidationSet.csv" in note
    assert not list(dest.rglob(".*"))  # no temporary files left
    assert download_data.install(download_data.FILES[0], str(patched_checksums), dest) == "present, checksum ok"


def test_checksum_mismatch_leaves_nothing(patched_checksums: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (patched_checksums / "ncbi-disease" / "train.tsv").write_text("tampered\n")
    dest = tmp_path / "data"
    assert download_data.main(["--source", str(patched_checksums), "--dest", str(dest), "--only", "ncbi-disease"]) == 2
    assert "does not match" in capsys.readouterr().err
    assert not (dest / "ncbi-disease" / "train.tsv").exists()
    assert not list((dest / "ncbi-disease").glob(".*"))


def test_missing_source_file_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert download_data.main(["--source", str(tmp_path / "empty"), "--dest", str(tmp_path / "d")]) == 2
    assert "not found in the local copy" in capsys.readouterr().err


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not beside the repository")
def test_the_shared_copy_matches_the_published_checksums(tmp_path: Path) -> None:
    dest = tmp_path / "data"
    assert download_data.main(["--source", str(SHARED_DATA), "--dest", str(dest)]) == 0
    for remote in download_data.FILES:
        assert download_data.sha256_of(dest / remote.dataset / remote.name) == remote.sha256
