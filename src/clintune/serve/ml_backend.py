"""``clintune serve --label-studio``: the model as a Label Studio ML backend (pre-annotation).

Label Studio calls ``GET /health`` (UP once the model is loaded), ``POST /setup`` with the project's
labelling config (checked here against the model's labels), ``POST /predict`` with tasks (answered
with ``result`` items, see ``clintune.inference.label_studio``) and ``POST /webhook`` with annotation
events (acknowledged; only their type is logged). It authenticates with HTTP Basic auth: a server
started with an API key takes the key as the Basic password (``app._refusal``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from functools import lru_cache
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from clintune.inference.label_studio import (
    LabelConfigProblem,
    LabelingTarget,
    check_labeling_target,
    parse_labeling_config,
    prediction_result,
    project_labels,
    task_text,
)
from clintune.inference.sources import empty_text_steps, text_problem
from clintune.modeling.folder import ModelFolder
from clintune.serve.batching import MicroBatcher, Overloaded, WorkerStopped
from clintune.serve.protocol import RequestProblem, problem
from clintune.serve.settings import ServeSettings

logger = logging.getLogger("clintune.serve")

ROUTES = ("/health", "/setup", "/predict", "/webhook")
EVENT_NAME = re.compile(r"[A-Z][A-Z_]{0,63}")


def model_labels(folder: ModelFolder) -> list[str]:
    """The labels a project must offer: entity types for NER, classes otherwise."""
    return project_labels(folder.encoder.task_type, list(folder.encoder.classes))


def read_json_body(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise problem(422, "body", "not valid UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise problem(422, "body", "must be a JSON object")
    return data


def labeling_target(folder: ModelFolder, xml: Any, field_name: str) -> LabelingTarget:
    """The project's labelling config, parsed and checked against the model; 422 naming ``field_name`` otherwise."""
    task_type = folder.encoder.task_type
    try:
        target = _parsed(xml, task_type) if isinstance(xml, str) else parse_labeling_config(xml, task_type)
    except LabelConfigProblem as exc:
        raise problem(422, field_name, f"the labelling config {exc}") from None
    problems = check_labeling_target(target, task_type, model_labels(folder))
    if problems:
        raise RequestProblem(422, [{"field": field_name, "message": f"the labelling config {why}"} for why in problems])
    return target


@lru_cache(maxsize=16)
def _parsed(xml: str, task_type: str) -> LabelingTarget:  # Label Studio sends the same config with every request
    return parse_labeling_config(xml, task_type)


def predict_tasks(body: bytes, folder: ModelFolder, settings: ServeSettings) -> tuple[LabelingTarget, list[str]]:
    """The labelling target and each task's text from a ``POST /predict`` body, or a ``RequestProblem`` naming
    every bad task (``tasks[2].data.text``) and never quoting one."""
    data = read_json_body(body)
    target = labeling_target(folder, data.get("label_config"), "label_config")
    tasks = data.get("tasks")
    if not isinstance(tasks, list):
        raise problem(422, "tasks", "missing, or not a list of tasks")
    if len(tasks) > settings.max_texts:
        raise problem(413, "tasks", f"{len(tasks):,} tasks, more than this server takes in one request ({settings.max_texts:,}); "
                                    "start the server with a larger --max-texts, or ask for fewer tasks at once")
    steps = empty_text_steps(folder.encoder.task_type, folder.config)
    texts, errors = [], []
    for index, task in enumerate(tasks):
        try:
            text = task_text(task, target)
        except ValueError as exc:
            errors.append({"field": f"tasks[{index}]", "message": str(exc)})
            continue
        if text_problem(text, steps):
            errors.append({"field": f"tasks[{index}].data.{target.data_key}", "message": "empty text: nothing to label"})
        texts.append(text)
    if errors:
        raise RequestProblem(422, errors)
    return target, texts


def add_routes(app: FastAPI, folder: ModelFolder, settings: ServeSettings, batcher: MicroBatcher,
               read_body: Any) -> None:
    """Label Studio's four routes on ``app``; ``read_body(request, limit)`` reads a body within the size limit."""
    version = folder.version()

    @app.get("/health", include_in_schema=False)
    async def health() -> Response:
        if batcher.ready.is_set():
            return JSONResponse({"status": "UP", "model_class": "clintune", "model_version": version})
        return JSONResponse({"status": "FAILED" if batcher.load_error else "LOADING"}, status_code=503,
                            headers={"Retry-After": "1"})

    @app.post("/setup", include_in_schema=False)
    async def setup(request: Request) -> Response:
        data = read_json_body(await read_body(request, settings.max_bytes))
        try:
            labeling_target(folder, data.get("schema"), "schema")
        except RequestProblem as refused:  # Label Studio shows only "422"; its message points at this log
            logger.warning("Label Studio's /setup refused: %s", refused.message)
            raise
        return JSONResponse({"model_version": version})

    @app.post("/predict", include_in_schema=False)
    async def predict(request: Request) -> Response:
        target, texts = predict_tasks(await read_body(request, settings.max_bytes), folder, settings)
        if not batcher.ready.is_set():
            return JSONResponse({"detail": "the model is loading; retry when /health says UP"}, status_code=503,
                                headers={"Retry-After": "1"})
        if not texts:
            return JSONResponse({"results": []})
        try:
            results = await asyncio.wrap_future(batcher.submit(texts))
        except WorkerStopped as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503)
        except Overloaded as exc:
            return JSONResponse({"detail": f"the server is busy: {exc}; retry later"}, status_code=503, headers={"Retry-After": "1"})
        except Exception as exc:  # logged by the worker (type and stack only)
            return JSONResponse({"detail": f"inference failed ({type(exc).__name__})"}, status_code=500)
        return JSONResponse({"results": [prediction_result(result, target, version) for result in results]})

    @app.post("/webhook", include_in_schema=False)
    async def webhook(request: Request) -> Response:
        data = read_json_body(await read_body(request, settings.max_bytes))
        action = data.get("action")
        shown = action if isinstance(action, str) and EVENT_NAME.fullmatch(action) else "(an event of no known form)"
        logger.info("Label Studio event %s received (clintune does not train from events; run 'clintune train' "
                    "on an export)", shown)
        return JSONResponse({"status": "ok"}, status_code=200)


