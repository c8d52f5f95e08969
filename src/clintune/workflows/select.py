"""``clintune select``: the unlabelled notes whose labels would teach the model most, for experts to label next.

The pool (any file ``predict --input`` reads) is read a chunk at a time; the model labels each chunk
and the most uncertain notes are kept (``clintune.inference.selection``). Notes already labelled,
the model's own training and validation data and any ``exclude`` file, are never picked, nor are
their exact or near copies (the leakage check's test). The picks file holds rows, ids and scores,
never text (owner-only all the same: an id can be a record number); the optional Label Studio task
file holds the picked notes with the model's pre-annotations, owner-only, ready to import.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clintune.data.leakage import near_copies, normalise
from clintune.data.readers import read_split
from clintune.errors import ClintuneError, DataError
from clintune.inference.sources import chunks, empty_text_steps, open_source, text_problem
from clintune.runtime import guards
from clintune.runtime.files import PRIVATE_FILE, write_text_atomic
from clintune.runtime.progress import progress_bar
from clintune.workflows.predict import DEFAULT_CHUNK_SIZE, check_scan, empty_rule, scan_input
from clintune.workflows.prepare import comparable_texts

logger = logging.getLogger(__name__)

PICK_FORMATS = (".csv", ".jsonl")
CANDIDATES_PER_PICK = 10  # the most uncertain notes held for spreading and for the duplicate check
MIN_CANDIDATES = 1000


@dataclass
class Selection:
    """What ``select`` did: picks written, notes read, skipped, and kept out as already labelled."""

    output: Path
    picks: list[dict[str, Any]]
    pool: int
    skipped: int
    excluded: int
    excluded_files: list[str]
    label_studio_tasks: Path | None
    seconds: float


def select(
    model_dir: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    *,
    k: int,
    text_column: str | None = None,
    id_column: str | None = None,
    strategy: str = "margin",
    spread: bool = True,
    max_similarity: float = 0.5,
    exclude: list[str | Path] | None = None,
    exclude_training_data: bool = True,
    label_studio_tasks: str | Path | None = None,
    label_config: str | Path | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_empty: str | None = None,
    batch_size: int | None = None,
    threads: int | None = None,
    show_progress: bool = False,
    trust_remote_code: bool = False,
) -> Selection:
    """Rank the notes of ``input_path`` by how much labelling them is likely to teach the model, and write the top ``k``.

    ``strategy`` (classification): ``margin`` or ``entropy`` (see ``clintune.inference.selection``).
    ``spread``: skip a note more alike than ``max_similarity`` to an earlier pick. ``exclude``: files of notes
    already labelled (any format ``predict --input`` reads, or the model's data format), added to the model's
    own training and validation files unless ``exclude_training_data`` is False. ``label_studio_tasks``: also
    write the picks as Label Studio tasks with pre-annotations (``label_config``: the project's labelling
    config, whose names the tasks then use; default: Label Studio's templates' ``label`` and ``text``).
    """
    from clintune.inference.label_studio import (
        LabelConfigProblem,
        LabelingTarget,
        check_labeling_target,
        parse_labeling_config,
        project_labels,
    )
    from clintune.inference.selection import STRATEGIES, MostUncertain
    from clintune.modeling.folder import check_remote_code, read_model_folder

    output = Path(output_path)
    tasks_path = Path(label_studio_tasks) if label_studio_tasks is not None else None
    excluded_paths = [Path(path) for path in exclude or []]
    guards.check_outputs("select", [guards.Input("--model", Path(model_dir), whole=True), guards.Input("--input", Path(input_path)),
                                    *(guards.Input("--exclude", path) for path in excluded_paths)],
                         [guards.Output("--output", output), guards.Output("--label-studio-tasks", tasks_path) if tasks_path else None])
    _check_options(k, strategy, STRATEGIES, max_similarity, chunk_size, output, tasks_path)
    folder = read_model_folder(Path(model_dir))
    check_remote_code(folder, trust_remote_code)
    task_type, config = folder.encoder.task_type, folder.config
    target = None
    if tasks_path is not None:
        labels = project_labels(task_type, list(folder.encoder.classes))
        target = LabelingTarget.default(task_type, labels)
        if label_config is not None:
            try:
                target = parse_labeling_config(Path(label_config).read_text(encoding="utf-8"), task_type)
            except (OSError, LabelConfigProblem) as exc:
                raise ClintuneError(f"--label-config {label_config}: {exc}") from None
            problems = check_labeling_target(target, task_type, labels)
            if problems:
                raise ClintuneError(f"--label-config {label_config}: the labelling config " + "; ".join(problems))

    if id_column in ("rank", "uncertainty", "similarity", "row", "line"):
        raise ClintuneError(f"--id-column {id_column}: clashes with the picks' field of that name\n"
                            "  fix: rename that column in the input")
    source = open_source(Path(input_path), text_column or config.data.text_column, id_column)
    steps = empty_text_steps(task_type, config)
    scan = scan_input(source, chunk_size, steps)
    check_scan(scan, source, empty_rule(on_empty, config))
    reference, reference_files = _labelled_notes(folder, excluded_paths, exclude_training_data)
    known = {normalise(text) for text in reference}

    from clintune.inference.predictor import Predictor

    predictor = Predictor.from_model_folder(folder, batch_size=batch_size, threads=threads, trust_remote_code=trust_remote_code)
    held = MostUncertain(max(CANDIDATES_PER_PICK * k, MIN_CANDIDATES) if spread or reference else k)
    started = time.perf_counter()
    exact_copies = 0
    progress = progress_bar(scan.predictable, show=show_progress)
    try:
        for chunk in chunks(source, chunk_size):
            good = [i for i, text in enumerate(chunk.texts) if text_problem(text, steps) is None]
            fresh = [i for i in good if normalise(chunk.texts[i]) not in known]
            exact_copies += len(good) - len(fresh)
            for candidate in _scored(predictor, chunk, fresh, strategy):
                held.offer(candidate)
            progress.update(len(good))
    finally:
        progress.close()
    ranked = held.ranked()
    near = near_copies(reference, [c.text for c in ranked], config.data.near_duplicate_threshold) if reference else {}
    ranked = [candidate for index, candidate in enumerate(ranked) if index not in near]
    picks = _pick(ranked, k, spread, max_similarity)
    records = [{"rank": rank, source.row_kind: candidate.row, **({id_column: candidate.id} if id_column else {}),
                "uncertainty": round(candidate.uncertainty, 6), **({"similarity": round(similar, 4)} if spread else {})}
               for rank, (candidate, similar) in enumerate(picks, start=1)]
    _write_picks(output, records)
    if tasks_path is not None and target is not None:
        version = folder.version()
        _write_tasks(tasks_path, picks, target, version, source.row_kind, id_column)
    seconds = time.perf_counter() - started
    logger.info("%d of %d note(s) picked in %.1f s; %d kept out as already labelled (%d exact, %d near copies)",
                len(records), scan.predictable, seconds, exact_copies + len(near), exact_copies, len(near))
    return Selection(output, records, scan.predictable, scan.skipped, exact_copies + len(near), reference_files, tasks_path, seconds)


def _check_options(k: int, strategy: str, strategies: tuple[str, ...], max_similarity: float, chunk_size: int, output: Path,
                   tasks_path: Path | None) -> None:
    problems = []
    if k < 1:
        problems.append(f"--k {k}: must be at least 1")
    if strategy not in strategies:
        problems.append(f"--strategy {strategy}: must be one of {', '.join(strategies)}")
    if not 0 < max_similarity <= 1:
        problems.append(f"--max-similarity {max_similarity}: must be in (0, 1]")
    if chunk_size < 1:
        problems.append("--chunk-size must be at least 1")
    if output.suffix.lower() not in PICK_FORMATS:
        problems.append(f"--output {output}: name it .csv or .jsonl (the picks: rows, ids and scores)")
    if output.is_dir():
        problems.append(f"--output {output} is a folder; give a file name")
    if tasks_path is not None and tasks_path.suffix.lower() != ".json":
        problems.append(f"--label-studio-tasks {tasks_path}: name it .json (Label Studio imports a JSON list of tasks)")
    if problems:
        raise ClintuneError("select: " + "; ".join(problems))


def _labelled_notes(folder: Any, exclude: list[Path], with_training_data: bool) -> tuple[list[str], list[str]]:
    """The texts of every note already labelled: the model's training and validation files (as its config reads
    them) and each ``exclude`` file (read the same way, or as ``predict --input`` reads it)."""
    config = folder.config
    texts: list[str] = []
    files: list[str] = []
    if with_training_data:
        for path in (config.data.train, config.data.validation):
            if not path:
                continue
            if not Path(path).exists():
                raise DataError(f"the model's training data {path} (from {folder.path / 'clintune.yaml'}) is not here, so notes "
                                "already labelled cannot be kept out of the picks\n  fix: give the labelled notes with --exclude "
                                "FILE, or pass --no-exclude-training-data if none of the pool has been labelled")
            texts += comparable_texts(read_split(config, path, require_labels=False))[0]
            files.append(str(path))
    for path in exclude:
        try:
            texts += comparable_texts(read_split(config, str(path), require_labels=False))[0]
        except ClintuneError:  # not in the model's data format: a file of texts, as predict --input reads it
            source = open_source(path, config.data.text_column)
            texts += [text for chunk in chunks(source, DEFAULT_CHUNK_SIZE) for text in chunk.texts if isinstance(text, str)]
        files.append(str(path))
    return texts, files


def _scored(predictor: Any, chunk: Any, indices: list[int], strategy: str) -> list[Any]:
    """A ``Candidate`` for each of ``chunk``'s notes at ``indices``: its uncertainty and the model's answer."""
    import numpy as np

    from clintune.inference.selection import Candidate, classification_uncertainty, ner_uncertainty

    if not indices:
        return []
    texts = [chunk.texts[i] for i in indices]
    if predictor.encoder.task_type == "ner":
        answers = predictor.entities_and_word_scores(texts)
        results: list[Any] = [entities for entities, _ in answers]
        uncertainty = [ner_uncertainty(scores) for _, scores in answers]
    else:
        results = predictor.classify(texts)
        matrix = np.array([[p.probabilities[label] for label in predictor.encoder.classes] for p in results])
        uncertainty = classification_uncertainty(matrix, predictor.encoder, predictor.decision, strategy).tolist()
    order = chunk.index * 10**9
    return [Candidate(float(u), order + i, chunk.rows[i], chunk.ids[i] if chunk.ids is not None else None, chunk.texts[i], result)
            for i, u, result in zip(indices, uncertainty, results)]


def _pick(ranked: list[Any], k: int, spread: bool, max_similarity: float) -> list[tuple[Any, float]]:
    from clintune.inference.selection import spread_picks

    if spread:
        return spread_picks(ranked, k, max_similarity)
    return [(candidate, 0.0) for candidate in ranked[:k]]


def _write_picks(output: Path, records: list[dict[str, Any]]) -> None:
    """Owner-only, as ``predict --output`` is: no text, but ids and row numbers point at patients' notes."""
    if output.suffix.lower() == ".jsonl":
        write_text_atomic(output, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), mode=PRIVATE_FILE)
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]) if records else ["rank"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    write_text_atomic(output, buffer.getvalue(), mode=PRIVATE_FILE)


def _write_tasks(path: Path, picks: list[tuple[Any, float]], target: Any, version: str, row_kind: str, id_column: str | None) -> None:
    """The picks as Label Studio tasks: the note under the field the config reads, where it came from under
    ``clintune_*`` fields, and the model's answer as a prediction. Owner-only: it holds note text."""
    from clintune.inference.label_studio import prediction_result

    tasks = []
    for rank, (candidate, _) in enumerate(picks, start=1):
        data = {target.data_key: candidate.text, f"clintune_{row_kind}": candidate.row, "clintune_rank": rank}
        if id_column:
            data["clintune_id"] = candidate.id
        tasks.append({"data": data, "predictions": [prediction_result(candidate.result, target, version, candidate.uncertainty)]})
    write_text_atomic(path, json.dumps(tasks, ensure_ascii=False, indent=1) + "\n", mode=PRIVATE_FILE)
