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
    cfg = GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=1, n_head=2, tie_word_embeddings=False, bos_token_id=0, eos_token_id=0,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(cfg).double()
    lcfg = LoraConfig(r=2, lora_alpha=3, target_modules=["c_attn", "c_fc", "wte"], fan_in_fan_out=True,
                      init_lora_weights=False, lora_dropout=0.0)
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

    kinds = {"Embedding" if isinstance(p.module, Embedding) else f"Conv1D={p.module.fan_in_fan_out}" for p in opt.lora_pairs}
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


def test_unsupported_lora_layer_type_names_the_module():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3)))

    model = get_peft_model(Net(), LoraConfig(r=2, target_modules=["conv", "fc"]))
    with pytest.raises(TypeError, match=r"Module 'base_model\.model\.conv' is a .*Conv2d and its factors are .*Conv2d, not nn\.Linear"):
        LoraProSGD(model)
    # leaving it out of target_modules, as the message says, works
    LoraProSGD(get_peft_model(Net(), LoraConfig(r=2, target_modules=["fc"])))
