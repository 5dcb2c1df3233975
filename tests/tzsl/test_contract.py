"""TZSL runs the shared model battery (`AdaptedModelTesterMixin`)."""

import copy

import pytest
import torch

from hf_clipadapt.testing_utils import AdaptedModelTesterMixin, assert_initialised
from hf_clipadapt.tzsl import TZSLModel

TINY = dict(
    hidden_dim=32,
    decoder_hidden_dim=16,
    epochs=1,
    steps_per_epoch=5,
    batch_size=32,
    syn_num=20,
    decoder_pretrain_epochs=2,
    cls_epochs=2,
)


class TestTZSLContract(AdaptedModelTesterMixin):
    model_class = TZSLModel
    is_clip_adapted = False  # it works on features; there is no CLIP to refer to
    pipeline_task = None

    @pytest.fixture(autouse=True)
    def _fitted(self, tiny_data):
        if not hasattr(type(self), "_cache"):
            torch.manual_seed(0)
            model = TZSLModel.from_data(tiny_data, "fast", **TINY)
            model.fit(tiny_data, seed=0, progress=False)
            type(self)._cache = model
        self.data = tiny_data

    def make_model(self, tmp_path):
        return copy.deepcopy(type(self)._cache)

    def make_inputs(self, model):
        return {"features": torch.cat([self.data.test_seen_features[:4], self.data.test_unseen_features[:4]])}

    forward_before_fit = "raises"  # an unfitted model has no scaling and no classifier: its logits would mean nothing

    def make_unfitted_model(self, tmp_path):
        return TZSLModel.from_data(self.data, "fast", **TINY)

    def fit_model(self, model, seed):
        return model.fit(self.data, seed=seed, progress=False)

    def evaluation_data(self, model):
        return self.data, {}

    def check_initialisation(self, model):
        # as the reference VAE-GANs: N(0, 0.02²) Linear weights, zero biases
        for name, layer in model.named_modules():
            if isinstance(layer, torch.nn.Linear) and layer.weight.numel() >= 100:
                assert_initialised(layer.weight, name, mean=0.0, std=0.02)
                if layer.bias is not None:
                    assert_initialised(layer.bias, f"{name}.bias", mean=0.0, std=0)
