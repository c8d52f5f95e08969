"""The Hugging Face ``Trainer`` set up from a config, with class-weighted loss."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clintune.config.schema import Config, default_metric
from clintune.data.features import TrainingFeatures
from clintune.data.tokenization import IGNORE_INDEX
from clintune.errors import ClintuneError
from clintune.modeling.tasks import batch_collator, padding_multiple

logger = logging.getLogger(__name__)


class WeightedCrossEntropy:
    """Cross-entropy with per-class weights, for sequence and token logits alike.

    The loss is the weighted sum over labelled items divided by the number of
    labelled items, so it stays comparable under gradient accumulation (the
    Trainer passes the count for the whole accumulated batch).
    """

    def __init__(self, weights: list[float] | None) -> None:
        self.weights = weights

    def __call__(self, outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
        import torch
        import torch.nn.functional as F

        logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
        flat_logits = logits.reshape(-1, logits.shape[-1]).float()
        flat_labels = labels.reshape(-1).to(flat_logits.device)
        weight = None if self.weights is None else torch.tensor(self.weights, device=flat_logits.device)
        total = F.cross_entropy(flat_logits, flat_labels, weight=weight, ignore_index=IGNORE_INDEX, reduction="sum")
        if num_items_in_batch is None:
            num_items_in_batch = (flat_labels != IGNORE_INDEX).sum().clamp(min=1)
        return total / num_items_in_batch


class PositiveWeightedBCE:
    """Multi-label loss: binary cross-entropy per label, positives of label j weighted by ``pos_weights[j]``
    (``torch.nn.BCEWithLogitsLoss``'s ``pos_weight``), summed over notes and labels and divided by the
    number of (note, label) pairs of the whole accumulated batch, which the Trainer passes: the Trainer does
    not rescale a ``compute_loss_func``'s loss for gradient accumulation, so a per-micro-batch mean would
    multiply the gradient by the accumulation steps. Without that count: the mean."""

    def __init__(self, pos_weights: list[float] | None) -> None:
        self.pos_weights = pos_weights

    def __call__(self, outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
        import torch
        import torch.nn.functional as F

        logits = (outputs["logits"] if isinstance(outputs, dict) else outputs.logits).float()
        targets = labels.to(logits.device, dtype=logits.dtype)
        weight = None if self.pos_weights is None else torch.tensor(self.pos_weights, device=logits.device)
        if num_items_in_batch is None:
            return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weight)
        total = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weight, reduction="sum")
        return total / num_items_in_batch


def loss_function(task_type: str, weights: list[float] | None) -> Any:
    """The Trainer's loss: class-weighted cross-entropy, or (multi-label) positive-weighted binary cross-entropy."""
    return PositiveWeightedBCE(weights) if task_type == "multilabel" else WeightedCrossEntropy(weights)


def _world_size() -> int:
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def _checkpointing_argument(arguments_class: Any, enabled: bool) -> dict[str, bool]:
    """Activation checkpointing under the name this transformers knows: ``activation_checkpointing`` in later
    5.x releases (5.25 warns on the old name), ``gradient_checkpointing`` in earlier ones (5.17 refuses the new)."""
    new_name = "activation_checkpointing" in getattr(arguments_class, "__dataclass_fields__", {})
    return {"activation_checkpointing" if new_name else "gradient_checkpointing": enabled}


def training_arguments(config: Config, checkpoint_dir: Path, precision: str, has_validation: bool, device: str = "cpu") -> Any:
    """``TrainingArguments`` for a config: evaluation and checkpoints every epoch, best model kept."""
    from transformers import TrainingArguments

    t = config.training
    metric = t.metric_for_best_model or default_metric(config.task.type)
    every = "steps" if t.save_steps else "epoch"
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        num_train_epochs=t.epochs,
        learning_rate=t.learning_rate,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio,
        lr_scheduler_type=t.lr_scheduler,
        seed=t.seed,
        data_seed=t.seed,
        fp16=precision == "fp16",
        bf16=precision == "bf16",
        eval_strategy=every if has_validation else "no",
        save_strategy=every,
        save_steps=t.save_steps or 500,
        eval_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=has_validation,
        metric_for_best_model=metric if has_validation else None,
        greater_is_better=metric != "loss",
        logging_strategy="steps",
        logging_steps=t.logging_steps,
        train_sampling_strategy="group_by_length",
        report_to="none",
        disable_tqdm=False,
        remove_unused_columns=False,
        dataloader_pin_memory=precision != "fp32",
        use_cpu=device == "cpu",
        **_checkpointing_argument(TrainingArguments, t.gradient_checkpointing),
        dataloader_num_workers=t.dataloader_num_workers,
        ddp_find_unused_parameters=t.ddp_find_unused_parameters,
        deepspeed=t.deepspeed,
        ddp_backend="gloo" if device == "cpu" and _world_size() > 1 else None,
    )


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric headline metrics only (what the Trainer can log and compare)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def same_on_every_rank(values: dict[str, float]) -> dict[str, float]:
    """Rank 0's values on every process of a distributed run, so that every rank keeps the
    same checkpoint and stops at the same epoch even where GPU kernels differ in the last bit."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    box = [values]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def selection_summary(log_history: list[dict[str, Any]], metric: str, best_step: int | None) -> dict[str, Any] | None:
    """Which evaluation chose the kept checkpoint and what the last evaluation scored, from the Trainer's log."""
    key = f"eval_{metric}"
    evaluations = [entry for entry in log_history if key in entry]
    kept = [entry for entry in evaluations if entry.get("step") == best_step]
    if not evaluations or not kept:
        return None
    last = evaluations[-1]
    return {
        "metric": metric,
        "split": "validation",
        "kept_step": kept[-1]["step"],
        "kept_epoch": kept[-1].get("epoch"),
        "kept_value": kept[-1][key],
        "last_step": last["step"],
        "last_epoch": last.get("epoch"),
        "last_value": last[key],
        "evaluations": len(evaluations),
    }


def run_trainer(
    args: Any,
    config: Config,
    task: Any,
    model: Any,
    tokenizer: Any,
    train: TrainingFeatures,
    validation: TrainingFeatures | None,
    score_validation: Callable[[Any], dict[str, float]] | None,
    class_weights: list[float] | None,
    resume: bool,
    extra_callbacks: list[Any] | None = None,
) -> Any:
    """Train with ``args``, keeping the best checkpoint by the configured metric; returns the Trainer.

    ``score_validation`` (the train workflow passes ``clintune.workflows.scoring.validation_scorer``)
    adds its metrics to every evaluation, beside the Trainer's own validation loss.
    ``extra_callbacks`` (tracking, a search's pruning) see every log and evaluation.
    """
    from transformers import EarlyStoppingCallback

    checkpoint_dir = Path(args.output_dir)
    callbacks = list(extra_callbacks or [])
    if config.training.early_stopping_patience and validation is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.training.early_stopping_patience))
    trainer = _trainer_class()(
        head_learning_rate=config.training.head_learning_rate,
        score_validation=score_validation,
        train_lengths=train.lengths(),
        model=model,
        args=args,
        data_collator=batch_collator(task, tokenizer, padding_multiple(config.training.pad_to_multiple_of, args.device.type == "cuda"),
                                     config.model.max_length),
        train_dataset=train.model_inputs(),
        eval_dataset=validation.model_inputs() if validation is not None else None,
        processing_class=tokenizer,
        compute_loss_func=loss_function(config.task.type, class_weights),
        callbacks=callbacks,
    )
    _report_progress(trainer, config.training.metric_for_best_model or default_metric(config.task.type))
    checkpoint = _last_checkpoint(checkpoint_dir) if resume else None
    if resume and checkpoint is None:
        logger.warning("--resume: no checkpoint found in %s; starting from the beginning", checkpoint_dir)
    elif checkpoint is not None:
        logger.info("resuming from %s", checkpoint)
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm(loggers=[logging.getLogger("clintune")]):  # progress lines above the bar, not through it
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    return trainer


def _report_progress(trainer: Any, metric: str) -> None:
    """clintune's own progress: the training bar and one line per evaluation, instead of the Trainer's
    raw log dictionaries on stdout and an evaluation bar each epoch. With ``--verbose`` (clintune's
    logger at DEBUG) the Trainer's own reporting stays as well."""
    from transformers.trainer_callback import ProgressCallback

    if not logger.isEnabledFor(logging.DEBUG):
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_training_bar_class()())
    trainer.add_callback(_evaluation_report_class()(metric))


def _training_bar_class() -> Any:
    from transformers.trainer_callback import ProgressCallback

    class TrainingBar(ProgressCallback):
        """The Trainer's step progress bar alone: no log dictionaries, no evaluation bars."""

        def on_prediction_step(self, args: Any, state: Any, control: Any, eval_dataloader: Any = None, **kwargs: Any) -> None:
            pass

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            pass

    return TrainingBar


def _evaluation_report_class() -> Any:
    from transformers import TrainerCallback

    class EvaluationReport(TrainerCallback):
        """One ``clintune:`` line per evaluation (losses and the model-selection metric) and one at the end."""

        def __init__(self, metric: str) -> None:
            self.metric = metric
            self.train_loss: float | None = None

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if not state.is_world_process_zero or not logs:
                return
            if "loss" in logs:
                self.train_loss = logs["loss"]
            if "eval_loss" in logs:
                logger.info(describe_evaluation(logs, self.train_loss, self.metric, state.global_step, args.num_train_epochs))
                self.train_loss = None

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero and state.best_metric is not None:
                step = (state.best_model_checkpoint or "").rpartition("-")[2]
                logger.info("best validation %s %.4f%s%s", self.metric, state.best_metric, f" at step {step}" if step.isdigit() else "",
                            "" if state.global_step >= state.max_steps else f" (stopped early at step {state.global_step})")

    return EvaluationReport


def describe_evaluation(logs: dict[str, Any], train_loss: float | None, metric: str, step: int, epochs: float) -> str:
    """``epoch 2/4: train loss 0.6298, validation loss 0.3783, f1 0.9643`` from the Trainer's evaluation log."""
    epoch = float(logs.get("epoch", 0.0))
    when = f"epoch {round(epoch)}/{epochs:g}" if abs(epoch - round(epoch)) < 1e-6 else f"step {step} (epoch {epoch:.2f}/{epochs:g})"
    parts = [] if train_loss is None else [f"train loss {train_loss:.4g}"]
    parts.append(f"validation loss {logs['eval_loss']:.4g}")
    if metric != "loss" and f"eval_{metric}" in logs:
        parts.append(f"{metric} {logs[f'eval_{metric}']:.4f}")
    return f"{when}: " + ", ".join(parts)


def _trainer_class() -> Any:
    """The Hugging Face Trainer, with an optional separate learning rate for the task head and
    evaluations scored by clintune's evaluator."""
    from transformers import Trainer

    class HeadAwareTrainer(Trainer):
        def __init__(
            self, *args: Any, head_learning_rate: float | None = None,
            score_validation: Callable[[Any], dict[str, float]] | None = None, train_lengths: list[int] | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            self.head_learning_rate = head_learning_rate
            self.score_validation = score_validation
            self.train_lengths = train_lengths

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            """Batches of similar length, from the features' ``length`` column: the Trainer would otherwise
            read every row's ids to measure it (or, given the column, index it row by row)."""
            if self.train_lengths is None or (train_dataset is not None and train_dataset is not self.train_dataset):
                return super()._get_train_sampler(train_dataset)
            from transformers.trainer_pt_utils import LengthGroupedSampler

            return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                        lengths=self.train_lengths)

        def evaluation_loop(self, *args: Any, **kwargs: Any) -> Any:
            output = super().evaluation_loop(*args, **kwargs)
            if self.score_validation is not None:
                # Every rank scores the whole validation set (a sharded model needs every rank in its
                # forward passes); rank 0's numbers are then used everywhere.
                prefix = kwargs.get("metric_key_prefix", "eval")
                scores = same_on_every_rank(self.score_validation(self.model))
                output.metrics.update({f"{prefix}_{key}": value for key, value in scores.items()})
            return output

        def create_optimizer(self, model: Any = None) -> Any:
            if self.optimizer is None and self.head_learning_rate is not None:
                target = self.model if model is None else model
                optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, target)
                groups = parameter_groups(
                    target, self.get_decay_parameter_names(target), self.args.weight_decay,
                    self.args.learning_rate, self.head_learning_rate,
                )
                self.optimizer = optimizer_cls(groups, **kwargs)
            return super().create_optimizer(model)

    return HeadAwareTrainer


def parameter_groups(
    model: Any, decay_names: list[str] | set[str], weight_decay: float, learning_rate: float, head_learning_rate: float
) -> list[dict[str, Any]]:
    """Optimizer groups: encoder vs head (parameters outside ``model.base_model_prefix``), each with and
    without weight decay (biases and norms get none, as in the Trainer's own grouping)."""
    body = model.base_model_prefix + "."
    groups: dict[tuple[bool, bool], list[Any]] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            groups.setdefault((not name.startswith(body), name in decay_names), []).append(parameter)
    if not any(head for head, _ in groups):
        raise ClintuneError(f"training.head_learning_rate: cannot tell the head from the encoder (no parameter outside {body!r})")
    return [
        {"params": params, "lr": head_learning_rate if head else learning_rate, "weight_decay": weight_decay if decay else 0.0}
        for (head, decay), params in sorted(groups.items())
    ]


def _last_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest checkpoint that was completely written (a kill can interrupt a save)."""
    if not checkpoint_dir.is_dir():
        return None
    candidates = []
    for path in checkpoint_dir.glob("checkpoint-*"):
        step = path.name.rpartition("-")[2]
        if step.isdigit() and (path / "trainer_state.json").is_file():
            candidates.append((int(step), path))
    return max(candidates)[1] if candidates else None
