"""The README's LoRA-Pro snippet runs on a plain tokenized dataset and trains the new
head; a frozen head is warned about; the examples write a real card, keep the loss
unscaled under DDP, and say how many SFT examples they kept."""

from __future__ import annotations

import json
import re
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_examples import _reviews_csv, _tiny_bert, _tiny_llama  # noqa: E402


def _readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### LoRA-Pro: one line in `transformers.Trainer`") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_snippet_trains_the_new_head_on_a_plain_tokenized_dataset(tmp_path, monkeypatch):
    model_dir = _tiny_bert(tmp_path / "bert")
    code = _readme_snippet().replace('"sentence-transformers/all-MiniLM-L6-v2"', repr(model_dir))
    code = code.replace(
        'TrainingArguments("out",', 'TrainingArguments("out", max_steps=3, report_to="none", use_cpu=True,'
    )
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*classifier head.*frozen.*")
        exec(compile(code, "README.md", "exec"), ns)
    model = ns["model"]
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("classifier" in n and "modules_to_save" in n for n in trained)
    assert (tmp_path / "adapter" / "adapter_config.json").exists()


def test_frozen_sequence_classification_head_is_warned_about(tmp_path):
    from peft import get_peft_model
    from transformers import AutoModelForSequenceClassification

    from hf_clipadapt import LoraProConfig, create_lorapro_optimizer

    model_dir = _tiny_bert(tmp_path / "bert")
    base = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    frozen = get_peft_model(base, LoraProConfig(r=2, lora_alpha=4, target_modules=["query", "value"]))
    with pytest.warns(UserWarning, match="classifier head .* frozen"):
        create_lorapro_optimizer(frozen, lr=1e-3)
    base = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    ok = get_peft_model(base, LoraProConfig(task_type="SEQ_CLS", r=2, lora_alpha=4, target_modules=["query", "value"]))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*frozen.*")
        create_lorapro_optimizer(ok, lr=1e-3)


def test_text_classification_loss_is_a_mean_that_trainer_does_not_rescale(tmp_path):
    """Under DDP Trainer multiplies the loss of models that 'accept loss kwargs' by the world
    size; the example's classifier returns a batch mean, so it must opt out."""
    import lora_pro_text_classification as ex
    from transformers import Trainer, TrainingArguments

    model = ex.build_model(_tiny_bert(tmp_path / "bert"), 2, 2, 4, ["query", "value"], "lorapro-full")
    trainer = Trainer(model=model, args=TrainingArguments(str(tmp_path / "o"), report_to="none", use_cpu=True))
    assert trainer.model_accepts_loss_kwargs is False


def test_text_classification_example_writes_a_card_with_results(tmp_path):
    import lora_pro_text_classification as ex

    out = tmp_path / "out"
    ex.main(
        [
            "--model",
            _tiny_bert(tmp_path / "bert"),
            "--dataset",
            _reviews_csv(tmp_path),
            "--optimizer",
            "lorapro-full",
            "--lr",
            "1e-2",
            "--max_steps",
            "1",
            "--batch_size",
            "4",
            "--max_length",
            "16",
            "--target_modules",
            "query,value",
            "--output_dir",
            str(out),
        ]
    )
    card = (out / "README.md").read_text()
    assert "More Information Needed" not in card
    assert "LoRA-Pro, full mode" in card and "reviews.csv" in card
    acc = json.loads((out / "eval_results.json").read_text())["test"]["test_accuracy"]
    assert f"| test | accuracy | {acc:.4g} |" in card


def test_causal_lm_example_says_how_many_examples_it_kept(tmp_path, capsys):
    import lora_pro_causal_lm as ex

    out = tmp_path / "out"
    metrics = ex.main(
        [
            "--model",
            _tiny_llama(tmp_path / "llama"),
            "--optimizer",
            "lorapro-efficient",
            "--lr",
            "1e-2",
            "--max_steps",
            "1",
            "--batch_size",
            "2",
            "--n_train",
            "8",
            "--n_eval",
            "3",
            "--max_new_tokens",
            "2",
            "--max_length",
            "200",
            "--output_dir",
            str(out),
        ]
    )
    kept = metrics["kept_examples"]["train"]
    assert kept["of"] == 8 and 0 < kept["kept"] <= 8
    assert f"train: kept {kept['kept']} of 8 examples" in capsys.readouterr().out
    card = (out / "README.md").read_text()
    assert f"{kept['kept']} of 8" in card and "More Information Needed" not in card
