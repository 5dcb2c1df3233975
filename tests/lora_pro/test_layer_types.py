"""LoRA-Pro pairs lora_A/lora_B by what the factors are (nn.Linear, or Embedding
parameters), not by the base layer's class: every PEFT LoRA layer type whose
factors are linear is found and trained, quantised ones included."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers.pytorch_utils import Conv1D

from hf_clipadapt import LoraProAdamW


class _Net(nn.Module):
    """Embedding → Linear → GPT-2 Conv1D → (bitsandbytes 8-bit + 4-bit linears when `quantised`)."""

    def __init__(self, quantised):
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.fc, self.c1d = nn.Embedding(20, 16), nn.Linear(16, 16), Conv1D(16, 16)
        self.quantised = quantised
        if quantised:
            import bitsandbytes as bnb

            self.q8 = bnb.nn.Linear8bitLt(16, 8, bias=False, has_fp16_weights=False)
            self.q8.weight = bnb.nn.Int8Params(torch.randn(8, 16) / 4, requires_grad=False, has_fp16_weights=False)
            self.q4 = bnb.nn.Linear4bit(16, 8, bias=False, compute_dtype=torch.float32, quant_type="nf4")
            self.q4.weight = bnb.nn.Params4bit(torch.randn(8, 16) / 4, requires_grad=False, quant_type="nf4")
            self.to("cpu")  # quantises the 8-bit and 4-bit weights
            # what transformers sets on a model loaded with a BitsAndBytesConfig; PEFT dispatches on it
            self.is_loaded_in_8bit = self.is_loaded_in_4bit = True

    def forward(self, ids):
        h = torch.tanh(self.c1d(torch.tanh(self.fc(self.emb(ids)))))
        return self.q8(h) + self.q4(h) if self.quantised else h[..., :8]


def _train_each_layer_type(quantised, expected):
    targets = ["emb", "fc", "c1d"] + (["q8", "q4"] if quantised else [])
    model = get_peft_model(_Net(quantised), LoraConfig(r=2, lora_alpha=4, target_modules=targets))
    opt = LoraProAdamW(model, lr=3e-2, mode="full")
    found = {
        p.module_name.rsplit(".", 1)[-1]: f"{type(p.module).__module__}.{type(p.module).__name__}"
        for p in opt.lora_pairs
    }
    assert found == expected
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    g = torch.Generator().manual_seed(1)
    ids, target = torch.randint(0, 20, (8, 6), generator=g), 0.3 * torch.randn(8, 6, 8, generator=g)
    losses = []
    for _ in range(15):
        loss = nn.functional.mse_loss(model(ids), target)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    changed = {n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])}
    assert changed == set(before)  # every A and B of every layer type moved
    assert set(before) == {name for p in opt.lora_pairs for name in (p.a_name, p.b_name)}
    assert losses[-1] < 0.8 * losses[0], losses


def test_linear_conv1d_and_embedding_layers_are_found_and_trained():
    _train_each_layer_type(
        False,
        {
            "emb": "peft.tuners.lora.layer.Embedding",
            "fc": "peft.tuners.lora.layer.Linear",
            "c1d": "peft.tuners.lora.layer.Linear",  # fan_in_fan_out
        },
    )


def test_bitsandbytes_8bit_and_4bit_layers_are_found_and_trained():
    pytest.importorskip("bitsandbytes", reason="bitsandbytes is in the dev extra: pip install -e .[dev]")
    _train_each_layer_type(
        True,
        {
            "emb": "peft.tuners.lora.layer.Embedding",
            "fc": "peft.tuners.lora.layer.Linear",
            "c1d": "peft.tuners.lora.layer.Linear",
            "q8": "peft.tuners.lora.bnb.Linear8bitLt",
            "q4": "peft.tuners.lora.bnb.Linear4bit",
        },
    )


def test_stacked_experts_adapter_is_refused_with_the_reason():
    # peft's ParamWrapper (target_parameters on a 3-D experts weight) keeps every expert's
    # A/B stacked in one nn.Linear pair, each expert with its own ΔW: not one s·B·A.
    from hf_clipadapt.lora_pro.pairs import _unsupported

    layer = nn.Module()
    layer.lora_A = nn.ModuleDict({"default": nn.Linear(16, 2 * 4, bias=False)})
    layer.lora_B = nn.ModuleDict({"default": nn.Linear(2 * 4, 8, bias=False)})
    layer.num_experts = 4
    assert "4 experts' adapters stacked" in _unsupported(layer, "default")
    layer.num_experts = 1  # one parameter, no experts: a plain ΔW = s·B·A
    assert _unsupported(layer, "default") is None
