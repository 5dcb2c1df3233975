import pytest
import torch
import torch.nn.functional as F

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.testing_utils import assert_close_scaled, tiny_image_dataset, tiny_image_processor


@pytest.fixture
def backbone(tiny_clip, tiny_tokenizer, tiny_processor):
    return CLIPBackbone(tiny_clip, tiny_tokenizer, tiny_processor)


@pytest.fixture(scope="module")
def images():
    return tiny_image_dataset(num_classes=2, per_class=2)["image"][:]


def test_attributes(backbone, tiny_clip):
    assert backbone.embed_dim == 16
    assert backbone.logit_scale == pytest.approx(tiny_clip.logit_scale.exp().item())
    assert isinstance(backbone.logit_scale, float)
    assert backbone.name_or_path  # never empty, even for a model built in memory


def test_weights_frozen_and_eval_mode_is_pinned(backbone):
    assert not any(p.requires_grad for p in backbone.parameters())
    backbone.train()
    assert backbone.training and not backbone.model.training


def test_encode_images_is_normalised_projected_pooler_output(backbone, tiny_clip, images):
    pixel_values = backbone.preprocess(images)
    assert pixel_values.shape == (4, 3, 30, 30)
    expected = F.normalize(tiny_clip.get_image_features(pixel_values=pixel_values).pooler_output, dim=-1)
    got = backbone.encode_images(pixel_values)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(backbone(pixel_values), got)


def test_image_grads_flow_to_unfrozen_parameters(backbone, images):
    # UEO-style: a method unfreezes the visual LayerNorm affines and trains them.
    weight = backbone.model.vision_model.post_layernorm.weight
    weight.requires_grad_(True)
    backbone.encode_images(backbone.preprocess(images)).sum().backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0


def test_encode_texts_does_not_depend_on_batching(backbone):
    texts = ["a cat.", "a much longer description of a dog.", "x", "a photo of a bird."]
    full = backbone.encode_texts(texts)
    # batch 1 and batch 4 run different GEMM shapes, so different kernels: ~100 float32 ulps of the largest entry
    assert_close_scaled(backbone.encode_texts(texts, batch_size=1), full, rtol=1e-5)
    torch.testing.assert_close(full.norm(dim=-1), torch.ones(4))


def test_zero_shot_classifier_matches_independent_derivation(backbone, tiny_clip, tiny_tokenizer):
    classnames, templates = ["cat", "dog", "red panda"], ["a photo of a {}.", "art of the {}.", "{}"]
    expected = []
    for c in classnames:
        per_template = []
        for t in templates:  # one text at a time: no padding involved
            ids = tiny_tokenizer(t.format(c), return_tensors="pt")
            per_template.append(F.normalize(tiny_clip.get_text_features(**ids).pooler_output[0], dim=-1))
        expected.append(F.normalize(torch.stack(per_template).mean(0), dim=-1))
    got = backbone.zero_shot_classifier(classnames, templates)
    assert_close_scaled(got, torch.stack(expected), rtol=1e-5)  # one text at a time vs batched: other kernels
    # Default template = "a photo of a {}."
    torch.testing.assert_close(
        backbone.zero_shot_classifier(classnames), backbone.encode_texts([f"a photo of a {c}." for c in classnames])
    )


@pytest.mark.parametrize(
    "classnames, templates, match",
    [
        ([], None, "empty"),
        (["cat", "dog", "cat"], None, "duplicate.*cat"),
        (["cat"], ["a photo of a cat."], "placeholder"),
        (["cat"], [], "empty template"),
        ("cat", None, "single string"),
        (["cat", " "], None, "positions \\[1\\] are empty or blank"),
        (["golden_retriever", "golden retriever"], None, "duplicate.*'golden_retriever' = 'golden retriever'"),
    ],
)
def test_zero_shot_classifier_errors(backbone, classnames, templates, match):
    with pytest.raises((ValueError, TypeError), match=match):
        backbone.zero_shot_classifier(classnames, templates)


@pytest.mark.parametrize("classnames, match", [("cat", "single string"), (["cat", ""], "empty or blank")])
def test_from_clip_validates_class_names_like_for_classes(backbone, classnames, match):
    # "cat" used to become three one-letter classes, "" a class prompted with nothing
    from hf_clipadapt.tip_adapter import TipAdapterForImageClassification

    with pytest.raises((ValueError, TypeError), match=match):
        TipAdapterForImageClassification.from_clip(backbone, classnames)


def test_missing_tokenizer_or_processor_errors(tiny_clip, images):
    bare = CLIPBackbone(tiny_clip)
    with pytest.raises(ValueError, match="no image processor.*image_processor="):
        bare.preprocess(images)
    with pytest.raises(ValueError, match="no tokenizer.*tokenizer="):
        bare.encode_texts(["a cat"])


def test_rejects_models_without_clip_feature_methods():
    with pytest.raises(TypeError, match="get_image_features"):
        CLIPBackbone(torch.nn.Linear(2, 2))


def test_image_transform_is_a_features_transform(backbone, images):
    transform = backbone.image_transform()
    torch.testing.assert_close(transform(images, torch.arange(4), 3), backbone.preprocess(images))
    other = CLIPBackbone(backbone.model, image_processor=tiny_image_processor(size=24)).image_transform()
    assert transform.cache_id == backbone.image_transform().cache_id
    assert transform.cache_id != other.cache_id


def test_preprocess_converts_grayscale(backbone):
    from PIL import Image

    assert backbone.preprocess([Image.new("L", (20, 20), 128)]).shape == (1, 3, 30, 30)


def test_from_pretrained_round_trip_forwards_kwargs(backbone, tmp_path, images):
    backbone.model.save_pretrained(tmp_path)
    backbone.tokenizer.save_pretrained(tmp_path)
    backbone.image_processor.save_pretrained(tmp_path)
    loaded = CLIPBackbone.from_pretrained(str(tmp_path), dtype=torch.float64)
    assert loaded.dtype == torch.float64 and loaded.name_or_path == str(tmp_path)
    assert not any(p.requires_grad for p in loaded.parameters())
    pixel_values = backbone.preprocess(images)
    torch.testing.assert_close(loaded.encode_images(pixel_values).float(), backbone.encode_images(pixel_values))
    torch.testing.assert_close(loaded.encode_texts(["a cat."]).float(), backbone.encode_texts(["a cat."]))


def test_siglip_models_work_for_plain_encoding(tiny_tokenizer, tiny_processor, images):
    from transformers import SiglipConfig, SiglipModel

    tower = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2)
    config = SiglipConfig(
        text_config=dict(
            vocab_size=99, max_position_embeddings=64, bos_token_id=0, eos_token_id=1, pad_token_id=1, **tower
        ),
        vision_config=dict(image_size=30, patch_size=2, **tower),
    )
    model = SiglipModel(config).eval()
    backbone = CLIPBackbone(model, tiny_tokenizer, tiny_processor)
    assert backbone.embed_dim == 32  # SigLIP has no projection_dim: the text width
    # SigLIP pools the last position, so texts must be padded to 64 as in training.
    ids = tiny_tokenizer(["a cat."], padding="max_length", max_length=64, return_tensors="pt")
    expected = F.normalize(model.get_text_features(**ids).pooler_output, dim=-1)
    torch.testing.assert_close(backbone.encode_texts(["a cat."]), expected)
    assert backbone.encode_images(backbone.preprocess(images)).shape == (4, 32)


def test_cache_name_follows_the_weights_not_just_the_path(tiny_clip, tiny_tokenizer):
    from hf_clipadapt.testing_utils import tiny_clip_model

    a = CLIPBackbone(tiny_clip, tiny_tokenizer, tiny_image_processor())
    assert a.cache_name == CLIPBackbone(tiny_clip, tiny_tokenizer, tiny_image_processor()).cache_name
    assert a.cache_name.startswith(a.name_or_path + "#")
    other = tiny_clip_model(seed=123)  # a "retrained" model behind the same name
    other.config._name_or_path = tiny_clip.config._name_or_path
    b = CLIPBackbone(other, tiny_tokenizer, tiny_image_processor())
    assert b.name_or_path == a.name_or_path and b.cache_name != a.cache_name
    # An unfrozen backbone is re-fingerprinted as its weights change.
    c = CLIPBackbone(other, tiny_tokenizer, tiny_image_processor(), freeze=False)
    before = c.cache_name
    with torch.no_grad():
        next(c.model.parameters()).view(-1)[0] += 1.0
    assert c.cache_name != before
