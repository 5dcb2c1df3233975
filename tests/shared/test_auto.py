"""`import hf_clipadapt` registers every model with the Auto classes, and loads no
method's modelling code until it is used."""

import json
import subprocess
import sys

from hf_clipadapt.auto import MODELS


def run_fresh(code: str) -> str:
    """Run `code` in a new interpreter (so nothing is imported yet) and return its stdout."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_import_is_lazy_for_the_method_packages():
    heavy = ["transformers.modeling_utils", "datasets", "peft", "accelerate"]
    heavy += [model.partition(":")[0] for _, model, _ in MODELS.values()]
    out = run_fresh(f"import sys, json, hf_clipadapt; print(json.dumps([m for m in {heavy!r} if m in sys.modules]))")
    assert json.loads(out) == [], f"import hf_clipadapt loaded {out}"


def test_every_model_type_is_registered_at_import():
    out = run_fresh(
        "import json, hf_clipadapt\n"
        "from transformers import AutoConfig\n"
        f"print(json.dumps([type(AutoConfig.for_model(t)).__name__ for t in {sorted(MODELS)!r}]))"
    )
    assert json.loads(out) == [MODELS[t][0].partition(":")[2] for t in sorted(MODELS)]


def test_auto_and_pipeline_load_a_saved_model_right_after_import(tmp_path):
    from hf_clipadapt.clip import CLIPBackbone
    from hf_clipadapt.gda import GDAForImageClassification
    from hf_clipadapt.testing_utils import save_tiny_clip

    backbone = CLIPBackbone.from_pretrained(save_tiny_clip(tmp_path / "clip"))
    GDAForImageClassification.from_clip(backbone, ["cat", "dog"]).save_pretrained(tmp_path / "head")
    out = run_fresh(
        "import hf_clipadapt\n"
        "from transformers import AutoModel, AutoModelForImageClassification, pipeline\n"
        "from hf_clipadapt.testing_utils import PIL_image\n"
        f"m = AutoModel.from_pretrained({str(tmp_path / 'head')!r})\n"
        f"p = pipeline('image-classification', model={str(tmp_path / 'head')!r})\n"
        "print(type(m).__name__, type(p.model).__name__, sorted(o['label'] for o in p(PIL_image(), top_k=2)))"
    )
    assert out == "GDAForImageClassification GDAForImageClassification ['cat', 'dog']"
