"""Smoke tests of the LoRA-Pro examples on tiny local models (no Hub, no real assets).

Each runs the example's `main()` end to end through `transformers.Trainer` with the
LoRA-Pro optimizer hook for two steps, then checks that the saved adapter is a stock
PEFT LoRA adapter that `PeftModel.from_pretrained` loads back, with trained B != 0.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))


# ----------------------------------------------------------------------------- tiny assets
def _tiny_bert(path: Path) -> str:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    words = ["good", "great", "tasty", "love", "bad", "awful", "stale", "hate", "the", "food", "was", "it"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    (path / "vocab.txt").write_text("\n".join(vocab))
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"))
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _reviews_csv(path: Path, n: int = 40) -> str:
    rng = random.Random(0)
    pos, neg = ["good", "great", "tasty", "love"], ["bad", "awful", "stale", "hate"]
    rows = ["text,label"]
    for i in range(n):
        lab = i % 2
        rows.append(f"the food was {rng.choice(pos if lab else neg)} it {rng.choice(pos if lab else neg)},{lab}")
    f = path / "reviews.csv"
    f.write_text("\n".join(rows))
    return str(f)


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tiny_llama(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    import reasoning_gym
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = []
    for r in reasoning_gym.create_dataset("gsm_symbolic", size=20, seed=0):
        corpus += [r["question"], r["metadata"]["answer_cot"]]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<pad>", unk_token="<unk>")
    tok.chat_template = CHAT_TEMPLATE
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _assert_stock_peft_adapter(out: Path, base_loader):
    from peft import PeftConfig, PeftModel

    cfg = PeftConfig.from_pretrained(out)
    assert cfg.peft_type == "LORA"
    model = PeftModel.from_pretrained(base_loader(), out)
    b_norms = [p.norm().item() for n, p in model.named_parameters() if "lora_B" in n]
    assert b_norms and max(b_norms) > 0, "the adapter saved untrained B = 0: the optimizer never stepped"


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("optimizer", ["lorapro-full", "lorapro-efficient", "adamw"])
def test_text_classification_example(tmp_path, optimizer):
    import lora_pro_text_classification as ex
    from transformers import AutoModelForSequenceClassification

    model_dir = _tiny_bert(tmp_path / "bert")
    out = tmp_path / "out"
    metrics = ex.main(
        [
            "--model",
            model_dir,
            "--dataset",
            _reviews_csv(tmp_path),
            "--optimizer",
            optimizer,
            "--lr",
            "1e-2",
            "--max_steps",
            "2",
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
    assert 0.0 <= metrics["test"]["test_accuracy"] <= 100.0
    saved = json.loads((out / "eval_results.json").read_text())
    assert saved["args"]["optimizer"] == optimizer
    _assert_stock_peft_adapter(
        out, lambda: AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    )


@pytest.mark.parametrize("example", ["lora_pro_text_classification", "lora_pro_causal_lm"])
def test_default_lr_is_the_optimizers_own(example):
    """LoRA-Pro full wants a smaller LR than LoRA (a full-FT-sized one on the classification
    benchmark); efficient mode sits between them (1/3 of LoRA's on the classifier, LoRA's own on
    SFT). One shared default would compare effective LRs, not optimisers. An explicit --lr still wins."""
    import importlib

    ex = importlib.import_module(example)
    lrs = {o: ex.parse_args(["--optimizer", o]).lr for o in ex.OPTIMIZERS}
    assert lrs == ex.DEFAULT_LR
    assert lrs["lorapro-full"] < lrs["adamw"]
    assert lrs["lorapro-full"] <= lrs["lorapro-efficient"] <= lrs["adamw"]
    assert ex.parse_args(["--optimizer", "adamw", "--lr", "5e-5"]).lr == 5e-5


def test_csv_without_a_label_column_says_so(tmp_path):
    from lora_pro_text_classification import load_text_classification

    f = tmp_path / "reviews.csv"
    f.write_text("review,stars\nnice,1\nbad,0\n")
    with pytest.raises(
        ValueError, match=r"no 'text' or 'label' column \(its columns: \['review', 'stars'\]\).*rename"
    ):
        load_text_classification(str(f))


def test_text_classification_example_uses_lorapro(tmp_path, monkeypatch):
    """The --optimizer flag really swaps Trainer's optimizer for LoraProAdamW in the right mode."""
    import lora_pro_text_classification as ex
    from transformers import Trainer

    from hf_clipadapt.lora_pro import LoraProAdamW

    seen = {}
    orig = Trainer.create_optimizer

    def spy(self, *a, **k):
        opt = orig(self, *a, **k)
        seen["opt"] = opt
        return opt

    monkeypatch.setattr(Trainer, "create_optimizer", spy)
    ex.main(
        [
            "--model",
            _tiny_bert(tmp_path / "bert"),
            "--dataset",
            _reviews_csv(tmp_path),
            "--optimizer",
            "lorapro-efficient",
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
            str(tmp_path / "out"),
        ]
    )
    opt = seen["opt"]
    inner = getattr(opt, "optimizer", opt)  # accelerate wraps it
    assert isinstance(inner, LoraProAdamW) and inner.mode == "efficient"
    # The lr passed through the hook reaches every group; Trainer's scheduler records it as initial_lr.
    assert all(g.get("initial_lr", g["lr"]) == pytest.approx(1e-2) for g in inner.param_groups)


def test_causal_lm_example(tmp_path):
    import lora_pro_causal_lm as ex
    from transformers import AutoModelForCausalLM

    model_dir = _tiny_llama(tmp_path / "llama")
    out = tmp_path / "out"
    metrics = ex.main(
        [
            "--model",
            model_dir,
            "--optimizer",
            "lorapro-full",
            "--lr",
            "1e-2",
            "--max_steps",
            "2",
            "--batch_size",
            "2",
            "--n_train",
            "8",
            "--n_eval",
            "3",
            "--max_new_tokens",
            "4",
            "--max_length",
            "512",
            "--output_dir",
            str(out),
        ]
    )
    assert metrics["eval_loss"] > 0 and 0.0 <= metrics["test_exact_match"] <= 100.0
    _assert_stock_peft_adapter(out, lambda: AutoModelForCausalLM.from_pretrained(model_dir))


def test_sft_labels_mask_the_prompt():
    # A tokenizer is needed only for offsets; build the tiny one in memory.
    import tempfile

    import lora_pro_causal_lm as ex
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as d:
        tok = AutoTokenizer.from_pretrained(_tiny_llama(Path(d)))
    ex_ = ex.tokenize_sft(tok, "What is 2+3?", "2+3=5\n#### 5", 512)
    answer_ids = [i for i, l in zip(ex_["input_ids"], ex_["labels"]) if l != -100]
    assert tok.decode(answer_ids).startswith("2+3=5")
    assert "What is" not in tok.decode(answer_ids)
    assert ex.extract_answer("so 1,200 + 5\n#### 1,205") == "1205"
    assert ex.extract_answer("the answer is 42.0") == "42"
    assert ex.extract_answer("no number") is None


def test_causal_lm_example_load_in_4bit_needs_bitsandbytes_and_says_so(monkeypatch):
    import importlib.util

    import lora_pro_causal_lm as ex

    assert ex.parse_args(["--load_in_4bit"]).load_in_4bit and not ex.parse_args([]).load_in_4bit
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real_find_spec(name, *a)
    )
    with pytest.raises(ImportError, match="--load_in_4bit needs bitsandbytes: `pip install bitsandbytes`"):
        ex.load_model_and_tokenizer("unused", load_in_4bit=True)
    with pytest.raises(ValueError, match="GGUF file is already quantised"):
        ex.load_model_and_tokenizer("unused", gguf_file="m.gguf", load_in_4bit=True)


def test_causal_lm_example_qlora(tmp_path):
    pytest.importorskip("bitsandbytes", reason="bitsandbytes is in the dev extra: pip install -e .[dev]")
    import lora_pro_causal_lm as ex
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    model_dir = _tiny_llama(tmp_path / "llama")
    out = tmp_path / "out"
    metrics = ex.main(
        [
            "--model",
            model_dir,
            "--load_in_4bit",
            "--optimizer",
            "lorapro-full",
            "--lr",
            "1e-2",
            "--max_steps",
            "2",
            "--batch_size",
            "2",
            "--n_train",
            "8",
            "--n_eval",
            "2",
            "--max_new_tokens",
            "2",
            "--max_length",
            "512",
            "--output_dir",
            str(out),
        ]
    )
    assert metrics["eval_loss"] > 0
    nf4 = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
    _assert_stock_peft_adapter(out, lambda: AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=nf4))
