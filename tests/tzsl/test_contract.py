"""TZSL runs the shared model battery (`AdaptedModelTesterMixin`)."""

import copy

import pytest
import torch

from hf_clipadapt.testing_utils import AdaptedModelTesterMixin
from hf_clipadapt.tzsl import TZSLModel

TINY = dict(hidden_dim=32, decoder_hidden_dim=16, epochs=1, steps_per_epoch=5, batch_size=32, syn_num=20,
            decoder_pretrain_epochs=2, cls_epochs=2)  # fmt: skip


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
