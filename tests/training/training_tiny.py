"""A tiny adapted model for the training-path tests: a frozen feature map, a trained
head, and a trainable parameter the loss never uses (as EfficientNet's ImageNet head)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import ImageClassifierOutput

from hf_clipadapt.configuration_utils import AdaptedConfig
from hf_clipadapt.modeling_utils import AdaptedPreTrainedModel

IN, HIDDEN, CLASSES = 6, 8, 3


class TinyAdaptedConfig(AdaptedConfig):
    model_type = "tiny_adapted_for_training_tests"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)


class TinyAdaptedModel(AdaptedPreTrainedModel):
    config_class = TinyAdaptedConfig
    main_input_name = "features"

    def __init__(self, config):
        super().__init__(config)
        self.frozen = torch.nn.Linear(IN, HIDDEN)
        self.head = torch.nn.Linear(HIDDEN, CLASSES)
        self.unused = torch.nn.Linear(CLASSES, CLASSES)  # trainable, outside the loss
        self.frozen.requires_grad_(False)
        self.post_init()

    def _init_weights(self, module):
        pass  # the test seeds torch before construction

    def saved_state_dict(self):
        return {k: v.detach() for k, v in self.named_parameters() if v.requires_grad}

    def forward(self, features=None, labels=None, **kwargs):
        logits = self.head(torch.tanh(self.frozen(features)))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return ImageClassifierOutput(loss=loss, logits=logits)


def tiny_model(seed: int = 0) -> TinyAdaptedModel:
    torch.manual_seed(seed)
    return TinyAdaptedModel(TinyAdaptedConfig())


class RowsDataset(torch.utils.data.Dataset):
    """Dict rows {"features", "labels"}: labels a fixed function of the features."""

    def __init__(self, n: int = 32, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, IN, generator=g)
        self.y = (self.x[:, :CLASSES]).argmax(1)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"features": self.x[i], "labels": int(self.y[i])}


def trained_weights(model) -> dict:
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
