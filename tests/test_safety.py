"""No verb writes over what it reads, and nothing a user owns is deleted.

Every case works in a sandbox copy of the tiny model and data and checks, by
hash, that every file there keeps its bytes.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
from pathlib import Path

import pytest
from conftest import REPO, TINY_MODEL, invoke_cli, run_cli, write

from clintune import api
from clintune.config.loading import load_config
from clintune.errors import ClintuneError


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (links not followed) with its SHA-256."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()
    }


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A fake model folder, data files and a two-file config chain, all under one folder."""
    model = tmp_path / "model"
    shutil.copytree(TINY_MODEL, model)
    for name in ("labels.json", "clintune.yaml", "metrics.json"):
        write(model / name, "{}\n")
    shutil.copytree(REPO / "data" / "ner", tmp_path / "data")
    write(tmp_path / "configs" / "base.yaml", (REPO / "configs" / "ner.yaml").read_text())
    write(tmp_path / "configs" / "tiny.yaml", f"""extends: base.yaml
data:
  train: {tmp_path}/data/train.conll
  validation: {tmp_path}/data/validation.conll
  test: null
model:
  name_or_path: {model}
output:
  dir: {tmp_path}/runs/ner
""")
    write(tmp_path / "configs" / "search.yaml", "extends: tiny.yaml\nsearch:\n  training.learning_rate: {low: 1.0e-4, high: 1.0e-3}\n")
    write(tmp_path / "texts.txt", "Patients with cystic fibrosis.\nNo disease here.\n")
    os.symlink(tmp_path / "data", tmp_path / "data-link")
    os.symlink(model, tmp_path / "model-link")
    return tmp_path


def config(sandbox: Path, output_dir: str):
    return load_config(sandbox / "configs" / "tiny.yaml", [f"output.dir={output_dir}"])


# (verb, what the mistaken output is, how to call the library) for every way an output can hit an input.
def mistakes(s: Path) -> list[tuple[str, str, object]]:
    model, data = s / "model", s / "data" / "train.conll"
    return [
        ("train", "the data folder", lambda: api.train(config(s, f"{s}/data"), overwrite=True)),
        ("train", "the data folder, through a link", lambda: api.train(config(s, f"{s}/data-link"), overwrite=True)),
        ("train", "the data folder, through ..", lambda: api.train(config(s, f"{s}/runs/../data"), overwrite=True)),
        ("train", "the config's folder", lambda: api.train(config(s, f"{s}/configs"), overwrite=True)),
        ("train", "inside the pretrained model folder", lambda: api.train(config(s, f"{s}/model/out"), overwrite=True)),
        ("train", "the config file extended", lambda: api.train(config(s, f"{s}/configs/base.yaml"), overwrite=True)),
        ("eval", "the model folder", lambda: api.evaluate(model, data, output_dir=model, overwrite=True)),
        ("eval", "the model folder, through a link", lambda: api.evaluate(s / "model-link", data, output_dir=model, overwrite=True)),
        ("eval", "the model folder, through ..", lambda: api.evaluate(model, data, output_dir=s / "data" / ".." / "model", overwrite=True)),
        ("eval", "the data file", lambda: api.evaluate(model, data, output_dir=data, overwrite=True)),
        ("eval", "a folder holding the data", lambda: api.evaluate(model, data, output_dir=s / "data-link", overwrite=True)),
        ("export", "the model folder", lambda: api.export(model, model)),
        ("export", "inside the model folder", lambda: api.export(s / "model-link", model / "onnx")),
        ("export", "a folder holding the check data", lambda: api.export(model, s / "data", check_data=data)),
        ("predict", "the input file", lambda: api.check_prediction_paths(model, s / "texts.txt", s / "texts.txt")),
        ("predict", "the input file, through ..", lambda: api.check_prediction_paths(model, s / "texts.txt", s / "data/../texts.txt")),
        ("predict", "inside the model folder", lambda: api.check_prediction_paths(model, s / "texts.txt", s / "model-link/p.jsonl")),
        ("baseline", "the training file", lambda: api.baseline(config(s, f"{s}/runs/ner"), output=s / "data-link" / "train.conll")),
        ("baseline", "the config file", lambda: api.baseline(config(s, f"{s}/runs/ner"), output=s / "configs" / "tiny.yaml")),
        ("cv", "the data folder", lambda: api.cross_validate(config(s, f"{s}/runs/ner"), 2, output=s / "data-link", overwrite=True)),
        ("cv", "the config's folder, as the final model", lambda: api.cross_validate(
            config(s, f"{s}/configs"), 2, output=s / "cv", overwrite=True, train_final=True)),
        ("tune", "the data folder", lambda: api.tune(searched(s), 1, output=s / "data-link")),
        ("tune", "the config file, as the study's SQLite storage", lambda: api.tune(
            searched(s), 1, output=s / "search", storage=f"sqlite:///{s}/configs/base.yaml")),
        ("tune", "the pretrained model folder, as the output", lambda: api.tune(searched(s), 1, output=s / "model-link", overwrite=True)),
        ("select", "the pool file", lambda: api.select(model, s / "texts.txt", s / "texts.txt", k=1)),
        ("select", "inside the model folder", lambda: api.select(model, s / "texts.txt", s / "model-link" / "picks.csv", k=1)),
        ("select", "a file of labelled notes, as the Label Studio tasks", lambda: api.select(
            model, s / "texts.txt", s / "picks.csv", k=1, exclude=[data], label_studio_tasks=s / "data-link" / "train.conll")),
    ]


def searched(sandbox: Path):
    return load_config(sandbox / "configs" / "search.yaml", [f"output.dir={sandbox}/runs/ner"])


CASE_NAMES = [f"{verb}: {what}" for verb, what, _ in mistakes(Path("/x"))]


@pytest.mark.parametrize("index", range(len(CASE_NAMES)), ids=CASE_NAMES)
def test_an_output_that_would_overwrite_an_input_is_refused(sandbox: Path, index: int) -> None:
    verb, _, call = mistakes(sandbox)[index]
    before = snapshot(sandbox)
    with pytest.raises(ClintuneError) as caught:
        call()  # type: ignore[operator]
    message = str(caught.value)
    assert message.startswith(f"{verb}: ") and "writing there would overwrite" in message
    assert message.split("; writing there")[0].count(str(sandbox)) >= 2  # the output and the input, both named
    assert snapshot(sandbox) == before


# Verbs that write nothing a user names, with the reason; every other verb that takes an output
# option or a config (whose output.dir it may write) needs a CLI case below.
READ_ONLY = {
    "validate": "reads the config and data only",
    "clear": "deletes only its own cache entries (names of 40 hex digits + .arrow or .json, and its unfinished "
             ".building-* folders) in the cache folder",
    "info": "reads the cache folder's listing only",
}


def cli_case(verb: str, s: Path) -> list[str]:
    model, data = str(s / "model"), str(s / "data" / "train.conll")
    return {
        "train": ["train", str(s / "configs" / "tiny.yaml"), "--set", f"output.dir={s}/data-link", "--overwrite"],
        "eval": ["eval", "--model", model, "--data", data, "--output", f"{s}/data/../model", "--overwrite"],
        "predict": ["predict", "--model", model, "--input", str(s / "texts.txt"), "--output", str(s / "texts.txt")],
        "export": ["export", "--model", model, "--output", f"{s}/model-link"],
        "baseline": ["baseline", str(s / "configs" / "tiny.yaml"), "--output", data],
        "cv": ["cv", str(s / "configs" / "tiny.yaml"), "--folds", "2", "--output", f"{s}/data-link", "--overwrite"],
        "tune": ["tune", str(s / "configs" / "search.yaml"), "--trials", "1", "--output", f"{s}/runs/t",
                 "--storage", f"sqlite:///{s}/data/train.conll"],
        "select": ["select", "--model", model, "--input", str(s / "texts.txt"), "--k", "1", "--output", f"{s}/model-link/picks.csv"],
    }[verb]


def writing_verbs() -> list[str]:
    """Every CLI verb (sub-commands too) with an ``output`` or ``config`` parameter."""
    from clintune.cli import app

    commands = list(app.registered_commands)
    for group in app.registered_groups:
        commands += group.typer_instance.registered_commands
    names = []
    for command in commands:
        parameters = inspect.signature(command.callback).parameters
        if {"output", "config"} & set(parameters):
            names.append(command.name or command.callback.__name__.rstrip("_"))
    return sorted(names)


def test_every_writing_verb_has_a_case() -> None:
    verbs = writing_verbs()
    assert {"train", "eval", "predict", "export", "baseline"} <= set(verbs)
    cased = {"train", "eval", "predict", "export", "baseline", "cv", "tune", "select"}
    unchecked = [v for v in verbs if v not in READ_ONLY and v not in cased]
    assert not unchecked, f"verbs with output options but no output-vs-input case: {unchecked}"


@pytest.mark.parametrize("verb", ["train", "eval", "predict", "export", "baseline", "cv", "tune", "select"])
def test_the_cli_exits_2_naming_both_paths(sandbox: Path, verb: str) -> None:
    before = snapshot(sandbox)
    result = invoke_cli(*cli_case(verb, sandbox), cwd=sandbox)
    assert result.returncode == 2, result.stderr
    assert "writing there would overwrite what the command reads" in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(sandbox) == before


# -- replacing folders -----------------------------------------------------


@pytest.mark.parametrize("overwrite", [True, False])
def test_train_overwrite_never_deletes_a_folder_clintune_did_not_write(sandbox: Path, overwrite: bool) -> None:
    """Without --overwrite too the refusal says why at once (it said "pass --overwrite", which led only to this)."""
    target = sandbox / "mine"
    write(target / "important.txt", "x\n")
    with pytest.raises(ClintuneError, match=r"not a model folder written by clintune \(it holds important.txt\)") as caught:
        api.train(config(sandbox, str(target)), overwrite=overwrite)
    assert "pass --overwrite" not in str(caught.value)
    assert (target / "important.txt").read_text() == "x\n"


def test_train_overwrite_keeps_a_users_file_inside_a_model_folder(sandbox: Path) -> None:
    target = sandbox / "model-copy"
    shutil.copytree(sandbox / "model", target)
    write(target / "notes.txt", "my notes\n")
    with pytest.raises(ClintuneError, match="it holds notes.txt"):
        api.train(config(sandbox, str(target)), overwrite=True)
    assert (target / "notes.txt").is_file()


def test_a_file_at_output_dir_is_refused_and_nothing_stray_is_left(sandbox: Path) -> None:
    target = write(sandbox / "runs" / "afile", "not a folder\n")
    before = set(os.listdir(target.parent))
    with pytest.raises(ClintuneError, match="is a file, not a folder"):
        api.train(config(sandbox, str(target)), overwrite=True)
    assert set(os.listdir(target.parent)) == before
    assert target.read_text() == "not a folder\n"


def test_resume_without_a_checkpoint_is_an_error(sandbox: Path) -> None:
    result = invoke_cli("train", str(sandbox / "configs" / "tiny.yaml"), "--resume", cwd=sandbox)
    assert result.returncode == 2
    assert "no checkpoint to resume" in result.stderr
    assert not (sandbox / "runs").exists()


def test_eval_report_folder_rules(trained_models: dict[str, Path], tmp_path: Path) -> None:
    model, data = trained_models["ner"], str(REPO / "data" / "ner" / "test.conll")
    report = tmp_path / "report"
    assert invoke_cli("eval", "--model", str(model), "--data", data, "--output", str(report), "--bootstrap", "0").returncode == 0
    first = snapshot(report)
    again = invoke_cli("eval", "--model", str(model), "--data", data, "--output", str(report), "--bootstrap", "0")
    assert again.returncode == 2 and "holds an earlier report" in again.stderr and "--overwrite" in again.stderr
    assert snapshot(report) == first
    replaced = invoke_cli("eval", "--model", str(model), "--data", data, "--output", str(report), "--overwrite", "--bootstrap", "0")
    assert replaced.returncode == 0, replaced.stderr
    write(report / "mine.txt", "x\n")
    refused = invoke_cli("eval", "--model", str(model), "--data", data, "--output", str(report), "--overwrite", "--bootstrap", "0")
    assert refused.returncode == 2 and "not a report folder written by clintune (it holds mine.txt)" in refused.stderr
    other = write(tmp_path / "other" / "x.csv", "a\n").parent
    refused = invoke_cli("eval", "--model", str(model), "--data", data, "--output", str(other), "--overwrite", "--bootstrap", "0")
    assert refused.returncode == 2 and (other / "x.csv").is_file()


# -- the property: a command changes nothing outside what it documents writing ----------


def changed_outside(before: dict[str, str], after: dict[str, str], allowed: list[str]) -> list[str]:
    """Files added, removed or changed whose path is not under one of ``allowed``."""
    def outside(name: str) -> bool:
        return not any(name == a or name.startswith(a.rstrip("/") + "/") for a in allowed)

    return sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name) and outside(name))


def test_no_command_changes_a_file_outside_its_documented_outputs(trained_models: dict[str, Path], tmp_path: Path) -> None:
    s = tmp_path
    shutil.copytree(REPO / "data" / "diagnosis", s / "data")
    shutil.copytree(trained_models["diagnosis"], s / "model")
    write(s / "bystander.txt", "keep me\n")
    write(s / "runs" / "notes.md", "keep me too\n")
    write(s / "ner.yaml", f"extends: {REPO}/configs/tiny/ner.yaml\ndata: {{train: {REPO}/data/ner/train.conll, "
          f"validation: {REPO}/data/ner/validation.conll, test: null}}\nmodel: {{name_or_path: {TINY_MODEL}}}\n"
          "training: {epochs: 1}\noutput: {dir: runs/ner}\n")
    model, data = "model", "data/test.csv"
    # (command, the paths under the sandbox it documents writing)
    steps = [
        (["train", "ner.yaml"], ["runs/ner", "runs/ner.work", "runs/.clintune-cache"]),
        (["train", "ner.yaml", "--overwrite", "--set", "training.seed=1"], ["runs/ner", "runs/ner.work", "runs/.clintune-cache"]),
        (["eval", "--model", model, "--data", data, "--output", "report", "--bootstrap", "10"], ["report"]),
        (["eval", "--model", model, "--data", data, "--output", "report", "--overwrite", "--tune-threshold", "recall=0.9",
          "--fit-temperature", "--bootstrap", "0"], ["report", "model/decision.json", "model/README.md", "model/metrics.json"]),
        (["predict", "--model", model, "--input", data, "--output", "out/predictions.jsonl", "--probabilities"], ["out"]),
        (["baseline", "ner.yaml", "--output", "out/baseline.json"], ["out/baseline.json"]),
        (["cache", "clear", "ner.yaml"], ["runs/.clintune-cache"]),
    ]
    cache = s / "runs" / ".clintune-cache" / "tokenized"
    for command, allowed in steps:
        before = snapshot(s)
        result = run_cli(*command, cwd=s, env={"CLINTUNE_CACHE_DIR": ""})
        assert result.returncode == 0, f"{command}: {result.stderr[-2000:]}"
        assert changed_outside(before, snapshot(s), allowed) == [], command
        if command[0] == "train":  # the cache sits beside the run, readable by its owner alone
            entries = list(cache.iterdir())
            assert len(entries) == 4 and all(p.stat().st_mode & 0o777 == 0o600 for p in entries)  # .arrow and .json per split
            assert all(p.stat().st_mode & 0o777 == 0o700 for p in (cache, cache.parent))
    assert not cache.parent.exists()  # cleared
    assert (s / "bystander.txt").read_text() == "keep me\n" and (s / "runs" / "notes.md").is_file()


def test_a_model_folder_with_its_remote_code_is_replaceable_but_not_with_a_stray_script(tmp_path: Path) -> None:
    from clintune.modeling.folder import check_output_dir

    folder = tmp_path / "model"
    for name in ("clintune.yaml", "labels.json", "model.safetensors", "tokenizer.json"):
        write(folder / name, "x")
    write(folder / "config.json", '{"auto_map": {"AutoConfig": "configuration_tiny.TinyConfig", '
          '"AutoModel": "hub-org/repo--modeling_tiny.TinyModel"}}')
    write(folder / "configuration_tiny.py", "")
    write(folder / "modeling_tiny.py", "")
    check_output_dir(folder, overwrite=True, resume=False)
    write(folder / "analysis.py", "")
    with pytest.raises(ClintuneError, match="it holds analysis.py"):
        check_output_dir(folder, overwrite=True, resume=False)
