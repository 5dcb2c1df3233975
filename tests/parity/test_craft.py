"""Parity of CraFT's two losses and R's KL switch-off with the authors' code, in float64.

The reference re-derives, in NumPy float64, what mrflogs/CraFT main_craft.py computes:
- `ce_loss(input, target)` (lines 236-240): F.kl_div(log_softmax(input), softmax(target),
  reduction="batchmean") = (1/N) Σ_n Σ_k t_nk (log t_nk − log s_nk), t = softmax(target),
  s = softmax(input): KL(P_target ‖ P_input) per row, averaged;
- the prompt's fitness (lines 150-155): CE(Y_I, y) + w · ce_loss(Y_I, Y_O), Y_O = Y_I + net(Y_I);
- R's loss (lines 217-220): CE(Y_O, y) + w' · ce_loss(Y_O, Y_I), with
  w' = w if steps <= budget // n else 0, `steps` = popsize × generations done, incremented
  (line 207) before R's epoch of that generation;
- net = Linear(K, hidden) → ReLU → Linear(hidden, K) (lines 185-189).
It is compared with the library's functional core (`prompt_fitness`, `refinement_loss`) and
with the losses the `CollaborativeLoop` computes (CMA-ES's fitness values, R's epoch loss)
against a small deterministic black box.
"""

import numpy as np
import pytest
import torch

from hf_clipadapt.craft import CollaborativeLoop, CraFTTrainingArguments
from hf_clipadapt.craft.prompt import PromptModule
from hf_clipadapt.craft.protocol import BlackBoxVLM
from hf_clipadapt.craft.refine import RefinementModule, prompt_fitness, refinement_loss
from hf_clipadapt.testing_utils import assert_close_scaled


# ---------------------------------------------------------------- float64 reference (NumPy)
def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def official_ce_loss(input_logits, target_logits):
    """main_craft.py lines 236-240: kl_div(log_softmax(input), softmax(target), 'batchmean')."""
    log_t, log_s = _log_softmax(target_logits), _log_softmax(input_logits)
    return float((np.exp(log_t) * (log_t - log_s)).sum() / len(input_logits))


def official_cross_entropy(logits, labels):
    return float(-_log_softmax(logits)[np.arange(len(labels)), labels].mean())


def official_net(logits, w1, b1, w2, b2):
    return logits + np.maximum(logits @ w1.T + b1, 0.0) @ w2.T + b2


def official_fitness(y_i, labels, params, w):
    """main_craft.py lines 151-154 for one candidate."""
    return official_cross_entropy(y_i, labels) + w * official_ce_loss(y_i, official_net(y_i, *params))


def official_refinement_loss(y_i, labels, params, w, steps, budget, n):
    """main_craft.py lines 217-220."""
    y_o = official_net(y_i, *params)
    weight = w if steps <= budget // n else 0.0
    return official_cross_entropy(y_o, labels) + weight * official_ce_loss(y_o, y_i)


def _params(refiner):
    return [p.detach().double().numpy().copy() for p in refiner.parameters()]


# ---------------------------------------------------------------- functional core
def test_functional_losses_match_the_official_ones_in_float64():
    rng = np.random.default_rng(0)
    y_i, labels = rng.normal(size=(3, 7, 5)) * 4, rng.integers(0, 5, size=7)
    refiner = RefinementModule(5, hidden=6).double()
    with torch.no_grad():  # a non-trivial R (Y_O != Y_I), whatever the library's init
        g = torch.Generator().manual_seed(1)
        for p in refiner.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    params = _params(refiner)
    y = torch.from_numpy(y_i)
    with torch.no_grad():
        ours = prompt_fitness(y, refiner(y), torch.from_numpy(labels), 0.3).numpy()
        expected = [official_fitness(y_i[p], labels, params, 0.3) for p in range(3)]
        np.testing.assert_allclose(ours, expected, rtol=1e-12)
        for steps, on in ((40, True), (41, False)):  # budget 160, n 4: on while steps <= 40
            ours = refinement_loss(refiner(y[0]), y[0], torch.from_numpy(labels), 0.3 if on else 0.0)
            ref = official_refinement_loss(y_i[0], labels, params, 0.3, steps, 160, 4)
            np.testing.assert_allclose(float(ours), ref, rtol=1e-12)
    assert abs(official_ce_loss(y_i[0], y_i[1]) - official_ce_loss(y_i[1], y_i[0])) > 0.1  # direction matters


# ---------------------------------------------------------------- the loop
class LinearBlackBox(BlackBoxVLM):
    """Scores 100·cos(image, text): image = flattened pixels @ V, text_k = flattened context @ U + c_k."""

    text_width = 8

    def __init__(self):
        super().__init__(name="linear")
        rng = np.random.default_rng(0)
        self.p0 = rng.normal(size=(2, 8)).astype(np.float32)
        self.u, self.v = rng.normal(size=(16, 6)) * 0.3, rng.normal(size=(3 * 4 * 4, 6))
        self.c = rng.normal(size=(3, 6))
        self.images = {}

    def _context_embeddings(self, text):
        return self.p0

    def _upload(self, pixel_values):
        handle = str(len(self.images))
        self.images[handle] = pixel_values.reshape(len(pixel_values), -1).astype(np.float64)
        return handle

    def _score_contexts(self, contexts, images, class_names):
        f = self.images[images] @ self.v
        t = (contexts.reshape(len(contexts), -1).astype(np.float64) @ self.u)[:, None] + self.c[None]
        f, t = f / np.linalg.norm(f, axis=-1, keepdims=True), t / np.linalg.norm(t, axis=-1, keepdims=True)
        return 100.0 * np.einsum("nd,pkd->pnk", f, t)


class _Model:
    def __init__(self, box):
        self.prompt = PromptModule(n_ctx=2, width=8, dim=5, seed=0, std=0.2)
        self.prompt.attach(box, "x")
        self.refiner = RefinementModule(3, hidden=4)
        self.config = type("C", (), {"is_fitted": False})()

    def class_names(self):
        return ["a", "b", "c"]


@pytest.mark.parametrize("n", [4, 1])
def test_the_loops_losses_match_the_official_ones(n):
    """4 generations of 6 candidates: official budget 24 evaluations; with n = 4 R's KL is on
    in generation 1 only (steps 6 <= 24 // 4), with n = 1 always."""
    box, rng = LinearBlackBox(), np.random.default_rng(1)
    x, labels = torch.from_numpy(rng.normal(size=(9, 3, 4, 4)).astype(np.float32)), torch.arange(9) % 3
    model = _Model(box)
    args = CraFTTrainingArguments(budget=28, population=6, batch_size=16, kl_weight=0.5, kl_off_divisor=n)
    loop = CollaborativeLoop(model, box, x, labels, args)
    seen = {}
    query, tell, inputs = box.query, loop.strategy.tell, loop._refinement_inputs
    box.query = lambda c, h, names: seen.setdefault("y", []).append(query(c, h, names)) or seen["y"][-1]
    loop.strategy.tell = lambda xs, f: seen.__setitem__("fitness", list(f)) or tell(xs, f)
    loop._refinement_inputs = lambda best: seen.__setitem__("params", _params(model.refiner)) or inputs(best)
    for g in range(1, 5):
        seen["y"], params = [], _params(model.refiner)
        record = loop.step()
        y_fit, y_ref = seen["y"][0].astype(np.float64), seen["y"][1].astype(np.float64)
        expected = [official_fitness(y_fit[p], labels.numpy(), params, 0.5) for p in range(6)]
        assert_close_scaled(seen["fitness"], expected, rtol=1e-5)  # float32 black-box scores and R
        expected = official_refinement_loss(y_ref, labels.numpy(), seen["params"], 0.5, 6 * g, 24, n)
        assert_close_scaled(record["loss_o"], expected, rtol=1e-5)
