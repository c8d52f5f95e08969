"""The docs site: its generated reference pages are current, it builds with --strict, and it fetches nothing.

The built pages must load every script, stylesheet and image from the site itself (hospital networks are
often closed, and the site must open from disk), and every page in the navigation must be built.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

pytest.importorskip("mkdocs")


def test_the_reference_pages_are_what_the_code_says() -> None:
    result = subprocess.run([sys.executable, "scripts/docs_reference.py", "--check"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    cli = (REPO / "docs" / "reference" / "cli.md").read_text(encoding="utf-8")
    for verb in ("train", "eval", "predict", "serve", "select", "schema", "cache clear"):
        assert f"## `clintune {verb}`" in cli
    assert "`--label-studio-tasks`" in cli and "`--max-similarity`" in cli and "`0.5`" in cli
    config = (REPO / "docs" / "reference" / "config.md").read_text(encoding="utf-8")
    assert "| `training.learning_rate` | float |" in config and "| `data.train` | str | required |" in config


def test_the_site_builds_strict_and_loads_nothing_from_elsewhere(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=REPO,
                            capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    assert {"index.html", "reference/cli.html", "reference/config.html", "benchmarks.html"} <= set(pages)
    for page in pages:
        html = (site / page).read_text(encoding="utf-8")
        loaded = re.findall(r'<(?:script|img|iframe)[^>]*\ssrc="([^"]+)"', html)
        loaded += re.findall(r'<link[^>]*rel="(?:stylesheet|preload|icon|manifest)"[^>]*href="([^"]+)"', html)
        loaded += re.findall(r'<link[^>]*href="([^"]+)"[^>]*rel="(?:stylesheet|preload|icon|manifest)"', html)
        remote = [url for url in loaded if re.match(r"(https?:)?//", url)]
        assert not remote, f"{page} loads {remote}"
        assert "fonts.googleapis" not in html and "fonts.gstatic" not in html


def test_the_service_reference_lists_every_route_and_field(trained_models: dict[str, Path]) -> None:
    """docs/reference/service.md is written by hand; the running application is the truth it must follow."""
    pytest.importorskip("fastapi")
    from clintune.serve import create_app
    from clintune.serve.protocol import ERROR_SCHEMA, PREDICT_REQUEST_SCHEMA, PREDICT_RESPONSE_SCHEMA
    from clintune.serve.settings import ServeSettings

    page = (REPO / "docs" / "reference" / "service.md").read_text(encoding="utf-8")
    app = create_app(trained_models["section_header"], settings=ServeSettings(label_studio=True))
    routes = {(method, route.path) for route in app.routes for method in getattr(route, "methods", ()) or ()
              if method != "HEAD"}
    assert ("POST", "/setup") in routes and ("GET", "/openapi.json") in routes, "the routes were not found"
    missing = sorted(f"{method} {path}" for method, path in routes if f"`{method} {path}`" not in page)
    assert not missing, f"routes of the service that docs/reference/service.md does not list: {missing}"

    def field_names(schema: object) -> set[str]:
        if isinstance(schema, dict):
            own = set(schema.get("properties", {})) if isinstance(schema.get("properties"), dict) else set()
            return own | {name for value in schema.values() for name in field_names(value)}
        if isinstance(schema, list):
            return {name for item in schema for name in field_names(item)}
        return set()

    fields = field_names([PREDICT_REQUEST_SCHEMA, PREDICT_RESPONSE_SCHEMA, ERROR_SCHEMA])
    assert {"texts", "decided_by", "thresholds", "entities", "field"} <= fields
    undocumented = sorted(name for name in fields if f"`{name}`" not in page)
    assert not undocumented, f"fields of the service's JSON that docs/reference/service.md does not name: {undocumented}"
