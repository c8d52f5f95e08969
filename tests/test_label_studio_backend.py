"""``clintune serve --label-studio``: Label Studio's ML backend protocol, called as Label Studio calls it.

The labelling-config parser and result builder are checked on hand-written configs; the routes on the
real server (``test_serve.running``) with the tiny models, against what ``api.predict`` answers for the
same texts. The test against a real Label Studio server is ``test_label_studio_server.py``.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import require_module
from test_serve import MARKER, call, running

from clintune import api
from clintune.inference.label_studio import (
    LabelConfigProblem,
    LabelingTarget,
    check_labeling_target,
    parse_labeling_config,
    prediction_result,
)
from clintune.modeling.folder import read_model_folder
from clintune.serve import ServeSettings

require_module("fastapi", "fastapi is not installed (pip install 'clintune[serve]')")

KEY = "ls-backend-key"
LS = ServeSettings(max_texts=8, max_bytes=20_000, label_studio=True)
NER_TEXT = "Patient 🙂 has cystic fibrosis .\r\nHer brother had huntington disease and 🙂 ataxia telangiectasia ."


def ner_config(labels: list[str], field: str = "text") -> str:
    choices = "".join(f'<Label value="{label}"/>' for label in labels)
    return f'<View><Labels name="label" toName="text">{choices}</Labels><Text name="text" value="${field}"/></View>'


def choices_config(labels: list[str], multiple: bool = False) -> str:
    options = "".join(f'<Choice value="{label}"/>' for label in labels)
    kind = ' choice="multiple"' if multiple else ""
    return (f'<View><Text name="note" value="$note"/><Header value="Pick"/>'
            f'<Choices name="section" toName="note"{kind}>{options}</Choices></View>')


def labels_of(folder: Path) -> list[str]:
    return list(read_model_folder(folder).encoder.classes)


# -- the labelling config --------------------------------------------------------------------


def test_the_control_and_the_text_field_are_read_from_the_config() -> None:
    target = parse_labeling_config(choices_config(["a", "b"], multiple=True), "multilabel")
    assert target == LabelingTarget("choices", "section", "note", "note", ("a", "b"), multiple=True)
    target = parse_labeling_config(ner_config(["Disease"], field="report"), "ner")
    assert (target.kind, target.from_name, target.to_name, target.data_key, target.values) == (
        "labels", "label", "text", "report", ("Disease",))


@pytest.mark.parametrize(("xml", "task", "message"), [
    ("<View><Text name='t' value='$t'/>", "binary", "not valid XML"),
    (choices_config(["a"]), "ner", "no <Labels> control"),
    (ner_config(["a"]), "multiclass", "no <Choices> control"),
    ("<View><Text name='t' value='$t'/><Choices name='a' toName='t'/><Choices name='b' toName='t'/></View>", "binary",
     "2 <Choices> controls (a, b)"),
    ("<View><Choices name='a' toName='missing'/><Text name='t' value='$t'/></View>", "binary", 'toName="missing"'),
    ("<View><Choices name='a' toName='t'/><Text name='t' value='plain'/></View>", "binary", 'must read a task field'),
    ("", "binary", "empty"),
])
def test_a_config_clintune_cannot_answer_is_refused_saying_why(xml: str, task: str, message: str) -> None:
    with pytest.raises(LabelConfigProblem, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_labeling_config(xml, task)


def test_labels_the_model_does_not_know_and_labels_the_config_lacks_are_both_named() -> None:
    target = parse_labeling_config(choices_config(["Serious", "Mild"]), "multiclass")
    problems = check_labeling_target(target, "multiclass", ["D/LT", "Serious", "Non-serious"])
    assert len(problems) == 2
    assert "does not know: Mild" in problems[0] and "lacks label(s) this model gives: D/LT, Non-serious" in problems[1]
    single = parse_labeling_config(choices_config(["a", "b"]), "multilabel")
    assert any('add choice="multiple"' in p for p in check_labeling_target(single, "multilabel", ["a", "b"]))
    assert check_labeling_target(parse_labeling_config(choices_config(["b", "a"]), "binary"), "binary", ["a", "b"]) == []


# -- the routes ----------------------------------------------------------------------------


def predict_body(tasks: list[dict[str, Any]], config: str) -> dict[str, Any]:
    return {"tasks": tasks, "label_config": config, "project": "3.1700000000", "params": {"context": {}}}


def test_ner_spans_are_code_point_offsets_into_the_task_text(trained_models: dict[str, Path]) -> None:
    folder = trained_models["ner"]
    texts = [NER_TEXT, "No findings 🙂 today .", f"{MARKER} with cystic fibrosis ."]
    expected = api.predict(folder, texts)
    version = read_model_folder(folder).version()
    config = ner_config(["Disease"])
    with running(folder, LS) as (url, _, logs):
        assert call(url + "/health") == (200, {"status": "UP", "model_class": "clintune", "model_version": version})
        assert call(url + "/setup", {"project": "3.1700000000", "schema": config, "access_token": MARKER}) == (
            200, {"model_version": version})
        status, body = call(url + "/predict", predict_body([{"id": i, "data": {"text": t}} for i, t in enumerate(texts)], config))
        assert status == 200, body
        assert len(body["results"]) == len(texts)
        for text, entities, answer in zip(texts, expected, body["results"]):
            assert answer["model_version"] == version
            spans = [(r["value"]["start"], r["value"]["end"], r["value"]["labels"], r["score"]) for r in answer["result"]]
            assert spans == [(e.start, e.end, [e.label], pytest.approx(e.score)) for e in entities]
            for item in answer["result"]:
                assert item["value"]["text"] == text[item["value"]["start"]:item["value"]["end"]]
                assert (item["from_name"], item["to_name"], item["type"]) == ("label", "text", "labels")
            assert answer["score"] == pytest.approx(min([e.score for e in entities], default=1.0), abs=1e-6)
        assert any(answer["result"] for answer in body["results"]), "the tiny tagger found no entity: the offsets went untested"
        # a label the model does not know, named; the token Label Studio sends is never logged
        status, body = call(url + "/setup", {"project": "3.1", "schema": ner_config(["Disease", "Gene"])})
        assert status == 422 and "does not know: Gene" in body["detail"] and body["errors"][0]["field"] == "schema"
    assert MARKER not in "\n".join(logs.lines)


def test_classification_answers_are_the_decision_rules_labels(trained_models: dict[str, Path]) -> None:
    folder = trained_models["section_header"]
    texts = [f"Doctor: Any allergies? Patient: {MARKER} gives me a rash.", "Doctor: Family history?\r\nPatient: 🙂 none."]
    expected = api.predict(folder, texts)
    config = choices_config(labels_of(folder))
    with running(folder, LS) as (url, _, logs):
        status, body = call(url + "/predict", predict_body([{"id": 7, "data": {"note": t}} for t in texts], config))
        assert status == 200, body
        for prediction, answer in zip(expected, body["results"]):
            [item] = answer["result"]
            assert item["value"] == {"choices": [prediction.label]}
            assert (item["from_name"], item["to_name"], item["type"]) == ("section", "note", "choices")
            assert answer["score"] == pytest.approx(prediction.probabilities[prediction.label], abs=1e-6)
        # bad input: a task without the field the config reads, a task that is not one, an empty note, too many tasks
        status, body = call(url + "/predict", predict_body([{"data": {"note": "fine"}}, {"data": {"text": MARKER}}, 3,
                                                             {"data": {"note": "  "}}], config))
        assert status == 422
        assert [e["field"] for e in body["errors"]] == ["tasks[1]", "tasks[2]", "tasks[3].data.note"]
        assert "data.note" in body["errors"][0]["message"] and MARKER not in json.dumps(body)
        assert call(url + "/predict", predict_body([{"data": {"note": "x"}}] * 9, config))[0] == 413
        assert call(url + "/predict", raw=json.dumps(predict_body([{"data": {"note": MARKER * 3000}}], config)).encode())[0] == 413
        assert call(url + "/predict", predict_body([], config)) == (200, {"results": []})
        assert call(url + "/webhook", {"action": "ANNOTATION_CREATED", "annotation": {"result": MARKER}}) == (200, {"status": "ok"})
        call(url + "/webhook", {"action": MARKER})
    log = "\n".join(logs.lines)
    assert "Label Studio event ANNOTATION_CREATED received" in log and "(an event of no known form)" in log
    assert MARKER not in log


def test_multilabel_answers_every_label_over_its_threshold(trained_models: dict[str, Path]) -> None:
    folder = trained_models["symptoms"]
    texts = ["Fever and headache after the second dose.", "Injection site pain, no fever."]
    expected = api.predict(folder, texts)
    with running(folder, LS) as (url, _, _logs):
        status, body = call(url + "/setup", {"project": "1.1", "schema": choices_config(labels_of(folder))})
        assert status == 422 and 'add choice="multiple"' in body["detail"]
        status, body = call(url + "/predict", predict_body([{"data": {"note": t}} for t in texts],
                                                            choices_config(labels_of(folder), multiple=True)))
        assert status == 200, body
        for prediction, answer in zip(expected, body["results"]):
            assert [item["value"]["choices"] for item in answer["result"]] == ([prediction.labels] if prediction.labels else [])


def test_label_studio_routes_take_the_key_as_the_basic_password(trained_models: dict[str, Path]) -> None:
    folder = trained_models["diagnosis"]
    config = choices_config(labels_of(folder))
    body = predict_body([{"data": {"note": "Patient reports fever."}}], config)

    def basic(user: str, password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    with running(folder, LS, api_key=KEY) as (url, _, _logs):
        status, answer = call(url + "/predict", body)
        assert status == 401
        assert call(url + "/predict", body, basic("labelstudio", "wrong")) == (401, {"detail": "wrong API key"})
        assert call(url + "/predict", body, basic("labelstudio", KEY))[0] == 200
        assert call(url + "/predict", body, {"Authorization": f"Bearer {KEY}"})[0] == 200
        assert call(url + "/setup", {"project": "1.1", "schema": config}, basic("any-user", KEY))[0] == 200
        assert call(url + "/setup", {"project": "1.1", "schema": config})[0] == 401
        assert call(url + "/webhook", {"action": "ANNOTATION_CREATED"})[0] == 401
        assert call(url + "/v1/predict", {"texts": ["x"]}, basic("u", KEY))[0] == 200
        assert call(url + "/health")[0] == 200  # no text, no key: Label Studio's check answers
    with running(folder, ServeSettings()) as (url, _, _logs):  # off unless asked
        assert call(url + "/predict", body)[0] == 404
        assert call(url + "/setup", {"schema": config})[0] == 404


def test_the_model_version_changes_with_the_decision_rule(trained_models: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "diagnosis"
    shutil.copytree(trained_models["diagnosis"], copy)
    before = read_model_folder(copy).version()
    assert before == read_model_folder(copy).version() and before.startswith("diagnosis-")
    (copy / "config.json").write_text((copy / "config.json").read_text() + " ")  # not part of the identity
    assert read_model_folder(copy).version() == before
    decision = copy / "decision.json"
    rule = json.loads(decision.read_text()) if decision.exists() else {}
    rule["threshold"] = 0.3
    decision.write_text(json.dumps(rule))
    assert read_model_folder(copy).version() != before


def test_prediction_result_scores_by_hand() -> None:
    from clintune.modeling.tasks import Entity, Prediction

    target = LabelingTarget("choices", "c", "t", "text", ("a", "b", "c"), multiple=True)
    none = Prediction(label="", score=0.0, probabilities={"a": 0.2, "b": 0.1, "c": 0.3}, labels=[])
    assert prediction_result(none, target, "v") == {"result": [], "score": 0.7, "model_version": "v"}
    two = Prediction(label="a; c", score=0.9, probabilities={"a": 0.9, "b": 0.1, "c": 0.6}, labels=["a", "c"])
    assert prediction_result(two, target, "v")["score"] == 0.6
    assert prediction_result(two, target, "v", uncertainty=0.25)["score"] == 0.75
    entities = [Entity("x", "D", 0, 1, 0.8), Entity("yz", "D", 3, 5, 0.55)]
    labels = LabelingTarget("labels", "l", "t", "text", ("D",))
    answer = prediction_result(entities, labels, "v")
    assert answer["score"] == 0.55 and [r["value"]["start"] for r in answer["result"]] == [0, 3]


def test_health_says_loading_until_the_model_is_loaded(trained_models: dict[str, Path]) -> None:
    """Before the application's start-up has loaded the model, Label Studio's check and /readyz answer 503."""
    import asyncio

    from clintune.serve import create_app

    app = create_app(trained_models["diagnosis"], settings=LS)  # its lifespan (which loads the model) never runs here

    async def get(path: str) -> tuple[int, dict[str, str], Any]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "path": path,
                 "raw_path": path.encode(), "query_string": b"", "headers": [(b"host", b"127.0.0.1:8000")],
                 "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "scheme": "http", "root_path": ""}
        await app(scope, receive, send)
        headers = {key.decode(): value.decode() for key, value in sent[0]["headers"]}
        return sent[0]["status"], headers, json.loads(b"".join(m.get("body", b"") for m in sent[1:]))

    status, headers, body = asyncio.run(get("/health"))
    assert (status, body, headers.get("retry-after")) == (503, {"status": "LOADING"}, "1")
    status, _, body = asyncio.run(get("/readyz"))
    assert status == 503 and body["status"] == "loading"
    assert asyncio.run(get("/healthz"))[0] == 200  # the process itself is up
