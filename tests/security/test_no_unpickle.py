"""Nothing is unpickled from a resume folder: a pickle placed there never runs.

Before: CraFT's resume unpickled `cmaes.pkl`, SFDA's `torch.load(weights_only=False)`
read `sfda_state.pt`, and UEO relied on torch's default (unsafe before torch 2.6);
each of the malicious files below wrote the marker.
"""

import os
import pickle
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import hf_clipadapt


class Payload:
    """A pickle whose loading runs `touch <marker>`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


CLASSES = ["cat", "dog", "car"]


@pytest.fixture(scope="module")
def clip():
    from hf_clipadapt.clip import CLIPBackbone
    from hf_clipadapt.testing_utils import tiny_clip_model, tiny_clip_tokenizer, tiny_image_processor

    return CLIPBackbone(tiny_clip_model(), tiny_clip_tokenizer(), tiny_image_processor())


def _craft_loop(clip, output_dir):
    from hf_clipadapt.craft import (
        CollaborativeLoop,
        CraFTForImageClassification,
        CraFTTrainingArguments,
        LocalBlackBox,
    )

    box = LocalBlackBox(clip)
    model = CraFTForImageClassification.from_black_box(box, CLASSES, intrinsic_dim=8, refine_hidden=4)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 3, 30, 30, generator=g), torch.arange(6) % 3
    # 3 generations of λ + 1 = 11 queries (10 candidates, then R's augmented view)
    args = CraFTTrainingArguments(budget=33, population=10, sigma=0.5, batch_size=4, output_dir=output_dir)
    return CollaborativeLoop(model, box, x, y, args)


def test_craft_resume_never_unpickles_and_equals_an_uninterrupted_run(clip, tmp_path):
    full = _craft_loop(clip, None)
    full.run()
    first = _craft_loop(clip, str(tmp_path))
    first.run(max_generations=2)
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "craft-checkpoint"
    pickled = [p.name for p in checkpoint.iterdir() if p.suffix in (".pkl", ".pickle")]
    (checkpoint / "cmaes.pkl").write_bytes(pickle.dumps(Payload(marker)))  # what the old version read
    resumed = _craft_loop(clip, str(tmp_path))
    try:
        resumed.run(resume_from_checkpoint=str(tmp_path))
    except Exception:  # noqa: BLE001 - the old code fails after running the payload; the marker tells
        pass
    assert not marker.exists(), "resuming unpickled cmaes.pkl"
    assert pickled == []  # the checkpoint is written as data only
    assert resumed.generation == 3
    np.testing.assert_array_equal(resumed.last_candidates, full.last_candidates)
    assert torch.equal(resumed.model.prompt.z, full.model.prompt.z)


def test_craft_checkpoint_with_only_a_pickle_is_refused(clip, tmp_path):
    first = _craft_loop(clip, str(tmp_path))
    first.run(max_generations=1)
    checkpoint = tmp_path / "craft-checkpoint"
    for name in ("cmaes.safetensors", "cmaes.json"):
        (checkpoint / name).unlink(missing_ok=True)
    marker = tmp_path / "pwned"
    (checkpoint / "cmaes.pkl").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(FileNotFoundError, match="never read"):
        _craft_loop(clip, str(tmp_path)).run(resume_from_checkpoint=str(tmp_path))
    assert not marker.exists()


def test_sfda_method_state_pickle_is_refused(tmp_path):
    from hf_clipadapt.sfda.training import METHOD_STATE_FILE, SFDATrainer, _MethodState

    marker = tmp_path / "pwned"
    torch.save({"method": Payload(marker), "teacher": None}, tmp_path / METHOD_STATE_FILE)
    trainer = SimpleNamespace(method=_MethodState(), teacher=None)
    try:
        SFDATrainer._load_method_state(trainer, tmp_path)
        error = None
    except Exception as e:  # noqa: BLE001
        error = e
    assert not marker.exists(), "resuming unpickled sfda_state.pt"
    assert isinstance(error, OSError) and "data-only" in str(error)


def test_ueo_resume_weights_are_read_as_data_even_where_torch_defaults_to_pickle(tmp_path, monkeypatch):
    """torch 2.4-2.5 defaulted to weights_only=False; TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 restores
    that default, so only an explicit weights_only=True keeps the payload from running."""
    from hf_clipadapt.ueo import training

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    torch.save(Payload(marker), tmp_path / training.WEIGHTS_FILE)
    with pytest.raises(OSError, match="data-only"):
        training.load_initial_weights(tmp_path)
    assert not marker.exists(), "UEO unpickled its resume weights"
    torch.save(torch.ones(3), tmp_path / training.WEIGHTS_FILE)
    assert torch.equal(training.load_initial_weights(tmp_path), torch.ones(3))


LOADS = re.compile(r"torch\.load\(|pickle\.loads?\(|import pickle|from pickle|cloudpickle|dill")


def test_no_module_of_the_package_unpickles():
    """Every torch.load in hf_clipadapt passes weights_only=True; no pickle.load(s) anywhere."""
    root = Path(hf_clipadapt.__file__).parent
    offending = []
    for path in sorted(root.rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#")[0]
            if not LOADS.search(code):
                continue
            if "torch.load(" in code and "weights_only=True" in code:
                continue
            offending.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert offending == [], offending
