"""Report figures say what a person needs, readably: counts in every cell, examples per calibration bin."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgb

from clintune.evaluation import plots
from clintune.evaluation.metrics import calibration_bins


def contrast_ratio(first: tuple[float, ...], second: tuple[float, ...]) -> float:
    """WCAG 2 contrast ratio of two sRGB colours (1: invisible, 21: black on white; 4.5: the AA minimum for text)."""

    def luminance(rgb: tuple[float, ...]) -> float:
        r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb[:3])
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(first), luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def cell_texts(figure) -> dict[tuple[int, int], object]:
    """(row, column) -> the text drawn in that cell of the confusion matrix."""
    return {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in figure.axes[0].texts}


def assert_readable(figure, matrix: list[list[int]]) -> None:
    image = figure.axes[0].images[0]
    texts = cell_texts(figure)
    for (row, column), count in np.ndenumerate(np.asarray(matrix)):
        text = texts[row, column]
        assert text.get_text().split("\n")[0] == str(count)
        background = image.cmap(image.norm(count))
        assert contrast_ratio(to_rgb(text.get_color()), background) >= 4.5, (row, column, count, text.get_color())


def test_binary_matrix_names_cells_and_every_count_is_readable() -> None:
    # The tiny diagnosis model on its test set: 13 true negatives, 11 false alarms, 7 missed, 9 found.
    # With the colour scale starting at the smallest count, the 7 was drawn white on white.
    gold = np.array([0] * 24 + [1] * 16)
    predicted = np.array([0] * 13 + [1] * 11 + [0] * 7 + [1] * 9)
    figure = plots.confusion_matrix_figure(gold, predicted, ("invalid", "valid"), "diagnosis", positive=1)
    assert figure.axes[0].images[0].norm.vmin == 0
    assert_readable(figure, [[13, 11], [7, 9]])
    names = {cell: text.get_text().split("\n")[1] for cell, text in cell_texts(figure).items()}
    assert names == {(0, 0): "true negatives", (0, 1): "false alarms", (1, 0): "missed positives", (1, 1): "true positives"}
    assert "valid" in figure.axes[0].get_xlabel()


def test_binary_cell_names_follow_the_positive_class() -> None:
    gold = np.array([0, 0, 1, 1, 1])
    predicted = np.array([0, 1, 0, 0, 1])
    figure = plots.confusion_matrix_figure(gold, predicted, ("present", "absent"), "t", positive=0)
    names = {cell: text.get_text().split("\n") for cell, text in cell_texts(figure).items()}
    assert names[0, 1] == ["1", "missed positives"]
    assert names[1, 0] == ["2", "false alarms"]


MATRICES = [[[10, 8, 0], [7, 12, 0], [0, 0, 9]], [[500, 1, 0], [0, 250, 2], [3, 0, 1]], [[5, 5], [5, 5]], [[13, 11], [7, 9]]]


@pytest.mark.parametrize("matrix", MATRICES)
def test_multiclass_matrix_shows_every_count_including_zeros(matrix: list[list[int]]) -> None:
    gold, predicted = [], []
    for row, counts in enumerate(matrix):
        for column, count in enumerate(counts):
            gold += [row] * count
            predicted += [column] * count
    classes = tuple(f"class {i}" for i in range(len(matrix)))
    figure = plots.confusion_matrix_figure(np.array(gold, dtype=int), np.array(predicted, dtype=int), classes, "t")
    assert figure.axes[0].images[0].norm.vmin == 0
    assert len(figure.axes[0].texts) == len(matrix) ** 2
    assert_readable(figure, matrix)


def test_reliability_diagram_shows_how_many_examples_each_bin_holds() -> None:
    # Confidences by hand: 3 examples at 0.55, 5 at 0.75, 2 at 0.95 -> bins 0.5-0.6, 0.7-0.8, 0.9-1.0.
    positive = np.array([0.55] * 3 + [0.75] * 5 + [0.95] * 2)
    gold = np.array([1, 0, 0] + [1] * 5 + [1, 1])
    figure = plots.reliability_figure(calibration_bins(np.stack([1 - positive, positive], axis=1), gold))
    (counts_axes,) = [axes for axes in figure.axes if axes.get_ylabel() == "examples"]
    bars = sorted((round(p.get_x() + p.get_width() / 2, 2), p.get_height()) for p in counts_axes.patches)
    assert bars == [(0.55, 3), (0.75, 5), (0.95, 2)]
    assert sorted(t.get_text() for t in counts_axes.texts) == ["2", "3", "5"]
    assert counts_axes.get_xlabel().startswith("confidence")


def test_the_reliability_plot_says_in_words_which_way_the_model_errs() -> None:
    from clintune.evaluation.metrics import calibration_bins
    from clintune.evaluation.plots import reliability_figure

    # always right, never more than 60% sure: under-confident by 40 points (1.0 - 0.6)
    shy = calibration_bins(np.array([[0.6, 0.4], [0.4, 0.6], [0.6, 0.4], [0.4, 0.6]]), np.array([0, 1, 0, 1]))
    assert shy["accuracy_minus_confidence"] == pytest.approx(0.4) and shy["verdict"].startswith("under-confident: right 40%")
    # 90% sure and right half the time: over-confident by 40 points
    bold = calibration_bins(np.array([[0.9, 0.1], [0.1, 0.9]]), np.array([0, 0]))
    assert bold["verdict"].startswith("over-confident: right 40% less often")
    title = reliability_figure(shy).axes[0].get_title()
    assert "the model is under-confident" in title


def test_report_figures_name_the_rule_that_made_their_labels() -> None:
    from clintune.evaluation.plots import precision_recall_figure, roc_figure

    is_positive, scores = np.array([0, 1, 1, 0, 1]), np.array([0.2, 0.7, 0.4, 0.5, 0.9])
    rule = "predict 'valid' when its probability >= 0.35"
    for figure in (roc_figure(is_positive, scores, 0.35, "valid", rule), precision_recall_figure(is_positive, scores, 0.35, "valid", rule)):
        assert " ".join(figure.axes[0].get_title().split()).endswith(f"marked: {rule}")  # wrapped to fit, words whole


def test_a_long_rule_in_a_title_stays_inside_the_figure() -> None:
    """A rule's description is longer than a plot is wide: drawn, every title lies inside its figure."""
    from clintune.evaluation.plots import confusion_matrix_figure, reliability_figure, roc_figure

    rule = "predict the more probable of 'D/LT', 'Serious' when their summed probability >= 0.6635; temperature 1.37"
    calibration = calibration_bins(np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7]]), np.array([0, 0, 2]))
    figures = [confusion_matrix_figure(np.array([0, 1, 2]), np.array([0, 1, 1]), ("D/LT", "Serious", "Non-serious"),
                                       f"seriousness on test.csv\nrule: {rule}"),
               roc_figure(np.array([0, 1, 1, 0]), np.array([0.2, 0.7, 0.4, 0.5]), 0.35, "valid", rule),
               reliability_figure(calibration)]
    for figure in figures:
        figure.canvas.draw()
        renderer, box = figure.canvas.get_renderer(), figure.bbox
        title = figure.axes[0].title.get_window_extent(renderer)
        assert box.x0 <= title.x0 and title.x1 <= box.x1, (title, box)
