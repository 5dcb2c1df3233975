"""Tiny randomly initialised Swin backbones and datasets for the SFDA tests (offline, CPU)."""

import numpy as np
import pytest
import torch

IMAGE_SIZE = 16


def tiny_swin_config():
    from transformers import SwinConfig

    return SwinConfig(
        image_size=IMAGE_SIZE,
        patch_size=4,
        num_channels=3,
        embed_dim=8,
        depths=[1, 1],
        num_heads=[1, 2],
        window_size=2,
        drop_path_rate=0.0,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def tiny_sfda_model(num_labels=3, seed=0, **overrides):
    from hf_clipadapt.sfda import SFDAConfig, SFDAForImageClassification

    torch.manual_seed(seed)
    kwargs = dict(backbone=None, backbone_config=tiny_swin_config(), num_labels=num_labels, bottleneck_dim=8)
    kwargs.update(overrides)
    return SFDAForImageClassification(SFDAConfig(**kwargs))


class TinyNetWithUnusedHead(torch.nn.Module):
    """A plain torch backbone (pixel_values → [B, 6]) that, like EfficientNet, carries an
    ImageNet-style classifier `_fc` the SFDA model never calls."""

    feature_dim = 6

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
        self._fc = torch.nn.Linear(6, 10)

    def forward(self, pixel_values):
        return self.conv(pixel_values).mean((2, 3))


def tiny_torch_sfda_model(seed=0):
    from hf_clipadapt.sfda import SFDAForImageClassification

    torch.manual_seed(seed)
    return SFDAForImageClassification.from_backbone(TinyNetWithUnusedHead(), num_labels=3, bottleneck_dim=8)


def pixels(images, indices=None, view=0):
    """PIL images → [B, 3, 16, 16] in [-1, 1]."""
    arrays = [np.asarray(img.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE)), dtype=np.float32) for img in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 127.5 - 1.0


@pytest.fixture
def make_model():
    """Factory: tiny_sfda_model(num_labels=3, seed=0, **config_overrides)."""
    return tiny_sfda_model


@pytest.fixture
def make_torch_model():
    """Factory: tiny_torch_sfda_model(seed=0), a plain torch backbone (no image processor)."""
    return tiny_torch_sfda_model


@pytest.fixture
def swin_config():
    return tiny_swin_config()


@pytest.fixture
def to_pixels():
    return pixels


@pytest.fixture
def tiny_dataset():
    from hf_clipadapt.testing_utils import tiny_image_dataset

    return tiny_image_dataset(num_classes=3, per_class=4, size=IMAGE_SIZE)


@pytest.fixture(autouse=True)
def _quiet_threads():
    torch.set_num_threads(1)
    yield
