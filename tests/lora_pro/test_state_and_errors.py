"""Name-keyed state dicts, exact resume, non-finite gradients and bad input."""

import copy

import pytest
import torch
from lorapro_helpers import clone, make_mlp_peft, mlp_batch, train
from peft import LoraConfig, get_peft_model
from torch import nn

from hf_clipadapt import LoraProAdamW, LoraProSGD


@pytest.mark.parametrize("mode", ["full", "efficient"])
def test_state_dict_is_keyed_by_name_and_resume_equals_uninterrupted(mode):
    model = make_mlp_peft(dtype=torch.float32)
    opt = LoraProAdamW(model, lr=1e-2, weight_decay=0.01, mode=mode)
    train(model, opt, 3, dtype=torch.float32)
    sd = copy.deepcopy(opt.state_dict())
    snapshot = clone(model)

    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(sd["state"]) <= names and {n for g in sd["param_groups"] for n in g["params"]} == names
    a_name = "base_model.model.0.lora_A.default.weight"
    assert int(sd["state"][a_name]["step"]) == 3
    if mode == "full":
        assert sd["state"][a_name]["exp_avg"].shape == (20, 12)  # the pair's m×n moments live under lora_A

    train(model, opt, 4, start=3, dtype=torch.float32)  # uninterrupted
    opt2 = LoraProAdamW(snapshot, lr=1e-2, weight_decay=0.01, mode=mode)
    opt2.load_state_dict(torch.load(_roundtrip(sd), weights_only=True))  # through a real file
    train(snapshot, opt2, 4, start=3, dtype=torch.float32)
    for (n, p), q in zip(model.named_parameters(), snapshot.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-6, atol=0, msg=n)


def _roundtrip(sd):
    import io

    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return buf


def test_load_restores_group_hyperparameters_such_as_scheduler_lr():
    model = make_mlp_peft()
    opt = LoraProAdamW(model, lr=1e-2)
    for g in opt.param_groups:
        g["lr"], g["initial_lr"] = 3e-4, 1e-2
    opt2 = LoraProAdamW(clone(model), lr=1e-2)
    opt2.load_state_dict(opt.state_dict())
    assert [g["lr"] for g in opt2.param_groups] == [3e-4, 3e-4]
    assert all(g["initial_lr"] == 1e-2 for g in opt2.param_groups)


def test_checkpoint_from_the_other_mode_is_refused():
    model = make_mlp_peft()
    full = LoraProAdamW(model, mode="full")
    train(model, full, 1)
    with pytest.raises(ValueError, match="mode='full'.*mode='efficient'"):
        LoraProAdamW(model, mode="efficient").load_state_dict(full.state_dict())


def test_foreign_and_mismatched_checkpoints_are_refused():
    model = make_mlp_peft()
    torch_sd = torch.optim.AdamW(model.parameters()).state_dict()
    with pytest.raises(ValueError, match="not written by a LoRA-Pro optimizer"):
        LoraProAdamW(model).load_state_dict(torch_sd)
    with pytest.raises(ValueError, match="saved by LoraProSGD"):
        LoraProAdamW(model).load_state_dict(LoraProSGD(model).state_dict())
    # (full-mode moments are m×n whatever the rank, so the rank check bites in efficient mode)
    other = make_mlp_peft(r=4)
    opt = LoraProAdamW(other, mode="efficient")
    train(other, opt, 1)
    with pytest.raises(ValueError, match="different mode or adapter rank"):
        LoraProAdamW(model, mode="efficient").load_state_dict(opt.state_dict())
    sd = LoraProAdamW(model).state_dict()
    sd["param_groups"][0]["params"][0] = "renamed.lora_A.weight"
    with pytest.raises(ValueError, match="different trainable parameters"):
        LoraProAdamW(model).load_state_dict(sd)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("opt_cls", ["full", "efficient", "sgd"])
def test_non_finite_gradients_skip_the_step_with_a_warning(bad, opt_cls):
    model = make_mlp_peft()
    opt = LoraProSGD(model, lr=1e-2) if opt_cls == "sgd" else LoraProAdamW(model, lr=1e-2, mode=opt_cls)
    train(model, opt, 2)
    before = {n: p.clone() for n, p in model.named_parameters()}
    state_before = copy.deepcopy(opt.state_dict()["state"])
    x, y = mlp_batch(9)
    nn.functional.mse_loss(model(x), y).backward()
    model.base_model.model[4].modules_to_save["default"].bias.grad[0] = bad  # one plain param is enough
    with pytest.warns(RuntimeWarning, match="non-finite.*skipping"):
        opt.step()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p, before[n], rtol=0, atol=0, msg=n)
    after = opt.state_dict()["state"]
    for n, st in state_before.items():
        for k, v in st.items():
            torch.testing.assert_close(after[n][k], v, rtol=0, atol=0)
    opt.zero_grad()
    train(model, opt, 1)  # and training goes on
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_model_without_lora_layers_is_refused():
    with pytest.raises(ValueError, match="no trainable LoRA layer.*get_peft_model"):
        LoraProAdamW(nn.Sequential(nn.Linear(3, 3)))
    with pytest.raises(TypeError, match="not `model.parameters\\(\\)`"):
        LoraProAdamW(make_mlp_peft().parameters())


def test_rank_zero_adapter_is_refused():
    model = make_mlp_peft()
    layer = model.base_model.model[2]  # PEFT itself refuses r=0; a hand-edited adapter can still carry it
    layer.r["default"] = 0
    layer.lora_A["default"] = nn.Linear(20, 0, bias=False).double()
    layer.lora_B["default"] = nn.Linear(0, 16, bias=False).double()
    with pytest.raises(ValueError, match="'base_model.model.2' has rank 0"):
        LoraProAdamW(model)


def test_a_parameter_that_appears_twice_is_refused():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8))
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["0", "2"]))
    model.base_model.model[2].lora_A["default"].weight = model.base_model.model[0].lora_A["default"].weight
    with pytest.raises(ValueError, match="appears twice"):
        LoraProAdamW(model)


def test_bad_hyperparameters_are_refused():
    model = make_mlp_peft()
    for kwargs, msg in [
        ({"mode": "fast"}, "mode must be"),
        ({"lr": -1.0}, "lr must be"),
        ({"betas": (0.9, 1.0)}, "betas"),
        ({"eps": -1.0}, "eps"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"damping": -1e-8}, "damping"),
        ({"moment_dtype": torch.int8}, "moment_dtype"),
    ]:
        with pytest.raises(ValueError, match=msg):
            LoraProAdamW(model, **kwargs)
    with pytest.raises(ValueError, match="momentum"):
        LoraProSGD(model, momentum=1.5)


def test_unused_pair_is_left_alone_like_torch_optimizers():
    model = make_mlp_peft()
    opt = LoraProAdamW(model, lr=1e-2)
    before = {n: p.clone() for n, p in model.named_parameters()}
    x, y = mlp_batch(0)
    nn.functional.mse_loss(model(x), y).backward()
    layer0 = model.base_model.model[0]
    layer0.lora_A["default"].weight.grad = layer0.lora_B["default"].weight.grad = None
    opt.step()
    torch.testing.assert_close(layer0.lora_A["default"].weight, before["base_model.model.0.lora_A.default.weight"])
    assert "base_model.model.0.lora_A.default.weight" not in opt.state_dict()["state"]


def test_extra_param_groups_are_refused_instead_of_silently_ignored():
    model = make_mlp_peft()
    opt = LoraProAdamW(model)
    with pytest.raises(TypeError, match="cannot take extra groups"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(2))]})


def test_sgd_momentum_state_resumes_exactly():
    model = make_mlp_peft()
    opt = LoraProSGD(model, lr=0.05, momentum=0.9)
    train(model, opt, 2)
    snapshot, sd = clone(model), copy.deepcopy(opt.state_dict())
    assert "base_model.model.0.lora_B.default.weight" in sd["state"]
    train(model, opt, 2, start=2)
    opt2 = LoraProSGD(snapshot, lr=0.05, momentum=0.9)
    opt2.load_state_dict(sd)
    train(snapshot, opt2, 2, start=2)
    for p, q in zip(model.parameters(), snapshot.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-12, atol=0)


def test_wrapped_models_keep_the_unwrapped_parameter_names():
    model = make_mlp_peft()
    names = set(LoraProAdamW(model).state_dict()["param_groups"][0]["params"])
    for wrapped in (nn.DataParallel(model), torch.compile(model)):  # compile wraps lazily: no compilation here
        assert set(LoraProAdamW(wrapped).state_dict()["param_groups"][0]["params"]) == names
