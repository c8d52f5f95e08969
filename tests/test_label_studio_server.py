"""A real Label Studio server with ``clintune serve --label-studio`` as its ML backend (``make test-label-studio``).

Label Studio (``label-studio`` from PyPI, in ``.venv-label-studio``: its pins clash with clintune's) runs
on SQLite, on a loopback port, with a home and data folder of its own under the test's temporary folder.
The test creates an NER and a classification project through its REST API, imports tasks with
``\\r\\n`` line breaks and an emoji (where offset bugs live), connects clintune with Basic auth, asks Label
Studio for predictions and reads back what it stored. Marked ``label_studio``: the main suite leaves it
out; ``.ci/run`` runs it after the main suite.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from test_label_studio_backend import choices_config, labels_of, ner_config

from clintune import api
from clintune.modeling.folder import read_model_folder

pytestmark = pytest.mark.label_studio

TOKEN = "clintune-test-token-0123456789"
KEY = "backend-key-for-label-studio"
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
NER_TEXTS = [
    "Patient 🙂 has cystic fibrosis .\r\nHer brother had huntington disease .",
    "No sign of ataxia telangiectasia 🙂 ,\r\n\r\nbut type 2 diabetes and cystic fibrosis run in the family .",
    "Screening for huntington disease is advised .",
]
NOTES = [
    "Doctor: Any allergies?\r\nPatient: 🙂 penicillin gives me a rash.",
    "Doctor: What medications do you take?\r\nPatient: Metformin every morning.",
    "Patient: My mother had diabetes 🙂.\r\nDoctor: Anyone else in the family?",
]


def label_studio_command() -> Path:
    path = Path(os.environ.get("CLINTUNE_LABEL_STUDIO", REPO / ".venv-label-studio" / "bin" / "label-studio"))
    path = path if path.is_absolute() else REPO / path  # Label Studio starts in a folder of its own
    if not path.is_file():
        pytest.fail(f"Label Studio is not installed at {path}; run 'make test-label-studio' (it installs label-studio "
                    "into .venv-label-studio) or set CLINTUNE_LABEL_STUDIO to its executable")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Any, process: subprocess.Popen[Any], log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        assert process.poll() is None, f"exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
        assert time.monotonic() < deadline, f"not up in {seconds:.0f} s:\n{log.read_text(errors='replace')[-3000:]}"
        time.sleep(0.5)


@contextmanager
def started(command: list[str], log: Path, env: dict[str, str], ready: Any, seconds: float) -> Iterator[subprocess.Popen[Any]]:
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent)
    try:
        wait_until(ready, process, log, seconds)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class LabelStudio:
    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        request = urllib.request.Request(self.url + path, data=None if body is None else json.dumps(body).encode(), method=method,
                                         headers={"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"})
        try:
            with DIRECT.open(request, timeout=180) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def project(self, title: str, config: str, texts: list[str], field: str) -> tuple[int, list[dict[str, Any]]]:
        status, project = self.call("POST", "/api/projects", {"title": title, "label_config": config})
        assert status == 201, project
        status, imported = self.call("POST", f"/api/projects/{project['id']}/import", [{field: text} for text in texts])
        assert status == 201 and imported["task_count"] == len(texts), imported
        status, listing = self.call("GET", f"/api/tasks?project={project['id']}&page_size=100")
        assert status == 200, listing
        return project["id"], sorted(listing["tasks"], key=lambda task: task["id"])

    def connect(self, project: int, backend: str, password: str) -> tuple[int, Any]:
        return self.call("POST", "/api/ml", {"url": backend, "project": project, "title": "clintune", "auth_method": "BASIC_AUTH",
                                             "basic_auth_user": "label-studio", "basic_auth_pass": password})

    def predictions(self, project: int, tasks: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        status, done = self.call("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={project}",
                                 {"selectedItems": {"all": True, "excluded": []}})
        assert status == 200, done
        stored = []
        for task in tasks:
            status, predictions = self.call("GET", f"/api/predictions?task={task['id']}")
            assert status == 200, predictions
            stored.append(predictions)
        return stored


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    executable = label_studio_command()
    root = tmp_path_factory.mktemp("label-studio")
    (root / "home").mkdir()
    port = free_port()
    env = {**os.environ, "HOME": str(root / "home"), "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
           # clintune listens on loopback here; Label Studio refuses such ML backends unless told otherwise (tests only)
           "ML_BLOCK_LOCAL_IP": "false", "USE_DEFAULT_BANNED_SUBNETS": "false"}
    env.pop("HOST", None)
    command = [str(executable), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
               "--data-dir", str(root / "data"), "--username", "annotator@example.org", "--password", "not-a-real-pass-1",
               "--user-token", TOKEN]
    client = LabelStudio(f"http://127.0.0.1:{port}")
    with started(command, root / "label-studio.log", env, lambda: client.call("GET", "/api/projects")[0] == 200, 240):
        yield client


@contextmanager
def backend(folder: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    key_file = tmp_path / f"{folder.name}.key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    port = free_port()
    log = tmp_path / f"{folder.name}.serve.log"
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        with DIRECT.open(url + "/health", timeout=5) as response:
            return response.status == 200

    command = [sys.executable, "-m", "clintune", "serve", "--model", str(folder), "--port", str(port), "--label-studio",
               "--api-key-file", str(key_file)]
    with started(command, log, {**os.environ, "PYTHONPATH": str(REPO / "src")}, up, 120):
        yield url, log


def test_label_studio_stores_clintunes_entities_at_the_right_offsets(label_studio: LabelStudio, trained_models: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    folder = trained_models["ner"]
    expected = api.predict(folder, NER_TEXTS)
    assert any(expected), "the tiny tagger found no entity: the offsets would go untested"
    version = read_model_folder(folder).version()
    project, tasks = label_studio.project("NER", ner_config(["Disease"]), NER_TEXTS, "text")
    assert [task["data"]["text"] for task in tasks] == NER_TEXTS  # \r\n and the emoji kept as imported
    with backend(folder, tmp_path) as (url, log):
        status, refused = label_studio.connect(project, url, "wrong-key")
        assert status == 400, refused  # Label Studio could not pass /setup
        status, connected = label_studio.connect(project, url, KEY)
        assert status == 201 and connected["model_version"] == version, connected
        stored = label_studio.predictions(project, tasks)
        log_text = log.read_text()
    assert "POST /setup 401" in log_text and "POST /predict 200" in log_text
    for text, entities, predictions in zip(NER_TEXTS, expected, stored):
        [prediction] = predictions
        assert prediction["model_version"] == version
        assert prediction["score"] == pytest.approx(min([e.score for e in entities], default=1.0), abs=1e-5)
        spans = [(r["value"]["start"], r["value"]["end"], r["value"]["labels"], r["score"]) for r in prediction["result"]]
        assert spans == [(e.start, e.end, [e.label], pytest.approx(e.score, abs=1e-6)) for e in entities]
        for item in prediction["result"]:
            assert item["value"]["text"] == text[item["value"]["start"]:item["value"]["end"]]
    for text in NER_TEXTS:
        assert text.split()[1] not in log_text.replace("POST", "")  # no note text in clintune's log


def test_label_studio_stores_the_label_and_refuses_a_config_with_unknown_labels(
        label_studio: LabelStudio, trained_models: dict[str, Path], tmp_path: Path) -> None:
    folder = trained_models["section_header"]
    expected = api.predict(folder, NOTES)
    labels = labels_of(folder)
    project, tasks = label_studio.project("Sections", choices_config(labels), NOTES, "note")
    other, _ = label_studio.project("Other labels", choices_config([*labels, "SURGERY_PLAN"]), NOTES[:1], "note")
    with backend(folder, tmp_path) as (url, log):
        status, refused = label_studio.connect(other, url, KEY)
        assert status == 400, refused
        status, connected = label_studio.connect(project, url, KEY)
        assert status == 201, connected
        stored = label_studio.predictions(project, tasks)
        log_text = log.read_text()
    assert "does not know: SURGERY_PLAN" in log_text  # where Label Studio's own message tells the user to look
    for prediction, [answer] in zip(expected, stored):
        [item] = answer["result"]
        assert item["type"] == "choices" and item["value"]["choices"] == [prediction.label]
        assert answer["score"] == pytest.approx(prediction.probabilities[prediction.label], abs=1e-5)


def test_selects_task_file_imports_with_its_pre_annotations(label_studio: LabelStudio, trained_models: dict[str, Path],
                                                          tmp_path: Path) -> None:
    folder = trained_models["ner"]
    pool = tmp_path / "pool.txt"
    pool.write_text("".join(text.replace("\r\n", " ") + "\n" for text in NER_TEXTS), encoding="utf-8")
    tasks_file = tmp_path / "tasks.json"
    api.select(folder, pool, tmp_path / "picks.csv", k=3, exclude_training_data=False, label_studio_tasks=tasks_file)
    tasks = json.loads(tasks_file.read_text(encoding="utf-8"))
    status, project = label_studio.call("POST", "/api/projects", {"title": "Picked", "label_config": ner_config(["Disease"])})
    assert status == 201, project
    status, imported = label_studio.call("POST", f"/api/projects/{project['id']}/import", tasks)
    assert status == 201 and imported["task_count"] == 3 and imported["prediction_count"] == 3, imported
    status, listing = label_studio.call("GET", f"/api/tasks?project={project['id']}&page_size=100")
    stored = sorted(listing["tasks"], key=lambda task: task["data"]["clintune_rank"])
    for task, written in zip(stored, tasks):
        status, [prediction] = label_studio.call("GET", f"/api/predictions?task={task['id']}")
        assert prediction["model_version"] == read_model_folder(folder).version()
        assert prediction["result"] == written["predictions"][0]["result"]
        for item in prediction["result"]:
            assert item["value"]["text"] == task["data"]["text"][item["value"]["start"]:item["value"]["end"]]
