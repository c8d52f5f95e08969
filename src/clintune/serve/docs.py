"""The API docs at ``/docs``: one HTML page rendered on the server from the OpenAPI schema.

FastAPI's own docs page loads Swagger UI's scripts from a CDN, which a hospital machine
without internet cannot reach; this page needs no script at all. The machine-readable
schema stays at ``/openapi.json`` for tools that want it.
"""

from __future__ import annotations

import json
import re
from html import escape
from typing import Any

METHOD_ORDER = ("post", "get")


def render_docs(openapi: dict[str, Any], model: dict[str, Any], base_url: str) -> str:
    """The docs page for ``openapi`` (the application's schema) of the service of ``model`` (``/v1/model``'s description)."""
    base = base_url.rstrip("/")
    sections = [_operation(path, method, operation, base, model)
                for path, operations in openapi.get("paths", {}).items()
                for method, operation in sorted(operations.items(), key=lambda item: _method_rank(item[0]))]
    toc = "".join(f'<li><a href="#{_anchor(method, path)}"><code>{method.upper()} {escape(path)}</code></a> '
                  f'{escape(operation.get("summary", ""))}</li>'
                  for path, operations in openapi.get("paths", {}).items()
                  for method, operation in sorted(operations.items(), key=lambda item: _method_rank(item[0])))
    key_note = ("<p class=\"note\">This server needs an API key on every <code>/v1/</code> request: "
                "<code>Authorization: Bearer KEY</code> (or <code>X-API-Key: KEY</code>).</p>"
                if model.get("api_key_required") else "")
    limits = model.get("limits", {})
    title = escape(openapi.get("info", {}).get("title", "clintune serve"))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>API docs · {title}</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/static/page.css"></head>
<body class="docs"><header class="topbar"><span class="brand">clintune serve</span>
<nav><a href="/">page</a> <a href="/docs">API docs</a> <a href="/openapi.json">openapi.json</a></nav></header>
<main class="docs-main">
<h1>{title}</h1>
<p>{_prose(openapi.get("info", {}).get("description", ""))} Version {escape(str(openapi.get("info", {}).get("version", "")))}.</p>
<p>Model <strong>{escape(str(model.get("name")))}</strong>: {escape(str(model.get("task")))},
{len(model.get("labels") or [])} labels, {escape(str(model.get("backend")))}. Per request: at most
{limits.get("max_texts", "?")} texts and {limits.get("max_bytes", 0):,} bytes. Concurrent requests are gathered into
batches of up to {limits.get("max_batch_texts", "?")} texts, waiting at most {limits.get("max_wait_ms", "?")} ms.</p>
{key_note}
<p>Errors come as <code>{{"detail": "...", "errors": [{{"field": "texts[2]", "message": "..."}}]}}</code>.
The schema of this API, for your tools: <a href="/openapi.json"><code>/openapi.json</code></a>.</p>
<ul class="toc">{toc}</ul>
{"".join(sections)}
</main></body></html>
"""


def _prose(text: str) -> str:
    """Escaped text with `code spans` as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(text))


def _method_rank(method: str) -> int:
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)


def _anchor(method: str, path: str) -> str:
    return f"{method}-{path.strip('/').replace('/', '-') or 'root'}"


def _operation(path: str, method: str, operation: dict[str, Any], base: str, model: dict[str, Any]) -> str:
    parts = [f'<section class="op" id="{_anchor(method, path)}">',
             f'<h2><span class="method {method}">{method.upper()}</span> <code>{escape(path)}</code></h2>',
             f'<p class="summary">{escape(operation.get("summary", ""))}</p>']
    if operation.get("description"):
        parts.append(f"<p>{_prose(operation['description'])}</p>")
    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if body:
        parts.append("<h3>Request body (JSON)</h3>" + _fields_table(body.get("schema", {})))
        example = body.get("example")
        if example is not None:
            parts.append("<h3>Example</h3><pre>" + escape(_curl(base, method, path, example, model)) + "</pre>")
    elif method == "get":
        parts.append("<h3>Example</h3><pre>" + escape(_curl(base, method, path, None, model)) + "</pre>")
    rows = []
    for status, response in operation.get("responses", {}).items():
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        rows.append(f"<tr><td><code>{escape(str(status))}</code></td><td>{escape(response.get('description', ''))}"
                    + (f"<pre>{escape(_schema_text(schema))}</pre>" if schema else "") + "</td></tr>")
    parts.append("<h3>Responses</h3><table><tr><th>status</th><th>meaning</th></tr>" + "".join(rows) + "</table></section>")
    return "\n".join(parts)


def _fields_table(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    rows = "".join(
        f"<tr><td><code>{escape(name)}</code>{' (required)' if name in required else ''}</td>"
        f"<td><code>{escape(_type_of(spec))}</code></td><td>{escape(spec.get('description', ''))}"
        + (f" Default: <code>{escape(json.dumps(spec['default']))}</code>." if "default" in spec else "") + "</td></tr>"
        for name, spec in schema.get("properties", {}).items())
    return f"<table><tr><th>field</th><th>type</th><th>meaning</th></tr>{rows}</table>"


def _type_of(spec: dict[str, Any]) -> str:
    if spec.get("type") == "array":
        return f"array of {_type_of(spec.get('items', {}))}"
    return str(spec.get("type", "any"))


def _schema_text(schema: dict[str, Any]) -> str:
    """A compact example-like outline of a JSON schema."""

    def outline(spec: dict[str, Any]) -> Any:
        if "oneOf" in spec:
            return [outline(option) for option in spec["oneOf"]]
        kind = spec.get("type")
        if kind == "object":
            properties = spec.get("properties")
            if properties:
                return {name: outline(value) for name, value in properties.items()}
            extra = spec.get("additionalProperties")
            return {"<name>": outline(extra)} if isinstance(extra, dict) else {}
        if kind == "array":
            return [outline(spec.get("items", {}))]
        return kind or "any"

    shape = outline(schema)
    if "oneOf" in schema.get("items", {}):
        options = shape[0]
        titles = [option.get("title", "") for option in schema["items"]["oneOf"]]
        return "\n".join(f"{title}: {json.dumps([option])}" for title, option in zip(titles, options))
    return json.dumps(shape)


def _curl(base: str, method: str, path: str, example: Any, model: dict[str, Any]) -> str:
    key = " -H 'Authorization: Bearer KEY'" if model.get("api_key_required") and path.startswith("/v1/") else ""
    if method == "get":
        return f"curl -s {base}{path}{key}"
    data = json.dumps(example, ensure_ascii=False).replace("'", "'\\''")
    return f"curl -s {base}{path}{key} -H 'Content-Type: application/json' \\\n  -d '{data}'"
