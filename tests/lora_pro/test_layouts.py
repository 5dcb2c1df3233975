"""Linear, GPT-2 Conv1D (fan_in_fan_out) and Embedding adapters: the optimizer's
layout assumption (A is r×n, B is m×r, ΔW = s·B·A up to a transpose of W) is
checked against the true gradient of the base weight, in a real tiny GPT-2."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from hf_clipadapt import LoraProSGD
from hf_clipadapt.testing_utils import assert_close_scaled


def _gpt2_peft():
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=40,
        n_positions=16,
        n_embd=16,
        n_layer=1,
        n_head=2,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = GPT2LMHeadModel(cfg).double()
    lcfg = LoraConfig(
        r=2,
        lora_alpha=3,
        target_modules=["c_attn", "c_fc", "wte"],
        fan_in_fan_out=True,
        init_lora_weights=False,
        lora_dropout=0.0,
    )
    return get_peft_model(model, lcfg).double()


def _frame(module, G):
    """The base-weight gradient in LoRA-Pro's m×n frame (m = LoRA output side)."""
    from peft.tuners.lora import Embedding

    if isinstance(module, Embedding) or module.fan_in_fan_out:
        return G.T  # Conv1D stores in×out, Embedding num×dim: ΔW = (s·B·A)ᵀ
    return G


def _loss(model):
    ids = torch.tensor([[1, 5, 7, 3, 9, 2, 11, 4]])
    return model(input_ids=ids, labels=ids).loss


def test_factor_gradients_follow_the_m_by_n_frame_and_one_step_moves_W_by_the_projection():
    model = _gpt2_peft()
    opt = LoraProSGD(model, lr=1e-6, damping=0.0)
    from peft.tuners.lora import Embedding

    kinds = {
        "Embedding" if isinstance(p.module, Embedding) else f"Conv1D={p.module.fan_in_fan_out}" for p in opt.lora_pairs
    }
    assert kinds == {"Embedding", "Conv1D=True"}
    bases = [p.module.get_base_layer().weight for p in opt.lora_pairs]
    for w in bases:
        w.requires_grad_(True)
    _loss(model).backward()
    before = []
    for pair, w in zip(opt.lora_pairs, bases):
        G, s, A, B = _frame(pair.module, w.grad), pair.scaling, pair.A.detach().clone(), pair.B.detach().clone()
        torch.testing.assert_close(pair.A.grad, s * B.T @ G)
        torch.testing.assert_close(pair.B.grad, s * G @ A.T)
        P_B = B @ torch.linalg.inv(B.T @ B) @ B.T
        P_A = A.T @ torch.linalg.inv(A @ A.T) @ A
        before.append((s * B @ A, P_B @ G + (torch.eye(len(B), dtype=G.dtype) - P_B) @ G @ P_A))
        w.grad = None
        w.requires_grad_(False)  # the optimizer only steps A and B (frozen base stays out)
    opt.step()
    for pair, (W_eff, g_tilde) in zip(opt.lora_pairs, before):
        delta = pair.scaling * pair.B.detach() @ pair.A.detach() - W_eff
        # (W + Δ) − W loses eps·|W| to cancellation, then ÷ lr: compare to the largest entry
        assert_close_scaled(delta / -1e-6, g_tilde, rtol=1e-4)


class _ConvNet(nn.Module):
    def __init__(self, conv):
        super().__init__()
        self.conv, self.fc = conv, nn.Linear(conv.out_channels, 2)

    def forward(self, x):
        return self.fc(self.conv(x).mean(tuple(range(2, x.dim()))))


@pytest.mark.parametrize("conv", [nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Conv1d(3, 5, 2)])
def test_conv_adapters_are_one_flattened_B_A_and_one_step_moves_W_by_the_projection(conv):
    """PEFT's convolution LoRA: A (r, in, k...) then a 1×1 B (m, r). Flattened, A is r×(in·k...)
    and s·B·A is the kernel of the base weight's update: the factors' gradients are those of
    the flattened base-weight gradient G, and one LoRA-Pro step moves that kernel by the
    projection of G, as for a Linear layer."""
    torch.manual_seed(0)
    model = get_peft_model(
        _ConvNet(conv), LoraConfig(r=2, lora_alpha=3, target_modules=["conv"], init_lora_weights=False)
    ).double()
    opt = LoraProSGD(model, lr=1e-6, damping=0.0)
    (pair,) = opt.lora_pairs
    w = pair.module.get_base_layer().weight
    w.requires_grad_(True)
    x = torch.randn((4, 3) + (8,) * (conv.weight.dim() - 2), dtype=torch.float64)
    model(x).square().sum().backward()
    G, s = w.grad.flatten(1), pair.scaling
    A, B = pair.A.detach().flatten(1).clone(), pair.B.detach().flatten(1).clone()
    torch.testing.assert_close(pair.A.grad.flatten(1), s * B.T @ G)
    torch.testing.assert_close(pair.B.grad.flatten(1), s * G @ A.T)
    P_B = B @ torch.linalg.inv(B.T @ B) @ B.T
    P_A = A.T @ torch.linalg.inv(A @ A.T) @ A
    g_tilde = P_B @ G + (torch.eye(len(B), dtype=G.dtype) - P_B) @ G @ P_A
    w.grad, W_eff = None, s * B @ A
    w.requires_grad_(False)
    opt.step()
    assert tuple(pair.A.shape) == (2,) + tuple(conv.weight.shape[1:])  # the factors keep their shapes
    delta = s * pair.B.detach().flatten(1) @ pair.A.detach().flatten(1) - W_eff
    assert_close_scaled(delta / -1e-6, g_tilde, rtol=1e-4)


class _UnfoldedNet(nn.Module):
    """_ConvNet(nn.Conv1d(3, 5, 2)) as a Linear on the unfolded input patches."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Linear(6, 5), nn.Linear(5, 2)

    def forward(self, x):
        patches = x.unfold(2, 2, 1).permute(0, 2, 1, 3).flatten(2)  # (N, L-1, in·k), in-major like the kernel
        return self.fc(self.conv(patches).mean(1))


@pytest.mark.parametrize("kwargs", [dict(mode="full"), dict(mode="efficient"), dict(mode="full", factored=True)])
def test_conv_adapter_trains_as_the_same_adapter_on_unfolded_patches(kwargs):
    from hf_clipadapt import LoraProAdamW

    torch.manual_seed(0)
    lcfg = dict(r=2, lora_alpha=3, target_modules=["conv"], modules_to_save=["fc"], init_lora_weights=False)
    conv = get_peft_model(_ConvNet(nn.Conv1d(3, 5, 2)), LoraConfig(**lcfg)).double()
    lin = get_peft_model(_UnfoldedNet(), LoraConfig(**lcfg)).double()
    with torch.no_grad():
        for (n, p), (n2, q) in zip(conv.named_parameters(), lin.named_parameters()):
            assert n == n2
            q.copy_(p.reshape(q.shape))
    opts = [LoraProAdamW(m, lr=1e-2, **kwargs) for m in (conv, lin)]
    for i in range(3):
        x = torch.randn(4, 3, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(i))
        for m, opt in zip((conv, lin), opts):
            m(x).square().mean().backward()
            opt.step()
            opt.zero_grad()
    for (n, p), (_, q) in zip(conv.named_parameters(), lin.named_parameters()):
        torch.testing.assert_close(p.detach().reshape(q.shape), q.detach(), rtol=1e-10, atol=1e-12, msg=n)


def test_unsupported_lora_layer_type_names_the_module():
    # a grouped convolution's LoRA (PEFT gives lora_B the base's groups) is block-diagonal, not one B·A
    model = get_peft_model(_ConvNet(nn.Conv2d(4, 4, 3, groups=2)), LoraConfig(r=2, target_modules=["conv", "fc"]))
    with pytest.raises(
        TypeError,
        match=r"Module 'base_model\.model\.conv' is a .*Conv2d and its factors are grouped "
        r"convolutions \(groups=2\)",
    ):
        LoraProSGD(model)
    # leaving it out of target_modules, as the message says, works
    LoraProSGD(get_peft_model(_ConvNet(nn.Conv2d(4, 4, 3, groups=2)), LoraConfig(r=2, target_modules=["fc"])))
