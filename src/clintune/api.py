"""clintune's public Python API (``from clintune import api``): the functions behind each CLI verb.

A notebook user gets exactly the CLI's behaviour by calling these:
``api.train(api.load_config("configs/ner.yaml"))``, ``api.evaluate("runs/ner", "test.conll", output_dir="report")``,
``api.predict("runs/ner", ["text ..."])``. The first one or two arguments are positional, every option is
keyword-only, and each verb returns a typed result (``TrainResult``, ``Evaluation``, ``CrossValidationResult``,
``SearchResult``, ``ExportResult``, ``BaselineComparison``, ``PredictionRun``, ``Selection``, predictions). Each verb lives in
its own module under ``clintune.workflows``; this module gathers them under one name, and imports nothing heavy.
"""

from __future__ import annotations

from clintune.config.loading import load_config
from clintune.runtime.system import is_main_process
from clintune.serve import ServeSettings, create_app, serve
from clintune.workflows.baseline import BaselineComparison, baseline
from clintune.workflows.cv import CrossValidationResult, cross_validate
from clintune.workflows.evaluate import evaluate
from clintune.workflows.export import ExportResult, export
from clintune.workflows.predict import (
    PredictionRun,
    PredictOutcome,
    PredictRequest,
    check_brat_output,
    check_prediction_paths,
    predict,
    predict_documents,
    predict_file,
    read_texts_for_prediction,
    result_record,
    run_predict,
    write_brat_predictions,
)
from clintune.workflows.prepare import PreparedData, prepare_data, resolve_paths, training_inputs, validate
from clintune.workflows.select import Selection, select
from clintune.workflows.train import (
    TrainResult,
    clear_tokenization_cache,
    tokenization_cache_dir,
    tokenization_cache_size,
    train,
)
from clintune.workflows.tune import SearchResult, tune

__all__ = [
    "PredictionRun", "PreparedData", "TrainResult", "baseline", "check_brat_output", "check_prediction_paths", "clear_tokenization_cache",
    "cross_validate", "evaluate", "export", "is_main_process", "predict", "predict_documents", "predict_file", "prepare_data",
    "read_texts_for_prediction", "resolve_paths", "result_record", "tokenization_cache_dir", "tokenization_cache_size", "train",
    "training_inputs", "validate", "write_brat_predictions",
]
__all__ += ["BaselineComparison", "CrossValidationResult", "ExportResult", "PredictOutcome", "PredictRequest", "SearchResult",
            "Selection", "ServeSettings", "create_app", "load_config", "run_predict", "select", "serve", "tune"]
