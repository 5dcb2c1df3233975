import numpy as np
import pytest
import torch
from PIL import Image

from hf_clipadapt.data import AugmentedViews, random_resized_crop
from hf_clipadapt.data.augment import random_resized_crop_box


def to_tensor(images):
    """A trivial `preprocess`: PIL -> float tensor [B, 3, H, W]."""
    return torch.stack([torch.from_numpy(np.asarray(im, dtype=np.float32)).permute(2, 0, 1) for im in images])


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)) for _ in range(5)]


def test_crop_box_respects_scale_and_ratio():
    rng = np.random.default_rng(0)
    scale, ratio = (0.3, 0.8), (0.75, 4 / 3)
    for _ in range(300):
        left, top, right, bottom = random_resized_crop_box(200, 160, scale, ratio, rng)
        w, h = right - left, bottom - top
        assert 0 <= left and 0 <= top and right <= 200 and bottom <= 160
        # Rounding w and h to integers moves area and ratio by at most ~1 pixel's worth.
        assert scale[0] - 0.02 <= w * h / (200 * 160) <= scale[1] + 0.02
        assert ratio[0] - 0.02 <= w / h <= ratio[1] + 0.02


def test_crop_box_fallback_stays_inside_and_in_ratio():
    # A 100x4 strip cannot host a 3:4..4:3 crop of >= 50% area: every try misses.
    left, top, right, bottom = random_resized_crop_box(100, 4, (0.5, 1.0), (0.75, 4 / 3), np.random.default_rng(0))
    # Centred, full height, width = round(4 * 4/3) = 5 (the widest allowed ratio).
    assert (left, top, right, bottom) == (47, 0, 52, 4)


def test_random_resized_crop_size_and_generators(images):
    img = images[0]
    assert random_resized_crop(img, 24, generator=np.random.default_rng(0)).size == (24, 24)
    assert random_resized_crop(img, (20, 30), generator=torch.Generator().manual_seed(0)).size == (30, 20)
    a = random_resized_crop(img, 24, generator=torch.Generator().manual_seed(5))
    b = random_resized_crop(img, 24, generator=torch.Generator().manual_seed(5))
    assert np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("scale", [(0.0, 1.0), (0.8, 0.5), (0.5, 1.5)])
def test_bad_scale(images, scale):
    with pytest.raises(ValueError, match="scale"):
        random_resized_crop(images[0], 24, scale=scale)
    with pytest.raises(ValueError, match="scale"):
        AugmentedViews(to_tensor, scale=scale)


def test_views_are_deterministic_per_index_and_view(images):
    aug = AugmentedViews(to_tensor, size=24, seed=0)
    full = aug(images, torch.arange(5), 1)
    # Same (index, view) in another batch and order -> same pixels.
    part = aug([images[3], images[1]], torch.tensor([3, 1]), 1)
    assert torch.equal(part, full[[3, 1]])
    assert torch.equal(AugmentedViews(to_tensor, size=24, seed=0)(images, range(5), 1), full)
    # Another view, or another seed, gives other crops.
    assert not torch.equal(aug(images, torch.arange(5), 2), full)
    assert not torch.equal(AugmentedViews(to_tensor, size=24, seed=1)(images, torch.arange(5), 1), full)


def test_flip_happens_about_half_the_time():
    # A full-image crop of a left/right-asymmetric image: the output is either the image or its mirror.
    arr = np.zeros((16, 16, 3), dtype=np.uint8)
    arr[:, :4] = 255
    img = Image.fromarray(arr)
    aug = AugmentedViews(lambda ims: ims, size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    flips = 0
    for i in range(400):
        out = np.asarray(aug.augment(img, i, 0))
        flipped = out[:, -1, 0].min() > 128
        assert flipped or out[:, 0, 0].min() > 128
        flips += bool(flipped)
    # Binomial(400, 1/2): 5 standard deviations = 50.
    assert abs(flips - 200) < 50
    no_flip = AugmentedViews(lambda ims: ims, size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    assert all(np.asarray(no_flip.augment(img, i, 0))[:, 0, 0].min() > 128 for i in range(50))


def test_cache_id_encodes_parameters():
    base = AugmentedViews(to_tensor)
    assert base.cache_id == AugmentedViews(to_tensor).cache_id
    others = [
        AugmentedViews(to_tensor, size=32),
        AugmentedViews(to_tensor, scale=(0.6, 1.0)),
        AugmentedViews(to_tensor, ratio=(0.5, 2.0)),
        AugmentedViews(to_tensor, flip=False),
        AugmentedViews(to_tensor, seed=1),
        AugmentedViews(lambda ims: ims),
    ]
    assert len({base.cache_id, *(o.cache_id for o in others)}) == 1 + len(others)


def test_with_clip_backbone_and_extract_features(tiny_clip, tiny_processor):
    from hf_clipadapt.clip import CLIPBackbone
    from hf_clipadapt.features import extract_features
    from hf_clipadapt.testing_utils import tiny_image_dataset

    backbone = CLIPBackbone(tiny_clip, image_processor=tiny_processor)
    aug = AugmentedViews(backbone.preprocess, size=30)
    assert backbone.preprocess_cache_id in aug.cache_id
    ds = tiny_image_dataset(num_classes=2, per_class=3)
    a, labels = extract_features(backbone.encode_images, ds, aug, views=2, batch_size=4)
    b, _ = extract_features(backbone.encode_images, ds, aug, views=2, batch_size=5)
    assert a.shape == (12, 16) and labels.tolist() == [0, 0, 0, 1, 1, 1] * 2
    torch.testing.assert_close(a, b)  # batch size does not change the views
    assert not torch.allclose(a[:6], a[6:])  # the two views differ


def test_call_errors(images):
    with pytest.raises(TypeError, match="callable"):
        AugmentedViews("clip")
    with pytest.raises(ValueError, match="2 images but 3 indices"):
        AugmentedViews(to_tensor)(images[:2], torch.arange(3), 0)
