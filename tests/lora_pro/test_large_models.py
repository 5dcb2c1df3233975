"""The large-model routes: DeepSpeed's refusal names the FSDP2 route (Accelerate config,
Trainer arguments, expected memory), that config and those arguments do select FSDP2, and
the memory numbers in the message and the README are those benchmarks/lora_pro/large_models.py
computes, whose optimizer-state formulas equal what memory.py measured."""

import json
import re
import sys
from pathlib import Path

import pytest
from lorapro_helpers import make_mlp_peft

from hf_clipadapt import LoraProAdamW
from hf_clipadapt.lora_pro.pairs import FSDP2_TRAINER_ARGS, LLAMA2_7B_GIB

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "lora_pro"))
import large_models  # noqa: E402

GIB = 2**30


def _route(route, variant, gpus):
    row = next(
        r for r in large_models.routes() if r["route"] == route and r["variant"] == variant and r["gpus"] == gpus
    )
    return f"{row['bytes_per_gpu'] / GIB:.1f}"


def test_deepspeed_is_refused_naming_the_fsdp2_route(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(RuntimeError, match="does not run under DeepSpeed ZeRO") as err:
        LoraProAdamW(make_mlp_peft())
    msg = str(err.value)
    for part in (
        "use FSDP2 instead",
        "--config_file examples/lora_pro_fsdp2.yaml",
        "fsdp_version: 2",
        "SHARDED_STATE_DICT",
        f"TrainingArguments(..., {FSDP2_TRAINER_ARGS})",
        "GiB on 8 GPUs",
        "load_in_4bit=True",
        "prepare_model_for_kbit_training",
        "factored=True",
        'mode="efficient"',
    ):
        assert part in msg, part
    assert "planned" not in msg and "DDP" not in msg  # FSDP2 is the route now, not DDP
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED")
    LoraProAdamW(make_mlp_peft())  # no DeepSpeed, no refusal


def test_the_named_config_and_trainer_arguments_select_fsdp2(tmp_path):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.utils import DistributedType
    from transformers import TrainingArguments

    config = ClusterConfig.from_yaml_file(str(ROOT / "examples" / "lora_pro_fsdp2.yaml"))
    assert config.distributed_type == DistributedType.FSDP
    assert config.fsdp_config["fsdp_version"] == 2
    assert config.fsdp_config["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"
    kwargs = eval(f"dict({FSDP2_TRAINER_ARGS})")  # the exact text the message shows
    args = TrainingArguments(str(tmp_path), report_to=[], **kwargs)
    assert args.fsdp_plugin_args["fsdp_version"] == 2
    assert args.fsdp_plugin_args["state_dict_type"] == "SHARDED_STATE_DICT"


def test_memory_numbers_are_the_computed_ones():
    measured = json.loads((ROOT / "benchmarks" / "lora_pro" / "memory.json").read_text())["Llama-2-7B (32 blocks)"]
    names = {
        "LoRA + AdamW": "LoRA + AdamW (reference)",
        "full, fp32 moments": "full, exact fp32 moments",
        "full, bf16 moments": "full, bf16 moments",
        "full, factored v + bf16 m": "full, factored v + bf16 m",
        "full, factored v, no m": "full, factored v, no m (beta1=0)",
        "efficient": "efficient",
    }
    for variant, name in names.items():  # the formulas reproduce the optimizer's measured state exactly
        assert large_models.optimizer_state_bytes(variant) == measured[name], variant
    for n, gib in LLAMA2_7B_GIB["fsdp2_full"].items():
        assert f"{gib:.1f}" == _route("FSDP2, bf16 base", "full, fp32 moments", n)
    assert f"{LLAMA2_7B_GIB['qlora_factored']:.1f}" == _route("1 GPU, QLoRA (nf4)", "full, factored v + bf16 m", 1)
    assert f"{LLAMA2_7B_GIB['qlora_efficient']:.1f}" == _route("1 GPU, QLoRA (nf4)", "efficient", 1)


def test_readme_large_models_table_is_the_computed_one():
    readme = (ROOT / "README.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in readme.splitlines() if line.startswith("| ")}
    variants = ("LoRA + AdamW", "full, fp32 moments", "full, factored v + bf16 m", "efficient")
    qlora = rows["1 GPU, QLoRA (nf4 base)"]
    for v in variants:
        assert f"{_route('1 GPU, QLoRA (nf4)', v, 1)} GiB" in qlora, v
    assert f"{_route('1 GPU, QLoRA (nf4)', 'full, factored v, no m', 1)} without m" in qlora
    for v in variants:
        assert f"{_route('DDP, bf16 base', v, 'any')} GiB" in rows["DDP, bf16 base, every GPU"], v
        cell = " / ".join(_route("FSDP2, bf16 base", v, n) for n in (2, 4, 8)) + " GiB"
        assert cell in rows["FSDP2, bf16 base, 2 / 4 / 8 GPUs"], v
    zero2 = " / ".join(
        _route("authors' DeepSpeed ZeRO-2 (not supported here)", "full, fp32 moments", n) for n in (2, 4, 8)
    )
    assert zero2 in rows["DeepSpeed ZeRO"]
    assert re.search(r"\*\*computed\*\* from the shapes by `benchmarks/lora_pro/large_models.py`", readme)
