"""Carving a validation split out of train: stratified by label (by the rarest label of a label set),
kept apart by group (a patient's notes on one side), and the groups that two splits share.
"""

from __future__ import annotations

import logging
from collections import Counter

from clintune.data.examples import Examples, TaggedSentences, TextExamples
from clintune.errors import DataError, listed

logger = logging.getLogger(__name__)


def examples_with(data: Examples, labels: set[str]) -> list[int]:
    """Indices of the examples (sentences, for NER) that hold any of ``labels``."""
    if isinstance(data, TaggedSentences):
        return [i for i, sentence in enumerate(data.tags or []) if labels & set(sentence)]
    return [i for i, label in enumerate(data.labels or []) if label in labels]


def stratified_split(data: Examples, fraction: float, seed: int) -> tuple[Examples, Examples]:
    """Split off a validation part, stratified by label where every class allows it.

    Examples with group ids (``data.group_column``; for documents, the
    document) are split by group, so that every group lies on one side; the
    split is then stratified by label where the groups allow (scikit-learn's
    ``StratifiedGroupKFold``), else random over groups.
    """
    from sklearn.model_selection import train_test_split

    indices = list(range(len(data)))
    if len(indices) < 4:
        raise DataError(f"{data.source}: only {len(indices)} examples; too few to split off validation data")
    if data.groups is not None:
        return _grouped_split(data, fraction, seed)
    stratify = None
    if isinstance(data, TextExamples) and data.labels is not None:
        strata = stratification_labels(rarest_labels(data.labels) if data.labels and isinstance(data.labels[0], list) else data.labels)
        n_val = max(1, round(fraction * len(indices)))
        if len(set(strata)) > 1 and n_val >= len(set(strata)):
            stratify = strata
        else:
            logger.warning("validation split is not stratified: too few examples per class for %d validation rows", n_val)
    train_idx, val_idx = train_test_split(indices, test_size=fraction, random_state=seed, stratify=stratify)
    return _keep_labels_in_train(data, sorted(train_idx), sorted(val_idx))


def _keep_labels_in_train(data: Examples, train_idx: list[int], val_idx: list[int]) -> tuple[Examples, Examples]:
    """Multi-label: a validation note holding a label that no training note holds goes back to training (a label
    seen once would otherwise be lost to training about one time in ten), with its group where there are groups."""
    labels = data.labels if isinstance(data, TextExamples) else None
    if not labels or not isinstance(labels[0], list):
        return data.subset(train_idx), data.subset(val_idx)
    trained = {label for i in train_idx for label in labels[i]}
    back = {i for i in val_idx if set(labels[i]) - trained}
    if data.groups is not None:
        back_groups = {data.groups[i] for i in back}
        back = {i for i in val_idx if data.groups[i] in back_groups}
    if back:
        logger.info("validation split: %d note(s) moved back to training, each holding a label no training note holds", len(back))
    return data.subset(sorted(set(train_idx) | back)), data.subset([i for i in val_idx if i not in back])


RARE_STRATUM = "\x00rare"


NO_LABEL_STRATUM = "\x00none"


def rarest_labels(label_sets: list[list[str]]) -> list[str]:
    """A multi-label note's stratum: its rarest label (rare labels are the ones a random split can leave out of
    a small validation part); notes without labels form a stratum of their own."""
    counts = Counter(label for labels in label_sets for label in labels)
    return [min(labels, key=lambda label: (counts[label], label)) if labels else NO_LABEL_STRATUM for labels in label_sets]


def stratification_labels(labels: list[str]) -> list[str]:
    """The labels to stratify a split by: classes with a single example share one stratum of rare
    classes (joined to the largest class if that stratum is a single example too), so that one
    singleton class does not cost every other class its stratification."""
    counts = Counter(labels)
    single = {label for label, n in counts.items() if n < 2}
    if not single:
        return list(labels)
    rare = RARE_STRATUM if len(single) >= 2 else counts.most_common(1)[0][0]
    return [rare if label in single else label for label in labels]


def _grouped_split(data: Examples, fraction: float, seed: int) -> tuple[Examples, Examples]:
    import numpy as np
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    groups = np.asarray(data.groups)
    n_groups = len(set(data.groups or []))
    if n_groups < 2:
        raise DataError(f"{data.source}: all examples share one group (data.group_column); "
                        "a validation split needs at least two groups\n  fix: give a validation file, or another group column")
    indices = np.arange(len(data))
    val_idx = None
    if isinstance(data, TextExamples) and data.labels is not None:
        folds = max(2, min(n_groups, round(1 / fraction)))
        strata = rarest_labels(data.labels) if data.labels and isinstance(data.labels[0], list) else data.labels
        counts = Counter(strata)
        if min(counts.values()) >= folds:
            splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
            _, val_idx = next(splitter.split(indices, strata, groups))
        else:
            logger.warning("validation split is not stratified: some classes have fewer examples than folds")
    if val_idx is None:
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        _, val_idx = next(splitter.split(indices, groups=groups))
    chosen = set(val_idx.tolist())
    train_idx = [i for i in range(len(data)) if i not in chosen]
    return _keep_labels_in_train(data, train_idx, sorted(chosen))


def shared_groups(splits: dict[str, Examples]) -> list[str]:
    """Problems with group ids found in more than one split, each with counts and where the first groups
    lie in both (``row 5 = row 2``): not the ids, which are cells of the data (a patient's MRN)."""
    problems = []
    names = list(splits)
    for a_index, a in enumerate(names):
        for b in names[a_index + 1:]:
            groups_a, groups_b = splits[a].groups, splits[b].groups
            if groups_a is None or groups_b is None:
                continue
            in_b = set(groups_b)
            shared = list(dict.fromkeys(g for g in groups_a if g in in_b))  # in the order of the first split
            if shared:
                first_a, first_b = _first_places(splits[a]), _first_places(splits[b])
                shown = listed([f"{first_a[g]} = {first_b[g]}" for g in shared])
                rows_a = sum(1 for g in groups_a if g in set(shared))
                rows_b = sum(1 for g in groups_b if g in set(shared))
                problems.append(f"{len(shared)} group(s) in both {a} ({rows_a} example(s), {splits[a].source}) "
                                f"and {b} ({rows_b} example(s), {splits[b].source}): {shown}")
    return problems


def _first_places(data: Examples) -> dict[str, str]:
    """Each group id's first example, named as messages name it (``row 5``)."""
    places: dict[str, str] = {}
    for group, row in zip(data.groups or [], data.rows):
        places.setdefault(group, f"{data.row_kind} {row}")
    return places
