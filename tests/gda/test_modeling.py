"""GDAForImageClassification on a tiny offline CLIP: fit, forward, save/load, Auto, pipeline, Hub."""

from unittest import mock

import pytest
import torch
import torch.nn.functional as F
import yaml
from datasets import ClassLabel
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification, pipeline

import hf_clipadapt  # noqa: F401  (registers the Auto classes)
from hf_clipadapt.configuration_utils import DEFAULT_SEED
from hf_clipadapt.data import class_names, sample_few_shot
from hf_clipadapt.gda import GDAConfig, GDAForImageClassification, ensemble_logits, fit_gda
from hf_clipadapt.testing_utils import assert_close_scaled


def fitted(backbone, dataset, **kw):
    model = GDAForImageClassification.from_clip(backbone, class_names(dataset))
    return model.fit(dataset, shots=2, views=2, **kw)


def pixels(backbone, dataset, n=5):
    return backbone.preprocess([dataset[i]["image"] for i in range(n)])


def test_fit_matches_the_functional_core(backbone, dataset):
    """W, b come from fit_gda on the augmented views of the K-shot split; α from its validation split."""
    from hf_clipadapt.data import AugmentedViews
    from hf_clipadapt.features import extract_features

    model = fitted(backbone, dataset, seed=3)
    split = sample_few_shot(dataset, shots=2, seed=3)
    augment = AugmentedViews(backbone.preprocess, size=30, seed=3)
    feats, labels = extract_features(backbone.encode_images, split["train"], augment, views=2)
    w, b = fit_gda(feats.double(), labels, 3)
    assert_close_scaled(model.weight, w, rtol=1e-3)
    assert_close_scaled(model.bias, b, rtol=1e-3)  # as the weight: b ~1e5 here, compared in float64
    assert model.config.alpha in model.config.alphas and len(model.config.alpha_scores) == 7
    assert (model.config.shots, model.config.views, model.config.seed, model.config.num_train_images) == (2, 2, 3, 6)
    for t in (model.weight, model.bias, model.text_weights):
        assert t.dtype == torch.float32
    assert set(model.state_dict()) >= {"weight", "bias", "text_weights"}


def test_forward_is_the_ensemble(backbone, dataset):
    model = fitted(backbone, dataset)
    px = pixels(backbone, dataset)
    x = backbone.encode_images(px)
    expected = backbone.logit_scale * x @ model.text_weights.T + model.config.alpha * (x @ model.weight.T + model.bias)
    out = model(pixel_values=px, labels=torch.tensor([0, 0, 0, 0, 0]))
    # α·(x Wᵀ + b) sums float32 products of ~1e5: their rounding scales with that, not with each logit
    assert_close_scaled(out.logits, expected, rtol=1e-4)
    torch.testing.assert_close(model(image_features=x).logits, out.logits)
    assert out.loss is not None and out.loss.ndim == 0
    text = model.text_weights
    torch.testing.assert_close(text, backbone.zero_shot_classifier(["red", "green", "blue"]))


def test_gda_only_head_without_text_classifier(backbone, dataset):
    import warnings

    model = GDAForImageClassification.from_clip(backbone, num_labels=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(sample_few_shot(dataset, shots=2, val_shots=0), views=2)
    assert not [w for w in caught if "alpha" in str(w.message)], "no text classifier: there is no alpha to choose"
    assert model.config.id2label == {0: "red", 1: "green", 2: "blue"}, "a num_labels head takes the data's names"
    x = backbone.encode_images(pixels(backbone, dataset))
    # logits ~1e4 from float32 products: compare to the largest one, not element-wise
    assert_close_scaled(model(image_features=x).logits, ensemble_logits(x, None, model.weight, model.bias, 1.0))


def test_dataloader_fit_equals_features_fit(backbone, dataset):
    """A DataLoader of (already augmented) pixel values streams into the same statistics."""
    px = backbone.preprocess(list(dataset["image"]))
    labels = torch.tensor(dataset["label"])
    loader = torch.utils.data.DataLoader([{"pixel_values": p, "labels": y} for p, y in zip(px, labels)], batch_size=4)
    model = GDAForImageClassification.from_clip(backbone, class_names(dataset))
    with pytest.warns(UserWarning, match="alpha stays"):
        model.fit(loader, views=1)
    w, b = fit_gda(backbone.encode_images(px).double(), labels, 3)
    assert_close_scaled(model.weight, w, rtol=1e-3)
    assert model.config.num_train_images == len(dataset)


def test_save_load_round_trip_small_head(saved_backbone, dataset, tmp_path):
    model = fitted(saved_backbone, dataset)
    model.save_pretrained(tmp_path / "head")
    saved = load_file(str(tmp_path / "head" / "model.safetensors"))
    assert set(saved) == {"weight", "bias", "text_weights"}, "the default artifact is the head only"
    reloaded = AutoModel.from_pretrained(tmp_path / "head")
    assert isinstance(reloaded, GDAForImageClassification)
    assert reloaded.config.base_model_name_or_path == saved_backbone.name_or_path
    px = pixels(saved_backbone, dataset)
    assert torch.equal(reloaded(pixel_values=px).logits, model(pixel_values=px).logits)
    assert reloaded.config.alpha == model.config.alpha


def test_save_load_round_trip_full_model(backbone, dataset, tmp_path):
    model = fitted(backbone, dataset)
    model.config.base_model_name_or_path = str(tmp_path / "does-not-exist")  # prove the CLIP comes from the checkpoint
    model.save_pretrained(tmp_path / "full", include_backbone=True)
    assert any(k.startswith("backbone.") for k in load_file(str(tmp_path / "full" / "model.safetensors")))
    assert model.config.save_backbone is False, "saving must not change the live config"
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "full")
    px = pixels(backbone, dataset)
    assert torch.equal(reloaded(pixel_values=px).logits, model(pixel_values=px).logits)
    head_dir = tmp_path / "head-missing-clip"
    model.save_pretrained(head_dir)
    with pytest.raises(OSError, match="load_backbone=False"):
        AutoModel.from_pretrained(head_dir)
    head = AutoModel.from_pretrained(head_dir, load_backbone=False)
    x = backbone.encode_images(px)
    assert torch.equal(head(image_features=x).logits, model(image_features=x).logits)
    with pytest.raises(ValueError, match="no CLIP backbone attached"):
        head(pixel_values=px)


def test_auto_classes():
    config = AutoConfig.for_model("gda", num_labels=4, embed_dim=8)
    assert isinstance(config, GDAConfig)
    assert type(AutoModelForImageClassification.from_config(config)) is GDAForImageClassification
    assert type(AutoModel.from_config(config)) is GDAForImageClassification


def test_pipeline(saved_backbone, dataset, tmp_path):
    model = fitted(saved_backbone, dataset)
    clf = pipeline("image-classification", model=model, image_processor=saved_backbone.image_processor)
    out = clf(dataset[0]["image"], top_k=3)
    assert {o["label"] for o in out} == {"red", "green", "blue"}
    px = pixels(saved_backbone, dataset, n=1)
    probs = model(pixel_values=px).logits.softmax(-1)[0]
    assert out[0]["label"] == model.config.id2label[int(probs.argmax())]
    assert out[0]["score"] == pytest.approx(float(probs.max()), abs=1e-5)
    model.save_pretrained(tmp_path / "head")  # processor + tokenizer saved alongside: pipeline(model=path) works
    assert (
        pipeline("image-classification", model=str(tmp_path / "head"))(dataset[0]["image"], top_k=1)[0]["label"]
        == out[0]["label"]
    )


def test_push_to_hub_uploads_head_then_card(saved_backbone, dataset):
    model = fitted(saved_backbone, dataset, dataset_name="tiny-colours")
    model.evaluate(dataset, record_as="tiny-colours")
    commits = []

    def fake_commit(self, repo_id, operations, **kwargs):
        commits.append({op.path_in_repo: op.path_or_fileobj for op in operations})
        return mock.MagicMock(commit_url="https://hub/commit", oid="0" * 40, pr_url=None)

    with (
        mock.patch("huggingface_hub.HfApi.create_repo", return_value=mock.MagicMock(repo_id="me/gda-tiny")),
        mock.patch("huggingface_hub.HfApi.create_commit", new=fake_commit),
        mock.patch("huggingface_hub.HfApi.preupload_lfs_files", return_value=None),
    ):
        model.push_to_hub("me/gda-tiny")
    weights = set().union(*[set(c) for c in commits[:-1]])
    assert {"config.json", "model.safetensors"} <= weights
    assert list(commits[-1]) == ["README.md"], "our card goes last so transformers' generic card cannot overwrite it"
    card = commits[-1]["README.md"]
    card = card.decode() if isinstance(card, bytes) else card.read().decode()
    header = yaml.safe_load(card.split("---")[1])
    assert header["library_name"] == "hf_clipadapt"
    assert header["pipeline_tag"] == "image-classification"
    assert "base_model" not in header and saved_backbone.name_or_path in card  # a local folder, not a repo id
    assert header["datasets"] == ["tiny-colours"]
    assert "gda" in header["tags"]
    result = header["model-index"][0]["results"][0]
    assert result["metrics"][0]["type"] == "accuracy"
    assert result["metrics"][0]["value"] == pytest.approx(model.config.eval_results[0]["metric_value"])
    assert "Shots per class:** 2" in card and "each encoded under 2 augmented views" in card
    assert "area 0.5–1.0, plus horizontal flip" in card  # the paper's views, as configured


def test_card_states_unflipped_views(backbone, dataset):
    model = GDAForImageClassification.from_clip(backbone, class_names(dataset), view_scale=(0.8, 1.0), view_flip=False)
    card = str(model.fit(dataset, shots=2, views=2).create_model_card())
    assert "area 0.8–1.0, no flip" in card


# ------------------------------------------------------------------ bad input


def test_class_names_that_do_not_match_the_labels(backbone, dataset):
    model = GDAForImageClassification.from_clip(backbone, ["red", "blue", "green"])
    with pytest.raises(ValueError, match=r"class names do not match.*\(1, 'green', 'blue'\)"):
        model.fit(dataset, shots=2, views=1)
    model = GDAForImageClassification.from_clip(backbone, ["red", "green"])
    with pytest.raises(ValueError, match="the dataset has 3 classes, the model 2"):
        model.fit(dataset, shots=2, views=1)


def test_more_shots_than_a_class_has_names_the_class(backbone, dataset):
    small = dataset.select([i for i, y in enumerate(dataset["label"]) if y != 2 or i % 6 < 3])
    model = GDAForImageClassification.from_clip(backbone, class_names(dataset))
    with pytest.raises(ValueError, match=r"'blue' \(3\)"):
        model.fit(small, shots=4, views=1)


def test_forward_input_errors(backbone, dataset):
    model = fitted(backbone, dataset)
    with pytest.raises(ValueError, match="exactly one of"):
        model()
    with pytest.raises(ValueError, match=r"image_features must be \[batch, 16\]"):
        model(image_features=torch.zeros(2, 5))
    with pytest.raises(ValueError, match="class_names"):
        GDAForImageClassification.from_clip(backbone)
    with pytest.raises(TypeError, match="CLIPBackbone"):
        GDAForImageClassification.from_clip(torch.nn.Linear(2, 2), ["a"])


def test_nan_features_from_a_broken_encoder_are_rejected(backbone, dataset):
    model = GDAForImageClassification.from_clip(backbone, class_names(dataset))
    with mock.patch.object(type(backbone), "encode_images", lambda self, px: torch.full((len(px), 16), float("nan"))):
        with pytest.raises(ValueError, match="NaN or infinite"):
            model.fit(dataset, shots=2, views=1)


def test_new_classes_head_for_base_to_new(backbone, dataset):
    from hf_clipadapt.gda import new_class_classifier

    base = dataset.filter(lambda y: y < 2, input_columns="label")
    model = GDAForImageClassification.from_clip(backbone, ["red", "green"])
    model.fit(base.cast_column("label", ClassLabel(names=["red", "green"])), shots=2, views=2)
    feats = backbone.encode_images(backbone.preprocess(list(base["image"])))
    labels = torch.tensor(base["label"])
    head = model.new_classes_head(["blue", "yellow"], feats, labels, k=4)
    assert head.config.id2label == {0: "blue", 1: "yellow"} and head.config.alpha == model.config.alpha
    torch.testing.assert_close(head.text_weights, backbone.zero_shot_classifier(["blue", "yellow"]))
    w, b = new_class_classifier(feats.double(), labels, head.text_weights.double(), k=4)
    assert_close_scaled(head.weight, w, rtol=1e-3)  # float32 head vs float64 fit, entries ~1e5
    assert head(image_features=feats).logits.shape == (len(labels), 2)


def test_fit_unlabeled_runs_em_from_zero_shot(backbone, dataset):
    from hf_clipadapt.gda import fit_gda_em

    model = GDAForImageClassification.from_clip(backbone, class_names(dataset), alpha=10.0)
    info = model.fit_unlabeled(dataset.remove_columns("label"), max_iter=5).history_
    x = backbone.encode_images(backbone.preprocess(list(dataset["image"])))
    w, b, ref = fit_gda_em(x.double(), model.text_weights.double(), alpha=10.0, max_iter=5)
    assert info["iterations"] == ref["iterations"]
    assert_close_scaled(model.weight, w, rtol=1e-3)  # float32 EM vs float64 EM, entries ~1e5
    head_only = GDAForImageClassification.from_clip(backbone, num_labels=3)
    with pytest.raises(ValueError, match="needs a text classifier"):
        head_only.fit_unlabeled(dataset)


def test_zero_shot_logits_use_the_backbones_own_temperature(backbone, dataset):
    """α weighs zero-shot against GDA logits, so the zero-shot part must be scaled like
    the CLIP that was trained (100 for OpenAI CLIP, 18 for the testbed), not a constant."""
    with torch.no_grad():
        backbone.model.logit_scale.fill_(torch.log(torch.tensor(18.0)))
    model = GDAForImageClassification.from_clip(backbone, class_names(dataset))
    assert model.config.logit_scale == pytest.approx(18.0)
    x = torch.nn.functional.normalize(torch.randn(4, model.config.embed_dim), dim=-1)
    model.config.alpha = 0.0
    assert_close_scaled(model(image_features=x).logits, 18.0 * x @ model.text_weights.T, rtol=1e-5)
    assert (
        GDAForImageClassification.from_clip(backbone, class_names(dataset), logit_scale=50.0).config.logit_scale
        == 50.0
    )


def test_view_augmentation_follows_the_config(backbone, dataset):
    """view_scale / view_flip reach the views fit encodes (flips hurt where a mirror image
    is another class, e.g. digits), and bad ranges are refused."""
    from hf_clipadapt.data import AugmentedViews
    from hf_clipadapt.features import extract_features

    model = GDAForImageClassification.from_clip(backbone, class_names(dataset), view_scale=(0.8, 1.0), view_flip=False)
    model.fit(dataset, shots=2, views=2, seed=3)
    split = sample_few_shot(dataset, shots=2, seed=3)
    augment = AugmentedViews(backbone.preprocess, size=30, scale=(0.8, 1.0), flip=False, seed=3)
    feats, labels = extract_features(backbone.encode_images, split["train"], augment, views=2)
    w, _ = fit_gda(feats.double(), labels, 3)
    assert_close_scaled(model.weight, w, rtol=1e-3)
    flipped = GDAForImageClassification.from_clip(backbone, class_names(dataset), view_scale=(0.8, 1.0)).fit(
        dataset, shots=2, views=2, seed=3
    )
    assert not torch.allclose(flipped.weight, model.weight)
    for bad in ((0.0, 1.0), (0.9, 0.5), (0.5, 1.2), (0.5,)):
        with pytest.raises(ValueError, match="view_scale"):
            GDAConfig(view_scale=bad)


def test_presets_carry_the_official_dataset_and_protocol_settings(backbone, dataset):
    """mrflogs/ICLR24: ImageNet's views crop 8-100% of the area (datasets/imagenet.py:210); the
    base-to-new script's base head is the mean per-class covariance, pseudo-inverted (main_base2new.py:55-57)."""
    from hf_clipadapt.gda import GDA_PRESETS, fit_gda

    assert GDAForImageClassification.from_clip(backbone, class_names(dataset)).config.covariance == "ks"
    imagenet = GDAForImageClassification.from_clip(backbone, class_names(dataset), preset="imagenet")
    assert imagenet.config.view_scale == [0.08, 1.0] and imagenet.config.preset == "imagenet"
    both = GDAForImageClassification.from_clip(backbone, class_names(dataset), preset="imagenet_base_to_new", views=3)
    assert (both.config.covariance, both.config.view_scale, both.config.views) == ("class_mean_pinv", [0.08, 1.0], 3)
    b2n = GDAForImageClassification.from_clip(backbone, class_names(dataset), preset="base_to_new").fit(
        dataset, shots=2, views=2
    )
    x, y = b2n.encode_dataset(
        sample_few_shot(dataset, shots=2, seed=DEFAULT_SEED)["train"],
        b2n.augmented_views(DEFAULT_SEED),
        views=2,
        split="train",
    )
    w, b = fit_gda(x.double(), y, 3, covariance="class_mean_pinv")
    assert_close_scaled(b2n.weight, w, rtol=1e-4)
    with pytest.raises(ValueError, match="unknown preset .eurosat. for GDAConfig"):
        GDAForImageClassification.from_clip(backbone, class_names(dataset), preset="eurosat")
    assert set(GDA_PRESETS) == {"imagenet", "base_to_new", "imagenet_base_to_new"}


def test_new_classes_head_defaults_to_the_official_heads(backbone, dataset):
    """main_base2new.py:85-113: official heads (no base labels needed), base α reused."""
    from hf_clipadapt.gda import new_class_classifier

    model = GDAForImageClassification.from_clip(backbone, class_names(dataset)).fit(dataset, shots=2, views=2)
    feats = F.normalize(backbone.encode_images(backbone.preprocess(list(dataset["image"]))).double(), dim=-1)
    head = model.new_classes_head(["yellow", "purple"], feats, k=5)
    assert (head.config.new_class_head, head.config.new_class_alpha_rule, head.config.alpha) == (
        "official",
        "reuse",
        model.config.alpha,
    )
    w, b = new_class_classifier(feats, None, head.text_weights.double(), k=5)
    assert_close_scaled(head.weight, w, rtol=1e-4)
    old = model.new_classes_head(["yellow", "purple"], feats, torch.tensor(dataset["label"]), k=5, head="knn_mean")
    assert old.config.new_class_head == "knn_mean" and not torch.allclose(old.weight, head.weight)
    with pytest.raises(ValueError, match="needs base_labels"):
        model.new_classes_head(["yellow"], feats, k=5, alpha_rule="pseudo_new")
