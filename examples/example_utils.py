"""What every CLIP example script shares: arguments, data, results, saving and pushing.

The examples in `examples/` stay short and each reads top to bottom; the parts
that would otherwise be copied into each (the CLIP and dataset arguments, loading
the train and test splits, writing results.json atomically, saving the model with
its card and pushing it) live here once.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def make_accelerator(args=None, **kwargs):
    """The examples' `Accelerator`, and the world size it runs with, printed once.

    On a machine with no GPU (or MPS/XPU) it is created with `cpu=True`: then
    `accelerate launch --multi_gpu --num_processes N script.py` forms one gloo group of
    N CPU processes. Without it each process sees world size 1 and runs the whole job
    alone; and accelerate's own `--cpu --num_processes N` runs a single process.
    """
    import torch
    from accelerate import Accelerator

    devices = torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())
    devices = devices or (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available())
    if args is not None:
        kwargs.setdefault("log_with", getattr(args, "report_to", None))
        kwargs.setdefault("project_dir", getattr(args, "output_dir", None))
    accelerator = Accelerator(cpu=not devices, **kwargs)
    accelerator.print(f"world size: {accelerator.num_processes} ({accelerator.distributed_type.value})")
    return accelerator


def add_clip_data_arguments(parser: argparse.ArgumentParser, *, shots: int = 16, seed: int = 1) -> None:
    """--model, --dataset and the few-shot protocol, as every CLIP example takes them."""
    from hf_clipadapt.features import DEFAULT_CACHE_DIR

    p = parser
    p.add_argument(
        "--model",
        default="openai/clip-vit-base-patch16",
        help="CLIP checkpoint: Hub id, local folder, or 'testbed' (the offline testbed CLIP)",
    )
    p.add_argument(
        "--dataset",
        default="tanganke/eurosat",
        help="Hub dataset id, an imagefolder directory, or 'testbed:<suite>' (offline)",
    )
    p.add_argument("--dataset_config", default=None, help="Hub dataset configuration name")
    p.add_argument("--train_split", default="train")
    p.add_argument("--test_split", default="test")
    p.add_argument("--image_column", default="image")
    p.add_argument("--label_column", default="label")
    p.add_argument(
        "--templates", default=None, help="template set name (e.g. eurosat, imagenet); default: from --dataset"
    )
    p.add_argument("--shots", type=int, default=shots)
    p.add_argument("--seed", type=int, default=seed)
    p.add_argument("--views", type=int, default=10, help="augmented views per training image")
    p.add_argument(
        "--no_flip",
        action="store_true",
        help="no horizontally flipped views (for classes a mirror image changes: digits, text); "
        "default: flips unless the dataset is registered without them (the testbed suites are)",
    )
    p.add_argument("--batch_size", type=int, default=64, help="batch size for encoding images")
    p.add_argument("--cache_dir", default=str(DEFAULT_CACHE_DIR), help="feature cache ('none' to disable)")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--push_to_hub", action="store_true")
    p.add_argument("--hub_model_id", default=None, help="repo id for --push_to_hub (default: output_dir's name)")
    p.add_argument("--report_to", default=None, help="Accelerate tracker, e.g. tensorboard, wandb")


def load_train_test(args):
    """(train, test) `datasets.Dataset`s named by --dataset, --train_split and --test_split."""
    from hf_clipadapt.data import load_image_dataset

    data = load_image_dataset(args.dataset, args.dataset_config)
    for flag, split in (("--train_split", args.train_split), ("--test_split", args.test_split)):
        if split not in data:
            raise ValueError(
                f"{flag} {split!r} is not a split of {args.dataset!r} (splits: {list(data)}). Hyper-parameters are "
                "chosen on a split of the training shots; results are reported on a test split the model never saw."
            )
    return data[args.train_split], data[args.test_split]


def encode_kwargs(args, accelerator) -> dict:
    """The keyword arguments `fit` and `evaluate` take for encoding images."""
    return dict(
        batch_size=args.batch_size,
        accelerator=accelerator,
        cache_dir=None if args.cache_dir.lower() == "none" else args.cache_dir,
        image_column=args.image_column,
        label_column=args.label_column,
    )


def write_results(output_dir, results: dict) -> None:
    """results.json in `output_dir`, replaced in one step (never half-written)."""
    import os

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f"results.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(results, indent=2, default=float))
    os.replace(tmp, out / "results.json")


def finish(model, args, accelerator, results: dict, **save_kwargs) -> None:
    """Print and write the results, save the model (with its card) to --output_dir, and
    push it when --push_to_hub is set; main process only where it matters."""
    accelerator.log({k: v for k, v in results.items() if isinstance(v, (int, float))})
    if accelerator.is_main_process:
        print(json.dumps(results, indent=2, default=float))
        write_results(args.output_dir, results)
    accelerator.wait_for_everyone()
    model = accelerator.unwrap_model(model)
    model.save_pretrained(args.output_dir, is_main_process=accelerator.is_main_process, **save_kwargs)
    if args.push_to_hub and accelerator.is_main_process:
        repo_id = args.hub_model_id or Path(args.output_dir).name
        model.push_to_hub(repo_id)
        print(f"pushed to https://huggingface.co/{repo_id}")
    accelerator.end_training()
