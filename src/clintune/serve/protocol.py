"""What goes over the wire: checking a request body, describing the model, and the JSON schemas for /docs.

Plain functions of bytes and dicts (no web framework), so every message a caller can get
is tested without a server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from clintune.config.schema import PreprocessingSection
from clintune.evaluation.figures import figures_in_force
from clintune.inference.label_studio import project_labels
from clintune.inference.sources import text_problem
from clintune.modeling.folder import METRICS_FILE, ModelFolder
from clintune.runtime.files import read_json_object

PREDICT_FIELDS = ("texts", "probabilities")
MAX_REPORTED_ERRORS = 10


@dataclass
class RequestProblem(Exception):
    """A request the service refuses: HTTP status, one message for people, and one entry per field."""

    status: int
    errors: list[dict[str, str]] = field(default_factory=list)

    @property
    def message(self) -> str:
        shown = [f"{e['field']}: {e['message']}" for e in self.errors[:MAX_REPORTED_ERRORS]]
        more = len(self.errors) - len(shown)
        return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")

    def body(self) -> dict[str, Any]:
        return {"detail": self.message, "errors": self.errors[:MAX_REPORTED_ERRORS]}


def problem(status: int, field_name: str, message: str) -> RequestProblem:
    return RequestProblem(status, [{"field": field_name, "message": message}])


def too_large(size: int, limit: int) -> RequestProblem:
    return problem(413, "body", f"{size:,} bytes, more than this server takes in one request ({limit:,}); "
                                "send the texts over several requests, or start the server with a larger --max-bytes")


def parse_predict_request(body: bytes, max_texts: int, steps: PreprocessingSection | None = None) -> tuple[list[str], bool]:
    """``(texts, probabilities)`` from a ``POST /v1/predict`` body, or a ``RequestProblem`` naming every bad field.

    ``steps``: the classification model's preprocessing; a text it empties (``Doctor:`` alone) is an
    empty text, as in ``predict``. The request text never appears in a message (they may end up in
    logs); positions and types do.
    """
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise problem(422, "body", f"not UTF-8 (byte {exc.start}); send JSON encoded as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise problem(422, "body", f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                                   'send {"texts": ["..."]}') from None
    if not isinstance(data, dict):
        raise problem(422, "body", f'must be a JSON object like {{"texts": ["..."]}}, not {_json_type(data)}')
    errors = [{"field": key, "message": f"unknown field (this endpoint takes {' and '.join(PREDICT_FIELDS)})"}
              for key in data if key not in PREDICT_FIELDS]
    probabilities = data.get("probabilities", False)
    if not isinstance(probabilities, bool):
        errors.append({"field": "probabilities", "message": f"must be true or false, not {_json_type(probabilities)}"})
    texts = data.get("texts")
    if "texts" not in data:
        errors.append({"field": "texts", "message": 'missing; send {"texts": ["a note", "another note"]}'})
    elif not isinstance(texts, list):
        errors.append({"field": "texts", "message": f"must be a list of strings, not {_json_type(texts)}"
                       + (' (wrap a single text in a list: {"texts": ["..."]})' if isinstance(texts, str) else "")})
    elif not texts:
        errors.append({"field": "texts", "message": "empty list; send at least one text"})
    elif len(texts) > max_texts:
        raise problem(413, "texts", f"{len(texts):,} texts, more than this server takes in one request ({max_texts:,}); "
                                    "send them over several requests, or start the server with a larger --max-texts")
    else:
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                errors.append({"field": f"texts[{index}]", "message": f"must be a string, not {_json_type(text)}"})
            elif text_problem(text, steps):
                detail = "" if not text else " (only whitespace)" if not text.strip() else " (nothing left once preprocessed)"
                errors.append({"field": f"texts[{index}]", "message": "empty text" + detail})
    if errors:
        raise RequestProblem(422, errors)
    return texts, probabilities


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


# -- the model ------------------------------------------------------------------------------


def entity_types(folder: ModelFolder) -> list[str]:
    """The entity types of an NER model (``Disease`` for the tags ``B-Disease``/``I-Disease``), in label order."""
    return project_labels("ner", list(folder.encoder.classes))


def model_description(folder: ModelFolder) -> dict[str, Any]:
    """What ``GET /v1/model`` answers: task, labels, decision rule in force, metrics with intervals, data hashes.

    Everything comes from the folder's files (``labels.json``, ``decision.json``,
    ``clintune.yaml``, ``metrics.json``, ``run.json``, ``export.json``).
    """
    encoder, config, decision = folder.encoder, folder.config, folder.decision
    task = encoder.task_type
    metrics = read_json_object(folder.path / METRICS_FILE)
    run = read_json_object(folder.path / "run.json")
    export = folder.export_info
    if task == "ner":
        rule: dict[str, Any] = {"description": "each word takes its most probable tag; entities are the B-/I- spans"}
        labels = entity_types(folder)
    else:
        rule = {"description": decision.describe(encoder), "temperature": decision.temperature,
                "class_thresholds": dict(decision.class_thresholds), "tuning": list(decision.tuning)}
        if task == "binary":
            rule |= {"positive": encoder.positive, "threshold": decision.threshold}
        labels = list(encoder.classes)
    in_force = figures_in_force(metrics, rule["description"] if task != "ner" else "")
    return {
        "name": folder.path.name,
        "task": task,
        "labels": labels,
        "tags": list(encoder.classes) if task == "ner" else None,
        "decision_rule": rule,
        "backend": "onnx" if folder.is_onnx else "pytorch",
        "quantize": export.get("quantize") if folder.is_onnx else None,
        "base_model": config.model.name_or_path,
        "max_length": config.model.max_length,
        "long_text": config.model.long_text if task != "ner" else "chunk",
        # only figures measured under the rule in force, each naming its data; an earlier rule's apart, labelled
        "metrics": {figures.name: figures.metrics for figures in in_force.current},
        "metrics_notes": {figures.name: figures.note for figures in in_force.current if figures.note},
        "metrics_under_default_rule": {figures.name: figures.default_rule for figures in in_force.current if figures.default_rule},
        "earlier_rule": in_force.earlier_rule,
        "earlier_metrics": {figures.name: figures.metrics for figures in in_force.earlier},
        "data": run.get("data") or {},
        "created": run.get("created"),
        "versions": run.get("versions") or {},
        "export": export or None,
    }


# -- JSON schemas (for /openapi.json and /docs) --------------------------------------------------

PREDICT_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["texts"],
    "additionalProperties": False,
    "properties": {
        "texts": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1},
                  "description": "The texts to label, each non-empty (at most --max-texts per request, --max-bytes in all)."},
        "probabilities": {"type": "boolean", "default": False,
                          "description": "Classification: add every class's probability to each result."},
    },
}
ENTITY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "description": "input[start:end]"},
        "label": {"type": "string"}, "start": {"type": "integer"}, "end": {"type": "integer"}, "score": {"type": "number"},
    },
}
PREDICT_RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "array",
    "description": "One result per text, in input order: exactly what `clintune predict --json` prints.",
    "items": {"oneOf": [
        {"title": "classification", "type": "object", "required": ["label", "score"], "properties": {
            "label": {"type": "string"}, "score": {"type": "number", "description": "probability of the label"},
            "probabilities": {"type": "object", "additionalProperties": {"type": "number"},
                              "description": "only with \"probabilities\": true"},
            "decided_by": {"type": "object", "description": "only where the decision rule, not the most probable class, "
                           "chose the label: the threshold, the class or group it names, and that group's probability",
                           "properties": {"rule": {"type": "string"}, "group": {"type": "string"},
                                          "group_probability": {"type": "number"}}}}},
        {"title": "multi-label", "type": "object", "required": ["labels", "scores"], "properties": {
            "labels": {"type": "array", "items": {"type": "string"},
                       "description": "every label at or over its threshold, most probable first (may be empty)"},
            "scores": {"type": "object", "additionalProperties": {"type": "number"}, "description": "those labels' probabilities"},
            "thresholds": {"type": "object", "additionalProperties": {"type": "number"},
                           "description": "the threshold each of those labels reached: why it was given"},
            "probabilities": {"type": "object", "additionalProperties": {"type": "number"},
                              "description": "every label's probability, only with \"probabilities\": true"}}},
        {"title": "NER", "type": "object", "required": ["entities"], "properties": {
            "entities": {"type": "array", "items": ENTITY_SCHEMA}}},
    ]},
}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "detail": {"type": "string", "description": "what is wrong, for people"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "field": {"type": "string", "description": "texts, texts[3], probabilities, body"}, "message": {"type": "string"}}}},
    },
}
