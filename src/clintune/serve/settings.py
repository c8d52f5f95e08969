"""Who may call ``clintune serve`` and what it accepts: the settings, the API key and the bind check.

Light on purpose (no fastapi, uvicorn or torch at import): ``clintune.api`` imports it.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from clintune.errors import ClintuneError

logger = logging.getLogger("clintune.serve")

API_KEY_ENV = "CLINTUNE_API_KEY"
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


@dataclass(frozen=True)
class ServeSettings:
    """How the service batches and what it accepts; ``clintune serve``'s options."""

    max_batch_texts: int = 32  # texts gathered into one inference batch (a larger request runs alone)
    max_wait_ms: float = 5.0  # how long the worker waits for more requests once it holds one
    max_texts: int = 256  # texts per request; more: 413
    max_bytes: int = 1_000_000  # request body bytes; more: 413
    # texts waiting or running at once; a request past it gets 503 with Retry-After (tens of seconds of PyTorch work
    # for MiniLM on 2 CPU cores; one request is always taken when nothing is waiting, whatever its size)
    max_queued_texts: int = 1024
    batch_size: int | None = None  # texts per forward pass (default: 8 on CPU, 64 on a GPU)
    threads: int | None = None  # CPU threads for inference (default: all)
    cors_origins: tuple[str, ...] = ()  # origins allowed to call the API from a browser page of theirs
    label_studio: bool = False  # also answer Label Studio's ML backend protocol (/health, /setup, /predict, /webhook)

    def check(self) -> None:
        problems = [f"{name}: must be >= 1" for name in ("max_batch_texts", "max_texts", "max_bytes", "max_queued_texts")
                    if getattr(self, name) < 1]
        if self.max_wait_ms < 0:
            problems.append("max_wait_ms: must be >= 0")
        if problems:
            raise ClintuneError("serve: " + "; ".join(problems))


def is_loopback(host: str) -> bool:
    """True when ``host`` names this machine only (127.0.0.0/8, ::1, localhost): nobody else can connect."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_api_key(api_key_file: str | Path | None = None, environ: dict[str, str] | None = None) -> str | None:
    """The API key from ``api_key_file`` (its first line) or ``$CLINTUNE_API_KEY``; None when neither is given."""
    environ = os.environ if environ is None else environ
    if api_key_file is not None:
        path = Path(api_key_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ClintuneError(f"--api-key-file: cannot read {path} ({exc.strerror})\n"
                                "  fix: give a file that holds the key on its first line") from None
        key = lines[0].strip() if lines else ""
        if not key:
            raise ClintuneError(f"--api-key-file: {path} is empty\n  fix: write the key on its first line")
        if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            logger.warning("%s can be read by other users of this machine; chmod 600 it", path)
        return key
    key = environ.get(API_KEY_ENV, "").strip()
    return key or None


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond this machine without an API key."""
    if api_key is None and not is_loopback(host):
        raise ClintuneError(
            f"serve: --host {host} lets other machines connect, so requests must carry an API key\n"
            f"  fix: pass --api-key-file FILE (the key on its first line) or set ${API_KEY_ENV}; "
            "or keep the default --host 127.0.0.1"
        )


def require_server_modules() -> None:
    """Say how to install the ``serve`` extra when fastapi or uvicorn is missing."""
    import importlib.util

    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise ClintuneError(f"serve needs {' and '.join(missing)}\n  fix: pip install 'clintune[serve]'")
