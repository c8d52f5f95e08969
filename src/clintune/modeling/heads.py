"""A mean-pooled sequence-classification head for any Hugging Face encoder.

``AutoModelForSequenceClassification`` classifies from the first token ([CLS])
through the checkpoint's pooler. Sentence encoders (all-MiniLM, many
biomedical sentence models) are trained so that the *mean* of the token
vectors carries the meaning, and on small clinical data sets classifying from
that mean is the stronger starting point. ``model.pooling: mean`` selects this
head. The saved folder is a ``save_pretrained`` folder whose config.json
carries ``clintune_pooling: mean`` and ``model_type: clintune_mean_pooled``
(the encoder's own type kept as ``clintune_backbone_model_type``), so
:mod:`clintune.modeling.loading` rebuilds this class, while ``transformers.pipeline``
and the Auto classes refuse the folder with an error instead of loading the
encoder's [CLS] classifier with every weight random. Folders written before
the model type was set (``model_type`` the encoder's, with
``clintune_pooling: mean``) still load here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

POOLING_KEY = "clintune_pooling"
MODEL_TYPE = "clintune_mean_pooled"
BACKBONE_TYPE_KEY = "clintune_backbone_model_type"


class MeanPooledClassifier(PreTrainedModel):
    """Encoder -> attention-masked mean of the last hidden states -> dropout -> linear."""

    config_class = PretrainedConfig
    base_model_prefix = "backbone"
    supports_gradient_checkpointing = True

    def __init__(self, config: PretrainedConfig, backbone: Any = None, backbone_trust_remote_code: bool = False) -> None:
        super().__init__(config)
        if backbone is None:
            backbone = AutoModel.from_config(config, trust_remote_code=backbone_trust_remote_code)
        self.backbone = backbone
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

    def save_pretrained(self, save_directory: Any, *args: Any, **kwargs: Any) -> None:
        if self.backbone.is_remote_code() and kwargs.get("is_main_process", True):
            # the folder must hold the encoder's own code (model.trust_remote_code), as transformers does for its heads
            from transformers.dynamic_module_utils import custom_object_save

            Path(save_directory).mkdir(parents=True, exist_ok=True)
            custom_object_save(self.backbone, save_directory, config=self.config)
        super().save_pretrained(save_directory, *args, **kwargs)
        config_file = Path(save_directory) / "config.json"
        if config_file.is_file():  # not written by a non-main process
            mark_config_file(config_file)

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


def is_mean_pooled_config(config: dict[str, Any]) -> bool:
    """True for the config.json (as read) of a folder saved with this head."""
    return config.get(POOLING_KEY) == "mean" or config.get("model_type") == MODEL_TYPE


def mark_config_file(path: Path) -> None:
    """Give a saved config.json the model type that only clintune loads.

    The Auto classes then refuse the folder. ``auto_map`` entries for task heads
    go too, so a remote-code encoder's own head cannot be loaded over these weights.
    """
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("model_type") != MODEL_TYPE:
        config[BACKBONE_TYPE_KEY] = config.get("model_type")
        config["model_type"] = MODEL_TYPE
    if isinstance(config.get("auto_map"), dict):
        config["auto_map"] = {k: v for k, v in config["auto_map"].items() if not k.startswith("AutoModelFor")}
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def backbone_config(folder: str, read: dict[str, Any], trust_remote_code: bool = False, **changes: Any) -> PretrainedConfig:
    """The encoder's config object for a mean-pooled folder (``read``: its config.json, as read), with
    ``changes`` (e.g. labels) applied."""
    from transformers import CONFIG_MAPPING

    config = dict(read)
    if config.get("model_type") == MODEL_TYPE:
        config["model_type"] = config.pop(BACKBONE_TYPE_KEY, None)
    auto_map = config.get("auto_map") or {}
    if trust_remote_code and "AutoConfig" in auto_map:
        from transformers.dynamic_module_utils import get_class_from_dynamic_module

        config_class = get_class_from_dynamic_module(auto_map["AutoConfig"], folder)
    elif config.get("model_type") in CONFIG_MAPPING:
        config_class = CONFIG_MAPPING[config["model_type"]]
    else:
        raise ValueError(f"encoder model type {config.get('model_type')!r} is not one transformers knows"
                         + (" (its code is in the folder: set model.trust_remote_code=true)" if "AutoConfig" in auto_map else ""))
    return config_class.from_dict(config | changes)


def new_mean_pooled(name_or_path: str, config: PretrainedConfig, trust_remote_code: bool = False) -> tuple[MeanPooledClassifier, dict]:
    """A pretrained encoder from ``name_or_path`` under a freshly initialised mean-pooling head, and the encoder's loading info."""
    setattr(config, POOLING_KEY, "mean")
    backbone, info = AutoModel.from_pretrained(name_or_path, config=config, trust_remote_code=trust_remote_code, output_loading_info=True)
    return MeanPooledClassifier(config, backbone=backbone), info


def load_mean_pooled(folder: str, config: PretrainedConfig, trust_remote_code: bool = False) -> tuple[MeanPooledClassifier, dict]:
    """A folder written with this head, and its loading info (a mismatched head is reported there, not raised)."""
    return MeanPooledClassifier.from_pretrained(
        folder, config=config, ignore_mismatched_sizes=True, output_loading_info=True, backbone_trust_remote_code=trust_remote_code
    )
