"""Prediction on Ray Data, for corpora that outgrow one machine.

``predict_dataset(ds, model_dir, id_column="note_id")`` adds clintune's
predictions to any Ray ``Dataset`` you have read yourself (Parquet on S3,
a table, ...): ``Dataset.map_batches`` with a pool of ``ModelActor``s, each
loading the model folder once and predicting batch after batch. The result
has the id column and the same result columns as ``clintune predict
--output OUT.parquet`` (``label``, ``score``, ``probabilities`` or
``entities``). ``predict_parquet_on_ray`` is ``clintune predict --engine
ray``: a Parquet file or dataset folder in, a Parquet dataset folder out,
published whole at the end.

Ray connects to the cluster named by ``RAY_ADDRESS`` (or one started on this
machine with ``ray start --head``) and otherwise starts a local one. The
model folder must be readable at the same path on every node (a shared file
system, or copied there). Ray is the ``ray`` extra: ``pip install 'clintune[ray]'``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from clintune.errors import ClintuneError, DataError

logger = logging.getLogger(__name__)


def require_ray() -> Any:
    """``ray`` (with Ray Data), or say how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ClintuneError("--engine ray needs Ray Data: pip install 'clintune[ray]'") from None
    return ray


class ActorError(ClintuneError):
    """A ``ClintuneError`` raised in a Ray actor, carried back to the driver whole.

    Ray Data appends its retry advice to an exception's message on the way and drops its
    ``__cause__`` when it crosses processes, so the error's kind and own message travel in
    attributes of their own (``__reduce__``), and ``rebuilt()`` gives the original back.
    """

    def __init__(self, error: ClintuneError | str, kind: type[ClintuneError] | None = None) -> None:
        self.own_message = str(error)
        self.kind = kind or (type(error) if isinstance(error, ClintuneError) else ClintuneError)
        super().__init__(self.own_message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.own_message, self.kind))

    def rebuilt(self) -> ClintuneError:
        return self.kind(self.own_message)


class ModelActor:
    """A callable for ``Dataset.map_batches``: one model load per actor, then a pyarrow batch in, results out.

    Rows whose text is empty, missing or not text raise a ``DataError`` naming their ids
    (``on_empty="error"``) or are left out (``"drop"``), never answered with another row's result.
    """

    def __init__(self, model_dir: str, text_column: str, id_column: str, probabilities: bool = False,
                 batch_size: int | None = None, threads: int | None = 1, on_empty: str = "error",
                 trust_remote_code: bool = False) -> None:
        from clintune.inference.predictor import Predictor
        from clintune.inference.sources import empty_text_steps

        self.predictor = Predictor.from_folder(model_dir, batch_size=batch_size, threads=threads, trust_remote_code=trust_remote_code)
        self.text_column, self.id_column = text_column, id_column
        self.probabilities, self.on_empty = probabilities, on_empty
        encoder = self.predictor.encoder
        self.steps = empty_text_steps(encoder.task_type, self.predictor.config)

    def __call__(self, batch: Any) -> Any:
        try:
            return self._predict(batch)
        except ClintuneError as exc:
            raise ActorError(exc) from exc

    def _predict(self, batch: Any) -> Any:
        from clintune.inference.sinks import record_schema, records_table, result_record
        from clintune.inference.sources import text_problem
        from clintune.runtime.allocator import purge_jemalloc, release_freed_memory

        texts = batch.column(self.text_column).to_pylist()
        ids = batch.column(self.id_column).to_pylist()
        good = [i for i, text in enumerate(texts) if text_problem(text, self.steps) is None]
        if len(good) < len(texts):
            bad = [ids[i] for i in range(len(texts)) if i not in set(good)]
            shown = ", ".join(repr(i) for i in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            if self.on_empty == "error":
                raise DataError(f"{len(bad)} empty or non-text value(s) in column {self.text_column!r} "
                                f"({self.id_column} {shown})\n  fix: fill or remove those rows, or pass --on-empty drop")
            logger.warning("skipped (--on-empty drop): %d row(s) with empty or non-text %r (%s %s)",
                           len(bad), self.text_column, self.id_column, shown)
        encoder = self.predictor.encoder
        if encoder.task_type == "ner":
            results = self.predictor.extract_entities([texts[i] for i in good]) if good else []
        else:
            results = self.predictor.classify([texts[i] for i in good]) if good else []
        records = [{self.id_column: ids[i], **result_record(r, self.probabilities)} for i, r in zip(good, results)]
        schema = record_schema([(self.id_column, batch.schema.field(self.id_column).type)], encoder.task_type,
                               list(encoder.classes), self.probabilities)
        table = records_table(records, schema)
        # What this batch freed goes back: kept, it grew the actor batch after batch. Under jemalloc a
        # purge; on a node without it (glibc), a trim of the heap, as measured on Ray (docs/benchmarks.md),
        # once per Ray batch on top of prediction's own hand-backs as the process grows.
        if not purge_jemalloc():
            release_freed_memory()
        return table


def predict_dataset(dataset: Any, model_dir: str | Path, *, id_column: str, text_column: str | None = None,
                    probabilities: bool = False, batch_size: int | None = None, threads: int = 1, workers: int | None = None,
                    chunk_size: int = 256, on_empty: str | None = None, actor_env: dict[str, str] | None = None,
                    trust_remote_code: bool = False) -> Any:
    """``dataset`` (a Ray Dataset holding ``text_column`` and ``id_column``) mapped to prediction rows, lazily.

    ``workers`` actors (default: the cluster's CPUs divided by ``threads``) each load the
    model once and take ``chunk_size`` rows at a time; ``text_column`` and ``on_empty``
    default to the model's ``data.text_column`` and ``data.on_empty``. ``actor_env``:
    environment variables the actors start with, such as ``clintune.runtime.allocator.jemalloc_environment()``
    (``--engine ray`` passes that one). ``trust_remote_code``: let a folder that ships Python code of
    its own run it in the actors; without it such a folder is refused here, before any actor starts
    (``clintune.modeling.folder.check_remote_code``).
    """
    ray = require_ray()
    from clintune.modeling.folder import check_remote_code, read_model_folder

    folder = Path(model_dir).absolute()
    found = read_model_folder(folder)
    check_remote_code(found, trust_remote_code)
    config = found.config
    if workers is None:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1) // max(threads, 1)))
    options = {"runtime_env": {"env_vars": dict(actor_env)}} if actor_env else {}
    return dataset.map_batches(
        ModelActor,
        fn_constructor_kwargs={"model_dir": str(folder), "text_column": text_column or config.data.text_column,
                               "id_column": id_column, "probabilities": probabilities, "batch_size": batch_size,
                               "threads": threads, "on_empty": on_empty or config.data.on_empty,
                               "trust_remote_code": trust_remote_code},
        # An autoscaling pool (1 to ``workers`` actors): a fixed pool holding every CPU from the start
        # would leave none for the read tasks that feed it, and wait for ever.
        batch_size=chunk_size, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers),
        num_cpus=threads, **options,
    )


RAY_BLOCK_BYTES = 1 << 20


def predict_parquet_on_ray(model_dir: str | Path, input_path: str | Path, output_path: str | Path, *, id_column: str | None,
                           text_column: str | None = None, probabilities: bool = False, batch_size: int | None = None,
                           threads: int | None = None, workers: int | None = None, chunk_size: int = 256,
                           on_empty: str | None = None, trust_remote_code: bool = False) -> int:
    """``clintune predict --engine ray``: a Parquet file or dataset folder in, a Parquet dataset folder out.

    The output folder is assembled beside its destination and swapped in when complete
    (``clintune.runtime.files.publish``); an existing output is replaced only when it is a folder
    of Parquet files. ``trust_remote_code``: as for ``predict_dataset``. Returns the number of rows written.
    """
    from clintune.modeling.folder import check_remote_code, read_model_folder
    from clintune.runtime.allocator import jemalloc_environment
    from clintune.runtime.files import make_private_dirs, publish, remove_stale, staging_dir_for
    from clintune.runtime.guards import check_replaceable

    if id_column is None:
        raise ClintuneError("--engine ray needs --id-column: Ray reads a dataset in parallel, so only an id column "
                            "ties a result to its input row\n  fix: pass --id-column NAME (a column of unique ids)")
    source, output = Path(input_path), Path(output_path)
    if source.suffix.lower() != ".parquet" and not (source.is_dir() and any(source.rglob("*.parquet"))):
        raise DataError(f"--engine ray reads Parquet: {source} is not a .parquet file or a folder of them\n"
                        "  fix: convert it (pandas: read_csv(...).to_parquet('notes.parquet')) or use --engine local")
    found = read_model_folder(Path(model_dir))
    check_remote_code(found, trust_remote_code)  # before Ray starts
    config = found.config
    check_replaceable(output, "--output", lambda name: name.endswith(".parquet") or name.startswith("."), (),
                      "Parquet dataset folder")
    # Actors under jemalloc where this machine has it: their process tree is smaller and faster with it than
    # under glibc (docs/benchmarks.md, "Prediction at scale").
    actor_env = jemalloc_environment()
    ray = require_ray()
    if not ray.is_initialized():
        ray.init(logging_level=logging.WARNING, log_to_driver=True)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # output files in input order, run after run
    # A Parquet file was read as one block, one task for one actor, whose results came out only at its
    # end: one actor worked while the other CPU idled, and PyTorch over 100,000 texts passed Ray Data's
    # 30 min without output and failed. So blocks of at most 1 MiB (about 1,000 dialogues), reads that
    # hold no CPU while they wait for the actors to take their blocks, and no per-operator CPU
    # reservation, which on two CPUs kept the actor pool at one actor.
    context.target_max_block_size = RAY_BLOCK_BYTES
    context.op_resource_reservation_enabled = False
    context.raise_original_map_exception = True  # an actor's ActorError itself, not Ray's UserCodeException for it
    text = text_column or config.data.text_column
    dataset = ray.data.read_parquet(str(source.absolute()), num_cpus=0).select_columns([text, id_column])
    predicted = predict_dataset(dataset, model_dir, id_column=id_column, text_column=text, probabilities=probabilities,
                                batch_size=batch_size, threads=threads or 1, workers=workers, chunk_size=chunk_size,
                                on_empty=on_empty, actor_env=actor_env, trust_remote_code=trust_remote_code)
    staging = staging_dir_for(output)
    remove_stale(staging)
    make_private_dirs(staging)  # owner-only while Ray's workers write into it, not only once they are done
    try:
        predicted.write_parquet(str(staging.absolute()))
    except Exception as exc:
        remove_stale(staging)
        error = _actor_error(exc)
        if error is not None:
            raise error.rebuilt() from exc
        raise
    import pyarrow.dataset as pa_dataset

    rows = pa_dataset.dataset(str(staging), format="parquet").count_rows()
    _make_owner_only(staging)  # results identify notes (ids, entity text), as the local engine's output
    publish(staging, output)
    return rows


def _make_owner_only(folder: Path) -> None:
    """Ray's workers wrote into the owner-only ``folder`` with the umask: make what they wrote owner-only too."""
    import os

    from clintune.runtime.files import PRIVATE_FILE, PRIVATE_FOLDER

    for path in folder.rglob("*"):
        os.chmod(path, PRIVATE_FOLDER if path.is_dir() else PRIVATE_FILE)


def _actor_error(exc: BaseException) -> ActorError | None:
    """The ``ActorError`` an actor raised, found among Ray's wrappers (their ``cause`` and Python's chain)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if type(current) is ActorError:  # not Ray's RayTaskError(ActorError), whose message is Ray's
            return current
        pending += [getattr(current, "cause", None), current.__cause__, current.__context__]
    return None
