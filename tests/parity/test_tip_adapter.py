"""Parity of Tip-Adapter and Tip-Adapter-F with their authors' code, in float64.

Reference re-derived from gaopengcuhk/Tip-Adapter:
* `utils.py` L99-129 `search_hp`: β over search_step[0] values and α over search_step[1]
  values, i·(search_scale − 0.1)/search_step + 0.1; β outer loop, α inner; cache logits
  exp(−(β − β·affinity))·L, logits = 100·x·W + α·cache; a point replaces the best only
  if strictly better (the first best is kept).
* `main.py` L39-42 (Tip-Adapter logits), L66-106 (Tip-Adapter-F: the keys are a Linear
  layer's weight; AdamW lr cfg['lr'], eps 1e-4, torch's default weight decay 0.01; cosine
  over train_epoch·len(loader) steps; trained at init_alpha, init_beta).
* `utils.py` L38-62 `build_cache_model`: keys = mean over the augment epochs of the raw
  features (`clip_model.encode_image`, L52, never normalised before L59-60), then
  normalised (`key_averaging="raw"`; the default averages normalised views).
* `configs/*.yaml`: search_scale, init_alpha/init_beta and train_epoch per dataset.
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.testing_utils import assert_close_scaled, tiny_clip_model, tiny_clip_tokenizer, tiny_image_processor
from hf_clipadapt.tip_adapter import TipAdapterConfig, TipAdapterForImageClassification
from hf_clipadapt.tip_adapter.functional import cache_logits, select_tip_params, tip_search_grid

# configs/<dataset>.yaml: (search_scale, init_alpha, init_beta, train_epoch)
OFFICIAL_CONFIGS = {
    "caltech101": ([12, 5], 3, 1, 20),
    "dtd": ([13, 13], 2, 1, 20),
    "eurosat": ([12, 10], 2, 1, 100),
    "fgvc": ([30, 30], 5, 1, 20),
    "food101": ([10, 10], 1.17, 1, 20),
    "imagenet": ([7, 3], 1.17, 1, 20),
    "oxford_flowers": ([50, 50], 10, 1, 20),
    "oxford_pets": ([7, 3], 1.17, 1, 20),
    "stanford_cars": ([20, 10], 3, 1, 20),
    "sun397": ([12, 10], 1.17, 1, 20),
    "ucf101": ([7, 3], 3, 1, 20),
}


def reference_search(search_scale, search_step, keys, values, features, labels, clip_weights):
    """utils.py search_hp, float64: keys [D, N], values one-hot [N, K], clip_weights [D, K]."""
    beta_list = [i * (search_scale[0] - 0.1) / search_step[0] + 0.1 for i in range(search_step[0])]
    alpha_list = [i * (search_scale[1] - 0.1) / search_step[1] + 0.1 for i in range(search_step[1])]
    best_acc, best_beta, best_alpha = 0, 0, 0
    affinity = features @ keys  # loop-invariant (the official code recomputes it per point)
    clip_logits = 100.0 * features @ clip_weights
    for beta in beta_list:
        cache = (-1 * (beta - beta * affinity)).exp() @ values
        for alpha in alpha_list:
            tip = clip_logits + cache * alpha
            acc = 100 * (tip.argmax(-1) == labels).sum().item() / len(labels)
            if acc > best_acc:
                best_acc, best_beta, best_alpha = acc, beta, alpha
    return best_beta, best_alpha


def random_problem(seed, n_val=40, n_cache=12, k=3, d=8):
    g = torch.Generator().manual_seed(seed)
    keys = F.normalize(torch.randn(n_cache, d, generator=g, dtype=torch.float64), dim=-1)
    cache_labels = torch.arange(n_cache) % k
    text = F.normalize(torch.randn(k, d, generator=g, dtype=torch.float64), dim=-1)
    val_labels = torch.randint(0, k, (n_val,), generator=g)
    val = F.normalize(
        0.6 * keys[torch.randint(0, n_cache, (n_val,), generator=g)]
        + torch.randn(n_val, d, generator=g, dtype=torch.float64),
        dim=-1,
    )
    return keys, cache_labels, text, val, val_labels


def test_default_grid_is_the_official_200_by_20_from_01():
    betas, alphas = tip_search_grid()
    assert len(betas) == 200 and len(alphas) == 20
    assert betas[0] == alphas[0] == 0.1
    assert betas[-1] == pytest.approx(199 * 6.9 / 200 + 0.1, rel=1e-15) and max(betas) < 7
    assert alphas[-1] == pytest.approx(19 * 2.9 / 20 + 0.1, rel=1e-15) and max(alphas) < 3


@pytest.mark.parametrize("dataset,steps", [("imagenet", (200, 20)), ("eurosat", (40, 10)), ("caltech101", (40, 10))])
def test_search_picks_the_official_alpha_beta(dataset, steps):
    """The full 200 x 20 grid once; coarser grids (search_step is a config field) with other bounds."""
    scale = OFFICIAL_CONFIGS[dataset][0]
    keys, cache_labels, text, val, val_labels = random_problem(seed=len(dataset))
    values = F.one_hot(cache_labels, 3).double()
    want_beta, want_alpha = reference_search(scale, steps, keys.T, values, val, val_labels, text.T)
    betas, alphas = tip_search_grid(scale, steps)
    got_alpha, got_beta = select_tip_params(
        val, val_labels, keys, cache_labels, 3, 100.0 * val @ text.T, betas=betas, alphas=alphas
    )
    assert (got_alpha, got_beta) == (want_alpha, want_beta)


def test_presets_carry_the_official_configs():
    for name, (scale, init_alpha, init_beta, epochs) in OFFICIAL_CONFIGS.items():
        c = TipAdapterConfig.from_preset(name)
        assert (c.search_scale, c.search_step, c.alpha, c.beta, c.epochs) == (
            scale,
            [200, 20],
            init_alpha,
            init_beta,
            epochs,
        )
        alphas, betas = c.search_grid()
        assert (len(alphas), len(betas)) == (20, 200) and max(betas) < scale[0] and max(alphas) < scale[1]


def test_tip_adapter_f_logits_loss_key_gradient_and_optimiser():
    """main.py L91-96 (trained at init α, β) against the model's forward and loss."""
    backbone = CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())
    model = TipAdapterForImageClassification.from_clip(
        backbone, ["red", "sea_lion", "blue"], preset="eurosat", train_keys=True, views=2
    )
    assert (model.config.alpha, model.config.beta, model.config.epochs) == (2.0, 1.0, 100)
    keys, cache_labels, _, x, y = random_problem(seed=3, n_val=7, d=backbone.embed_dim)
    y = y % 3
    model.config.cache_size = keys.shape[0]
    model.cache_labels = cache_labels
    model._set_cache_keys(keys)
    model64 = model.double()
    k = model64.cache_keys
    scale = model.config.logit_scale
    ours = scale * x @ model64.text_weights.T + 2.0 * cache_logits(x, k, cache_labels, 3, 1.0)
    k_ref = k.detach().clone().requires_grad_(True)
    affinity = x @ k_ref.T  # adapter(image_features): Linear with weight = keys
    ref = (
        scale * x @ model64.text_weights.detach().T
        + (-1 * (1.0 - 1.0 * affinity)).exp() @ F.one_hot(cache_labels, 3).double() * 2.0
    )
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12 * ref.abs().max().item())
    (g_ours,) = torch.autograd.grad(F.cross_entropy(ours, y), k)
    (g_ref,) = torch.autograd.grad(F.cross_entropy(ref, y), k_ref)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-14)
    model32 = model.float()
    out = model32(image_features=x.float(), labels=y)
    assert_close_scaled(out.logits, ref.detach().float())
    assert_close_scaled(out.loss, F.cross_entropy(ref.detach(), y).float())
    args = model32.training_arguments(num_samples=1000, seed=0)
    assert (args.learning_rate, args.adam_epsilon, args.weight_decay, args.per_device_train_batch_size) == (
        1e-3,
        1e-4,
        0.01,
        256,
    )
    assert (
        str(args.lr_scheduler_type).split(".")[-1].lower() == "cosine" and args.num_train_epochs == 50
    )  # 100 epochs / 2 views
    assert math.isclose(torch.optim.AdamW([torch.zeros(1)]).defaults["weight_decay"], 0.01)  # the official optimiser's


def test_cache_keys_average_normalised_views():
    """A documented difference (docs/fidelity.md (Tip-Adapter section)): the official keys average the
    raw views, then normalise; ours, by default, average the (already normalised) cached views, then
    normalise. Equal when a image's views have equal norms; this pins both formulas."""
    from hf_clipadapt.tip_adapter.functional import mean_view_keys

    g = torch.Generator().manual_seed(2)
    raw = torch.randn(3, 4, 8, generator=g, dtype=torch.float64)  # views x images x D
    official = F.normalize(raw.mean(0), dim=-1)
    ours = mean_view_keys(F.normalize(raw, dim=-1).reshape(12, 8), views=3)
    same_norm = F.normalize(raw, dim=-1) * 2.5
    torch.testing.assert_close(mean_view_keys(same_norm.reshape(12, 8), 3), F.normalize(same_norm.mean(0), dim=-1))
    assert not torch.allclose(ours, official)


def block_images(names, per_class, size=32, seed=0):
    """Images of two coloured blocks each (a crop sees a different mix of them, so the
    CLIP feature norms of one image's crops differ, as they do on real photos)."""
    import numpy as np
    from datasets import ClassLabel, Dataset, Features, Image

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(len(names) * per_class):
        a = np.zeros((size, size, 3), np.uint8)
        a[:, : rng.integers(4, size - 4)] = rng.integers(0, 256, 3)
        a[rng.integers(4, size - 4) :] = rng.integers(0, 256, 3)
        images.append(a)
    labels = [c for c in range(len(names)) for _ in range(per_class)]
    features = Features({"image": Image(), "label": ClassLabel(names=names)})
    return Dataset.from_dict({"image": images, "label": labels}, features=features)


def test_raw_key_averaging_builds_the_official_cache(tmp_path):
    """key_averaging="raw" (utils.py L46-60): each key is the normalised mean of the CLIP's
    unnormalised features of the image's augmented views, re-derived here in float64 from
    the same crops; the default (mean of normalised views) is a different cache."""
    from hf_clipadapt.data import sample_few_shot

    backbone = CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())
    names = ["red", "sea_lion", "blue"]
    data = block_images(names, per_class=4)
    fit = dict(shots=2, views=3, seed=1)
    grid = dict(alphas=[1.0], betas=[1.0])  # the α/β search is checked above
    official = TipAdapterForImageClassification.from_clip(backbone, names, key_averaging="raw", **grid).fit(
        data, **fit
    )
    default = TipAdapterForImageClassification.from_clip(backbone, names, **grid).fit(data, **fit)
    train = sample_few_shot(data, shots=2, seed=1)["train"]
    c = official.config
    crops = official.augmented_views(
        1, c.view_scale, c.view_flip
    )  # the crops fit encodes (our RNG, not torchvision's)
    clip64 = copy.deepcopy(backbone.model).double()
    with torch.no_grad():
        raw = torch.stack(
            [
                clip64.get_image_features(
                    pixel_values=crops(train["image"], range(len(train)), v).double()
                ).pooler_output
                for v in range(3)
            ]
        )  # [views, N, D], encode_image per augment epoch
    keys_official = F.normalize(raw.mean(0), dim=-1)  # L59-60
    keys_ours = F.normalize(F.normalize(raw, dim=-1).mean(0), dim=-1)
    assert official.cache_labels.tolist() == default.cache_labels.tolist() == list(train["label"])
    assert_close_scaled(official.cache_keys, keys_official.float(), rtol=1e-5)
    assert_close_scaled(default.cache_keys, keys_ours.float(), rtol=1e-5)
    # the crops' feature norms differ by up to ~10% here, so the two caches differ (by ~1e-3, 100x the tolerance)
    assert (keys_official - keys_ours).abs().max() > 3e-4
