"""``clintune serve``: the real server on a free loopback port, called over HTTP as a client program would.

One server per model for the whole module (uvicorn in a thread, the tiny models of the
``trained_models`` session fixture); the SIGTERM test starts ``python -m clintune serve``
itself, and the page is driven in headless Chromium.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, require_module, run_cli

from clintune import api
from clintune.errors import ClintuneError
from clintune.serve import ServeSettings, check_bind, is_loopback, read_api_key
from clintune.serve.batching import MicroBatcher, Overloaded
from clintune.serve.protocol import RequestProblem, parse_predict_request

require_module("fastapi", "fastapi is not installed (pip install 'clintune[serve]')")
require_module("uvicorn", "uvicorn is not installed (pip install 'clintune[serve]')")

MARKER = "Zyxquorin"  # in every text sent, so the logs can be searched for it
NOTES = [
    f"Doctor: Are you allergic to any medications? Patient: {MARKER} gives me a rash.",
    f"Doctor: What medications do you take? Patient: Metformin and {MARKER} every morning.",
    f"Patient: My mother had diabetes. {MARKER} runs in the family.",
    f"Doctor: Any fever or chills? Patient: No fever, some cough. {MARKER}",
    "Doctor: Tell me about your day.  Patient: ça va, merci — 37.5 °C " + MARKER,
    "x " * 300 + MARKER,  # longer than the tiny model's max_length: truncated as predict does
]
SENTENCES = [
    f"The risk of huntington disease increased with age in {MARKER} .",
    f"Screening for type 2 Diabetes is recommended in carriers of {MARKER} .",
    f"No cases of ataxia telangiectasia were observed in the {MARKER} cohort .",
]
KEY = "s3cret-key-for-tests"
SMALL = ServeSettings(max_texts=8, max_bytes=6000)
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy


def call(url: str, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, Any]:
    """(status, JSON body) of a GET (no body) or POST to ``url``."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with DIRECT.open(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def running(folder: Path, settings: ServeSettings | None = None, api_key: str | None = None) -> Iterator[tuple[str, Any, Captured]]:
    """``api.create_app`` on uvicorn in a thread on a free loopback port, once the model is ready: (url, app, logs)."""
    import uvicorn

    logs = Captured()
    watched = [logging.getLogger(name) for name in ("clintune.serve", "uvicorn", "uvicorn.error", "clintune.inference.predictor")]
    before = [(logger.level, logger.handlers[:]) for logger in watched]
    for logger in watched:
        logger.addHandler(logs)
        logger.setLevel(logging.DEBUG)
    app = api.create_app(folder, settings=settings, api_key=api_key, trusted_hosts=("127.0.0.1",))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while not (server.started and app.state.batcher.ready.is_set()):
            assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}", app, logs
    finally:
        server.should_exit = True
        thread.join(60)
        for logger, (level, handlers) in zip(watched, before):
            logger.setLevel(level)
            logger.handlers = handlers


@pytest.fixture(scope="module")
def classifier(trained_models: dict[str, Path]) -> Iterator[tuple[str, Any, Captured]]:
    with running(trained_models["section_header"], SMALL) as served:
        yield served


@pytest.fixture(scope="module")
def tagger(trained_models: dict[str, Path]) -> Iterator[tuple[str, Any, Captured]]:
    with running(trained_models["ner"], SMALL) as served:
        yield served


@pytest.fixture(scope="module")
def keyed(trained_models: dict[str, Path]) -> Iterator[tuple[str, Any, Captured]]:
    with running(trained_models["diagnosis"], api_key=KEY) as served:
        yield served


# -- answers ------------------------------------------------------------------------------------


def test_predict_answers_exactly_what_predict_json_prints(classifier: tuple[str, Any, Captured], trained_models: dict[str, Path]) -> None:
    url, _, _ = classifier
    arguments = [argument for note in NOTES for argument in ("--text", note)]
    printed = run_cli("predict", "--model", str(trained_models["section_header"]), *arguments, "--json", "--probabilities")
    assert printed.returncode == 0, printed.stderr
    expected = json.loads(printed.stdout)
    assert call(url + "/v1/predict", {"texts": NOTES, "probabilities": True}) == (200, expected)
    without = [{key: value for key, value in record.items() if key != "probabilities"} for record in expected]
    assert call(url + "/v1/predict", {"texts": NOTES}) == (200, without)
    assert len({record["score"] for record in expected}) == len(NOTES)  # distinct answers: order mix-ups would show


def test_ner_entities_and_offsets_are_predicts(tagger: tuple[str, Any, Captured], trained_models: dict[str, Path]) -> None:
    url, _, _ = tagger
    expected = [api.result_record(result) for result in api.predict(trained_models["ner"], SENTENCES)]
    status, answer = call(url + "/v1/predict", {"texts": SENTENCES})
    assert status == 200
    assert answer == json.loads(json.dumps(expected))
    assert any(record["entities"] for record in answer), "the tiny tagger finds these diseases"
    for text, record in zip(SENTENCES, answer):
        assert all(text[e["start"]:e["end"]] == e["text"] for e in record["entities"])


def test_model_endpoint_reads_the_folder(classifier: tuple[str, Any, Captured], tagger: tuple[str, Any, Captured],
                                         trained_models: dict[str, Path]) -> None:
    folder = trained_models["section_header"]
    status, info = call(classifier[0] + "/v1/model")
    assert status == 200
    metrics = json.loads((folder / "metrics.json").read_text())
    run = json.loads((folder / "run.json").read_text())
    assert info["task"] == "multiclass"
    assert info["labels"] == json.loads((folder / "labels.json").read_text())["classes"]
    assert info["decision_rule"]["description"] == "most probable class"
    assert info["metrics"]["validation"]["confidence_intervals"] == metrics["validation"]["confidence_intervals"]
    assert info["metrics"]["test"]["f1_macro"] == metrics["test"]["f1_macro"]
    assert info["data"]["train"]["sha256"] == run["data"]["train"]["sha256"]
    assert info["backend"] == "pytorch" and info["ready"] is True
    assert info["limits"]["max_texts"] == SMALL.max_texts
    ner = call(tagger[0] + "/v1/model")[1]
    assert (ner["task"], ner["labels"], ner["tags"]) == ("ner", ["Disease"], ["O", "B-Disease", "I-Disease"])
    assert call(classifier[0] + "/healthz") == (200, {"status": "ok", "requests_in_flight": 0})
    assert call(classifier[0] + "/readyz") == (200, {"status": "ready"})


def test_a_tuned_decision_rule_is_the_one_served(trained_models: dict[str, Path], tmp_path: Path) -> None:
    """decision.json (threshold, temperature) applies as in predict: the served label follows the rule, not argmax."""
    from clintune.modeling.decision import DecisionRule

    folder = tmp_path / "tuned"
    shutil.copytree(trained_models["section_header"], folder)
    first = api.predict(folder, NOTES[:1])[0]
    runner_up = sorted(first.probabilities, key=first.probabilities.get)[-2]
    DecisionRule(temperature=2.0, class_thresholds={runner_up: 0.0}).save(folder)
    expected = [api.result_record(r, True) for r in api.predict(folder, NOTES[:2])]
    with running(folder) as (url, _, _):
        status, answer = call(url + "/v1/predict", {"texts": NOTES[:2], "probabilities": True})
        info = call(url + "/v1/model")[1]
    assert status == 200 and answer == json.loads(json.dumps(expected))
    assert answer[0]["label"] == runner_up
    assert info["decision_rule"]["temperature"] == 2.0 and runner_up in info["decision_rule"]["description"]


def test_an_int8_onnx_folder_answers_each_text_as_if_alone(trained_models: dict[str, Path], tmp_path: Path) -> None:
    """Dynamic int8 scales activations per batch: batched with other callers' texts, a text's probabilities
    would move (by about 2e-3 on the tiny model); the server runs such a model one text at a time."""
    require_module("onnxruntime")
    exported = tmp_path / "int8"
    api.export(trained_models["section_header"], exported, quantize="int8")
    alone = [api.result_record(api.predict(exported, [note])[0], True) for note in NOTES]
    with running(exported, ServeSettings(max_wait_ms=50)) as (url, app, _):
        assert call(url + "/v1/model")[1]["backend"] == "onnx"
        with ThreadPoolExecutor(len(NOTES)) as pool:
            answers = list(pool.map(lambda note: call(url + "/v1/predict", {"texts": [note], "probabilities": True}), NOTES * 3))
        assert app.state.batcher.largest_batch > 1, "the requests were not gathered"
    assert answers == [(200, [record]) for record in json.loads(json.dumps(alone))] * 3


# -- micro-batching under load -----------------------------------------------------------------


def test_64_concurrent_clients_get_the_sequential_answers(classifier: tuple[str, Any, Captured]) -> None:
    url, app, _ = classifier
    requests = [NOTES[i % len(NOTES): i % len(NOTES) + 1 + i % 3] for i in range(len(NOTES) * 3)]
    sequential = [call(url + "/v1/predict", {"texts": texts, "probabilities": True}) for texts in requests]
    assert all(status == 200 for status, _ in sequential)
    batches_before = app.state.batcher.batches

    def client(number: int) -> list[tuple[int, int, Any]]:
        return [(k, *call(url + "/v1/predict", {"texts": requests[k], "probabilities": True}))
                for k in ((number + j) % len(requests) for j in range(4))]

    with ThreadPoolExecutor(64) as pool:
        answers = [answer for client_answers in pool.map(client, range(64)) for answer in client_answers]
    assert len(answers) == 64 * 4
    assert [status for _, status, _ in answers] == [200] * len(answers)
    for k, _, answer in answers:
        expected = sequential[k][1]
        assert [r["label"] for r in answer] == [r["label"] for r in expected]
        # A text batched with other callers' texts is padded to their length: its probabilities may move in
        # the 7th decimal (float rounding), never more.
        for got, want in zip(answer, expected):
            assert got["probabilities"] == pytest.approx(want["probabilities"], rel=0, abs=1e-6)
    assert app.state.batcher.largest_batch > 3, "concurrent requests were not gathered into batches"
    assert app.state.batcher.batches - batches_before < len(answers)


def test_a_request_that_breaks_the_model_fails_alone() -> None:
    def run(texts: list[str]) -> list[str]:
        if "boom" in texts:
            raise ValueError("cannot read boom")
        time.sleep(0.01)
        return [text.upper() for text in texts]

    batcher = MicroBatcher(run, max_texts=8, max_wait=0.05)
    batcher.start()
    futures = [batcher.submit(texts) for texts in (["a", "b"], ["boom"], ["c"], list("defghijkl"), ["m"])]
    with pytest.raises(ValueError, match="cannot read boom"):
        futures[1].result(10)
    assert [f.result(10) for i, f in enumerate(futures) if i != 1] == [["A", "B"], ["C"], list("DEFGHIJKL"), ["M"]]
    assert batcher.submit(["n"]).result(10) == ["N"]  # the worker lives on
    assert batcher.largest_batch == 9  # a request larger than max_texts runs alone, whole
    batcher.stop(10)


def test_past_the_queue_limit_a_caller_is_told_to_come_back_and_nothing_is_lost() -> None:
    release = threading.Event()

    def run(texts: list[str]) -> list[str]:
        release.wait(10)
        return [text.upper() for text in texts]

    batcher = MicroBatcher(run, max_texts=2, max_wait=0.0, max_pending=5)
    batcher.start()
    accepted = [batcher.submit(["a", "b"]), batcher.submit(["c", "d"])]  # 4 texts waiting or running
    with pytest.raises(Overloaded, match="4 text\\(s\\) are waiting or running \\(at most 5\\)"):
        batcher.submit(["e", "f"])
    accepted.append(batcher.submit(["e"]))  # 5: at the limit, still taken
    release.set()
    assert [future.result(10) for future in accepted] == [["A", "B"], ["C", "D"], ["E"]]
    deadline = time.monotonic() + 10
    while batcher.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batcher.pending == 0
    alone = MicroBatcher(run, max_texts=2, max_wait=0.0, max_pending=5)
    alone.start()
    assert alone.submit(list("abcdefgh")).result(10) == list("ABCDEFGH")  # nothing waiting: any request is taken
    batcher.stop(10)
    alone.stop(10)


def test_a_busy_server_answers_503_with_retry_after(trained_models: dict[str, Path]) -> None:
    with running(trained_models["section_header"], ServeSettings(max_queued_texts=3)) as (url, app, logs):
        gate = threading.Event()
        model = app.state.model
        original = model.run
        model.run = lambda texts: (gate.wait(30), original(texts))[1]
        app.state.batcher.run = model.run
        try:
            first = threading.Thread(target=call, args=(f"{url}/v1/predict", {"texts": ["a note", "another note"]}))
            first.start()
            deadline = time.monotonic() + 10
            while app.state.batcher.pending < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            request = urllib.request.Request(f"{url}/v1/predict", data=json.dumps({"texts": ["x", "y"]}).encode(),
                                             method="POST", headers={"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as refused:
                DIRECT.open(request, timeout=30)
            assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "1"
            assert "the server is busy: 2 text(s) are waiting or running (at most 3)" in json.loads(refused.value.read())["detail"]
        finally:
            gate.set()
            first.join(30)
        assert call(f"{url}/v1/predict", {"texts": ["x", "y"]})[0] == 200  # the place is free again
        assert any("busy: refused a request of 2 text(s)" in line for line in logs.lines)


# -- bad input and safety ----------------------------------------------------------------------


@pytest.mark.parametrize("body, status, field", [
    (b'{"texts": ["a note"', 422, "body"),
    (b'["a note"]', 422, "body"),
    (b'{"text": ["a note"]}', 422, "texts"),
    (b'{"texts": "a note"}', 422, "texts"),
    (b'{"texts": []}', 422, "texts"),
    (b'{"texts": ["a note", 7]}', 422, "texts[1]"),
    (b'{"texts": ["a note", " \\n "]}', 422, "texts[1]"),
    (b'{"texts": ["a note", "Doctor:\\nPatient: "]}', 422, "texts[1]"),  # empty once speaker tags are removed
    (b'{"texts": ["a note"], "probabilities": "yes"}', 422, "probabilities"),
    (json.dumps({"texts": ["a note"] * 9}).encode(), 413, "texts"),
    (json.dumps({"texts": ["a" * 7000]}).encode(), 413, "body"),
])
def test_bad_requests_are_refused_naming_the_field(classifier: tuple[str, Any, Captured], body: bytes, status: int, field: str) -> None:
    answer = call(classifier[0] + "/v1/predict", raw=body)
    assert answer[0] == status, answer
    assert field in [e["field"] for e in answer[1]["errors"]]
    assert answer[1]["detail"].startswith(answer[1]["errors"][0]["field"] + ": ")
    assert call(classifier[0] + "/v1/predict", {"texts": ["still answering"]})[0] == 200


def test_a_chunked_body_over_the_limit_is_refused_while_read(classifier: tuple[str, Any, Captured]) -> None:
    host, port = classifier[0].removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    chunks = iter([b'{"texts": ["', *([b"a" * 1000] * 10), b'"]}'])
    connection.request("POST", "/v1/predict", body=chunks, headers={"Content-Type": "application/json"}, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413
    assert "more than this server takes" in json.loads(response.read())["detail"]


def test_parse_errors_never_quote_the_text() -> None:
    with pytest.raises(RequestProblem) as caught:
        parse_predict_request(json.dumps({"texts": [MARKER, "", 3], "probabilities": MARKER}).encode(), 8)
    assert MARKER not in json.dumps(caught.value.body())
    assert [e["field"] for e in caught.value.errors] == ["probabilities", "texts[1]", "texts[2]"]


def test_the_api_key_is_required_when_given(keyed: tuple[str, Any, Captured]) -> None:
    url = keyed[0]
    body = {"texts": ["Patient reports fever and cough."]}
    assert call(url + "/v1/predict", body)[0] == 401
    assert call(url + "/v1/model")[0] == 401
    assert call(url + "/v1/predict", body, {"Authorization": "Bearer wrong"}) == (401, {"detail": "wrong API key"})
    assert call(url + "/v1/predict", body, {"Authorization": f"Bearer {KEY}"})[0] == 200
    assert call(url + "/v1/predict", body, {"X-API-Key": KEY})[0] == 200
    assert call(url + "/healthz")[0] == 200  # probes and the page need no key
    with DIRECT.open(url + "/") as page:
        assert b"<textarea" in page.read()


def test_binding_beyond_loopback_needs_a_key(tmp_path: Path, trained_models: dict[str, Path]) -> None:
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        assert is_loopback(host), host
        check_bind(host, None)
    for host in ("0.0.0.0", "::", "10.1.2.3", "clinic-server.example"):
        assert not is_loopback(host), host
        with pytest.raises(ClintuneError, match="needs an API key|must carry an API key"):
            check_bind(host, None)
        check_bind(host, "key")
    key_file = tmp_path / "key"
    key_file.write_text("  from-file \nignored\n")
    assert read_api_key(key_file, {}) == "from-file"
    assert read_api_key(None, {"CLINTUNE_API_KEY": "from-env"}) == "from-env"
    assert read_api_key(None, {}) is None
    env = {k: v for k, v in os.environ.items() if k != "CLINTUNE_API_KEY"}
    result = subprocess.run([sys.executable, "-m", "clintune", "serve", "--model", str(trained_models["diagnosis"]), "--host", "0.0.0.0"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "--api-key-file" in result.stderr and "Traceback" not in result.stderr


def test_cors_is_off_unless_asked(classifier: tuple[str, Any, Captured], trained_models: dict[str, Path]) -> None:
    request = urllib.request.Request(classifier[0] + "/v1/model", headers={"Origin": "http://intranet.example"})
    with DIRECT.open(request) as response:
        assert "access-control-allow-origin" not in {k.lower() for k in response.headers}
    app = api.create_app(trained_models["section_header"], settings=ServeSettings(cors_origins=("http://intranet.example",)))
    assert any(m.cls.__name__ == "CORSMiddleware" for m in app.user_middleware)


def test_logs_hold_counts_and_timings_never_text(classifier: tuple[str, Any, Captured]) -> None:
    url, _, logs = classifier
    call(url + "/v1/predict", {"texts": [f"{MARKER} denies chest pain", f"{MARKER} 2"]})
    call(url + "/v1/predict", raw=json.dumps({"texts": [MARKER, ""], MARKER: 1}).encode())
    call(url + "/v1/predict", raw=json.dumps({"texts": [MARKER * 1000]}).encode())
    call(url + f"/v1/model?note={MARKER}")
    call(url + f"/v1/predict/{MARKER}", {"texts": ["x"]})
    text = "\n".join(logs.lines)
    assert "predicted 2 text(s)" in text and "POST /v1/predict 422" in text and "POST /v1/predict 413" in text
    assert "GET /v1/model 200" in text and "POST (another path) 404" in text
    assert MARKER not in text


def test_sigterm_finishes_the_requests_in_flight_and_exits_0(trained_models: dict[str, Path]) -> None:
    command = [sys.executable, "-m", "clintune", "serve", "--model", str(trained_models["section_header"]), "--port", "0",
               "--max-wait-ms", "2000"]
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")), daemon=True).start()
    try:
        deadline = time.monotonic() + 120
        while not any("ready" in line for line in lines):
            assert time.monotonic() < deadline and process.poll() is None, "".join(lines)
            time.sleep(0.05)
        url = next(line.split("listening on ")[1].split("/ ")[0] for line in lines if "listening on" in line)
        expected = [api.result_record(r) for r in api.predict(trained_models["section_header"], NOTES[:2])]
        answer: list[Any] = []
        in_flight = threading.Thread(target=lambda: answer.append(call(url + "/v1/predict", {"texts": NOTES[:2]})))
        in_flight.start()
        while call(url + "/healthz")[1]["requests_in_flight"] == 0:  # queued: the worker waits up to 2 s for company
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        # no new connections while it drains: refused (URLError), or reset when one reached the
        # listening socket's backlog just as it closed (ConnectionResetError, seen once in CI)
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            for _ in range(100):
                call(url + "/healthz")
                time.sleep(0.02)
        in_flight.join(60)
        assert process.wait(60) == 0, "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
    assert answer == [(200, json.loads(json.dumps(expected)))]


# -- the page, in a real browser ---------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    webdriver = require_module("selenium.webdriver", "selenium is not installed (pip install -e '.[dev]')")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail("chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver)")
        pytest.skip("chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--no-proxy-server", "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def keep_for_docs(picture: Path, name: str) -> None:
    """Copy a checked screenshot into the docs (scripts/docs_screenshots.py sets $CLINTUNE_DOCS_SCREENSHOTS)."""
    folder = os.environ.get("CLINTUNE_DOCS_SCREENSHOTS")
    if folder:
        shutil.copyfile(picture, Path(folder) / name)


def ask_the_page(driver: Any, url: str, text: str, done: str) -> None:
    """Open the page, type ``text``, press Predict and wait for ``done`` (a CSS selector) to show."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/")
    wait = WebDriverWait(driver, 60)
    wait.until(ec.element_to_be_clickable((By.ID, "predict")))
    driver.find_element(By.ID, "note").send_keys(text)
    driver.find_element(By.ID, "predict").click()
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, done)))
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "answered"))


def test_the_page_shows_the_label_and_the_highlighted_entities(browser: Any, classifier: tuple[str, Any, Captured],
                                                               tagger: tuple[str, Any, Captured], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    note = NOTES[0]
    ask_the_page(browser, classifier[0], note, "#classification .bar-row")
    expected = call(classifier[0] + "/v1/predict", {"texts": [note], "probabilities": True})[1][0]
    assert browser.find_element(By.ID, "label").text == expected["label"]
    rows = browser.find_elements(By.CSS_SELECTOR, ".bar-row")
    shown = {row.get_attribute("data-label"): float(row.get_attribute("data-probability")) for row in rows}
    assert shown == expected["probabilities"]
    assert [row.get_attribute("data-label") for row in rows if "predicted" in row.get_attribute("class")] == [expected["label"]]
    widths = [float(row.find_element(By.CLASS_NAME, "fill").value_of_css_property("width").removesuffix("px")) for row in rows]
    assert widths == sorted(widths, reverse=True) and widths[0] > 10 * widths[-1]
    sidebar = browser.find_element(By.ID, "model").text
    assert "multiclass classification" in sidebar and "most probable class" in sidebar and "ALLERGY" in sidebar
    browser.save_screenshot(str(tmp_path / "classification.png"))
    keep_for_docs(tmp_path / "classification.png", "serve-classification.png")

    sentence = SENTENCES[1] + " " + SENTENCES[0]
    ask_the_page(browser, tagger[0], sentence, "#ner")
    entities = call(tagger[0] + "/v1/predict", {"texts": [sentence]})[1][0]["entities"]
    assert entities, "the tiny tagger finds these diseases"
    marks = browser.find_elements(By.CSS_SELECTOR, "#highlighted mark.entity")
    assert [(m.get_attribute("data-label"), int(m.get_attribute("data-start")), int(m.get_attribute("data-end")),
             m.find_element(By.CLASS_NAME, "entity-text").text) for m in marks] == \
        [(e["label"], e["start"], e["end"], e["text"]) for e in entities]
    rebuilt = browser.execute_script(
        "return Array.from(document.getElementById('highlighted').childNodes).map(n => n.nodeType === 3 ? n.textContent"
        " : n.querySelector('.entity-text').textContent).join('')")
    assert rebuilt == sentence  # the note itself, untouched around the marks
    browser.save_screenshot(str(tmp_path / "entities.png"))
    keep_for_docs(tmp_path / "entities.png", "serve-entities.png")
    assert not [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def test_the_docs_page_needs_no_internet(classifier: tuple[str, Any, Captured]) -> None:
    with DIRECT.open(classifier[0] + "/docs") as response:
        page = response.read().decode()
    assert "/v1/predict" in page and "/v1/model" in page and "/readyz" in page and "413" in page
    assert "http://" not in page.replace(classifier[0], "") and "https://" not in page
    status, schema = call(classifier[0] + "/openapi.json")
    assert status == 200 and "/v1/predict" in schema["paths"]


# -- figures beside a rule are measured under it ----------------------------------------------------------


def test_after_a_rule_change_every_figure_shown_beside_it_is_measured_under_it(
        browser: Any, trained_models: dict[str, Path], tmp_path: Path) -> None:
    """eval --tune-threshold stores a must-not-miss rule: metrics.json, the model card, /v1/model and the page
    then show the figures of the tuning data under that rule ("tuned here: optimistic"), never the training-time,
    most-probable-class figures as if they were the rule's; a label the rule chose says so on the page."""
    from selenium.webdriver.common.by import By

    folder = tmp_path / "seriousness"
    shutil.copytree(trained_models["seriousness"], folder)
    data = REPO / "data" / "seriousness" / "test.csv"
    result = run_cli("eval", "--model", str(folder), "--data", str(data), "--tune-threshold", "D/LT+Serious:recall=0.9", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout)
    rule = measured["decision_rule"]
    assert "summed probability" in rule
    stored = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    assert stored["rule_check"]["rule"] == rule and stored["rule_check"]["tuned_here"] is True
    assert stored["rule_check"]["metrics"]["accuracy"] == measured["accuracy"]
    training = stored["validation"]
    assert training["decision_rule"] == "most probable class"

    card = (folder / "README.md").read_text(encoding="utf-8")
    in_force = card.split("## Metrics", 1)[1].split("### At training time", 1)[0]
    assert f"On `{data}` (tuned here: optimistic)" in in_force
    assert f"| accuracy | {measured['accuracy']:.4f} |" in in_force and f"| f1_macro | {measured['f1_macro']:.4f} |" in in_force
    assert f"| accuracy | {training['accuracy']:.4f} |" not in in_force or training["accuracy"] == measured["accuracy"]
    assert "### At training time, under the earlier rule (most probable class): not the rule in force" in card

    with running(folder, SMALL) as (url, _, _):
        info = call(url + "/v1/model")[1]
        assert info["decision_rule"]["description"] == rule
        assert info["metrics"] == {str(data): stored["rule_check"]["metrics"]}
        assert info["metrics_notes"] == {str(data): "tuned here: optimistic"}
        assert info["earlier_rule"] == "most probable class" and info["earlier_metrics"]["validation"] == training
        import pandas as pd

        notes = pd.read_csv(data)["Narrative"].tolist()
        text = next(note for note, result in zip(notes, api.predict(folder, notes)) if result.decided_by)
        answer = call(url + "/v1/predict", {"texts": [text], "probabilities": True})[1][0]
        ask_the_page(browser, url, text, "#classification .bar-row")
        headers = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#metrics th")]
        assert headers[1].splitlines() == ["test.csv", "tuned here: optimistic"], headers
        cells = browser.find_elements(By.CSS_SELECTOR, "#metrics tr")
        shown = {row.find_element(By.TAG_NAME, "th").text: row.find_elements(By.TAG_NAME, "td")[0].text.splitlines()[0]
                 for row in cells[1:] if row.find_elements(By.TAG_NAME, "td") and row.find_elements(By.TAG_NAME, "th")}
        assert shown["accuracy"] == f"{measured['accuracy']:.3f}" and shown["f1 macro"] == f"{measured['f1_macro']:.3f}"
        assert "earlier rule" in browser.find_element(By.ID, "metrics-rule").text
        reason = answer["decided_by"]
        said = browser.find_element(By.ID, "decided-by").text
        assert f"{100 * reason['group_probability']:.1f}%" in said and "D/LT or Serious" in said, said
        browser.save_screenshot(str(tmp_path / "rule-in-force.png"))
        if os.environ.get("CLINTUNE_SCREENSHOTS"):  # a folder to look at the page in
            shutil.copy(tmp_path / "rule-in-force.png", Path(os.environ["CLINTUNE_SCREENSHOTS"]))



def test_the_page_shows_a_multilabel_note_as_chips(browser: Any, trained_models: dict[str, Path], tmp_path: Path) -> None:
    """Every label over its threshold as a chip with its probability, its bar marked; a note with none says so."""
    from selenium.webdriver.common.by import By

    note = "temp 39.1 C; vomited twice; Lot number recorded."
    with running(trained_models["symptoms"]) as (url, _, _):
        ask_the_page(browser, url, note, "#classification .bar-row")
        expected = call(url + "/v1/predict", {"texts": [note], "probabilities": True})[1][0]
        assert expected["labels"], "the tiny model codes the findings named in this note"
        chips = [chip.text for chip in browser.find_elements(By.CSS_SELECTOR, "#label .label-chip")]
        assert chips == [f"{label} {100 * expected['scores'][label]:.1f}%" for label in expected["labels"]]
        rows = browser.find_elements(By.CSS_SELECTOR, ".bar-row")
        assert {row.get_attribute("data-label") for row in rows if "predicted" in row.get_attribute("class")} == set(expected["labels"])
        assert len(rows) == 6
        browser.save_screenshot(str(tmp_path / "multilabel.png"))
        ask_the_page(browser, url, "Lot number recorded; No prior reactions.", "#classification .bar-row")
        if not call(url + "/v1/predict", {"texts": ["Lot number recorded; No prior reactions."]})[1][0]["labels"]:
            assert browser.find_element(By.CSS_SELECTOR, "#label .no-labels").text == "no labels"
    assert not [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
