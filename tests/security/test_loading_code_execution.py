"""A config.json naming a callable ("os:system", "subprocess:run") never runs it on load.

Before the torch-backbone registry, `SFDAConfig.torch_backbone` was imported and called
with `torch_backbone_kwargs`: every one of these loads wrote the marker file.
"""

import pytest
import torch

from .conftest import edit_config

ATTACKS = {
    "os:system": lambda marker: {"command": f"touch {marker}"},
    "subprocess:run": lambda marker: {"args": ["touch", str(marker)]},
}


def _poison(folder, target, marker):
    edit_config(folder, torch_backbone=target, torch_backbone_kwargs=ATTACKS[target](marker))


def _loaders():
    from transformers import AutoModel, pipeline

    from hf_clipadapt.sfda import SFDAForImageClassification

    return {
        "from_pretrained": lambda f: SFDAForImageClassification.from_pretrained(f),
        "AutoModel": lambda f: AutoModel.from_pretrained(f, trust_remote_code=False),
        "pipeline": lambda f: pipeline("image-classification", model=str(f)),
    }


@pytest.mark.parametrize("loader", ["from_pretrained", "AutoModel", "pipeline"])
@pytest.mark.parametrize("target", sorted(ATTACKS))
def test_config_naming_a_callable_is_refused_and_never_runs(sfda_folder, tmp_path, target, loader):
    marker = tmp_path / "pwned"
    _poison(sfda_folder, target, marker)
    error = None
    try:
        _loaders()[loader](sfda_folder)
    except Exception as e:  # noqa: BLE001 - pipeline wraps the refusal in its own error
        error = e
    assert not marker.exists(), f"{loader} ran {target} named by config.json"
    assert error is not None and "unknown torch backbone" in str(error), error
    from hf_clipadapt.sfda import registered_torch_backbones

    assert str(registered_torch_backbones()) in str(error)  # the refusal lists the known names


def test_only_registered_constructors_are_called(tmp_path):
    from hf_clipadapt.sfda import SFDAForImageClassification, register_torch_backbone, registered_torch_backbones

    from .conftest import TinyPooledNet

    calls = []

    def build(width=4):
        calls.append(width)
        return TinyPooledNet(width)

    register_torch_backbone("security-test-net", build)
    assert "security-test-net" in registered_torch_backbones()
    model = SFDAForImageClassification.from_backbone(
        TinyPooledNet(), num_labels=2, bottleneck_dim=4, torch_backbone="security-test-net"
    )
    model.save_pretrained(tmp_path / "m")
    loaded = SFDAForImageClassification.from_pretrained(tmp_path / "m")
    assert calls == [4, 4] and loaded.config.torch_backbone == "security-test-net"
    with pytest.raises(ValueError, match="is taken"):
        register_torch_backbone("security-test-net", TinyPooledNet)


def test_saved_key_of_an_unregistered_class_loads_only_after_registering(sfda_folder):
    from hf_clipadapt.sfda import SFDAForImageClassification, torch_backbones

    key = SFDAForImageClassification.from_pretrained(sfda_folder).config.torch_backbone
    constructor = torch_backbones._REGISTRY.pop(key)  # as in a new process
    try:
        with pytest.raises(ValueError, match="register_torch_backbone"):
            SFDAForImageClassification.from_pretrained(sfda_folder)
    finally:
        torch_backbones.register_torch_backbone(key, constructor)
    assert SFDAForImageClassification.from_pretrained(sfda_folder).config.torch_backbone == key


def test_legacy_import_path_of_the_examples_backbone_is_a_key_not_an_import():
    """Checkpoints written when EfficientNet-Lite0 lived in the package name it by its old import
    path; that path is only mapped to the registry key, never imported (the module left the package:
    `examples/offline_assets` registers the class when a script imports it)."""
    from hf_clipadapt.sfda.torch_backbones import get_torch_backbone, register_torch_backbone

    class Stand(torch.nn.Module):
        pass

    register_torch_backbone("efficientnet-lite0", Stand, overwrite=True)
    try:
        assert get_torch_backbone("efficientnet-lite0") is Stand
        assert get_torch_backbone("hf_clipadapt.offline.backbones:EfficientNetLite0Features") is Stand
    finally:
        from hf_clipadapt.sfda import torch_backbones

        torch_backbones._REGISTRY.pop("efficientnet-lite0", None)
