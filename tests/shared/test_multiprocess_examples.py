"""The CPU multi-process route the README documents: `accelerate launch --multi_gpu
--num_processes 2` on a machine without a GPU forms one gloo group of 2 processes
(the examples create their Accelerator with cpu=True there), trains through the
shared Trainer path under DDP, and saves one model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from hf_clipadapt.testing_utils import save_tiny_clip

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def image_folder(root: Path, names=("red", "green", "blue"), per_class=4) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c, name in enumerate(names):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                colour = np.eye(3)[c] * 200 + rng.normal(0, 20, size=(16, 16, 3))
                Image.fromarray(np.clip(colour, 0, 255).astype(np.uint8)).save(root / split / name / f"{i}.png")
    return root


def test_coop_example_runs_as_two_cpu_processes(tmp_path):
    clip = save_tiny_clip(tmp_path / "clip")
    data = image_folder(tmp_path / "data")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(EXAMPLES / "coop.py"),
        "--model",
        clip,
        "--dataset",
        str(data),
        "--shots",
        "2",
        "--views",
        "2",
        "--epochs",
        "4",
        "--cache_dir",
        "none",
        "--output_dir",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.count("world size: 2") == 1, "printed once, by the main process, with the real world size"
    results = json.loads((out / "results.json").read_text())
    assert results["world_size"] == 2 and results["test_images"] == 12
    assert (out / "model.safetensors").exists() and (out / "README.md").exists()
