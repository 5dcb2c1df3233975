"""Class-balanced re-sampling shared out across ranks (2 simulated ranks)."""

import pytest
import torch

from hf_clipadapt.sfda import ClassBalancedSampler, ShardedRandomSampler


def _ranks(labels, world=2, **kw):
    return [ClassBalancedSampler(labels, num_replicas=world, rank=r, **kw) for r in range(world)]


def test_two_ranks_share_one_balanced_draw():
    labels = torch.tensor([0] * 900 + [1] * 90 + [2] * 10)  # 90% / 9% / 1%
    ranks = _ranks(labels, batch_size=8, num_samples=6000, seed=3)
    per_rank = [torch.tensor(list(s)) for s in ranks]
    assert len(per_rank[0]) == len(per_rank[1]) == len(ranks[0]) == 3000
    # the union, interleaved block by block, is exactly the one global draw
    draw = ranks[0].global_draw()
    rebuilt = torch.stack([p.view(-1, 8) for p in per_rank], 1).reshape(-1)
    assert torch.equal(rebuilt, draw)
    # global batch t is draw[16t : 16t+16], rank r holds its r-th block of 8
    assert torch.equal(per_rank[1][:8], draw[8:16]) and torch.equal(per_rank[0][8:16], draw[16:24])
    # classes balanced overall and on each rank (σ of a 1/3 frequency over 3000 draws ≈ 0.009)
    for idx in (draw, *per_rank):
        freq = torch.bincount(labels[idx], minlength=3).double() / len(idx)
        assert torch.allclose(freq, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.04), freq
    # without re-weighting the rare class would be ~1%
    assert (labels[draw] == 2).double().mean() > 0.25


def test_draw_is_seeded_per_epoch_and_rank_independent():
    labels = torch.tensor([0, 1] * 20)
    a, b = _ranks(labels, batch_size=4, seed=0)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    a.set_epoch(0)
    assert list(a) == first
    state = b.state_dict()
    c = ClassBalancedSampler(labels, num_replicas=2, rank=1, batch_size=4)
    c.load_state_dict(state)
    assert list(c) == list(b)


def test_random_sampler_covers_dataset_once_per_pass():
    s0, s1 = (ShardedRandomSampler(20, batch_size=5, num_replicas=2, rank=r) for r in (0, 1))
    seen = sorted(list(s0) + list(s1))
    assert seen == list(range(20))


def test_sampler_bad_input():
    with pytest.raises(ValueError, match="empty"):
        ClassBalancedSampler(torch.tensor([], dtype=torch.long), batch_size=2)
    with pytest.raises(ValueError, match="rank"):
        ShardedRandomSampler(4, batch_size=2, num_replicas=2, rank=2)


def test_an_epoch_is_whole_optimizer_steps_whatever_the_split():
    # 12 samples, global batch 8: 2 ranks × 4, or 1 rank × 4 × 2 accumulation steps
    labels = torch.tensor([0, 1, 2] * 4)
    two = [ClassBalancedSampler(labels, batch_size=4, num_replicas=2, rank=r, seed=1) for r in (0, 1)]
    one = ClassBalancedSampler(labels, batch_size=4, accumulation_steps=2, seed=1)
    assert len(one) == 16 and len(two[0]) == 8  # 2 whole steps of 8, not 1.5
    steps_two = [sorted(list(two[0])[4 * t : 4 * t + 4] + list(two[1])[4 * t : 4 * t + 4]) for t in range(2)]
    steps_one = [sorted(list(one)[8 * t : 8 * t + 8]) for t in range(2)]
    assert steps_two == steps_one
