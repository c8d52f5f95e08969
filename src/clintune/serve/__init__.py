"""``clintune serve``: a model folder as a local web service, with a page a clinician can use.

``POST /v1/predict`` answers with what ``clintune predict --json`` prints for the same texts
(the same ``Predictor`` and ``result_record``); concurrent requests share batches run by one
inference worker (``batching.MicroBatcher``). The page at ``/`` and the API docs at ``/docs``
come from files inside this package: nothing is fetched from the internet.

This module stays light (no fastapi, uvicorn or torch at import): ``clintune.api`` re-exports
it, and every verb imports ``clintune.api``. The web application is in ``app.py``; who may call it
and what it accepts in ``settings.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from clintune.errors import ClintuneError
from clintune.serve.settings import API_KEY_ENV, ServeSettings, check_bind, is_loopback, read_api_key, require_server_modules

if TYPE_CHECKING:
    from clintune.modeling.folder import ModelFolder


def create_app(model_dir: str | Path | ModelFolder, *, settings: ServeSettings | None = None, api_key: str | None = None,
               trusted_hosts: tuple[str, ...] | None = None, trust_remote_code: bool = False) -> Any:
    """The FastAPI application serving ``model_dir`` (for ``uvicorn`` or any ASGI server of yours).

    The model loads on the inference worker when the application starts; ``/readyz`` says
    when it is ready. ``trusted_hosts``: the ``Host`` headers accepted (None: any).
    ``trust_remote_code``: let a folder that ships Python code of its own run it; without it such
    a folder is refused here, before any application exists (``clintune.modeling.folder.check_remote_code``).
    """
    from clintune.modeling.folder import ModelFolder, check_remote_code, read_model_folder

    require_server_modules()
    from clintune.serve.app import build_app

    folder = model_dir if isinstance(model_dir, ModelFolder) else read_model_folder(Path(model_dir))
    check_remote_code(folder, trust_remote_code)
    settings = settings or ServeSettings()
    settings.check()
    return build_app(folder, settings, api_key, trusted_hosts, trust_remote_code)


def serve(model_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings | None = None,
          api_key: str | None = None, log_level: str = "info", trust_remote_code: bool = False) -> None:
    """Serve ``model_dir`` at http://HOST:PORT/ until SIGTERM or Ctrl-C (``port`` 0: any free port).

    SIGTERM stops accepting connections, finishes the requests in flight and returns;
    a model that fails to load stops the server and raises ``ClintuneError``.
    ``trust_remote_code``: as for ``create_app``.
    """
    from clintune.modeling.folder import read_model_folder
    require_server_modules()
    from clintune.serve.app import run_server

    check_bind(host, api_key)
    folder = read_model_folder(Path(model_dir))  # a wrong folder fails here, before anything listens
    trusted = None if not is_loopback(host) else ("localhost", "127.0.0.1", "::1", "[::1]", host)
    app = create_app(folder, settings=settings, api_key=api_key, trusted_hosts=trusted, trust_remote_code=trust_remote_code)
    run_server(app, host, port, log_level)
    error = app.state.batcher.load_error
    if error is not None:
        if isinstance(error, ClintuneError):
            raise error
        raise ClintuneError(f"serve: the model in {folder.path} failed to load ({type(error).__name__}: {error})") from error


__all__ = ["API_KEY_ENV", "ServeSettings", "check_bind", "create_app", "is_loopback", "read_api_key", "serve"]
