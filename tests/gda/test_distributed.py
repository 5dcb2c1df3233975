"""Fitting GDA with 2 Accelerate processes (CPU, gloo) equals fitting in 1."""

import pytest
import torch
import torch.nn.functional as F

from hf_clipadapt.gda import GDAStatistics, fit_gda

NUM_CLASSES, DIM = 5, 12


def _data():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(NUM_CLASSES).repeat(9)  # 45 rows: uneven split across 2 ranks
    feats = F.normalize(
        torch.randn(NUM_CLASSES, DIM, generator=g)[labels] + 0.3 * torch.randn(45, DIM, generator=g), dim=1
    )
    return feats, labels


def _fit_sharded(out_path):
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    feats, labels = _data()
    stats = GDAStatistics(NUM_CLASSES, DIM)
    rank, world = accelerator.process_index, accelerator.num_processes
    for batch in torch.arange(rank, len(labels), world).split(4):  # each rank sees its own rows, in small batches
        stats.update(feats[batch], labels[batch])
    local_count = stats.num_samples
    stats.all_reduce(accelerator)
    weight, bias = stats.solve(out_dtype=torch.float64)
    if accelerator.is_main_process:
        torch.save(
            {"weight": weight, "bias": bias, "world": world, "local": local_count, "total": stats.num_samples},
            out_path,
        )
    accelerator.wait_for_everyone()


@pytest.mark.timeout(300)
def test_two_processes_equal_one(tmp_path):
    from hf_clipadapt.testing_utils import run_distributed

    out = tmp_path / "dist.pt"
    run_distributed(_fit_sharded, args=(str(out),), num_processes=2)
    dist = torch.load(out)
    assert dist["world"] == 2 and dist["local"] < dist["total"] == 45, "each rank held only part of the data"
    feats, labels = _data()
    weight, bias = fit_gda(feats.double(), labels, NUM_CLASSES)
    torch.testing.assert_close(dist["weight"], weight, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(dist["bias"], bias, rtol=1e-10, atol=1e-10)
