"""Label Studio's interchange format: its labelling config, and predictions as its ``result`` items.

Label Studio describes a project's labelling in XML (a ``<Choices>`` or ``<Labels>`` control
pointing at a ``<Text>`` object that reads ``$field`` of each task's data). clintune answers
it in two places: ``clintune serve --label-studio`` (its ML backend protocol) and
``clintune select --label-studio-tasks`` (picked notes with pre-annotations, ready to import).
Offsets are Python string indices (Unicode code points), which is what Label Studio stores.
Plain functions of strings and results, no web framework.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

from clintune.modeling.tasks import Entity, Prediction

CONTROL_TAGS = {"Choices": "choices", "Labels": "labels"}
OBJECT_TAGS = ("Text", "HyperText", "Paragraphs")
# Label Studio's text templates name their control "label" and their object "text", reading data["text"]
DEFAULT_FROM_NAME, DEFAULT_TO_NAME, DEFAULT_DATA_KEY = "label", "text", "text"


class LabelConfigProblem(ValueError):
    """A labelling config clintune cannot answer, with a message naming the tags and labels at fault."""


@dataclass(frozen=True)
class LabelingTarget:
    """Where clintune's answers go in a project: the control (``from_name``), the object it labels (``to_name``),
    the task data field holding the text, the kind of result, and the labels the control offers."""

    kind: str  # "choices" or "labels"
    from_name: str
    to_name: str
    data_key: str
    values: tuple[str, ...] = ()
    multiple: bool = False

    @classmethod
    def default(cls, task_type: str, labels: list[str]) -> LabelingTarget:
        """Label Studio's own templates' names, for tasks written without a project's config."""
        kind = "labels" if task_type == "ner" else "choices"
        return cls(kind, DEFAULT_FROM_NAME, DEFAULT_TO_NAME, DEFAULT_DATA_KEY, tuple(labels), task_type == "multilabel")


def project_labels(task_type: str, classes: list[str]) -> list[str]:
    """The labels a project must offer: entity types for NER (``Disease`` for ``B-Disease``/``I-Disease``), else the classes."""
    if task_type != "ner":
        return list(classes)
    types: list[str] = []
    for tag in classes:
        name = tag.split("-", 1)[1] if tag[:2] in ("B-", "I-", "E-", "S-") else None
        if name and name not in types:
            types.append(name)
    return types


def result_kind(task_type: str) -> str:
    return "labels" if task_type == "ner" else "choices"


def parse_labeling_config(xml: str, task_type: str) -> LabelingTarget:
    """The one control of the kind this model answers (``<Labels>`` for NER, ``<Choices>`` otherwise) and the text
    object it points at; ``LabelConfigProblem`` when there is none, several, or it points at no text."""
    if not isinstance(xml, str) or not xml.strip():
        raise LabelConfigProblem("empty; send the project's labelling config (<View>...</View>)")
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise LabelConfigProblem(f"not valid XML ({exc})") from None
    kind = result_kind(task_type)
    tag = next(name for name, value in CONTROL_TAGS.items() if value == kind)
    controls = [element for element in root.iter() if element.tag == tag]
    wanted = "entities (NER)" if kind == "labels" else "a label per note (classification)"
    if not controls:
        raise LabelConfigProblem(f"has no <{tag}> control; this model gives {wanted}, which Label Studio shows in a <{tag}>")
    if len(controls) > 1:
        names = ", ".join(c.get("name", "?") for c in controls)
        raise LabelConfigProblem(f"has {len(controls)} <{tag}> controls ({names}); clintune answers exactly one")
    control = controls[0]
    from_name, to_name = control.get("name"), control.get("toName")
    if not from_name or not to_name:
        raise LabelConfigProblem(f"its <{tag}> needs both name and toName attributes")
    objects = {element.get("name"): element for element in root.iter() if element.tag in OBJECT_TAGS}
    target = objects.get(to_name)
    if target is None:
        raise LabelConfigProblem(f'<{tag} name="{from_name}"> points at toName="{to_name}", which is no '
                                 f"<{'>, <'.join(OBJECT_TAGS)}> of the config")
    value = target.get("value", "")
    if not re.fullmatch(r"\$[A-Za-z_][\w.-]*", value):
        raise LabelConfigProblem(f'<{target.tag} name="{to_name}"> must read a task field (value="$text"), not "{value}"')
    child = "Label" if kind == "labels" else "Choice"
    values = tuple(element.get("value") or element.get("alias") or "" for element in control.iter(child))
    return LabelingTarget(kind, from_name, to_name, value[1:], tuple(v for v in values if v),
                          multiple=control.get("choice", "single") == "multiple")


def check_labeling_target(target: LabelingTarget, task_type: str, labels: list[str]) -> list[str]:
    """Why the model's answers would not fit the project (empty when they do): labels the config offers that the
    model does not know, labels the model gives that the config lacks, several labels into a single choice."""
    problems = []
    unknown = [value for value in target.values if value not in labels]
    if unknown:
        problems.append(f"names label(s) this model does not know: {', '.join(unknown)} (the model knows: {', '.join(labels)})")
    missing = [label for label in labels if label not in target.values]
    if missing:
        problems.append(f"lacks label(s) this model gives: {', '.join(missing)}; add them to <{_tag(target)} name="
                        f'"{target.from_name}">')
    if task_type == "multilabel" and not target.multiple:
        problems.append(f'<Choices name="{target.from_name}"> takes one choice, but this model gives every label that '
                        'applies; add choice="multiple"')
    return problems


def _tag(target: LabelingTarget) -> str:
    return "Labels" if target.kind == "labels" else "Choices"


def task_text(task: Any, target: LabelingTarget) -> str:
    """The text of one Label Studio task (``task["data"][field]``); ``ValueError`` naming what is missing."""
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise ValueError('must be an object with "data": {...}')
    value = task["data"].get(target.data_key)
    if value is None:
        raise ValueError(f'has no data.{target.data_key}, the field <Text name="{target.to_name}"> reads')
    if not isinstance(value, str):
        raise ValueError(f"data.{target.data_key} must be text")
    return value


def prediction_result(result: Prediction | list[Entity], target: LabelingTarget, model_version: str,
                      uncertainty: float | None = None) -> dict[str, Any]:
    """One task's prediction as Label Studio stores it: ``{"result": [...], "score", "model_version"}``.

    Choices carry the label(s) the model's decision rule gives; entities their code-point offsets,
    text and score. The task's ``score`` is how sure the model is of the whole answer: the chosen
    label's probability; for several labels or entities the lowest of theirs; with ``uncertainty``
    given (``clintune select``), one minus it, so Label Studio's sort by score puts the notes that
    teach most first.
    """
    items: list[dict[str, Any]] = []
    if isinstance(result, Prediction):
        chosen = list(result.labels) if result.labels is not None else [result.label]
        scores = [float(result.probabilities[label]) for label in chosen]
        if result.labels is not None and not chosen:  # no label reached its threshold: as sure as the likeliest is unlikely
            scores = [1.0 - max(result.probabilities.values(), default=0.0)]
        if chosen:
            items.append({"id": "choice", "from_name": target.from_name, "to_name": target.to_name, "type": "choices",
                          "value": {"choices": chosen}, "score": min(scores)})
    else:
        scores = [float(entity.score) for entity in result] or [1.0]
        for number, entity in enumerate(result):
            items.append({"id": f"entity-{number}", "from_name": target.from_name, "to_name": target.to_name, "type": "labels",
                          "value": {"start": int(entity.start), "end": int(entity.end), "text": entity.text,
                                    "labels": [entity.label]},
                          "score": float(entity.score)})
    score = 1.0 - uncertainty if uncertainty is not None else min(scores)
    return {"result": items, "score": round(float(score), 6), "model_version": model_version}
