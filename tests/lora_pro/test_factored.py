"""Full mode's memory option (factored=True) against the float64 reference's
independent Adafactor-style Adam, exact resume, and its state size."""

import copy
import io

import pytest
import torch
from lorapro_helpers import clone, make_mlp_peft, train
from lorapro_reference import RefLoraProAdamW, lora_pairs_by_hand
from torch import nn

from hf_clipadapt import LoraProAdamW


def _max_rel(m1, m2):
    worst = 0.0
    for p, q in zip(m1.parameters(), m2.parameters()):
        worst = max(worst, ((p.double() - q.double()).norm() / q.double().norm().clamp_min(1e-30)).item())
    return worst


@pytest.mark.parametrize("beta1", [0.9, 0.0])
def test_factored_full_mode_matches_float64_reference(beta1, monkeypatch):
    # Small row blocks: the two-pass blocked loop (ragged last block) is what gets compared.
    monkeypatch.setattr(LoraProAdamW, "_CPU_CHUNK_ELEMS", 7 * 12)
    ours = make_mlp_peft(r=3, alpha=6.0)
    ref = clone(ours)
    kw = dict(lr=1e-2, betas=(beta1, 0.99), eps=1e-8, weight_decay=0.1)
    opt = LoraProAdamW(ours, mode="full", factored=True, damping=0.0, **kw)
    pairs, plain = lora_pairs_by_hand(ref, alpha=6.0, r=3)
    train(ours, opt, 6)
    train(ref, RefLoraProAdamW(pairs, plain, mode="full", factored=True, **kw), 6)
    assert _max_rel(ours, ref) < 1e-9
    assert all(p.B.abs().max() > 1e-3 for p in opt.lora_pairs)
    # and it is not exact full mode under another name
    exact = clone(make_mlp_peft(r=3, alpha=6.0))
    train(exact, LoraProAdamW(exact, mode="full", damping=0.0, **kw), 6)
    assert _max_rel(exact, ref) > 1e-4


def test_factored_state_shapes_and_dtypes():
    model = make_mlp_peft(dtype=torch.float32)
    opt = LoraProAdamW(model, lr=1e-2, factored=True, moment_dtype=torch.bfloat16)
    train(model, opt, 1, dtype=torch.float32)
    st = opt.state[opt.lora_pairs[0].A]
    assert st["exp_avg_sq_row"].shape == (20,) and st["exp_avg_sq_col"].shape == (12,)
    assert st["exp_avg"].shape == (20, 12) and st["exp_avg"].dtype == torch.bfloat16
    assert "exp_avg_sq" not in st
    no_m = LoraProAdamW(model, lr=1e-2, factored=True, betas=(0.0, 0.999))
    train(model, no_m, 1, dtype=torch.float32)
    assert "exp_avg" not in no_m.state[no_m.lora_pairs[0].A]


def _state_bytes(opt, pairs_only=True):
    ids = {id(p.A) for p in opt.lora_pairs} | {id(p.B) for p in opt.lora_pairs}
    return sum(
        v.numel() * v.element_size()
        for p, st in opt.state.items()
        if not pairs_only or id(p) in ids
        for k, v in st.items()
        if isinstance(v, torch.Tensor) and k != "step"
    )


def test_factored_state_is_at_least_4x_smaller_with_bf16_and_100x_without_first_moment():
    from peft import LoraConfig, get_peft_model

    def model():
        torch.manual_seed(0)
        base = nn.Sequential(nn.Linear(384, 1536))
        return get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["0"]))

    sizes = {}
    for name, kw in {
        "exact": {},
        "bf16": dict(factored=True, moment_dtype=torch.bfloat16),
        "no_m": dict(factored=True, betas=(0.0, 0.999)),
    }.items():
        m = model()
        opt = LoraProAdamW(m, lr=1e-3, **kw)
        m(torch.randn(4, 384)).sum().backward()
        opt.step()
        sizes[name] = _state_bytes(opt)
    assert sizes["exact"] == 2 * 1536 * 384 * 4
    assert sizes["exact"] / sizes["bf16"] >= 3.9
    assert sizes["exact"] / sizes["no_m"] >= 100


@pytest.mark.parametrize("beta1", [0.9, 0.0])
def test_factored_resume_equals_uninterrupted(beta1):
    model = make_mlp_peft(dtype=torch.float32)
    kw = dict(lr=1e-2, weight_decay=0.01, factored=True, betas=(beta1, 0.999), moment_dtype=torch.bfloat16)
    opt = LoraProAdamW(model, **kw)
    train(model, opt, 3, dtype=torch.float32)
    sd = copy.deepcopy(opt.state_dict())
    snapshot = clone(model)
    train(model, opt, 4, start=3, dtype=torch.float32)
    opt2 = LoraProAdamW(snapshot, **kw)
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    opt2.load_state_dict(torch.load(buf, weights_only=True))
    train(snapshot, opt2, 4, start=3, dtype=torch.float32)
    for (n, p), q in zip(model.named_parameters(), snapshot.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-6, atol=0, msg=n)


def test_exact_and_factored_checkpoints_do_not_mix_and_efficient_refuses_factored():
    model = make_mlp_peft()
    exact = LoraProAdamW(model)
    train(model, exact, 1)
    with pytest.raises(ValueError, match="factored"):
        LoraProAdamW(clone(model), factored=True).load_state_dict(exact.state_dict())
    legacy = exact.state_dict()
    del legacy["lorapro"]["factored"]  # written before the option existed
    LoraProAdamW(clone(model)).load_state_dict(legacy)
    with pytest.raises(ValueError, match="factored"):
        LoraProAdamW(model, mode="efficient", factored=True)
