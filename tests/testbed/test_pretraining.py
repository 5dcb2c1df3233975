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
    script.main(
        ["--steps", "2", "--warmup", "1", "--batch-size", "16", "--threads", "1", "--output-dir", str(out), *extra]
    )
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
    assert (
        len(tokenizer("a photo of a sweater.")["input_ids"]) == len(tokenizer("a photo of a coat.")["input_ids"]) == 8
    )
    log = json.loads((tmp_path / "a" / "training_log.json").read_text())
    assert log["args"]["p_label_name"] == 0.0 and log["samples_seen"] == 32 and len(log["log"]) == 2


def _two_process_pretrain(out: str):
    """Worker: 2 steps on the synthetic world; each rank writes the weights it ends with."""
    import importlib.util

    from accelerate import PartialState
    from safetensors.torch import save_file

    from hf_clipadapt.testbed.world import SceneWorld

    here = Path(__file__).resolve().parent
    spec = importlib.util.spec_from_file_location("testbed_conftest", here / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    world = SceneWorld(conftest.synthetic_sprites())
    SceneWorld.from_offline = classmethod(lambda cls, split="train", **kw: world)
    spec = importlib.util.spec_from_file_location("pretrain_clip", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    model = script.main(["--steps", "2", "--warmup", "1", "--batch-size", "8", "--threads", "1", "--output-dir", out])
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(Path(out) / f"rank{PartialState().process_index}.safetensors"))


def test_two_processes_stay_in_sync_and_see_twice_the_data(tmp_path):
    from hf_clipadapt.testing_utils import run_distributed

    run_distributed(_two_process_pretrain, args=(str(tmp_path),), num_processes=2)
    r0, r1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert all(torch.equal(r0[k], r1[k]) for k in r0)  # DDP averaged the gradients
    log = json.loads((tmp_path / "training_log.json").read_text())
    assert log["num_processes"] == 2 and log["samples_seen"] == 2 * 8 * 2
