"""EfficientNet-Lite0 split into a frozen trunk and a trainable tail.

CPU time on the shared benchmark machine does not allow back-propagating through
the whole backbone for thousands of images, so the benchmark freezes the stem and
the first `start` MBConv blocks, caches their output once per image, and trains
the remaining blocks + the 1280-d head convolution (about 3/4 of the backbone's
parameters) inside the SFDA model, through `TorchModuleBackbone`. The tail is
registered as the torch backbone "efficientnet_split:EfficientNetLite0Tail" (a
registry name, not an import), so a saved SFDA model rebuilds it from its config
once this module is imported.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from hf_clipadapt.sfda import register_torch_backbone

# examples/ holds the offline assets and baselines the benchmarks share (not in the wheel)
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from offline_assets import EfficientNetLite0Features  # noqa: E402


class EfficientNetLite0Trunk(nn.Module):
    """pixel_values → the feature map after block `start - 1` (frozen, eval mode)."""

    def __init__(self, start: int = 11, pretrained: bool = True):
        super().__init__()
        net = EfficientNetLite0Features(pretrained=pretrained).net
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks, self.total, self.rate = (
            net._blocks[:start],
            len(net._blocks),
            net._global_params.drop_connect_rate,
        )
        self.eval().requires_grad_(False)

    @torch.no_grad()
    def forward(self, pixel_values):
        x = self.stem(pixel_values)
        for block in self.blocks:
            x = block(x, drop_connect_rate=None)
        return x


class EfficientNetLite0Tail(nn.Module):
    """Cached trunk output → blocks `start`… + head conv → global-average-pooled [B, 1280]."""

    feature_dim = 1280

    def __init__(self, start: int = 11, pretrained: bool = True, bn_momentum: float | None = 0.1):
        super().__init__()
        net = EfficientNetLite0Features(pretrained=pretrained).net
        if bn_momentum is not None:
            # the checkpoint's BatchNorm momentum is 0.01: after a few hundred fine-tuning steps
            # the running statistics still describe ImageNet, and eval-mode accuracy collapses
            # (measured here: 44% eval vs 81% train-mode on the MNIST training images)
            for m in net.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.momentum = bn_momentum
        self.start, self.total, self.rate = start, len(net._blocks), net._global_params.drop_connect_rate or 0.0
        self.blocks = net._blocks[start:]
        self.conv_head, self.bn1, self.act = net._conv_head, net._bn1, net._swish

    def forward(self, x):
        for i, block in enumerate(self.blocks, start=self.start):
            x = block(x, drop_connect_rate=self.rate * i / self.total if self.training else None)
        return self.act(self.bn1(self.conv_head(x))).mean((2, 3))


# Saved benchmark models name the tail by this key (what earlier versions wrote as its
# import path); registering it here lets `from_pretrained` rebuild them after
# `import efficientnet_split`, without importing anything named by a config.
register_torch_backbone("efficientnet_split:EfficientNetLite0Tail", EfficientNetLite0Tail)
