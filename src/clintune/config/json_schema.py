"""The config's JSON Schema, generated from the pydantic sections, so editors complete and check YAML configs.

A config that ``extends`` another may leave out any section or key (the file it extends gives
them); one that does not must hold every required section. The schema is shipped in the package
(``clintune.schema.json``, printed by ``clintune schema``); a test regenerates it and compares.
A shipped config names it on its first line::

    # yaml-language-server: $schema=../src/clintune/config/clintune.schema.json
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

from pydantic import BaseModel

from clintune.config.descriptions import DESCRIPTIONS
from clintune.config.schema import Config

SCHEMA_FILE = "clintune.schema.json"
SCHEMA_ID = "https://clintune.invalid/config.schema.json"  # a name, never fetched
PARTIAL = "Partial"


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of a config file: the full one, or with ``extends`` one whose sections and keys are all optional."""
    full = Config.model_json_schema()
    defs = full.pop("$defs", {})
    _describe(full, defs, "")
    rule = defs["DecisionSection"]["properties"]["must_not_miss"]
    rule["additionalProperties"] = {"type": "number", "exclusiveMinimum": 0, "maximum": 1}  # recall targets
    defs["DecisionSection"]["properties"]["must_not_miss"] = {  # null switches off an inherited rule
        "anyOf": [{key: value for key, value in rule.items() if key not in ("title", "default")}, {"type": "null"}],
        "title": rule.get("title", "Must Not Miss"), "default": {}}
    partial = _without_required(_renamed_refs(copy.deepcopy(full)))
    partial_defs = {PARTIAL + name: _without_required(_renamed_refs(copy.deepcopy(schema))) for name, schema in defs.items()}
    extends = {"type": "string", "description": DESCRIPTIONS["extends"]}
    full["properties"] = {"extends": extends, **full["properties"]}
    partial["properties"] = {"extends": extends, **partial["properties"]}
    full.pop("title", None)
    partial.pop("title", None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "clintune task config",
        "description": "A clintune YAML config: task, data, labels, model, training, evaluation, decision, output, tracking, search.",
        "type": "object",
        "if": {"required": ["extends"]},
        "then": {"$ref": "#/$defs/ExtendingConfig"},
        "else": {"$ref": "#/$defs/Config"},
        "$defs": {"Config": full, "ExtendingConfig": partial, **defs, **partial_defs},
    }


def config_keys(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the config, sections first (``search``'s own keys are the user's)."""
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys += config_keys(field.annotation, f"{prefix}{name}.")
    return keys


def _describe(node: dict[str, Any], defs: dict[str, Any], prefix: str) -> None:
    """Put each key's line from ``DESCRIPTIONS`` on its property, following references into the sections."""
    for name, prop in node.get("properties", {}).items():
        key = prefix + name
        if key in DESCRIPTIONS:
            prop["description"] = DESCRIPTIONS[key]
        ref = prop.get("$ref") or next((item.get("$ref") for item in prop.get("anyOf", []) if "$ref" in item), None)
        if ref and key != "search":
            _describe(defs[ref.removeprefix("#/$defs/")], defs, key + ".")


def _renamed_refs(node: Any) -> Any:
    """Every ``#/$defs/Name`` reference pointed at its ``PartialName`` copy."""
    if isinstance(node, dict):
        return {key: ("#/$defs/" + PARTIAL + value.removeprefix("#/$defs/") if key == "$ref" and isinstance(value, str)
                      else _renamed_refs(value)) for key, value in node.items()}
    if isinstance(node, list):
        return [_renamed_refs(value) for value in node]
    return node


def _without_required(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _without_required(value) for key, value in node.items() if key != "required"}
    if isinstance(node, list):
        return [_without_required(value) for value in node]
    return node


def schema_text() -> str:
    """The schema as shipped: indented JSON with a final newline."""
    return json.dumps(config_json_schema(), indent=2, ensure_ascii=False) + "\n"


def shipped_schema_text() -> str:
    """The schema file inside the installed package."""
    return (resources.files(__package__) / SCHEMA_FILE).read_text(encoding="utf-8")
