"""CraFT's defaults, presets and loop schedule against the authors' release (mrflogs/CraFT:
craft_configs/<dataset>.yaml and main_craft.py). Each of these failed on the library
before it adopted the official settings."""

import numpy as np
import pytest
import torch

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.craft import CollaborativeLoop, CraFTConfig, CraFTTrainingArguments, LocalBlackBox
from hf_clipadapt.craft import training as loop_module
from hf_clipadapt.testing_utils import tiny_clip_model, tiny_clip_tokenizer, tiny_image_processor

from .test_training import shots, stand_in


@pytest.fixture(scope="module")
def clip():
    return CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())


def test_defaults_are_the_official_majority_config_but_the_search_scale():
    """caltech101 / oxford_flowers / stanford_cars / sun397 / ucf101 .yaml share these values; the
    search scale σ·std(A) is the library's (0.1 · 0.02, measured better on the testbed), the
    official one (1 · 0.2) is the "official" preset."""
    a = CraFTTrainingArguments()
    assert (a.budget, a.population, a.sigma, a.bound, a.kl_weight, a.kl_off_divisor) == (8000, 40, 0.1, 5.0, 0.1, 4)
    o = CraFTTrainingArguments.from_preset("official")
    assert (o.sigma, o.bound, o.kl_weight, o.kl_off_divisor, o.batch_size) == (1.0, 5.0, 0.1, 4, 256)
    assert CraFTConfig(preset="official").projection_std == 0.2
    assert (a.learning_rate, a.weight_decay, a.batch_size) == (1e-3, 0.0, 256)
    assert (a.refine_inputs, a.fitness_images, a.prompt_mean, a.refiner_init) == (
        "augmented",
        "augmented",
        "population",
        "official",
    )
    assert a.fitness_kl_weight == a.refinement_kl_weight == 0.1
    c = CraFTConfig()
    assert (c.projection_std, c.refine_hidden, c.intrinsic_dim) == (0.02, 256, 512)


def test_dataset_presets_carry_the_official_per_dataset_values():
    e = CraFTTrainingArguments.from_preset("EuroSAT", seed=3)
    assert (e.sigma, e.kl_weight, e.kl_off_divisor, e.bound, e.seed, e.preset) == (0.02, 0.01, 1, 5.0, 3, "eurosat")
    assert CraFTConfig(preset="eurosat").projection_std == 1.0
    assert CraFTConfig(preset="eurosat", projection_std=0.5).projection_std == 0.5  # an explicit value wins
    assert {
        n for n in ("dtd", "eurosat", "fgvc", "oxford_pets") if CraFTTrainingArguments.from_preset(n).sigma == 0.02
    } == {"dtd", "eurosat", "fgvc", "oxford_pets"}
    assert CraFTTrainingArguments.from_preset("fgvc").bound == 0.0
    assert CraFTTrainingArguments.from_preset("oxford_pets").batch_size == 64
    assert CraFTConfig(preset="imagenet").refine_hidden == 512
    assert CraFTTrainingArguments.from_preset("imagenet").prompt_mean == "best"  # main_craft_imagenet.py line 165
    with pytest.raises(ValueError, match="unknown preset 'mnist' for CraFT; choose from"):
        CraFTTrainingArguments.from_preset("mnist")


def _recorded_weights(monkeypatch):
    weights = []
    original = loop_module.refinement_loss

    def spy(y_o, y_i, labels, kl_weight):
        weights.append(kl_weight)
        return original(y_o, y_i, labels, kl_weight)

    monkeypatch.setattr(loop_module, "refinement_loss", spy)
    return weights


@pytest.mark.parametrize("n, expected", [(4, [0.1, 0.0, 0.0, 0.0]), (2, [0.1, 0.1, 0.0, 0.0]), (1, [0.1] * 4)])
def test_refinement_kl_is_switched_off_after_budget_over_n_evaluations(clip, monkeypatch, n, expected):
    """main_craft.py line 220: weight if steps <= budget // n else 0, with steps += popsize
    (line 207) counted before R's epoch. 4 generations of 10: budget 40 evaluations."""
    weights = _recorded_weights(monkeypatch)
    box = LocalBlackBox(clip)
    x, y = shots()
    args = CraFTTrainingArguments(budget=44, population=10, batch_size=12, kl_off_divisor=n)
    CollaborativeLoop(stand_in(box), box, x, y, args).run()
    assert weights == expected


def test_optimizer_bounds_and_refiner_init_are_the_official_ones(clip):
    box = LocalBlackBox(clip)
    x, y = shots()
    model = stand_in(box)
    loop = CollaborativeLoop(model, box, x, y, CraFTTrainingArguments(budget=44, population=10))
    assert type(loop.optimizer) is torch.optim.Adam and loop.optimizer.defaults["weight_decay"] == 0
    assert list(loop.strategy.opts["bounds"]) == [-5.0, 5.0]
    assert model.refiner.net[2].weight.abs().sum() > 0  # PyTorch's default init, not a zero last layer
    loop.run()
    assert np.abs(loop.last_candidates).max() <= 5.0
    former = CraFTTrainingArguments(budget=44, population=10, weight_decay=0.01, bound=0, refiner_init="zero")
    loop = CollaborativeLoop(stand_in(box), box, x, y, former)
    assert type(loop.optimizer) is torch.optim.AdamW and loop.strategy.opts["bounds"] in (None, [None, None])


def test_r_trains_on_a_fresh_augmented_view_under_the_population_mean_prompt(clip, monkeypatch):
    box = LocalBlackBox(clip)
    x, y = shots()
    model = stand_in(box)
    calls = []
    original = box.query
    monkeypatch.setattr(box, "query", lambda c, h, names: calls.append((np.asarray(c), h)) or original(c, h, names))
    loop = CollaborativeLoop(model, box, x, y, CraFTTrainingArguments(budget=44, population=10))
    clean = box.upload_images(x)
    assert loop.images != clean  # the fitness images: one fixed augmented view
    loop.run(max_generations=2)
    (fit1, h1), (ref1, r1), (fit2, h2), (ref2, r2) = calls
    assert fit1.shape[0] == 10 and h1 == h2 == loop.images  # λ candidates on the fixed fitness view
    assert ref1.ndim == 2 and len({r1, r2, clean, loop.images}) == 4  # a fresh view per generation
    np.testing.assert_array_equal(ref2, model.prompt.contexts(model.prompt.z))  # z = the population mean
    assert not np.array_equal(model.prompt.z.numpy(), loop.strategy.mean.astype(np.float32))


def test_imagenet_prompt_is_cma_es_best_solution(clip):
    """main_craft_imagenet.py line 165: the prompt R trains under is es.result.xbest."""
    box = LocalBlackBox(clip)
    x, y = shots()
    model = stand_in(box)
    loop = CollaborativeLoop(model, box, x, y, CraFTTrainingArguments(budget=22, population=10, prompt_mean="best"))
    loop.run()
    np.testing.assert_array_equal(model.prompt.z.numpy(), loop.strategy.result.xbest.astype(np.float32))
