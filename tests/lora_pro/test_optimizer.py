"""LoraProAdamW / LoraProSGD against the float64 reference in _reference.py."""

import pytest
import torch
from lorapro_helpers import clone, make_mlp_peft, mlp_batch, train
from lorapro_reference import RefLoraProAdamW, closed_form, lora_pairs_by_hand
from torch import nn

from hf_clipadapt import LoraProAdamW, LoraProSGD, create_lorapro_optimizer
from hf_clipadapt.testing_utils import assert_close_scaled


def _max_rel(m1, m2):
    worst = 0.0
    for (_, p), (_, q) in zip(m1.named_parameters(), m2.named_parameters()):
        worst = max(worst, ((p.double() - q.double()).norm() / q.double().norm().clamp_min(1e-30)).item())
    return worst


@pytest.mark.parametrize("mode", ["full", "efficient"])
@pytest.mark.parametrize("rslora", [False, True])
def test_multi_step_matches_float64_reference(mode, rslora, monkeypatch):
    # Small row blocks, so that full mode's blocked m×n pass (several blocks per
    # matrix, a ragged last one) is what gets compared.
    monkeypatch.setattr(LoraProAdamW, "_CPU_CHUNK_ELEMS", 7 * 12)
    ours = make_mlp_peft(r=3, alpha=6.0, rslora=rslora)
    ref = clone(ours)
    kw = dict(lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    # damping=0 so that the comparison with the undamped reference is exact.
    opt = LoraProAdamW(ours, mode=mode, damping=0.0, **kw)
    pairs, plain = lora_pairs_by_hand(ref, alpha=6.0, r=3, rslora=rslora)
    ref_opt = RefLoraProAdamW(pairs, plain, mode=mode, **kw)
    train(ours, opt, 6)
    train(ref, ref_opt, 6)
    assert _max_rel(ours, ref) < 1e-9
    # and the run did move the adapters (B starts at 0 with PEFT's init)
    assert all(p.B.abs().max() > 1e-3 for p in opt.lora_pairs)


def test_float32_default_damping_close_to_float64_reference():
    ours = make_mlp_peft(dtype=torch.float32)
    ref = clone(ours).double()
    opt = LoraProAdamW(ours, lr=1e-2)
    pairs, plain = lora_pairs_by_hand(ref, alpha=6.0, r=3)
    train(ours, opt, 5, dtype=torch.float32)
    train(ref, RefLoraProAdamW(pairs, plain, lr=1e-2), 5)
    assert _max_rel(ours, ref) < 1e-3


def test_sgd_matches_closed_form_step_with_momentum():
    ours = make_mlp_peft()
    ref = clone(ours)
    opt = LoraProSGD(ours, lr=0.05, momentum=0.9, damping=0.0)
    pairs, plain = lora_pairs_by_hand(ref, alpha=6.0, r=3)
    bufs = {}
    for i in range(4):
        train(ours, opt, 1, start=i)
        x, y = mlp_batch(i)
        nn.functional.mse_loss(ref(x).float(), y.float()).backward()
        with torch.no_grad():
            updates = []
            for Ap, Bp, s in pairs:
                updates += list(zip((Ap, Bp), closed_form(Ap, Bp, Ap.grad, Bp.grad, s)))
            updates += [(p, p.grad) for p in plain]
            for p, d in updates:
                bufs[p] = 0.9 * bufs[p] + d if p in bufs else d.clone()
                p -= 0.05 * bufs[p]
                p.grad = None
    assert _max_rel(ours, ref) < 1e-9


def test_plain_parameters_get_exactly_torch_adamw():
    ours = make_mlp_peft(dtype=torch.float32)
    ref = clone(ours)
    opt = LoraProAdamW(ours, lr=3e-3, weight_decay=0.05)
    head = [p for n, p in ref.named_parameters() if p.requires_grad and "lora" not in n]
    torch_opt = torch.optim.AdamW(head, lr=3e-3, weight_decay=0.05)
    for i in range(4):
        x, y = mlp_batch(i, torch.float32)
        # the head's gradients depend on the LoRA factors, which only `opt` moves,
        # so feed torch's AdamW the very gradients the plain parameters got here
        nn.functional.mse_loss(ours(x), y).backward()
        for (_, p), q in zip(
            [(n, p) for n, p in ours.named_parameters() if p.requires_grad and "lora" not in n], head
        ):
            q.grad = p.grad.clone()
        opt.step()
        torch_opt.step()
        opt.zero_grad()
    plain_ours = [p for n, p in ours.named_parameters() if p.requires_grad and "lora" not in n]
    assert len(plain_ours) == 2  # head weight and bias (modules_to_save)
    for p, q in zip(plain_ours, head):
        assert_close_scaled(p, q, rtol=1e-5)  # two float32 AdamW codes: a few ulps per step, other SIMD kernels


def test_param_groups_are_tagged_and_scheduler_drives_lr():
    model = make_mlp_peft()
    opt = LoraProAdamW(model, lr=1e-2)
    assert [g["lorapro"] for g in opt.param_groups] == [True, False]
    assert len(opt.param_groups[0]["params"]) == 4 and len(opt.param_groups[1]["params"]) == 2
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.0)  # lr = 0 from the start
    before = {n: p.clone() for n, p in model.named_parameters()}
    train(model, opt, 2)
    sched.step()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p, before[n], msg=n)


def test_weight_decay_touches_only_trainable_parameters():
    model = make_mlp_peft()
    base_before = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    train(model, LoraProAdamW(model, lr=1e-2, weight_decay=0.5), 3)
    for n, p in model.named_parameters():
        if not p.requires_grad:
            torch.testing.assert_close(p, base_before[n], rtol=0, atol=0)


def test_scaling_is_read_from_the_module_each_step():
    model = make_mlp_peft(r=3, alpha=6.0)
    opt = LoraProAdamW(model)
    assert [p.scaling for p in opt.lora_pairs] == [2.0, 2.0]
    model.base_model.model[0].scaling["default"] = 5.0  # e.g. set_scale
    assert opt.lora_pairs[0].scaling == 5.0


def test_rank_and_alpha_patterns_give_per_module_scaling():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(12, 20), nn.Tanh(), nn.Linear(20, 16))
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=2, lora_alpha=4, target_modules=["0", "2"], rank_pattern={"^2$": 4}, alpha_pattern={"^2$": 2})
    opt = LoraProAdamW(get_peft_model(base, cfg))
    assert [(p.rank, p.scaling) for p in opt.lora_pairs] == [(2, 2.0), (4, 0.5)]


@pytest.mark.parametrize("mode", ["full", "efficient"])
def test_low_precision_parameters(mode):
    model = make_mlp_peft(dtype=torch.bfloat16)
    ref = make_mlp_peft(dtype=torch.float32)
    with torch.no_grad():
        for p, q in zip(ref.parameters(), model.parameters()):
            p.copy_(q.float())
    opt = LoraProAdamW(model, lr=1e-2, mode=mode)
    train(model, opt, 3, dtype=torch.bfloat16)
    train(ref, LoraProAdamW(ref, lr=1e-2, mode=mode), 3, dtype=torch.float32)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    st = opt.state[opt.lora_pairs[0].A]
    assert st["exp_avg"].dtype == torch.float32  # moments stay float32 for bf16 params
    assert _max_rel(model, ref) < 0.05


def test_bf16_moments_option_tracks_float32_moments():
    m32, m16 = make_mlp_peft(dtype=torch.float32), make_mlp_peft(dtype=torch.float32)
    o32 = LoraProAdamW(m32, lr=1e-2)
    o16 = LoraProAdamW(m16, lr=1e-2, moment_dtype=torch.bfloat16)
    train(m32, o32, 4, dtype=torch.float32)
    train(m16, o16, 4, dtype=torch.float32)
    pair = o16.lora_pairs[1]
    assert o16.state[pair.A]["exp_avg"].dtype == torch.bfloat16
    assert o16.state[pair.A]["exp_avg"].shape == (pair.B.shape[0], pair.A.shape[1])  # m×n
    assert _max_rel(m16, m32) < 0.05


def test_full_mode_keeps_two_mn_moments_per_pair_efficient_keeps_factor_sized_ones():
    m_full, m_eff = make_mlp_peft(dtype=torch.float32), make_mlp_peft(dtype=torch.float32)
    full, eff = LoraProAdamW(m_full, mode="full"), LoraProAdamW(m_eff, mode="efficient")
    train(m_full, full, 1, dtype=torch.float32)
    train(m_eff, eff, 1, dtype=torch.float32)
    for pair in full.lora_pairs:
        st = full.state[pair.A]
        assert st["exp_avg"].shape == st["exp_avg_sq"].shape == (pair.B.shape[0], pair.A.shape[1])
        assert not full.state.get(pair.B)
    for pair in eff.lora_pairs:
        assert eff.state[pair.A]["exp_avg"].shape == pair.A.shape
        assert eff.state[pair.B]["exp_avg"].shape == pair.B.shape


def test_create_lorapro_optimizer_shapes_and_sgd():
    model = make_mlp_peft()
    opt = create_lorapro_optimizer(model, lr=1e-3, weight_decay=0.1)
    assert isinstance(opt, LoraProAdamW) and opt.mode == "full" and opt.defaults["weight_decay"] == 0.1
    sgd = create_lorapro_optimizer(model, LoraProSGD, lr=1e-3, momentum=0.5)
    assert isinstance(sgd, LoraProSGD) and sgd.defaults["momentum"] == 0.5
    with pytest.raises(ValueError, match="no mode"):
        create_lorapro_optimizer(model, LoraProSGD, lr=1e-3, mode="full")
    with pytest.raises(TypeError, match="LoraProAdamW or LoraProSGD"):
        create_lorapro_optimizer(model, torch.optim.AdamW, lr=1e-3)
