"""benchmarks/testbed/pretrain_clip.py: a run is a pure function of its arguments.

Runs on the synthetic-sprite world (no dataset files), 2 steps of 16 pairs."""

import importlib.util
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "testbed" / "pretrain_clip.py"


def run(monkeypatch, world, out, *extra):
    from hf_clipadapt.testbed.world import SceneWorld

    monkeypatch.setattr(SceneWorld, "from_offline", classmethod(lambda cls, split="train", **kw: world))
    spec = importlib.util.spec_from_file_location("pretrain_clip", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["--steps", "2", "--warmup", "1", "--batch-size", "16", "--threads", "1", "--output-dir", str(out), *extra])
    return load_file(out / "model.safetensors")


def test_same_arguments_same_weights_and_a_loadable_checkpoint(monkeypatch, world, tmp_path):
    from transformers import AutoModel, AutoTokenizer, CLIPModel

    a = run(monkeypatch, world, tmp_path / "a")
    b = run(monkeypatch, world, tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = run(monkeypatch, world, tmp_path / "c", "--seed", "1")
    assert not all(torch.equal(a[k], c[k]) for k in a)

    assert type(AutoModel.from_pretrained(tmp_path / "a")) is CLIPModel
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "a")
    # web names are single words of the vocabulary, like the label names
    assert len(tokenizer("a photo of a sweater.")["input_ids"]) == len(tokenizer("a photo of a coat.")["input_ids"]) == 8
    log = json.loads((tmp_path / "a" / "training_log.json").read_text())
    assert log["args"]["p_label_name"] == 0.0 and log["samples_seen"] == 32 and len(log["log"]) == 2
