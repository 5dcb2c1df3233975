"""Folders an attacker controls, built from tiny saved models (offline, CPU)."""

import json
from pathlib import Path

import pytest
import torch


class TinyPooledNet(torch.nn.Module):
    """A plain torch backbone: pixel_values → [B, 4]."""

    feature_dim = 4

    def __init__(self, width: int = 4):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, width, 3, padding=1)

    def forward(self, pixel_values):
        return self.conv(pixel_values).mean((2, 3))


def edit_config(folder: Path, **changes) -> None:
    path = Path(folder) / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


@pytest.fixture
def sfda_folder(tmp_path):
    """A saved SFDA model on a torch backbone (registered in this process)."""
    from hf_clipadapt.sfda import SFDAForImageClassification

    model = SFDAForImageClassification.from_backbone(
        TinyPooledNet(), num_labels=2, bottleneck_dim=4, torch_backbone_kwargs={"width": 4}
    )
    folder = tmp_path / "sfda"
    model.save_pretrained(folder)
    return folder
