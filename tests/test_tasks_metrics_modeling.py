from __future__ import annotations

import numpy as np
import pytest

from clintune.data.labels import LabelEncoder
from clintune.data.tokenization import split_words
from clintune.errors import HardwareError
from clintune.evaluation.metrics import binary_metrics, multiclass_metrics, ner_metrics
from clintune.modeling.decision import DecisionRule
from clintune.modeling.loading import Hardware, resolve_precision
from clintune.modeling.tasks import SequenceClassification, TokenClassification, bio_spans, entities_from_words

CPU = Hardware(cuda=False, bf16=False, mps=False)
GPU = Hardware(cuda=True, bf16=False, mps=False, compute_capability=(6, 0), name="Tesla P100")  # no bf16 at all
T4 = Hardware(cuda=True, bf16=True, mps=False, compute_capability=(7, 5), name="Tesla T4")  # bf16 emulated
GPU_BF16 = Hardware(cuda=True, bf16=True, mps=False, compute_capability=(8, 0), name="NVIDIA A100")
H200 = Hardware(cuda=True, bf16=True, mps=False, compute_capability=(9, 0), name="NVIDIA H200")


def test_bio_spans() -> None:
    tags = ["O", "B-Disease", "I-Disease", "O", "I-Disease", "B-Gene", "B-Gene", "I-Disease"]
    assert bio_spans(tags) == [("Disease", 1, 3), ("Disease", 4, 5), ("Gene", 5, 6), ("Gene", 6, 7), ("Disease", 7, 8)]
    assert bio_spans(["O", "O"]) == []
    assert bio_spans(["B-X", "I-X"]) == [("X", 0, 2)]


def test_bio_spans_match_a_hand_written_bio_reader_on_random_sequences() -> None:
    """Every sequence of valid and invalid BIO tags decodes as a plain left-to-right reader does it."""
    import random

    def reference(tags: list[str]) -> list[tuple[str, int, int]]:
        spans: list[tuple[str, int, int]] = []
        for index, tag in enumerate(tags):
            prefix, _, kind = tag.partition("-")
            if prefix == "I" and spans and spans[-1][0] == kind and spans[-1][2] == index:
                spans[-1] = (kind, spans[-1][1], index + 1)
            elif prefix in ("B", "I"):
                spans.append((kind, index, index + 1))
        return spans

    rng = random.Random(0)
    choices = ["O", "B-X", "I-X", "B-Y", "I-Y", "B-Adverse-event", "I-Adverse-event"]
    for _ in range(2000):
        tags = [rng.choice(choices) for _ in range(rng.randint(0, 10))]
        assert bio_spans(tags) == reference(tags), tags


def test_entities_carry_character_offsets() -> None:
    text = "Carriers of  cystic fibrosis, and breast cancer."
    words = split_words(text)
    tags = ["O"] * len(words)
    tags[2], tags[3], tags[6], tags[7] = "B-Disease", "I-Disease", "B-Disease", "I-Disease"
    scores = [0.5] * len(words)
    scores[2], scores[3] = 0.8, 0.6
    entities = entities_from_words(text, words, tags, scores)
    assert [(e.text, e.start, e.end) for e in entities] == [("cystic fibrosis", 13, 28), ("breast cancer", 34, 47)]
    assert all(text[e.start : e.end] == e.text for e in entities)
    assert entities[0].score == pytest.approx(0.7)


def test_results_are_json_serialisable() -> None:
    import json

    from clintune.modeling.tasks import Entity, Prediction

    entity = Entity(text="cystic fibrosis", label="Disease", start=np.int64(13), end=np.int64(28), score=np.float32(0.75))
    assert json.loads(json.dumps(entity.to_dict())) == {"text": "cystic fibrosis", "label": "Disease", "start": 13, "end": 28,
                                                        "score": 0.75}
    prediction = Prediction(label="valid", score=np.float64(0.5), probabilities={"invalid": np.float32(0.5), "valid": 0.5})
    assert json.loads(json.dumps(prediction.to_dict())) == {"label": "valid", "score": 0.5,
                                                            "probabilities": {"invalid": 0.5, "valid": 0.5}}


def test_word_tags_read_first_subword() -> None:
    encoder = LabelEncoder(("O", "B-D", "I-D"), "ner")
    logits = np.full((6, 3), -5.0)
    logits[1, 1] = logits[2, 0] = logits[3, 2] = logits[4, 0] = 5.0  # word0: B-D (then a ##piece says O), word1: I-D
    starts = [False, True, False, True, True, False]
    tags, scores = TokenClassification().word_tags([logits], [[None, 0, 0, 1, 2, None]], [starts], 4, encoder)
    assert tags == ["B-D", "I-D", "O", "O"]  # word 3 produced no subword: O
    assert scores[0] > 0.99


def test_word_tags_average_overlapping_windows() -> None:
    encoder = LabelEncoder(("O", "B-D", "I-D"), "ner")
    first = np.log(np.array([[1 / 3] * 3, [0.9, 0.05, 0.05], [0.2, 0.7, 0.1]]))
    second = np.log(np.array([[1 / 3] * 3, [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]))
    tags, scores = TokenClassification().word_tags(
        [first, second], [[None, 0, 1], [None, 1, 2]], [[False, True, True], [False, True, True]], 3, encoder
    )
    assert tags == ["O", "B-D", "I-D"]
    assert scores[1] == pytest.approx((0.7 + 0.3) / 2)


def test_binary_metrics_hand_computed() -> None:
    y = np.array([1, 1, 1, 0, 0])
    scores = np.array([0.9, 0.6, 0.2, 0.7, 0.1])
    metrics = binary_metrics(y, scores, positive_id=1, classes=("invalid", "valid"))
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["roc_auc"] == pytest.approx(4 / 6)  # 4 of 6 positive/negative pairs ranked right
    assert metrics["per_class"]["valid"]["support"] == 3
    assert binary_metrics(y, scores, 1, ("invalid", "valid"), threshold=0.15)["recall"] == 1.0


def test_multiclass_metrics_hide_nothing() -> None:
    classes = ("a", "b", "c", "unused")
    y_true = np.array([0, 0, 0, 0, 1, 2])
    y_pred = np.array([0, 0, 0, 0, 0, 0])
    metrics = multiclass_metrics(y_true, y_pred, classes)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["f1_macro"] == pytest.approx((0.8 + 0 + 0) / 3)
    assert metrics["classes_predicted"] == 1
    assert metrics["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert metrics["per_class"]["unused"]["support"] == 0


def test_ner_metrics_entity_level() -> None:
    gold = [["B-Disease", "I-Disease", "O", "B-Disease"]]
    predicted = [["B-Disease", "O", "O", "B-Disease"]]
    metrics = ner_metrics(gold, predicted)
    assert metrics["precision"] == pytest.approx(0.5)
    assert metrics["recall"] == pytest.approx(0.5)
    assert metrics["per_class"]["Disease"]["support"] == 2


def test_classification_decode_respects_threshold() -> None:
    encoder = LabelEncoder(("invalid", "valid"), "binary", positive="valid")
    probabilities = np.array([0.7, 0.3])
    task = SequenceClassification()
    assert task.decode(probabilities, encoder, DecisionRule()).label == "invalid"
    low = task.decode(probabilities, encoder, DecisionRule(threshold=0.25))
    assert low.label == "valid" and low.score == pytest.approx(0.3)
    assert sum(low.probabilities.values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("requested", "hardware", "expected"),
    [("auto", CPU, "fp32"), ("auto", GPU, "fp16"), ("auto", T4, "fp16"), ("auto", GPU_BF16, "bf16"), ("auto", H200, "bf16"),
     ("fp32", GPU, "fp32"), ("fp32", H200, "fp32"), ("bf16", GPU_BF16, "bf16"), ("fp16", GPU, "fp16"), ("fp16", H200, "fp16"),
     ("bf16", T4, "bf16")],
)
def test_precision_choice(requested: str, hardware: Hardware, expected: str) -> None:
    """auto: bf16 from compute capability 8.0 on (in hardware), fp16 below it (T4: bf16 only emulated), fp32 without CUDA."""
    assert resolve_precision(requested, hardware) == expected


def test_a_gpu_without_a_known_compute_capability_gets_fp16() -> None:
    assert resolve_precision("auto", Hardware(cuda=True, bf16=True, mps=False)) == "fp16"
    assert not Hardware(cuda=False, bf16=False, mps=False, compute_capability=(9, 0)).native_bf16


def test_bf16_asked_for_where_it_is_emulated_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="clintune.modeling.loading"):
        resolve_precision("bf16", T4)
    assert "emulated" in caplog.text and "7.5" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="clintune.modeling.loading"):
        resolve_precision("bf16", H200)
    assert caplog.text == ""


def test_out_of_memory_names_the_smaller_batch() -> None:
    from clintune.modeling.loading import out_of_memory

    error = out_of_memory("training", 16, "--set training.batch_size={smaller}")
    assert isinstance(error, HardwareError) and error.exit_code == 2
    assert "CUDA ran out of memory training in batches of 16" in str(error) and "--set training.batch_size=8" in str(error)
    assert "--batch-size 1" in str(out_of_memory("predicting", 1, "--batch-size {smaller}"))


@pytest.mark.parametrize(("requested", "hardware"), [("fp16", CPU), ("bf16", CPU), ("bf16", GPU)])
def test_precision_the_hardware_cannot_honour(requested: str, hardware: Hardware) -> None:
    with pytest.raises(HardwareError, match="training.precision"):
        resolve_precision(requested, hardware)


def test_weighted_loss_against_torch_weighted_cross_entropy() -> None:
    """torch's weighted mean divides by the summed weights of the labelled items; ours divides by their
    count (comparable under gradient accumulation), so the two differ by exactly that ratio."""
    import torch

    from clintune.training.trainer import WeightedCrossEntropy

    torch.manual_seed(0)
    logits = torch.randn(2, 5, 3)
    labels = torch.tensor([[0, 1, -100, 2, 0], [2, -100, 1, 1, 0]])
    weights = [0.5, 2.0, 1.0]
    torch_mean = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights))(logits.reshape(-1, 3), labels.reshape(-1))
    kept = labels[labels != -100]
    weight_sum, count = sum(weights[i] for i in kept.tolist()), len(kept)  # 0.5*3 + 2*3 + 1*2 = 9.5 over 8 items
    assert (weight_sum, count) == (9.5, 8)
    loss = WeightedCrossEntropy(weights)({"logits": logits}, labels)
    assert loss.item() == pytest.approx(torch_mean.item() * weight_sum / count, rel=1e-6)
    assert WeightedCrossEntropy(weights)({"logits": logits}, labels, num_items_in_batch=16).item() == pytest.approx(
        torch_mean.item() * weight_sum / 16, rel=1e-6
    )
    plain = torch.nn.CrossEntropyLoss()(logits.reshape(-1, 3), labels.reshape(-1))
    assert WeightedCrossEntropy(None)({"logits": logits}, labels).item() == pytest.approx(plain.item(), rel=1e-6)
