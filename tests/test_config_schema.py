"""The config's JSON Schema: shipped as generated, naming every shipped config, and checking what clintune checks.

Each shipped YAML file is validated as written (a file that ``extends`` another may leave sections out)
and merged along its ``extends`` chain (then every required section must be there), with the
``jsonschema`` package, and clintune's own validation must agree on the merged result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, run_cli

from clintune.config.checks import validate_config
from clintune.config.descriptions import DESCRIPTIONS
from clintune.config.json_schema import config_keys, schema_text, shipped_schema_text
from clintune.config.loading import load_raw_config

jsonschema = pytest.importorskip("jsonschema")

SHIPPED = sorted((REPO / "configs").rglob("*.yaml"))
SCHEMA_PATH = REPO / "src" / "clintune" / "config" / "clintune.schema.json"


def validator() -> Any:
    import json

    schema = json.loads(shipped_schema_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def problems(document: dict[str, Any]) -> list[str]:
    return sorted(f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in validator().iter_errors(document))


def test_the_shipped_schema_is_the_generated_one_and_the_cli_prints_it() -> None:
    assert shipped_schema_text() == schema_text(), "regenerate: python -c 'from clintune.config.json_schema import schema_text; ...'"
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text()
    result = run_cli("schema")
    assert result.returncode == 0 and result.stdout == schema_text()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_shipped_config_names_the_schema_and_validates(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema="), first
    assert (path.parent / first.split("$schema=", 1)[1]).resolve() == SCHEMA_PATH.resolve()
    assert problems(yaml.safe_load(path.read_text(encoding="utf-8"))) == []
    merged = load_raw_config(path)
    assert "extends" not in merged and problems(merged) == []
    validate_config(merged, source=str(path))  # clintune agrees


def test_the_schema_refuses_what_clintune_refuses() -> None:
    whole = load_raw_config(REPO / "configs" / "diagnosis.yaml")
    assert problems(whole) == []
    wrong_key = {**whole, "training": {**whole["training"], "learning_rat": 1e-4}}
    assert any("learning_rat" in p for p in problems(wrong_key))
    wrong_type = {**whole, "task": {**whole["task"], "type": "regression"}}
    assert any(p.startswith("task.type") for p in problems(wrong_type))
    negative = {**whole, "training": {**whole["training"], "learning_rate": -1}}
    assert any(p.startswith("training.learning_rate") for p in problems(negative))
    missing = {key: value for key, value in whole.items() if key != "task"}
    assert any("'task' is a required property" in p for p in problems(missing))
    # a file that extends another may leave out sections and required keys; unknown keys are still refused
    assert problems({"extends": "diagnosis.yaml", "training": {"epochs": 2}, "data": {"text_column": "note"}}) == []
    assert any("learning_rat" in p for p in problems({"extends": "x.yaml", "training": {"learning_rat": 1}}))


def test_every_key_has_a_description_and_every_description_a_key() -> None:
    keys = config_keys()
    assert len(keys) > 70
    assert [key for key in keys if key not in DESCRIPTIONS] == []
    assert [key for key in DESCRIPTIONS if key not in keys and key != "extends"] == []
    import json

    schema = json.loads(shipped_schema_text())
    section = schema["$defs"]["TrainingSection"]["properties"]
    assert section["learning_rate"]["description"] == DESCRIPTIONS["training.learning_rate"]
    assert schema["$defs"]["Config"]["properties"]["extends"]["description"] == DESCRIPTIONS["extends"]
