"""The web application of ``clintune serve`` (FastAPI) and the uvicorn server that runs it.

Imported only when serving: fastapi and uvicorn come from the ``serve`` extra.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import signal
import time
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from clintune import __version__
from clintune.inference.sinks import result_record
from clintune.inference.sources import empty_text_steps
from clintune.modeling.folder import ModelFolder
from clintune.serve.batching import MicroBatcher, Overloaded, WorkerStopped
from clintune.serve.docs import render_docs
from clintune.serve.protocol import (
    ERROR_SCHEMA,
    PREDICT_REQUEST_SCHEMA,
    PREDICT_RESPONSE_SCHEMA,
    RequestProblem,
    model_description,
    parse_predict_request,
    too_large,
)
from clintune.serve.settings import ServeSettings

logger = logging.getLogger("clintune.serve")

STATIC_FILES = {"page.js": "text/javascript; charset=utf-8", "page.css": "text/css; charset=utf-8"}
SECURITY_HEADERS = {
    # everything the page and the docs use comes from this server: the browser refuses anything else
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class InferenceModel:
    """The folder's ``Predictor``, loaded on the inference worker, answering a list of texts."""

    def __init__(self, folder: ModelFolder, settings: ServeSettings, trust_remote_code: bool = False) -> None:
        self.folder, self.settings, self.trust_remote_code = folder, settings, trust_remote_code
        self.predictor: Any = None
        self.on_load_failure: Any = None  # set by run_server: stops the server

    def load(self) -> None:
        from clintune.inference.predictor import Predictor

        started = time.monotonic()
        logger.info("loading %s ...", self.folder.path)
        try:
            # a dynamic-int8 folder runs one text per pass (see prediction.forward_batch_size): no caller's
            # texts can change another caller's answer
            self.predictor = Predictor.from_model_folder(self.folder, self.settings.batch_size, threads=self.settings.threads,
                                                         trust_remote_code=self.trust_remote_code)
            self.run(["warm-up"])  # the first forward pass is the slow one; no caller should pay for it
        except BaseException as exc:
            logger.error("the model failed to load: %s: %s", type(exc).__name__, exc)
            if self.on_load_failure is not None:
                self.on_load_failure()
            raise
        logger.info("model loaded in %.1f s (%s, %s); ready", time.monotonic() - started,
                    self.folder.encoder.task_type, "ONNX Runtime" if self.folder.is_onnx else "PyTorch")

    def run(self, texts: list[str]) -> list[Any]:
        if self.folder.encoder.task_type == "ner":
            return self.predictor.extract_entities(texts)
        return self.predictor.classify(texts)


def build_app(folder: ModelFolder, settings: ServeSettings, api_key: str | None, trusted_hosts: tuple[str, ...] | None,
              trust_remote_code: bool = False) -> FastAPI:
    """The application: API, page, docs, and the inference worker started and drained by its lifespan."""
    model = InferenceModel(folder, settings, trust_remote_code)
    batcher = MicroBatcher(model.run, settings.max_batch_texts, settings.max_wait_ms / 1000, load=model.load,
                           max_pending=settings.max_queued_texts)
    description = model_description(folder)
    steps = empty_text_steps(folder.encoder.task_type, folder.config)
    description["limits"] = {"max_texts": settings.max_texts, "max_bytes": settings.max_bytes,
                             "max_batch_texts": settings.max_batch_texts, "max_wait_ms": settings.max_wait_ms,
                             "max_queued_texts": settings.max_queued_texts}
    description["api_key_required"] = api_key is not None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        batcher.start()
        yield
        await asyncio.to_thread(batcher.stop)  # connections are closed by now; finish whatever is queued

    app = FastAPI(
        title=f"clintune serve: {folder.path.name}",
        version=__version__,
        description=f"A {description['task']} model trained with clintune. Answers are what `clintune predict --json` prints.",
        docs_url=None, redoc_url=None, lifespan=lifespan,
    )
    app.state.batcher, app.state.model, app.state.description = batcher, model, description
    in_flight = [0]  # /v1/predict requests received and not yet answered (one event loop: no lock needed)
    pages = {name: (resources.files(__package__) / "static" / name).read_bytes() for name in ("index.html", *STATIC_FILES)}

    @app.middleware("http")
    async def guard_and_log(request: Request, call_next: Any) -> Response:
        started = time.monotonic()
        refusal = _refusal(request, api_key, trusted_hosts, settings.label_studio)
        response = refusal or await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        # counts, sizes and timings only: never the body, the query string, or a path of the caller's making
        path = request.url.path
        shown = path if path in known_paths or path.removeprefix("/static/") in STATIC_FILES else "(another path)"
        logger.info("%s %s %d %s bytes in, %.0f ms", request.method, shown, response.status_code,
                    request.headers.get("content-length", "0"), (time.monotonic() - started) * 1000)
        return response

    @app.exception_handler(RequestProblem)
    async def refuse(request: Request, exc: RequestProblem) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.post("/v1/predict", summary="Label texts, or find their entities",
              description="One result per text, in input order, exactly as `clintune predict --json` prints them: "
                          "the model's decision rule, temperature and preprocessing apply. Concurrent requests are "
                          "batched together on the server.",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": PREDICT_REQUEST_SCHEMA,
                  "example": {"texts": ["Doctor: Any allergies? Patient: Penicillin gives me a rash."], "probabilities": True}}}}},
              responses={200: {"description": "one result per text",
                               "content": {"application/json": {"schema": PREDICT_RESPONSE_SCHEMA}}},
                         **_error_responses(401, 413, 422, 503)})
    async def predict(request: Request) -> Response:
        body = await _read_body(request, settings.max_bytes)
        texts, probabilities = parse_predict_request(body, settings.max_texts, steps)
        if not batcher.ready.is_set():
            return _not_ready(batcher)
        in_flight[0] += 1
        try:
            results = await asyncio.wrap_future(batcher.submit(texts))
        except WorkerStopped as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503)
        except Overloaded as exc:
            logger.warning("busy: refused a request of %d text(s); %s", len(texts), exc)
            return JSONResponse({"detail": f"the server is busy: {exc}; retry later"}, status_code=503,
                                headers={"Retry-After": "1"})
        except Exception as exc:  # logged by the worker (type and stack only)
            return JSONResponse({"detail": f"inference failed ({type(exc).__name__}); the server's log says where"},
                                status_code=500)
        finally:
            in_flight[0] -= 1
        return JSONResponse([result_record(result, probabilities) for result in results])

    @app.get("/v1/model", summary="The model: task, labels, decision rule, metrics, data",
             description="Validation and test metrics with their 95% intervals (`metrics.json`), the decision rule "
                         "in force (`decision.json`), the SHA-256 of the training data (`run.json`), and this "
                         "server's limits.", responses=_error_responses(401))
    async def model_info() -> dict[str, Any]:
        return {**description, "ready": batcher.ready.is_set()}

    @app.get("/healthz", summary="The process is up",
             responses={200: {"description": '{"status": "ok", "requests_in_flight": N}'}})
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "requests_in_flight": in_flight[0]}

    @app.get("/readyz", summary="The model is loaded and answering",
             responses={200: {"description": '{"status": "ready"}'},
                        503: {"description": '{"status": "loading"} or {"status": "failed", ...}'}})
    async def readyz() -> Response:
        if batcher.ready.is_set():
            return JSONResponse({"status": "ready"})
        return _not_ready(batcher)

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(pages["index.html"], media_type="text/html; charset=utf-8")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in STATIC_FILES:
            return JSONResponse({"detail": "not found"}, status_code=404)
        return Response(pages[name], media_type=STATIC_FILES[name])

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        return HTMLResponse(render_docs(app.openapi(), description, str(request.base_url)))

    if settings.label_studio:
        from clintune.serve import ml_backend

        ml_backend.add_routes(app, folder, settings, batcher, _read_body)
    known_paths = {route.path for route in app.routes if "{" not in route.path}
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "X-API-Key"])
    return app


# Label Studio's routes that carry notes or events (its /health, like /healthz, holds neither)
LABEL_STUDIO_KEYED = ("/setup", "/predict", "/webhook")


def _refusal(request: Request, api_key: str | None, trusted_hosts: tuple[str, ...] | None,
             label_studio: bool = False) -> Response | None:
    """400 for a Host header this server does not answer to (a page on another site reaching a loopback server
    through DNS rebinding), 401 for a /v1/ request (or, with ``label_studio``, a Label Studio request) without
    the API key; None when the request may go on.

    The key comes as ``Authorization: Bearer KEY``, ``X-API-Key: KEY`` or, as Label Studio sends it, HTTP Basic
    auth with the key as the password (any user name). The page, its files, /docs, /openapi.json, /healthz,
    /readyz and /health need no key: they hold no text and no metrics."""
    if trusted_hosts is not None and _host_name(request.headers.get("host", "")) not in trusted_hosts:
        return JSONResponse({"detail": "this server answers only to requests for " + ", ".join(trusted_hosts[:3])},
                            status_code=400)
    path = request.url.path
    keyed = path.startswith("/v1/") or (label_studio and path in LABEL_STUDIO_KEYED)
    if api_key is None or request.method == "OPTIONS" or not keyed:
        return None
    given = _given_key(request.headers)
    if given and hmac.compare_digest(given.encode(), api_key.encode()):
        return None
    detail = "wrong API key" if given else "this server needs an API key: send the header 'Authorization: Bearer KEY'"
    challenge = 'Basic realm="clintune"' if path in LABEL_STUDIO_KEYED else "Bearer"
    return JSONResponse({"detail": detail}, status_code=401, headers={"WWW-Authenticate": challenge})


def _given_key(headers: Any) -> str:
    """The key a request carries: Bearer token, X-API-Key, or the password of HTTP Basic auth; "" for none."""
    authorization = headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return headers.get("x-api-key") or ""


def _host_name(header: str) -> str:
    header = header.strip().lower()
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (before reading it, when it says its length)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _not_ready(batcher: MicroBatcher) -> JSONResponse:
    if batcher.load_error is not None:
        return JSONResponse({"status": "failed", "detail": f"the model failed to load ({type(batcher.load_error).__name__})"},
                            status_code=503)
    return JSONResponse({"status": "loading", "detail": "the model is loading; retry when /readyz answers 200"},
                        status_code=503, headers={"Retry-After": "1"})


def _error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    meaning = {401: "no API key, or a wrong one (servers started with --api-key-file or $CLINTUNE_API_KEY)",
               413: "more texts (--max-texts) or bytes (--max-bytes) than the server takes per request",
               422: "malformed JSON, texts missing or not a list, an item not a string, an empty text; "
                    "errors[].field names each",
               503: "the model is still loading, or the server is stopping"}
    return {status: {"description": meaning[status], "content": {"application/json": {"schema": ERROR_SCHEMA}}}
            for status in statuses}


def run_server(app: FastAPI, host: str, port: int, log_level: str = "info") -> None:
    """Run ``app`` with uvicorn until SIGTERM (drain, then return) or Ctrl-C (KeyboardInterrupt)."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if sig == signal.SIGTERM and not self.should_exit:
                # uvicorn would re-raise the signal once stopped (exit status -15); a drained stop is a success
                logger.info("SIGTERM: no new connections; finishing the requests in flight")
                self.should_exit = True
                return
            super().handle_exit(sig, frame)

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                for server in self.servers:
                    for sock in server.sockets:
                        address, bound_port = sock.getsockname()[:2]
                        shown = f"[{address}]" if ":" in address else address
                        logger.info("listening on http://%s:%d/ (the page; API docs at /docs)", shown, bound_port)

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False, server_header=False,
                            lifespan="on", log_config=None)
    server = Server(config)
    app.state.model.on_load_failure = lambda: setattr(server, "should_exit", True)
    server.run()
