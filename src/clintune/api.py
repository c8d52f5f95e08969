"""clintune's library API: the functions behind each CLI verb.

A notebook user gets exactly the CLI's behaviour by calling these:
``train(load_config("configs/ner.yaml"))``, ``evaluate("runs/ner", "test.conll")``,
``predict("runs/ner", ["text ..."])``. Each verb lives in its own module under
``clintune.workflows``; this module gathers them under one name.
"""

from __future__ import annotations

from clintune.workflows.baseline import baseline
from clintune.workflows.evaluate import evaluate
from clintune.workflows.export import export
from clintune.workflows.predict import (
    check_prediction_paths,
    predict,
    predict_documents,
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

__all__ = [
    "PreparedData", "TrainResult", "baseline", "check_prediction_paths", "clear_tokenization_cache", "evaluate", "export",
    "is_main_process", "predict", "predict_documents", "prepare_data", "read_texts_for_prediction", "resolve_paths",
    "result_record", "tokenization_cache_dir", "train", "training_inputs", "validate", "write_brat_predictions",
]
