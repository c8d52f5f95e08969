from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, invoke_cli, write

from clintune.config.checks import validate_config
from clintune.config.loading import apply_override, deep_merge, load_config
from clintune.errors import ConfigError

MINIMAL = """
task: {type: multiclass, name: demo}
data: {train: train.csv}
model: {name_or_path: some/model}
output: {dir: out}
"""


def problems_of(text: str, tmp_path: Path, overrides: list[str] | None = None) -> list[str]:
    path = write(tmp_path / "c.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    return caught.value.problems


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "c.yaml", MINIMAL))
    assert config.task.type == "multiclass"
    assert config.training.learning_rate == 5e-5
    assert config.training.class_weights == "none"
    assert config.data.text_column == "text"


def test_misspelt_key_names_its_path_and_suggests(tmp_path: Path) -> None:
    problems = problems_of(MINIMAL + "training: {learning_rat: 0.1}\n", tmp_path)
    assert problems == ["training.learning_rat: unknown key (did you mean 'learning_rate'?)"]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = MINIMAL + "training: {learning_rate: -1, epochs: 0, precision: fp8}\n"
    problems = problems_of(text, tmp_path)
    joined = "\n".join(problems)
    assert len(problems) == 3
    assert "training.learning_rate: input should be greater than 0" in joined
    assert "training.epochs" in joined
    assert "training.precision" in joined and "fp8" in joined


def test_missing_required_sections_are_named(tmp_path: Path) -> None:
    problems = problems_of("task: {type: ner}\n", tmp_path)
    assert set(problems) == {
        "data: required, but missing",
        "model: required, but missing",
        "output: required, but missing",
    }


def test_unknown_top_level_section(tmp_path: Path) -> None:
    problems = problems_of(MINIMAL + "trainig: {epochs: 2}\n", tmp_path)
    assert problems == ["trainig: unknown key (did you mean 'training'?)"]


def test_cross_field_checks(tmp_path: Path) -> None:
    text = MINIMAL.replace("multiclass", "binary") + "labels: {classes: [a, b, c], positive: z}\n"
    problems = problems_of(text, tmp_path)
    assert any("exactly two labels" in p for p in problems)
    assert any(p.startswith("labels.positive") for p in problems)


def test_ner_needs_conll_or_jsonl(tmp_path: Path) -> None:
    problems = problems_of(MINIMAL.replace("multiclass", "ner"), tmp_path)
    assert problems and problems[0].startswith("data.format: 'csv'")


def test_mean_pooling_is_for_whole_text_tasks(tmp_path: Path) -> None:
    text = MINIMAL.replace("multiclass", "ner").replace("train.csv", "train.conll")
    problems = problems_of(text.replace("some/model}", "some/model, pooling: mean}"), tmp_path)
    assert problems == ["model.pooling: pooling chooses how a whole text is summarised; NER tags every token, so leave it out"]
    assert load_config(write(tmp_path / "m.yaml", MINIMAL), ["model.pooling=mean"]).model.pooling == "mean"


def test_metric_for_best_model_must_exist(tmp_path: Path) -> None:
    problems = problems_of(MINIMAL + "training: {metric_for_best_model: f1_marco}\n", tmp_path)
    assert "did you mean 'f1_macro'?" in problems[0]


def test_class_weights_forms(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "c.yaml", MINIMAL + "training: {class_weights: {a: 2, b: 1}}\n"))
    assert config.training.class_weights == {"a": 2.0, "b": 1.0}
    problems = problems_of(MINIMAL + "training: {class_weights: balance}\n", tmp_path)
    assert "training.class_weights" in problems[0]


def test_invalid_regex_is_reported(tmp_path: Path) -> None:
    problems = problems_of(MINIMAL.replace("{train: train.csv}", "{train: t.csv, preprocessing: {remove_patterns: ['(']}}"), tmp_path)
    assert problems[0].startswith("data.preprocessing.remove_patterns")


def test_overrides_are_yaml_scalars_on_dotted_paths(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", MINIMAL)
    config = load_config(path, ["training.epochs=5", "training.learning_rate=1e-4", "data.validation=v.csv", "labels.classes=[x, y]"])
    assert config.training.epochs == 5
    assert config.training.learning_rate == 1e-4
    assert config.data.validation == "v.csv"
    assert config.labels.classes == ["x", "y"]


def test_override_is_validated_like_yaml(tmp_path: Path) -> None:
    problems = problems_of(MINIMAL, tmp_path, ["training.lerning_rate=3"])
    assert problems == ["training.lerning_rate: unknown key (did you mean 'learning_rate'?)"]
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        apply_override({}, "training.epochs")


def test_extends_merges_nested_sections(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", MINIMAL + "training: {epochs: 7, learning_rate: 0.001}\n")
    child = write(tmp_path / "sub" / "child.yaml", "extends: ../base.yaml\ntraining: {epochs: 2}\n")
    config = load_config(child)
    assert config.training.epochs == 2
    assert config.training.learning_rate == 0.001
    assert config.task.name == "demo"


def test_extends_cycle_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "a.yaml")


def test_environment_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "c.yaml", MINIMAL.replace("train.csv", "'${DATA_ROOT:-fallback}/train.csv'"))
    monkeypatch.delenv("DATA_ROOT", raising=False)
    assert load_config(path).data.train == "fallback/train.csv"
    monkeypatch.setenv("DATA_ROOT", "/srv/data")
    assert load_config(path).data.train == "/srv/data/train.csv"


def test_deep_merge_does_not_mutate_inputs() -> None:
    base = {"a": {"b": 1, "c": 2}}
    merged = deep_merge(base, {"a": {"b": 3}})
    assert merged == {"a": {"b": 3, "c": 2}}
    assert base == {"a": {"b": 1, "c": 2}}


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")), ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_config_is_valid(path: Path) -> None:
    config = load_config(path)
    assert config.output.dir
    assert validate_config(config.to_dict()) == config


def test_cli_config_error_exits_2_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", MINIMAL + "training: {learning_rate: -0.1, epocs: 3}\n")
    result = invoke_cli("validate", str(path))
    assert result.returncode == 2
    assert "training.learning_rate" in result.stderr
    assert "did you mean 'epochs'" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_missing_data_file_names_the_path(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", MINIMAL.replace("train.csv", str(tmp_path / "nope.csv")))
    result = invoke_cli("train", str(path))
    assert result.returncode == 2
    assert "nope.csv" in result.stderr and "not found" in result.stderr
    assert not (REPO / "out").exists()


def test_hugging_face_names_point_to_ours(tmp_path: Path) -> None:
    problems = problems_of(MINIMAL + "training: {lr: 0.1, num_train_epochs: 2}\n", tmp_path)
    assert sorted(problems) == [
        "training.lr: unknown key (did you mean 'learning_rate'?)",
        "training.num_train_epochs: unknown key (did you mean 'epochs'?)",
    ]
