import math

import torch
import torch.nn.functional as F
from baselines import logistic_probe, nearest_class_mean, select_tip_beta, tip_adapter_logits


def test_tip_adapter_matches_hand_computation():
    x = torch.tensor([[1.0, 0.0]])
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # affinities 1 and 0
    labels = torch.tensor([0, 1])
    beta, alpha = 2.0, 3.0
    out = tip_adapter_logits(x, keys, labels, 2, beta=beta, alpha=alpha, zero_shot_logits=torch.tensor([[0.5, 0.25]]))
    expected = torch.tensor([[0.5 + alpha * 1.0, 0.25 + alpha * math.exp(-beta)]])
    torch.testing.assert_close(out, expected)


def test_nearest_class_mean_is_normalised_mean():
    feats = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), dim=1)
    means = nearest_class_mean(feats, torch.tensor([0, 0, 1]), 2)
    torch.testing.assert_close(means[0], F.normalize(feats[0] + feats[1], dim=0))
    torch.testing.assert_close(means.norm(dim=1), torch.ones(2))


def test_tip_beta_ties_keep_the_smaller_value():
    # keys == queries and one key per class: every beta classifies the validation set perfectly
    x = torch.eye(3)
    assert select_tip_beta(x, torch.arange(3), x, torch.arange(3), 3, betas=(7.0, 0.5, 2.0)) == 0.5
    assert select_tip_beta(x, torch.arange(3), x, torch.arange(3), 3, betas=(0.5, 2.0, 7.0)) == 0.5


def test_logistic_probe_separates_separable_classes():
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(4) * 3
    y = torch.arange(4).repeat(10)
    x = centres[y] + 0.1 * torch.randn(40, 4, generator=g)
    clf = logistic_probe(x, y, x[:8], y[:8])
    assert (torch.from_numpy(clf.predict(x.numpy())) == y).all()


def test_tip_params_pick_alpha_that_lets_the_cache_overrule_a_wrong_zero_shot():
    # Zero-shot says class 0 for every validation image; the cache knows better. Only a
    # large enough α flips the predictions to the right labels.
    from baselines import select_tip_params

    x = torch.eye(3)
    zero_shot = torch.tensor([[3.0, 0.0, 0.0]]).repeat(3, 1)
    alpha, beta = select_tip_params(
        x,
        torch.arange(3),
        x,
        torch.arange(3),
        3,
        zero_shot_logits=zero_shot,
        betas=(1.0,),
        alphas=(0.5, 1.0, 4.0, 8.0),
    )
    # The right class wins when α·(1 − e^{−β}) > 3: α = 4 gives 2.5 and fails, α = 8 gives 5.1.
    assert (alpha, beta) == (8.0, 1.0)
    logits = tip_adapter_logits(x, x, torch.arange(3), 3, beta, alpha, zero_shot)
    assert logits.argmax(1).tolist() == [0, 1, 2]
    # Without zero-shot logits, α cannot change a prediction and stays 1.
    assert select_tip_params(x, torch.arange(3), x, torch.arange(3), 3, betas=(2.0, 1.0))[0] == 1.0
