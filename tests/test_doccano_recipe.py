"""The docs' doccano auto-labelling recipe (docs/guide/annotation.md), run as doccano runs it.

doccano's Custom REST Request replaces each ``"{{ text }}"`` value of the configured body with the
note, posts it, and renders the mapping template with Jinja2 (``Template(t).render(input=response)``,
then ``json.loads``; auto-labeling-pipeline's ``MappingTemplate``). Here the body goes to a real
``clintune serve``, the page's templates render the answer, and the labels and offsets must be
``api.predict``'s.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from test_serve import SMALL, call, running

from clintune import api

jinja2 = pytest.importorskip("jinja2")

BODY = {"texts": ["{{ text }}"]}  # the page's request body


def readme_template(name: str) -> str:
    text = (REPO / "docs" / "guide" / "annotation.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- doccano-template: {name} -->\n```jinja\n(.*?)\n```", text, flags=re.DOTALL)
    assert match, f"the annotation page has no doccano template {name!r}"
    return match.group(1)


def as_doccano_sends(body: Any, text: str) -> Any:
    """auto-labeling-pipeline's find_and_replace_value: every "{{ text }}" value becomes the text."""
    if isinstance(body, dict):
        return {key: as_doccano_sends(value, text) for key, value in body.items()}
    if isinstance(body, list):
        return [as_doccano_sends(value, text) for value in body]
    return text if body == "{{ text }}" else body


def auto_label(url: str, template: str, text: str) -> list[dict[str, Any]]:
    status, response = call(url + "/v1/predict", as_doccano_sends(BODY, text))
    assert status == 200, response
    return json.loads(jinja2.Template(template).render(input=response))


@pytest.mark.parametrize(("task", "template", "texts"), [
    ("seriousness", "classification", ['Patient "died" of D/LT-like events \\ after dose 2.', "Sore arm, resolved."]),
    ("symptoms", "multilabel", ["Fever 39.1 C and headache; vomited twice.", "Rash at the injection site."]),
    ("ner", "ner", ["Patient 🙂 has cystic fibrosis .\r\nHer brother had huntington disease .", "No disease found ."]),
])
def test_the_readme_templates_turn_serves_answers_into_doccanos_labels(trained_models: dict[str, Path], task: str, template: str,
                                                                       texts: list[str]) -> None:
    folder = trained_models[task]
    expected = api.predict(folder, texts)
    with running(folder, SMALL) as (url, _, _logs):
        for text, prediction in zip(texts, expected):
            labels = auto_label(url, readme_template(template), text)
            if template == "classification":
                assert labels == [{"label": prediction.label}]
            elif template == "multilabel":
                assert labels == [{"label": label} for label in prediction.labels]
            else:
                assert labels == [{"label": e.label, "start_offset": e.start, "end_offset": e.end} for e in prediction]
                for label, entity in zip(labels, prediction):
                    assert text[label["start_offset"]:label["end_offset"]] == entity.text
    if template == "ner":
        assert any(expected), "the tiny tagger found no entity: the offsets went untested"
