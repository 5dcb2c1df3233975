"""FSDP2 (torch.distributed.fsdp.fully_shard) with LoRA-Pro's moments sharded: 2 gloo CPU
processes equal one process on the same global batch (full, efficient, factored), each
rank holds its rows (1/world) of the moments, and a resume through
torch.distributed.checkpoint equals the uninterrupted run.

One launch of fsdp_worker.py (both ranks, every mode) serves all the tests of this module,
and each test then takes well under a second. The launch is mostly the two interpreters'
imports: 70-95 s for the module at load averages 7-12 on the shared 2-core machine (importing
peft alone took 31 s there at load 8); its timeout is 300 s."""

from pathlib import Path

import fsdp_worker as W
import pytest
import torch
from lorapro_dist import launch
from lorapro_helpers import make_llama_peft, make_mlp_peft

from hf_clipadapt.testing_utils import assert_close_scaled

WORLD = 2
# Replicated state, the same on every rank: Adam's step count (a scalar) and the factored
# option's column vector (n numbers per pair, all-reduced every step).
REPLICATED = ("step", "exp_avg_sq_col")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp2")
    launch(Path(W.__file__), [str(out)], world=WORLD, timeout=300)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    assert [d["world"] for d in ranks] == [WORLD] * WORLD
    return [d["result"] for d in ranks]


def _single(mode):
    """The same run in one process, without FSDP: the whole global batch per step."""
    model = make_mlp_peft(dtype=torch.float32)
    opt = W.make_optimizer(model, mode)
    W.train(model, opt, 0, W.STEPS, 0, 1)
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    states = {f"{opt._names[id(p)]}/{k}": v for p, st in opt.state.items() for k, v in st.items()}
    return params, states


@pytest.mark.parametrize("mode", list(W.MODES))
def test_fsdp2_two_processes_equal_one_process(runs, mode):
    single, _ = _single(mode)
    for rank in range(WORLD):
        got = runs[rank][mode]["params"]
        assert got.keys() == single.keys()
        for n, p in single.items():
            # float32, 6 Adam steps: the sharded sums (BᵀB, Bᵀĝ, ...) differ from one
            # process's only in order; measured 1e-6 of the largest entry, margin 30×.
            assert_close_scaled(got[n], p, rtol=3e-5, msg=f"{mode} rank {rank} {n}")


def test_fsdp2_on_a_llama_with_tied_embeddings_equals_one_process(runs):
    """The layout Trainer + Accelerate's FSDP2 plugin give a causal LM (every decoder block and
    the root sharded, the tied embedding/LM-head weight in the root's group, k/v narrower than
    q), full mode: 2 processes on half the rows each equal one process on all of them."""
    model = make_llama_peft()
    opt = W.LoraProAdamW(model, lr=W.LR, weight_decay=0.01, mode="full")
    W.train_llama(model, opt, W.LLAMA_STEPS, 0, 1)
    single = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    for rank in range(WORLD):
        got = runs[rank]["llama"]
        assert got.keys() == single.keys() and len(single) == 2 * 7 * 2  # A and B of 7 linears × 2 blocks
        for n, p in single.items():
            assert_close_scaled(got[n], p, rtol=3e-5, msg=f"llama rank {rank} {n}")


@pytest.mark.parametrize("mode", list(W.MODES))
def test_fsdp2_each_rank_holds_its_rows_of_the_moments(runs, mode):
    _, states = _single(mode)
    per_rank = [runs[r][mode]["state_bytes"] for r in range(WORLD)]
    assert all(b.keys() == states.keys() for b in per_rank)
    sharded_total = 0
    for key, t in states.items():
        if key.rsplit("/", 1)[1] in REPLICATED:
            assert all(b[key] == t.numel() * t.element_size() for b in per_rank), key
            continue
        # rank r holds chunk r of dim 0, as FSDP2 shards the parameter the moment belongs to
        chunks = t.chunk(WORLD)
        for r, b in enumerate(per_rank):
            want = chunks[r].numel() * t.element_size() if r < len(chunks) else 0
            assert b[key] == want, (key, r, b[key], want)
        sharded_total += t.numel() * t.element_size()
    held = [sum(v for k, v in b.items() if k.rsplit("/", 1)[1] not in REPLICATED) for b in per_rank]
    assert sum(held) == sharded_total
    # 1/world of the moments, up to torch.chunk's uneven rows (r = 3 and the 5-row head)
    assert max(held) <= 0.6 * sharded_total, held
    if mode == "full":  # the m×n moments live under lora_A's name; lora_B carries none
        assert any(k.endswith("lora_A.default.weight/exp_avg") for k in states)
        assert not any("lora_B" in k for k in states)


@pytest.mark.parametrize("mode", list(W.MODES))
def test_fsdp2_checkpoint_round_trip_and_resume_are_exact(runs, mode):
    for rank in range(WORLD):
        res = runs[rank][mode]
        assert res["state_round_trip_exact"]
        assert res["resumed"].keys() == res["params"].keys()
        for n, p in res["params"].items():
            assert torch.equal(res["resumed"][n], p), f"{mode} rank {rank} {n}"


def test_fsdp2_refuses_mixed_and_hsdp_sharding_naming_what_works(runs):
    for rank in range(WORLD):
        msgs = runs[rank]["refusals"]
        assert "1 of 2 trainable parameters are plain tensors" in msgs["mixed"]
        assert "Apply fully_shard to the root module" in msgs["mixed"]
        assert "2-D mesh" in msgs["hsdp"] and "HSDP" in msgs["hsdp"] and "fsdp_version 2" in msgs["hsdp"]
