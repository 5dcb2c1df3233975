"""Tiny PEFT models and a deterministic training loop shared by the LoRA-Pro tests."""

import copy

import torch
from peft import LoraConfig, get_peft_model
from torch import nn

torch.set_num_threads(2)


def make_mlp_peft(r=3, alpha=6.0, rslora=False, dtype=torch.float64, seed=0, **lora_kwargs):
    """A tiny MLP with LoRA on two Linear layers and a trainable head (modules_to_save)."""
    torch.manual_seed(seed)
    base = nn.Sequential(nn.Linear(12, 20), nn.Tanh(), nn.Linear(20, 16), nn.Tanh(), nn.Linear(16, 5))
    cfg = LoraConfig(
        r=r, lora_alpha=alpha, use_rslora=rslora, target_modules=["0", "2"], modules_to_save=["4"], **lora_kwargs
    )
    return get_peft_model(base, cfg).to(dtype)


def mlp_batch(i, dtype=torch.float64, n=16):
    g = torch.Generator().manual_seed(100 + i)
    return torch.randn(n, 12, generator=g).to(dtype), torch.randn(n, 5, generator=g).to(dtype)


def train(model, opt, steps, start=0, dtype=torch.float64):
    for i in range(start, start + steps):
        x, y = mlp_batch(i, dtype)
        loss = nn.functional.mse_loss(model(x).float(), y.float())
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model


def clone(model):
    return copy.deepcopy(model)
