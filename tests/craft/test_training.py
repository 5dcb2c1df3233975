"""CraFT's prompt module, refinement module, losses and the collaborative loop."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.craft import CollaborativeLoop, CraFTTrainingArguments, LocalBlackBox, QueryBudgetExceeded
from hf_clipadapt.craft.prompt import PromptModule, random_projection
from hf_clipadapt.craft.refine import RefinementModule, kl_divergence, prompt_fitness, refinement_loss
from hf_clipadapt.testing_utils import assert_close_scaled, tiny_clip_model, tiny_clip_tokenizer, tiny_image_processor

CLASSES = ["cat", "dog", "car"]


@pytest.fixture(scope="module")
def clip():
    return CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())


def stand_in(box, dim=16):
    """What the loop needs of a CraFTForImageClassification: prompt, refiner, class names, config."""
    prompt = PromptModule(n_ctx=9, width=box.text_width, dim=dim, seed=3)
    prompt.attach(box, "a photo of a")
    return SimpleNamespace(
        prompt=prompt,
        refiner=RefinementModule(len(CLASSES), hidden=8),
        class_names=lambda: CLASSES,
        config=SimpleNamespace(is_fitted=False),
    )


def shots(n=12):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 30, 30, generator=g), torch.arange(n) % 3


def test_projection_is_regenerated_from_its_seed_and_not_stored(clip):
    box = LocalBlackBox(clip)
    prompt = PromptModule(n_ctx=9, width=32, dim=16, seed=3)
    assert list(prompt.state_dict()) == ["z"]
    a = prompt.projection
    assert a.shape == (9 * 32, 16) and abs(a.std() - 0.02) < 0.003
    np.testing.assert_array_equal(a, random_projection(3, 9 * 32, 16, 0.02))
    assert not np.array_equal(a, random_projection(4, 9 * 32, 16, 0.02))
    prompt.attach(box, "a photo of a")
    np.testing.assert_array_equal(prompt.context(), prompt.p0)  # z = 0: the initial phrase itself
    z = np.random.default_rng(0).normal(size=(2, 16)).astype(np.float32)
    assert_close_scaled(
        prompt.contexts(z)[1], prompt.p0 + (a @ z[1]).reshape(9, 32), rtol=1e-5
    )  # batched vs one z: other kernels
    with pytest.raises(ValueError, match="belongs to another model"):
        PromptModule(n_ctx=4, width=32).attach(box, "a photo of a")


def test_kl_directions_are_the_official_ones():
    """mrflogs/CraFT main_craft.py: ce_loss(input, target) = KL(softmax(target) ‖ softmax(input))
    (lines 236-240); fitness adds w·ce_loss(Y_I, Y_O) = KL(P_O ‖ P_I) (line 154), R's loss
    w·ce_loss(Y_O, Y_I) = KL(P_I ‖ P_O) (line 219). The library had both reversed."""
    g = torch.Generator().manual_seed(0)
    y_i, y_o, labels = (
        torch.randn(5, 3, generator=g) * 3,
        torch.randn(5, 3, generator=g) * 3,
        torch.tensor([0, 1, 2, 0, 1]),
    )
    p_i, p_o = y_i.softmax(-1), y_o.softmax(-1)
    kl_o_i = (p_o * (p_o.log() - p_i.log())).sum(-1).mean()  # KL(P_O ‖ P_I), written out
    kl_i_o = (p_i * (p_i.log() - p_o.log())).sum(-1).mean()
    assert abs(kl_i_o - kl_o_i) > 0.1  # the direction matters for these logits
    torch.testing.assert_close(kl_divergence(y_o, y_i), kl_o_i)
    ce = torch.nn.functional.cross_entropy
    torch.testing.assert_close(prompt_fitness(y_i[None], y_o[None], labels, 0.7)[0], ce(y_i, labels) + 0.7 * kl_o_i)
    torch.testing.assert_close(refinement_loss(y_o, y_i, labels, 0.3), ce(y_o, labels) + 0.3 * kl_i_o)
    # the official helper itself: F.kl_div(log_softmax(input), softmax(target), "batchmean")
    official = torch.nn.functional.kl_div(y_i.log_softmax(-1), y_o.softmax(-1), reduction="batchmean")
    torch.testing.assert_close(prompt_fitness(y_i[None], y_o[None], labels, 1.0)[0] - ce(y_i, labels), official)


def test_refinement_module_is_residual_and_starts_at_the_black_box():
    r = RefinementModule(3, hidden=256)
    assert [tuple(p.shape) for p in r.parameters()] == [(256, 3), (256,), (3, 256), (3,)]
    y = torch.randn(4, 3)
    torch.testing.assert_close(r(y), y)


def test_loop_spends_exactly_the_budget_in_whole_generations_and_learns(clip):
    # 60 queries: 2 generations of 20 candidates + 1 query for R's augmented view, the last 18 never spent
    box = LocalBlackBox(clip, budget=60)
    model = stand_in(box)
    x, y = shots()
    args = CraFTTrainingArguments(budget=None, population=20, sigma=0.5, batch_size=4)
    loop = CollaborativeLoop(model, box, x, y, args)
    assert loop.generations == 2
    loop.run()
    assert box.queries == 42 and [h["queries"] for h in loop.history] == [21, 42]
    assert model.config.is_fitted and model.prompt.z.abs().sum() > 0
    assert any(p.abs().sum() > 0 for p in model.refiner.net[2].parameters())
    with pytest.raises(QueryBudgetExceeded):  # a third generation would end mid-way: refused before sending
        loop.step()
    assert box.queries == 42


def test_budget_below_one_generation_is_refused(clip):
    box = LocalBlackBox(clip, budget=30)
    x, y = shots()
    with pytest.raises(ValueError, match="less than one CMA-ES generation"):
        CollaborativeLoop(stand_in(box), box, x, y, CraFTTrainingArguments(budget=None, population=40))
    with pytest.raises(ValueError, match="population must be"):
        CraFTTrainingArguments(population=1)


def test_resume_gives_the_same_next_candidates_and_the_same_model(clip, tmp_path):
    x, y = shots()
    args = {"budget": 33, "population": 10, "sigma": 0.5, "batch_size": 4}  # 3 generations of 10 + 1

    def new(output_dir=None):
        box = LocalBlackBox(clip)
        model = stand_in(box)
        return model, box, CollaborativeLoop(model, box, x, y, CraFTTrainingArguments(**args, output_dir=output_dir))

    full_model, _, full = new()
    full.run(max_generations=2)
    full.step()
    _, _, first = new(str(tmp_path))
    first.run(max_generations=2)
    model_b, box_b, resumed = new(str(tmp_path))
    resumed.run(resume_from_checkpoint=str(tmp_path))
    np.testing.assert_array_equal(resumed.last_candidates, full.last_candidates)
    assert box_b.queries == 33 and resumed.generation == 3
    torch.testing.assert_close(model_b.prompt.z, full_model.prompt.z, rtol=0, atol=0)
    for a, b in zip(model_b.refiner.parameters(), full_model.refiner.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="other settings"):
        box = LocalBlackBox(clip)
        CollaborativeLoop(stand_in(box), box, x, y, CraFTTrainingArguments(**{**args, "sigma": 0.3})).run(
            resume_from_checkpoint=str(tmp_path)
        )


def test_refinement_only_spends_one_query_per_epoch_or_once(clip):
    x, y = shots()
    box = LocalBlackBox(clip)  # official inputs: a fresh augmented view per epoch, one query each
    loop = CollaborativeLoop(
        stand_in(box), box, x, y, CraFTTrainingArguments(budget=44, population=10, optimize_prompt=False)
    )
    loop.run()
    assert loop.generation == 4 and box.queries == 1 + 4  # + the initial prompt once, for the record
    box = LocalBlackBox(clip)  # the library's former inputs: the initial prompt's scores, queried once
    args = CraFTTrainingArguments(budget=40, population=10, optimize_prompt=False, refine_inputs="best_candidate")
    loop = CollaborativeLoop(stand_in(box), box, x, y, args)
    loop.run()
    assert box.queries == 1 and loop.generation == 4
