"""The model folder: what ``train`` writes, atomically, and what the other verbs read back.

A model folder holds the weights (safetensors), the tokenizer, ``config.json``
with the real label names, ``labels.json``, the resolved ``clintune.yaml`` and
``metrics.json``. It is assembled in a staging folder beside the target and
renamed into place only once everything is written, so a killed run never
leaves a folder that looks complete.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clintune.config.checks import validate_config
from clintune.config.loading import save_config
from clintune.config.schema import Config
from clintune.data.labels import LABELS_FILE, LabelEncoder
from clintune.errors import ClintuneError, ModelFolderError
from clintune.runtime.files import read_json_object, sha256_of, write_json
from clintune.runtime.guards import check_replaceable

if TYPE_CHECKING:
    from clintune.modeling.decision import DecisionRule

CONFIG_FILE = "clintune.yaml"
METRICS_FILE = "metrics.json"
TRAINING_LOG_FILE = "training_log.json"
ONNX_FILE = "model.onnx"
EXPORT_FILE = "export.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", ONNX_FILE)
# Every name train, eval (decision rule, card) and export write into a model folder; tokenizers
# differ in their files, hence the several vocabulary names.
MODEL_FOLDER_FILES = frozenset({
    *WEIGHT_FILES, "config.json", "generation_config.json", LABELS_FILE, CONFIG_FILE, METRICS_FILE, TRAINING_LOG_FILE,
    "run.json", "README.md", "decision.json", EXPORT_FILE, "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt", "spiece.model",
    "sentencepiece.bpe.model", "chat_template.jinja",
})
_SHARD = re.compile(r"^model-\d+-of-\d+\.safetensors$")


def work_dir_for(output_dir: Path) -> Path:
    """Where checkpoints and the staging folder of a run live, beside its output folder."""
    return output_dir.with_name(output_dir.name + ".work")


def is_model_folder_file(name: str) -> bool:
    """True for the names of files that clintune (train, eval, export) writes into a model folder."""
    return name in MODEL_FOLDER_FILES or bool(_SHARD.match(name)) or _is_temporary(name)


def _model_folder_files(folder: Path) -> Any:
    """The test for names clintune writes into ``folder``, plus the remote-code modules it ships (``shipped_code``)."""
    modules = set(shipped_code(folder))
    return lambda name: is_model_folder_file(name) or name in modules


# The files whose ``auto_map`` makes transformers import a module of the folder (given trust_remote_code)
CODE_MAP_FILES = ("config.json", "tokenizer_config.json")


def shipped_code(folder: Path) -> list[str]:
    """The Python modules (``NAME.py``) that the ``auto_map`` of ``folder``'s config.json or tokenizer_config.json
    names: the code transformers imports when the folder is loaded with ``trust_remote_code``. Empty for most folders."""
    return code_modules(*(read_json_object(folder / name) for name in CODE_MAP_FILES))


def code_modules(*configs: dict[str, Any]) -> list[str]:
    """The modules the ``auto_map`` of each of ``configs`` (config.json, tokenizer_config.json, as read) names."""
    modules: set[str] = set()
    for config in configs:
        auto_map = config.get("auto_map") or {}
        # a tokenizer's auto_map may be a bare [slow, fast] pair, as transformers still reads it
        references = auto_map.values() if isinstance(auto_map, dict) else auto_map if isinstance(auto_map, list) else []
        for reference in references:
            for entry in reference if isinstance(reference, list) else [reference]:
                if isinstance(entry, str) and "." in entry:
                    modules.add(entry.split("--")[-1].rsplit(".", 1)[0] + ".py")
    return sorted(modules)


def check_remote_code(folder: ModelFolder, trust_remote_code: bool) -> None:
    """Refuse, before anything is loaded, a folder that would run Python code of its own, unless the caller asked.

    A folder needs its own code when its config.json or tokenizer_config.json has an ``auto_map``
    (``shipped_code``) or its ``clintune.yaml`` says ``model.trust_remote_code: true``. That
    setting is the folder's word, not the user's: only ``trust_remote_code`` (``--trust-remote-code``)
    lets the code run, on every load, as transformers asks of its callers.
    """
    if trust_remote_code:
        return
    modules = folder.shipped_code
    if not modules and not folder.config.model.trust_remote_code:
        return
    what = ", ".join(modules) if modules else f"its {CONFIG_FILE} sets model.trust_remote_code: true"
    raise ModelFolderError(
        f"{folder.path}: this model folder asks to run Python code it ships ({what}); "
        "clintune runs a folder's own code only when asked, on every load\n"
        "  fix: if you trust whoever made this folder, pass --trust-remote-code (api: trust_remote_code=True)"
    )


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and ".tmp-" in name


def _is_work_dir_entry(name: str) -> bool:
    return name in (CONFIG_FILE, "checkpoints", "final") or _is_temporary(name)


def has_checkpoints(output_dir: Path) -> bool:
    """True when an interrupted run of ``output_dir`` left a checkpoint to resume from."""
    return any((work_dir_for(output_dir) / "checkpoints").glob("checkpoint-*"))


def check_output_dir(output_dir: Path, overwrite: bool, resume: bool) -> None:
    """Refuse to overwrite a finished model or anything clintune did not write, or to silently discard an interrupted run."""
    if resume and not has_checkpoints(output_dir):
        raise ClintuneError(
            f"--resume: there is no checkpoint to resume in {work_dir_for(output_dir) / 'checkpoints'}\n"
            "  fix: run without --resume to start training (add --overwrite to replace an existing model folder)"
        )
    # A folder clintune did not write is refused as such first: "pass --overwrite" would only lead to that refusal.
    check_replaceable(output_dir, "output.dir", _model_folder_files(output_dir), (CONFIG_FILE, LABELS_FILE, "config.json"),
                      "model folder")
    if (output_dir.exists() or output_dir.is_symlink()) and not overwrite:
        raise ClintuneError(
            f"output.dir: {output_dir} already exists\n"
            "  fix: pass --overwrite to replace it, or choose another folder with --set output.dir=DIR"
        )
    work = work_dir_for(output_dir)
    check_replaceable(work, "output.dir", _is_work_dir_entry, (), "run's work folder")
    if work.exists() and not resume and not overwrite and has_checkpoints(output_dir):
        raise ClintuneError(
            f"an interrupted run left checkpoints in {work}\n"
            "  fix: pass --resume to continue it, or --overwrite to start again"
        )


def record_run_config(work: Path, config: Config, resume: bool) -> None:
    """Keep the run's config beside its checkpoints; a resumed run must use the same one."""
    import yaml

    path = work / CONFIG_FILE
    if resume and path.is_file():
        before = _flatten(yaml.safe_load(path.read_text(encoding="utf-8")))
        now = _flatten(config.to_dict())
        changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
        if changed:
            raise ClintuneError(
                f"--resume: the config differs from the interrupted run's ({path}) at: {', '.join(changed)}\n"
                "  fix: resume with the same config and --set values, or start again with --overwrite"
            )
        return
    work.mkdir(parents=True, exist_ok=True)
    save_config(config, path)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def save_model_folder(staging: Path, tokenizer: Any, encoder: LabelEncoder, config: Config) -> None:
    """Complete the weights in ``staging`` (written by ``Trainer.save_model``) into a loadable model folder."""
    staging.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(staging)
    encoder.save(staging)
    save_config(config, staging / CONFIG_FILE)
    _share_weights_as_umask_allows(staging)


def _share_weights_as_umask_allows(staging: Path) -> None:
    """Give the weights the mode of every other file of the folder: transformers writes them through a
    temporary file, owner-only, which left a shared model folder unreadable to colleagues. Weights hold
    no note text (owner-only files are those that do; see the README's Safety section)."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    for path in staging.iterdir():
        if path.name in WEIGHT_FILES or _SHARD.match(path.name):
            os.chmod(path, 0o666 & ~umask)


def save_training_record(staging: Path, metrics: dict[str, Any], log_history: list[dict[str, Any]]) -> None:
    """``metrics.json`` and the Trainer's log."""
    write_json(staging / METRICS_FILE, metrics)
    write_json(staging / TRAINING_LOG_FILE, log_history)


def read_folder_config(folder: Path) -> Config:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise ModelFolderError(f"{folder}: no {CONFIG_FILE}; this is not a folder written by 'clintune train'")
    import yaml

    return validate_config(yaml.safe_load(path.read_text(encoding="utf-8")), source=str(path))


@dataclass
class ModelFolder:
    """A checked model folder, read once (``read_model_folder``): every file the verbs need from it, as read.

    Whatever loads the model, the tokenizer or the decision rule takes its settings from here, so
    nothing further down opens ``config.json``, ``labels.json``, ``clintune.yaml``, ``decision.json``,
    ``export.json`` or ``tokenizer_config.json`` again.
    """

    path: Path
    encoder: LabelEncoder
    config: Config
    decision: DecisionRule
    hf_config: dict[str, Any] = field(default_factory=dict)  # config.json
    tokenizer_config: dict[str, Any] = field(default_factory=dict)  # tokenizer_config.json ({} when absent)
    export_info: dict[str, Any] = field(default_factory=dict)  # export.json ({} for a folder not exported)
    files: frozenset[str] = frozenset()  # the names in the folder when it was read

    @property
    def is_onnx(self) -> bool:
        """True for a folder written by ``clintune export`` (``model.onnx`` in place of the PyTorch weights)."""
        return ONNX_FILE in self.files

    @property
    def is_dynamic_int8(self) -> bool:
        """An ONNX export with dynamic int8 weights (``clintune export --quantize int8``)."""
        return self.is_onnx and self.export_info.get("quantize") == "int8"

    def version(self) -> str:
        """The model's identity: its folder name and the SHA-256 of its weights, labels and decision rule (12 hex digits).

        Label Studio stores it beside each prediction, so a corrected answer can be traced to the model that
        proposed it; retraining, re-tuning the threshold or exporting gives a new one."""
        from clintune.modeling.decision import DECISION_FILE

        names = [name for name in self.files if name.endswith(".safetensors") or name.startswith(ONNX_FILE)
                 or name in (*WEIGHT_FILES, LABELS_FILE, DECISION_FILE)]
        return f"{self.path.name}-{sha256_of(self.path, [self.path / name for name in names])[:12]}"

    @property
    def shipped_code(self) -> list[str]:
        """The Python modules of its own that loading the folder would import (see ``shipped_code``)."""
        return code_modules(self.hf_config, self.tokenizer_config)


def read_model_folder(folder: Path) -> ModelFolder:
    """Check that ``folder`` is a complete model folder whose label files agree, and read it, each file once."""
    from clintune.modeling.decision import DECISION_FILE, DecisionRule  # numpy: not for the verbs that only check a config

    if not folder.is_dir():
        raise ModelFolderError(f"model folder not found: {folder}")
    files = frozenset(entry.name for entry in folder.iterdir())
    missing = [name for name in ("config.json", LABELS_FILE, CONFIG_FILE) if name not in files]
    if not files & set(WEIGHT_FILES):
        missing.append("model.safetensors")
    if "tokenizer.json" not in files and "vocab.txt" not in files:
        missing.append("tokenizer.json")
    if missing:
        raise ModelFolderError(
            f"{folder}: incomplete model folder, missing {', '.join(missing)}\n"
            "  fix: point --model at a folder written by 'clintune train' (an interrupted run leaves none)"
        )
    encoder = LabelEncoder.load(folder)
    try:
        hf_config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelFolderError(f"{folder / 'config.json'}: not valid JSON ({exc})") from None
    id2label = {int(k): v for k, v in (hf_config.get("id2label") or {}).items()}
    if id2label != encoder.id2label:
        raise ModelFolderError(
            f"{folder}: config.json id2label {id2label} does not match {LABELS_FILE} {list(encoder.classes)}\n"
            "  fix: the folder was edited or mixed from two runs; retrain or restore the matching files"
        )
    config = read_folder_config(folder)
    decision = DecisionRule.load(folder) if DECISION_FILE in files else DecisionRule()
    tokenizer_config = read_json_object(folder / "tokenizer_config.json") if "tokenizer_config.json" in files else {}
    export_info = read_export_info(folder) if EXPORT_FILE in files else {}
    return ModelFolder(folder, encoder, config, decision, hf_config, tokenizer_config, export_info, files)


def read_export_info(folder: Path) -> dict[str, Any]:
    """``export.json`` of an exported folder (what it was exported from, how, and its check); empty if none."""
    path = folder / EXPORT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
