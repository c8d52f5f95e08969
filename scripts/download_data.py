#!/usr/bin/env python3
"""Fetch MTS-Dialog and NCBI disease, check SHA-256 and licences, place them for the configs.

    python scripts/download_data.py                      # from the upstream repositories into data/
    python scripts/download_data.py --source ../shared/data   # from a local copy (air-gapped machines)
    python scripts/download_data.py --dest /srv/clinical-data --only ncbi-disease

The files land in DEST/mts-dialog/ and DEST/ncbi-disease/, which is where
configs/section_header.yaml and configs/ner.yaml look (DEST defaults to
data/; with another DEST, export CLINTUNE_DATA_DIR=DEST). Every data file is
checked against the SHA-256 below before it is moved into place; a mismatch
leaves nothing behind. Each data set's licence is copied beside it and
summarised in SOURCE.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class RemoteFile:
    dataset: str
    name: str
    url: str
    sha256: str


MTS_BASE = "https://raw.githubusercontent.com/abachaa/MTS-Dialog/HEAD"
NCBI_BASE = "https://raw.githubusercontent.com/spyysalo/ncbi-disease/HEAD"

FILES = (
    RemoteFile("mts-dialog", "MTS-Dialog-TrainingSet.csv", f"{MTS_BASE}/Main-Dataset/MTS-Dialog-TrainingSet.csv",
               "65a28681dd59fc159681ea026e44610f2af7bc64a0e7f892d763eb03d9f503dc"),
    RemoteFile("mts-dialog", "MTS-Dialog-ValidationSet.csv", f"{MTS_BASE}/Main-Dataset/MTS-Dialog-ValidationSet.csv",
               "227206520c4534381c0d7fba6d3f09319a9af5a6d9603a93c0341af1198e3958"),
    RemoteFile("mts-dialog", "LICENSE.txt", f"{MTS_BASE}/LICENSE.txt",
               "5b63c5abb5f4218f79230730b3733ce681383e2d656044069b8c73cbdb8e7fb7"),
    RemoteFile("ncbi-disease", "train.tsv", f"{NCBI_BASE}/conll/train.tsv",
               "5f87b0de649eccff21e6d6e49e304aace808056ecae55225ea31602192517be9"),
    RemoteFile("ncbi-disease", "devel.tsv", f"{NCBI_BASE}/conll/devel.tsv",
               "b4e1e7efcc2a35047bf2f3d281648357470e674f555d4a26a0049ac37d59cc61"),
    RemoteFile("ncbi-disease", "LICENSE", f"{NCBI_BASE}/original-data/LICENSE",
               "77f63de888c0a31dbdcc3f19a66d9c7ea64072f487fb302f250b1e7593d50ec9"),
)

LICENCES = {
    "mts-dialog": ("CC BY 4.0", "Ben Abacha et al., An Empirical Study of Clinical Note Generation from "
                   "Doctor-Patient Encounters, EACL 2023; github.com/abachaa/MTS-Dialog"),
    "ncbi-disease": ("US Government work, public domain", "Dogan et al., NCBI disease corpus, J Biomed Inform 2014; "
                     "CoNLL conversion github.com/spyysalo/ncbi-disease"),
}


class DownloadError(Exception):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(remote: RemoteFile, source: str | None, target: Path) -> None:
    """Copy ``remote`` from the local ``source`` folder or its URL into ``target``."""
    if source is not None:
        origin = Path(source) / remote.dataset / remote.name
        if not origin.is_file():
            raise DownloadError(f"{origin}: not found in the local copy")
        shutil.copyfile(origin, target)
        return
    try:
        with urllib.request.urlopen(remote.url, timeout=60) as response, target.open("wb") as handle:
            shutil.copyfileobj(response, handle)
    except OSError as exc:
        raise DownloadError(f"{remote.url}: download failed ({exc}); on a machine without internet, use --source") from None


def install(remote: RemoteFile, source: str | None, dest: Path) -> str:
    """Place one verified file; returns what was done."""
    folder = dest / remote.dataset
    final = folder / remote.name
    if final.is_file() and sha256_of(final) == remote.sha256:
        return "present, checksum ok"
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary_name = tempfile.mkstemp(dir=folder, prefix=f".{remote.name}.")
    os.close(handle)
    temporary = Path(temporary_name)
    try:
        fetch(remote, source, temporary)
        actual = sha256_of(temporary)
        if actual != remote.sha256:
            raise DownloadError(f"{remote.dataset}/{remote.name}: SHA-256 {actual} does not match the expected {remote.sha256}")
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)
    return "installed, checksum ok"


def write_source_note(dest: Path, dataset: str, source: str | None) -> None:
    licence, citation = LICENCES[dataset]
    lines = [f"# {dataset}", "", f"Licence: {licence} (see the licence file in this folder).", f"Source: {citation}.",
             f"Fetched from: {source or 'the upstream repository'}.", "", "| file | SHA-256 |", "|---|---|"]
    lines += [f"| {f.name} | `{f.sha256}` |" for f in FILES if f.dataset == dataset]
    (dest / dataset / "SOURCE.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch and verify MTS-Dialog and NCBI disease.")
    parser.add_argument("--dest", type=Path, default=ROOT / "data", help="target folder (default: data/)")
    parser.add_argument("--source", help="a local folder laid out like the target (mts-dialog/, ncbi-disease/)")
    parser.add_argument("--only", choices=sorted(LICENCES), action="append", help="fetch only this data set (repeatable)")
    args = parser.parse_args(argv)
    datasets = args.only or sorted(LICENCES)
    try:
        for dataset in datasets:
            licence, _ = LICENCES[dataset]
            print(f"{dataset} ({licence}):")
            for remote in (f for f in FILES if f.dataset == dataset):
                print(f"  {remote.name}: {install(remote, args.source, args.dest)}")
            write_source_note(args.dest, dataset, args.source)
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dest.resolve() != (ROOT / "data").resolve():
        print(f"\nexport CLINTUNE_DATA_DIR={args.dest.resolve()}   # so the configs find the files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
