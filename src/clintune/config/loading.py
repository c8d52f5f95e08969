"""Reading a config: YAML files merged along ``extends:``, ``--set dotted.key=value`` overrides,
``${VAR:-default}`` environment references, then one validation of the whole tree (``checks``).
Writing the resolved config back (``save_config``).
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import yaml

from clintune.config.checks import validate_config
from clintune.config.schema import Config, set_dotted
from clintune.errors import ConfigError


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read, merge, override and validate a config file."""
    sources: list[Path] = []
    raw = load_raw_config(Path(path), _read=sources)
    for override in overrides or []:
        apply_override(raw, override)
    raw = interpolate_env(raw)
    config = validate_config(raw, source=str(path))
    config._source_files = tuple(str(p) for p in sources)
    return config


def load_raw_config(path: Path, _seen: tuple[Path, ...] = (), _read: list[Path] | None = None) -> dict[str, Any]:
    """The config at ``path`` merged over the configs it ``extends`` (each file read is appended to ``_read``)."""
    path = path.expanduser()
    if not path.is_file():
        raise ConfigError([f"config file not found: {path}"])
    resolved = path.resolve()
    if resolved in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, resolved))
        raise ConfigError([f"extends: circular chain {chain}"], source=str(path))
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], source=str(path)) from exc
    if _read is not None:
        _read.append(path.absolute())
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise ConfigError(["the top level must be a mapping of sections (task, data, ...)"], source=str(path))
    parent_ref = loaded.pop("extends", None)
    if parent_ref is None:
        return loaded
    if not isinstance(parent_ref, str):
        raise ConfigError(["extends: must be the path of one YAML file"], source=str(path))
    parent = load_raw_config(path.parent / parent_ref, (*_seen, resolved), _read)
    return deep_merge(parent, loaded)


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` laid over ``base``; nested mappings merge, everything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set ``dotted.key=value`` in ``raw``; the value is parsed as a YAML scalar."""
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError([f"--set {override!r}: expected dotted.key=value, e.g. training.epochs=5"])
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    set_dotted(raw, key, value, f"--set {key}")


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate_env(value: Any) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of the tree."""
    if isinstance(value, dict):
        return {k: interpolate_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate_env(v) for v in value]
    if isinstance(value, str):
        return _ENV_REF.sub(_env_value, value)
    return value


def _env_value(match: re.Match[str]) -> str:
    name, default = match.group(1), match.group(2)
    if name in os.environ:
        return os.environ[name]
    if default is not None:
        return default
    raise ConfigError([f"environment variable {name} is not set (write ${{{name}:-default}} for a fallback)"])


def save_config(config: Config, path: Path) -> None:
    """Write the fully resolved config as YAML."""
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True), encoding="utf-8")
