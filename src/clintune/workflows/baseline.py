"""``clintune baseline``: the cheap baseline on the config's splits, beside the transformer's metrics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clintune.config.schema import Config
from clintune.runtime import guards
from clintune.workflows.prepare import prepare_data, resolve_paths, training_inputs

if TYPE_CHECKING:
    from clintune.evaluation.tfidf_baseline import BaselineResult


@dataclass(frozen=True)
class BaselineComparison:
    """The baseline's run (name, metrics, seconds) and the transformer's ``metrics.json`` beside it (None when
    ``output.dir`` holds no trained model yet)."""

    baseline: BaselineResult
    transformer: dict[str, Any] | None


def baseline(config: Config, *, output: str | Path | None = None) -> BaselineComparison:
    """Train the cheap baseline on the config's splits; also return the transformer's metrics if its folder exists.

    With ``output``, the baseline's metrics are written there as JSON.
    """
    import json

    from clintune.evaluation.tfidf_baseline import run_baseline
    from clintune.runtime.files import write_json

    config = resolve_paths(config)
    metrics_file = Path(config.output.dir) / "metrics.json"
    if output is not None:
        guards.check_outputs("baseline", [*training_inputs(config), guards.Input("output.dir", Path(config.output.dir), whole=True)],
                             [guards.Output("--output", Path(output))])
    data = prepare_data(config)
    evaluated = {"validation": data.validation} | ({"test": data.test} if data.test is not None else {})
    result = run_baseline(config, data.train, evaluated, data.encoder)
    transformer = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else None
    if output is not None:
        write_json(Path(output), {"baseline": result.name, "seconds": result.seconds, **result.metrics})
    return BaselineComparison(result, transformer)


