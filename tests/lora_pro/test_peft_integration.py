"""LoraProConfig with get_peft_model, and the saved adapter as plain LoRA."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from hf_clipadapt import LoraProAdamW, LoraProConfig, create_lorapro_optimizer


def _tiny_llama():
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=48,
        hidden_size=16,
        intermediate_size=24,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return LlamaForCausalLM(cfg)


def test_config_drives_the_optimizer_and_explicit_arguments_win():
    cfg = LoraProConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"], lorapro_mode="efficient", lorapro_damping=1e-6
    )
    model = get_peft_model(_tiny_llama(), cfg)
    opt = create_lorapro_optimizer(model, lr=1e-3)
    assert (opt.mode, opt.damping) == ("efficient", 1e-6)
    assert create_lorapro_optimizer(model, lr=1e-3, mode="full").mode == "full"
    assert (
        create_lorapro_optimizer(
            get_peft_model(_tiny_llama(), LoraConfig(r=2, target_modules=["q_proj"])), lr=1e-3
        ).mode
        == "full"
    )


def test_config_validates_its_fields():
    with pytest.raises(ValueError, match="lorapro_mode"):
        LoraProConfig(r=2, target_modules=["q_proj"], lorapro_mode="fast")
    with pytest.raises(ValueError, match="lorapro_damping"):
        LoraProConfig(r=2, target_modules=["q_proj"], lorapro_damping=-1.0)


def test_saved_adapter_is_plain_lora_and_loads_in_stock_peft_without_hf_clipadapt(tmp_path):
    base = _tiny_llama()
    base.save_pretrained(tmp_path / "base")
    cfg = LoraProConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lorapro_mode="efficient")
    model = get_peft_model(base, cfg)
    opt = LoraProAdamW(model, lr=1e-2)
    ids = torch.tensor([[2, 5, 9, 4, 7, 3]])
    for _ in range(2):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    expected = model(input_ids=ids).logits
    model.save_pretrained(tmp_path / "adapter")

    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA"
    assert not [k for k in saved if k.startswith("lorapro")]
    torch.save(expected, tmp_path / "expected.pt")

    script = textwrap.dedent(f"""
        import sys, torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM
        base = AutoModelForCausalLM.from_pretrained({str(tmp_path / "base")!r})
        model = PeftModel.from_pretrained(base, {str(tmp_path / "adapter")!r}).eval()
        assert type(model.peft_config["default"]).__name__ == "LoraConfig", type(model.peft_config["default"])
        ids = torch.tensor([[2, 5, 9, 4, 7, 3]])
        torch.testing.assert_close(model(input_ids=ids).logits, torch.load({str(tmp_path / "expected.pt")!r}))
        assert not [m for m in sys.modules if m.startswith("hf_clipadapt")], "hf_clipadapt was imported"
        print("OK")
    """)
    # -I: isolated mode, so neither the cwd nor PYTHONPATH can put hf_clipadapt on the path
    # (the editable install is still importable, which is why the last assert checks sys.modules).
    out = subprocess.run(
        [sys.executable, "-I", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("OK"), out.stderr[-3000:]


def test_dora_magnitudes_and_biases_get_plain_adamw():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(10, 12), nn.Tanh(), nn.Linear(12, 4))
    model = get_peft_model(base, LoraProConfig(r=2, target_modules=["0", "2"], use_dora=True, bias="lora_only"))
    opt = LoraProAdamW(model, lr=1e-2)
    plain_names = {n for n, p in model.named_parameters() if any(p is q for q in opt.param_groups[1]["params"])}
    assert any("lora_magnitude_vector" in n for n in plain_names)
    assert any(n.endswith("base_layer.bias") for n in plain_names)
    x, y = torch.randn(8, 10), torch.randn(8, 4)
    before = {n: p.clone() for n, p in model.named_parameters()}
    for _ in range(2):
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        opt.zero_grad()
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters() if p.requires_grad)


def test_any_module_carrying_lora_layers_works_without_peftmodel():
    from peft import inject_adapter_in_model

    torch.manual_seed(0)
    net = inject_adapter_in_model(LoraConfig(r=2, target_modules=["0"]), nn.Sequential(nn.Linear(6, 6), nn.Tanh()))
    opt = LoraProAdamW(net, lr=1e-2)
    assert [p.a_name for p in opt.lora_pairs] == ["0.lora_A.default.weight"]


def test_every_trainable_adapter_is_paired_with_its_own_scaling():
    torch.manual_seed(0)
    model = get_peft_model(nn.Sequential(nn.Linear(6, 8)), LoraConfig(r=2, lora_alpha=4, target_modules=["0"]))
    model.add_adapter("other", LoraConfig(r=4, lora_alpha=2, target_modules=["0"]))
    model.base_model.set_adapter(["default", "other"])  # both active and trainable
    opt = LoraProAdamW(model, lr=1e-2)
    assert sorted((p.adapter, p.rank, p.scaling) for p in opt.lora_pairs) == [("default", 2, 2.0), ("other", 4, 0.5)]


def test_conflicting_lorapro_configs_need_explicit_settings():
    torch.manual_seed(0)
    model = get_peft_model(
        nn.Sequential(nn.Linear(6, 8)), LoraProConfig(r=2, target_modules=["0"], lorapro_mode="full")
    )
    model.add_adapter("other", LoraProConfig(r=2, target_modules=["0"], lorapro_mode="efficient"))
    assert create_lorapro_optimizer(model, lr=1e-3).mode == "full"  # "other" is not active: ignored
    model.base_model.set_adapter(["default", "other"])
    with pytest.raises(ValueError, match="different LoRA-Pro settings"):
        create_lorapro_optimizer(model, lr=1e-3)
