import pytest


@pytest.fixture
def backbone():
    from hf_clipadapt.clip import CLIPBackbone
    from hf_clipadapt.testing_utils import tiny_clip_model, tiny_clip_tokenizer, tiny_image_processor

    return CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())


@pytest.fixture
def saved_backbone(backbone, tmp_path):
    """The tiny CLIP saved to disk, as a Hub checkpoint would be, and reloaded from there
    (so `name_or_path` is a path `from_pretrained` can follow)."""
    from hf_clipadapt.clip import CLIPBackbone

    path = tmp_path / "tiny-clip"
    backbone.model.save_pretrained(path)
    backbone.tokenizer.save_pretrained(path)
    backbone.image_processor.save_pretrained(path)
    return CLIPBackbone.from_pretrained(str(path))


@pytest.fixture
def dataset():
    from hf_clipadapt.testing_utils import tiny_image_dataset

    return tiny_image_dataset(num_classes=3, per_class=6, class_names=["red", "green", "blue"])
