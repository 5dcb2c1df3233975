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


def make_llama_peft(seed=0):
    """A tiny Llama as SmolLM2 is built (tied input/output embeddings, grouped-query attention
    with k/v narrower than q), LoRA r=4 on every linear layer, B drawn non-zero so the first
    steps exercise every LoRA-Pro term; float32."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=24,
        intermediate_size=40,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
        tie_word_embeddings=True,
    )
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    return model


def llama_batch(i, n=4, tokens=12):
    ids = torch.randint(0, 64, (n, tokens), generator=torch.Generator().manual_seed(200 + i))
    return {"input_ids": ids, "labels": ids}


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
