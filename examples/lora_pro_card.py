"""The model card the LoRA-Pro examples write over PEFT's blank one ("[More Information
Needed]"): what was trained, on what data, with which optimizer, and the measured results."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

OPTIMIZER_TEXT = {
    "adamw": "plain LoRA with Trainer's AdamW",
    "lorapro-full": "LoRA-Pro, full mode (Adam on the m×n equivalent gradient; Wang et al., ICLR 2025)",
    "lorapro-efficient": "LoRA-Pro, efficient mode (closed-form gradient adjustment, then AdamW on A and B)",
}


def write_card(
    output_dir: str | Path,
    *,
    base_model: str,
    task: str,
    dataset: str,
    args: dict,
    data_counts: dict[str, int | str],
    results: list[tuple[str, str, float]],
    notes: list[str] = (),
) -> Path:
    """Write output_dir/README.md. results: (split, metric, value); data_counts: split -> examples used."""
    card_data = ModelCardData(
        library_name="peft",
        base_model=base_model,
        pipeline_tag=task,
        tags=["lora", "lora-pro", "hf_clipadapt"],
        datasets=[dataset],
        model_name=Path(output_dir).name,
        eval_results=[
            EvalResult(task_type=task, dataset_type=dataset, dataset_name=dataset, dataset_split=split,
                       metric_type=metric, metric_value=float(value))
            for split, metric, value in results
        ],
    )
    opt = args.get("optimizer", "?")
    rows = "\n".join(f"| {split} | {metric} | {value:.4g} |" for split, metric, value in results)
    counts = ", ".join(f"{k}: {v}" for k, v in data_counts.items())
    body = f"""---
{card_data.to_yaml()}
---

# LoRA adapter for `{base_model}`, trained with {OPTIMIZER_TEXT.get(opt, opt)}

A plain PEFT LoRA adapter (`peft_type: LORA`): it loads with stock
`PeftModel.from_pretrained(base_model, this_folder)`; hf_clipadapt is only needed to train.

## What was trained
- Base model: `{base_model}`; task: {task}
- LoRA r = {args.get('lora_r')}, alpha = {args.get('lora_alpha')}, target modules: {args.get('target_modules')}
- Optimizer: {OPTIMIZER_TEXT.get(opt, opt)}; lr {args.get('lr')}, weight decay {args.get('weight_decay')},
  cosine schedule, warm-up ratio {args.get('warmup_ratio')}, batch {args.get('batch_size')},
  steps {args.get('max_steps')} (-1: {args.get('num_train_epochs')} epoch(s)), seed {args.get('seed')}

## Data
- Dataset: `{dataset}`
- Examples used: {counts}
{''.join(f'- {n}' + chr(10) for n in notes)}
## Results

| split | metric | value |
|---|---|---|
{rows}
"""
    path = Path(output_dir) / "README.md"
    ModelCard(body).save(path)
    return path
