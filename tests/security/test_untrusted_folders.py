"""A folder is loaded only if it holds what the model needs and nothing it cannot trust.

Before: CraFT, SFDA and TZSL loaded with missing tensors (freshly initialised, a
different model) or unexpected ones; NaN weights loaded silently; a symlink out of the
folder was followed; a CraFT config with intrinsic_dim 2e8 allocated 763 MiB before
anything complained; a broken image processor was dropped without a word.
"""

import math
import os
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from .conftest import TinyPooledNet, edit_config


def _craft():
    from hf_clipadapt.craft import CraFTForImageClassification
    from hf_clipadapt.craft.configuration_craft import CraFTConfig

    config = CraFTConfig(
        black_box="http://127.0.0.1:9",
        n_ctx=2,
        text_width=8,
        intrinsic_dim=4,
        refine_hidden=4,
        id2label={0: "a", 1: "b"},
    )
    return CraFTForImageClassification(config)


def _sfda():
    from hf_clipadapt.sfda import SFDAForImageClassification

    return SFDAForImageClassification.from_backbone(
        TinyPooledNet(), num_labels=2, bottleneck_dim=4, torch_backbone_kwargs={"width": 4}
    )


def _tzsl():
    from hf_clipadapt.tzsl import TZSLConfig, TZSLModel

    return TZSLModel(TZSLConfig(feature_dim=8, attribute_dim=4, num_classes=3, hidden_dim=8, decoder_hidden_dim=8))


def tiny_clip_backbone():
    from hf_clipadapt.clip import CLIPBackbone
    from hf_clipadapt.testing_utils import tiny_clip_model, tiny_clip_tokenizer, tiny_image_processor

    return CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())


MODELS = {"craft": _craft, "sfda": _sfda, "tzsl": _tzsl}


@pytest.fixture(params=sorted(MODELS))
def saved(request, tmp_path):
    model = MODELS[request.param]()
    folder = tmp_path / request.param
    model.save_pretrained(folder)
    return type(model), folder


def _rewrite(folder, change):
    path = folder / "model.safetensors"
    state = load_file(str(path))
    change(state)
    save_file(state, str(path), metadata={"format": "pt"})


def test_missing_tensor_is_refused_naming_file_and_tensor(saved):
    cls, folder = saved
    dropped = []
    _rewrite(folder, lambda s: dropped.append(sorted(s)[-1]) or s.pop(dropped[0]))
    with pytest.raises(OSError) as err:
        cls.from_pretrained(folder)
    assert "model.safetensors" in str(err.value) and dropped[0] in str(err.value) and "missing" in str(err.value)


def test_unexpected_tensor_is_refused_naming_file_and_tensor(saved):
    cls, folder = saved
    _rewrite(folder, lambda s: s.update({"smuggled.weight": torch.zeros(3)}))
    with pytest.raises(OSError, match=r"model\.safetensors.*unexpected.*smuggled\.weight"):
        cls.from_pretrained(folder)


def test_non_finite_weights_are_refused(saved):
    cls, folder = saved
    key = []

    def poison(state):
        key.append(next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1))
        state[key[0]] = torch.full_like(state[key[0]], math.nan)

    _rewrite(folder, poison)
    with pytest.raises(OSError, match="non-finite") as err:
        cls.from_pretrained(folder)
    assert key[0] in str(err.value) and "model.safetensors" in str(err.value)


def test_clip_adapted_non_finite_weights_are_refused(tmp_path):
    from hf_clipadapt.gda import GDAForImageClassification

    clip = tiny_clip_backbone()
    GDAForImageClassification.from_clip(clip, ["cat", "dog"]).save_pretrained(tmp_path / "gda")
    _rewrite(tmp_path / "gda", lambda s: s.update({k: v * math.inf for k, v in s.items() if v.is_floating_point()}))
    with pytest.raises(OSError, match="non-finite"):
        GDAForImageClassification.from_pretrained(tmp_path / "gda", backbone=clip)


@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
def test_a_file_linking_outside_the_folder_is_refused(saved, tmp_path, name):
    cls, folder = saved
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.replace(folder / name, outside / name)
    (folder / name).symlink_to(outside / name)
    with pytest.raises(OSError, match="links outside the checkpoint folder"):
        cls.from_pretrained(folder)


def test_links_inside_the_folder_and_hub_cache_snapshots_are_accepted(tmp_path):
    """huggingface_hub's cache keeps files in blobs/ and links them from snapshots/<rev>/."""
    from hf_clipadapt.tzsl import TZSLModel

    _tzsl().save_pretrained(tmp_path / "built")
    snapshot = tmp_path / "models--me--tzsl" / "snapshots" / "abc"
    blobs = tmp_path / "models--me--tzsl" / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    for f in (tmp_path / "built").iterdir():
        os.replace(f, blobs / f.name)
        (snapshot / f.name).symlink_to(os.path.relpath(blobs / f.name, snapshot))
    assert isinstance(TZSLModel.from_pretrained(snapshot), TZSLModel)


@pytest.mark.parametrize(
    "model, change, field",
    [
        ("craft", dict(intrinsic_dim=200_000_000), "intrinsic_dim"),
        ("craft", dict(refine_hidden=60_000, id2label={str(i): str(i) for i in range(5_000)}), "parameters"),
        ("tzsl", dict(hidden_dim=60_000, feature_dim=60_000), "parameters"),
        ("sfda", dict(bottleneck_dim=10**9), "bottleneck_dim"),
    ],
)
def test_oversized_config_is_refused_before_anything_is_allocated(tmp_path, monkeypatch, model, change, field):
    built = MODELS[model]()
    cls = type(built)
    built.save_pretrained(tmp_path / model)
    edit_config(tmp_path / model, **change)
    constructed = []
    original = cls.__init__
    monkeypatch.setattr(cls, "__init__", lambda self, *a, **k: constructed.append(1) or original(self, *a, **k))
    with pytest.raises(ValueError, match=field) as err:
        cls.from_pretrained(tmp_path / model)
    assert "before anything is allocated" in str(err.value)
    assert constructed == []  # refused from the JSON: no model (and no tensor) was built


def test_a_processor_that_fails_to_load_is_reported(sfda_folder):
    from hf_clipadapt.sfda import SFDAForImageClassification

    (sfda_folder / "preprocessor_config.json").write_text('{"image_processor_type": "NoSuchImageProcessor"')
    with pytest.warns(UserWarning, match="image processor saved in .* could not be loaded"):
        model = SFDAForImageClassification.from_pretrained(sfda_folder)
    assert model.image_processor is None
    (sfda_folder / "preprocessor_config.json").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # none saved: nothing to report
        SFDAForImageClassification.from_pretrained(sfda_folder)


def test_a_tokenizer_that_fails_to_load_is_reported(tmp_path):
    from hf_clipadapt.clip import CLIPBackbone

    clip = tiny_clip_backbone()
    clip.tokenizer.save_pretrained(tmp_path)
    for name in ("tokenizer_config.json", "tokenizer.json"):
        if (tmp_path / name).exists():
            (tmp_path / name).write_text('{"truncated": ')
    bare = CLIPBackbone(clip.model, None, clip.image_processor)
    with pytest.warns(UserWarning, match="tokenizer saved in"):
        bare.attach_processors(tmp_path)
    assert bare.tokenizer is None
