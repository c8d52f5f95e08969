"""The suite's own guards: an optional extra that CI installs cannot silently skip its tests there."""

from __future__ import annotations

import pytest
from conftest import require_module


def test_a_missing_extra_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        require_module("clintune_no_such_module")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(ImportError):
        require_module("clintune_no_such_module")
    assert require_module("json").__name__ == "json"
