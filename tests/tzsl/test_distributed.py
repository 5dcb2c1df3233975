"""TZSL's fit under DDP (2 CPU processes): every phase runs on the shared training path, the
critics and the decoder (trained by their own optimisers) average their gradients, so all
processes end with the same weights although each draws its own batches."""

import sys
from pathlib import Path

import torch

from hf_clipadapt.testing_utils import run_distributed

SMALL = dict(
    hidden_dim=32,
    decoder_hidden_dim=16,
    epochs=1,
    steps_per_epoch=3,
    batch_size=16,
    syn_num=20,
    decoder_pretrain_epochs=2,
    cls_epochs=2,
    cls_batch_size=32,
    critic_iters=2,
    lr=1e-3,
)


def _fit_and_save(out_dir: str):
    from accelerate import PartialState

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import synthetic_zsl

    from hf_clipadapt.tzsl import TZSLModel

    torch.set_num_threads(1)
    data = synthetic_zsl(per_class=20)
    torch.manual_seed(0)
    model = TZSLModel.from_data(data, "fast", **SMALL)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    model.fit(data, seed=0, progress=False)
    state = PartialState()
    assert state.num_processes == 2
    torch.save({"start": start, "end": model.state_dict()}, Path(out_dir) / f"rank{state.process_index}.pt")


def test_two_processes_end_with_the_same_weights(tmp_path):
    run_distributed(_fit_and_save, args=(str(tmp_path),), num_processes=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    moved = [k for k in r0["end"] if not torch.equal(r0["end"][k], r0["start"][k])]
    for part in ("critic_seen.", "critic_unseen.", "decoder.", "generator.", "encoder.", "gzsl_head."):
        assert any(k.startswith(part) for k in moved), part  # every part trained
    for k, v in r0["end"].items():
        assert torch.equal(v, r1["end"][k]), k  # all-reduced gradients: identical on both ranks
