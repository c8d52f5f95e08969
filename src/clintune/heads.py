"""A mean-pooled sequence-classification head for any Hugging Face encoder.

``AutoModelForSequenceClassification`` classifies from the first token ([CLS])
through the checkpoint's pooler. Sentence encoders (all-MiniLM, many
biomedical sentence models) are trained so that the *mean* of the token
vectors carries the meaning, and on small clinical data sets classifying from
that mean is the stronger starting point. ``model.pooling: mean`` selects this
head. The saved folder is an ordinary ``save_pretrained`` folder whose
config.json carries ``clintune_pooling: mean``, so :func:`clintune.modeling.load_model`
knows to rebuild this class.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

POOLING_KEY = "clintune_pooling"


class MeanPooledClassifier(PreTrainedModel):
    """Encoder -> attention-masked mean of the last hidden states -> dropout -> linear."""

    config_class = PretrainedConfig
    base_model_prefix = "backbone"
    supports_gradient_checkpointing = True

    def __init__(self, config: PretrainedConfig, backbone: Any = None) -> None:
        super().__init__(config)
        self.backbone = backbone if backbone is not None else AutoModel.from_config(config)
        if getattr(self.backbone, "pooler", None) is not None:
            # The [CLS] pooler is unused here; dropping it keeps DDP from waiting on its gradients.
            self.backbone.pooler = None
        dropout = getattr(config, "classifier_dropout", None)
        if dropout is None:
            dropout = getattr(config, "hidden_dropout_prob", 0.1)
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Linear(config.hidden_size, config.num_labels)
        self._accepts_token_types = "token_type_ids" in _forward_parameters(self.backbone)
        self.post_init()

    def _init_weights(self, module: Any) -> None:
        # Only the new head is initialised here; the backbone's weights come from its checkpoint.
        if module is self.classifier:
            module.weight.data.normal_(mean=0.0, std=getattr(self.config, "initializer_range", 0.02))
            module.bias.data.zero_()

    def get_input_embeddings(self) -> Any:
        return self.backbone.get_input_embeddings()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **_: Any,
    ) -> SequenceClassifierOutput:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and self._accepts_token_types:
            inputs["token_type_ids"] = token_type_ids
        hidden = self.backbone(**inputs).last_hidden_state
        if attention_mask is None:
            pooled = hidden.mean(dim=1)
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)


def _forward_parameters(module: Any) -> set[str]:
    import inspect

    return set(inspect.signature(module.forward).parameters)


def is_mean_pooled(config: Any) -> bool:
    return getattr(config, POOLING_KEY, None) == "mean"


def new_mean_pooled(name_or_path: str, config: PretrainedConfig, trust_remote_code: bool = False) -> MeanPooledClassifier:
    """A pretrained encoder from ``name_or_path`` under a freshly initialised mean-pooling head."""
    setattr(config, POOLING_KEY, "mean")
    backbone = AutoModel.from_pretrained(name_or_path, config=config, trust_remote_code=trust_remote_code)
    return MeanPooledClassifier(config, backbone=backbone)


def load_mean_pooled(folder: str, config: PretrainedConfig) -> MeanPooledClassifier:
    """A model folder written by clintune with ``model.pooling: mean``."""
    return MeanPooledClassifier.from_pretrained(folder, config=config, ignore_mismatched_sizes=True)

