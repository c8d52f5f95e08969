"""clintune's library API: the functions behind each CLI verb.

A notebook user gets exactly the CLI's behaviour by calling these:
``train(load_config("configs/ner.yaml"))``, ``evaluate("runs/ner", "test.conll")``,
``predict("runs/ner", ["text ..."])``. Each verb lives in its own module under
``clintune.workflows``; this module gathers them under one name.
"""

from __future__ import annotations

from clintune.serve import ServeSettings, create_app, serve
from clintune.workflows.baseline import baseline
from clintune.workflows.cv import cross_validate
from clintune.workflows.evaluate import evaluate
from clintune.workflows.export import export
from clintune.workflows.predict import (
    PredictionRun,
    check_brat_output,
    check_prediction_paths,
    predict,
    predict_documents,
    predict_file,
    read_texts_for_prediction,
    result_record,
    write_brat_predictions,
)
from clintune.workflows.prepare import PreparedData, prepare_data, resolve_paths, training_inputs, validate
from clintune.workflows.train import (
    TrainResult,
    clear_tokenization_cache,
    is_main_process,
    tokenization_cache_dir,
    train,
)
from clintune.workflows.tune import tune

__all__ = [
    "PredictionRun", "PreparedData", "TrainResult", "baseline", "check_brat_output", "check_prediction_paths", "clear_tokenization_cache",
    "cross_validate", "evaluate", "export", "is_main_process", "predict", "predict_documents", "predict_file", "prepare_data",
    "read_texts_for_prediction", "resolve_paths", "result_record", "tokenization_cache_dir", "train", "training_inputs",
    "validate", "write_brat_predictions",
]
__all__ += ["ServeSettings", "create_app", "serve", "tune"]
