"""Two-stage source-free domain adaptation (GeoNet 2023 winning recipe) on the shared
training path (a `transformers.Trainer`; DDP under `accelerate launch`).

    # stage 1: labelled source domain (GeoNet list file, image folder or Hub dataset)
    accelerate launch examples/sfda_two_stage.py stage1 \
        --source data_list/UNIDA/usa_train.txt --backbone microsoft/swin-base-patch4-window7-224 \
        --output_dir out/source --checkpoint_every 500
    # resume an interrupted run from a checkpoint (or --resume_from last)
    accelerate launch examples/sfda_two_stage.py stage1 ... --resume_from out/source/checkpoints/checkpoint-1500
    # stage 2: unlabelled target domain, source data no longer needed
    accelerate launch examples/sfda_two_stage.py stage2 \
        --model out/source --target data_list/UNIDA/asia_train.txt --strategy universal --output_dir out/target
    # scoring on a labelled target test list (H-score in universal mode, accuracy otherwise)
    accelerate launch examples/sfda_two_stage.py evaluate --model out/target --data data_list/UNIDA/asia_test.txt

Offline demo (no Hub): `--backbone offline:efficientnet-lite0`, data `offline:mnist[:N]` and
`offline:optdigits[:N]` (optdigits framed like MNIST), e.g.

    accelerate launch --cpu --num_processes 1 examples/sfda_two_stage.py stage1 \
        --source offline:mnist:2000 --backbone offline:efficientnet-lite0 --image_size 64 --output_dir out/src
    accelerate launch --cpu --num_processes 1 examples/sfda_two_stage.py stage2 \
        --model out/src --target offline:optdigits --strategy shot --output_dir out/tgt

Model selection never looks at target labels unless asked: `--model_selection last` (default,
fixed epochs) or `im_loss` (unsupervised); `labelled_target_validation` needs `--validation`.
Metrics go to the trackers given by `--report_to` (tensorboard, wandb, ...), through the Trainer.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

# Registers the offline backbone name "efficientnet-lite0" (a checkpoint names a registered key and
# never code), so stage 2 and evaluate can load a stage-1 model trained on it.
import offline_assets.backbones  # noqa: F401
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from hf_clipadapt.sfda import (
    SFDAForImageClassification,
    SFDAImageTransform,
    SFDATrainingArguments,
    evaluate,
    fit,
    load_domain,
)

OFFLINE_BACKBONE = "offline:efficientnet-lite0"


def load_data(spec: str, split: str):
    """A domain: `offline:mnist[:N]`, `offline:optdigits[:N]`, a list file, an image folder or a Hub id."""
    if spec.startswith("offline:"):
        from offline_assets import load_mnist, load_optdigits

        name, _, limit = spec[len("offline:") :].partition(":")
        limit = int(limit) if limit else None
        if name == "mnist":
            return load_mnist("train" if split == "train" else "test", limit=limit, seed=0)
        if name == "optdigits":
            return load_optdigits("test", frame=True, limit=limit, seed=0)
        raise ValueError(f"unknown offline dataset {name!r}: use mnist or optdigits")
    return load_domain(spec, split=split)


def image_stats(backbone: str | None) -> tuple[list[float], list[float]]:
    """Normalisation of the backbone: its image processor's mean/std, or 0.5/0.5 (EfficientNet-Lite)."""
    if backbone is None or backbone.startswith("offline:") or ":" in backbone:
        return [0.5] * 3, [0.5] * 3
    from transformers import AutoImageProcessor

    proc = AutoImageProcessor.from_pretrained(backbone)
    return list(proc.image_mean), list(proc.image_std)


def stage_transforms(args, mean_std) -> tuple[SFDAImageTransform, SFDAImageTransform]:
    """(train, eval) transforms of either stage: both stages train on augmented images, as the
    official scripts do (main_unida.py, lines 95-99: stage 2's training loader uses the
    training transform, its pseudo-label pass the test transform). `fit` records the eval one
    in the model (config and `preprocessor_config.json`)."""
    train_tf = SFDAImageTransform(args.image_size, *mean_std, augment=True, flip=not args.no_flip)
    return train_tf, SFDAImageTransform(args.image_size, *mean_std)


def build_source_model(args, num_labels: int, id2label: dict | None):
    labels = dict(id2label=id2label) if id2label else dict(num_labels=num_labels)
    if args.backbone == OFFLINE_BACKBONE:
        from offline_assets import EfficientNetLite0Features

        return SFDAForImageClassification.from_backbone(
            EfficientNetLite0Features(pretrained=True), torch_backbone_kwargs={"pretrained": False}, **labels
        )
    return SFDAForImageClassification.from_backbone(args.backbone, **labels)


# the official per-dataset settings of each stage-2 strategy (hf_clipadapt.sfda.PRESETS)
STRATEGY_PRESET = {"universal": "geounida", "centroid": "geoimnet", "topk_ce": "geoplace"}


def training_arguments(args, stage: str) -> SFDATrainingArguments:
    """The stage's SFDATrainingArguments from the command line (checkpoints under output_dir/checkpoints),
    over the official preset of the stage-2 strategy (e.g. 1 epoch and one centroid round for centroid)."""
    kwargs = dict(
        output_dir=str(Path(args.output_dir) / "checkpoints"),
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        dataloader_num_workers=args.num_workers,
        report_to=args.report_to or "none",
        save_strategy="steps" if args.checkpoint_every else "no",
        save_steps=args.checkpoint_every or 500,
        model_selection=getattr(args, "model_selection", "last"),
    )
    if args.epochs is not None:
        kwargs["num_train_epochs"] = args.epochs
    preset = STRATEGY_PRESET.get(getattr(args, "strategy", "universal"))
    if preset is not None:
        return SFDATrainingArguments.from_preset(preset, stage, **kwargs)
    return SFDATrainingArguments(stage=stage, **kwargs)


def prepare_stage(args):
    """(model, data, stage, train transform, eval transform) of stage1 (a new model on the
    labelled source) or stage2 (the stage-1 model on the unlabelled target)."""
    if args.command == "stage1":
        data = load_data(args.source, "train")
        names = getattr(data.features.get("label"), "names", None)
        num_labels = len(names) if names else int(max(data["label"])) + 1
        model = build_source_model(args, num_labels, dict(enumerate(names)) if names else None)
        mean_std = image_stats(None if args.backbone == OFFLINE_BACKBONE else args.backbone)
        stage, (train_tf, eval_tf) = "source", stage_transforms(args, mean_std)
    else:
        model = SFDAForImageClassification.from_pretrained(args.model)
        model.config.update({"strategy": args.strategy, "unknown_threshold": args.unknown_threshold})
        args.image_size = args.image_size or getattr(model.config, "image_size", None) or 224
        data = load_data(args.target, "train")
        if "label" in data.column_names:  # stage 2 never reads target labels
            data = data.remove_columns("label")
        c = model.config  # stage 1's recorded normalisation, else the backbone's
        mean_std = (c.image_mean, c.image_std) if getattr(c, "image_mean", None) else image_stats(c.backbone)
        stage, (train_tf, eval_tf) = "target", stage_transforms(args, mean_std)
    model.config.dataset_name = args.source if args.command == "stage1" else args.target
    return model, data, stage, train_tf, eval_tf


def build_parser() -> argparse.ArgumentParser:
    """The command line: `stage1`, `stage2` and `evaluate`, sharing the options of `common`
    (and `train` for the two training stages). Kept apart so `main` reads as the run."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--image_size",
        type=int,
        default=None,
        help="input size (default: 224 for training; evaluate: the size the model was trained at)",
    )
    common.add_argument("--batch_size", type=int, default=64, help="global batch (split over processes)")
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--num_workers", type=int, default=2)
    train = argparse.ArgumentParser(add_help=False)
    train.add_argument("--output_dir", required=True)
    train.add_argument("--epochs", type=int, default=None, help="default: 10 for stage1, 5 for stage2 (GeoUniDA)")
    train.add_argument("--no_flip", action="store_true", help="no horizontal flips (digits, text)")
    train.add_argument("--learning_rate", type=float, default=1e-2, help="head lr; the backbone gets 0.1x")
    train.add_argument("--checkpoint_every", type=int, default=0, help="optimizer steps between Trainer checkpoints")
    train.add_argument(
        "--resume_from", default=None, help="a checkpoint folder written by --checkpoint_every, or 'last'"
    )
    train.add_argument("--report_to", default=None, help="Trainer tracker(s), e.g. tensorboard")

    s1 = sub.add_parser("stage1", parents=[common, train], help="train on the labelled source domain")
    s1.add_argument("--source", required=True)
    s1.add_argument("--backbone", default="microsoft/swin-base-patch4-window7-224")

    s2 = sub.add_parser("stage2", parents=[common, train], help="adapt to the unlabelled target domain")
    s2.add_argument("--model", required=True, help="stage-1 output folder")
    s2.add_argument("--target", required=True)
    s2.add_argument(
        "--strategy",
        choices=["universal", "shot", "topk", "centroid", "topk_ce"],
        default="universal",
        help="universal (GeoUniDA, 5 epochs), centroid (GeoImNet, 1 epoch), topk_ce (GeoPlace, 1 epoch)",
    )
    s2.add_argument("--unknown_threshold", type=float, default=0.5)
    s2.add_argument("--model_selection", choices=["last", "im_loss", "labelled_target_validation"], default="last")
    s2.add_argument("--validation", default=None, help="labelled target data, only for labelled_target_validation")
    s2.add_argument(
        "--evaluate_on", default=None, help="labelled target test data scored after training (not used for selection)"
    )

    ev = sub.add_parser("evaluate", parents=[common], help="score a model on labelled data")
    ev.add_argument("--model", required=True)
    ev.add_argument("--data", required=True)
    return ap


def run_evaluate(args, accelerator) -> None:
    """The `evaluate` command: score a saved model on labelled data at the size and
    normalisation recorded in its config (or the backbone's), printing the scores as JSON.

    Args:
        args: the parsed command line (`model`, `data`, `image_size`, `batch_size`).
        accelerator: shards the prediction pass over the launched processes.
    """
    model = SFDAForImageClassification.from_pretrained(args.model).to(accelerator.device)
    c = model.config
    if getattr(c, "image_size", None) and not args.image_size:
        tf = SFDAImageTransform.for_model(model)  # the size, crop and normalisation it was trained with
    else:
        stats = (c.image_mean, c.image_std) if getattr(c, "image_mean", None) else image_stats(c.backbone)
        tf = SFDAImageTransform(args.image_size or 224, *stats)
    accelerator.print(
        f"evaluating at {tf.size}×{tf.size} pixels (centre crop of {tf.resize}²), mean {tf.mean}, std {tf.std}"
    )
    scores = evaluate(
        model, load_data(args.data, "test"), transform=tf, accelerator=accelerator, batch_size=args.batch_size
    )
    if accelerator.is_main_process:
        print(json.dumps(scores, indent=2))


def main():
    args = build_parser().parse_args()

    # the prediction passes shard over the processes of `accelerate launch` (cpu=True without a GPU,
    # or each CPU process would think it is alone); training goes through the Trainer
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    accelerator.print(f"world size: {accelerator.num_processes} ({accelerator.distributed_type.value})")
    set_seed(args.seed)  # the new head's initialisation

    if args.command == "evaluate":
        run_evaluate(args, accelerator)
        return

    if args.image_size is None:  # stage 2 keeps stage 1's size unless told otherwise
        args.image_size = 224 if args.command == "stage1" else None
    model, data, stage, train_tf, eval_tf = prepare_stage(args)
    if accelerator.num_processes > 1 and accelerator.device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # global-batch BatchNorm statistics

    validation = load_data(args.validation, "test") if getattr(args, "validation", None) else None
    resume = True if args.resume_from == "last" else args.resume_from
    result = fit(
        model,
        data,
        stage=stage,
        transform=train_tf,
        eval_transform=eval_tf,
        args=training_arguments(args, stage),
        validation_dataset=validation,
        resume_from=resume,
    )
    result.pop("log_history")  # the trackers and checkpoints/trainer_state.json hold it
    if stage == "target" and args.evaluate_on:
        scores = evaluate(
            model,
            load_data(args.evaluate_on, "test"),
            transform=eval_tf,
            accelerator=accelerator,
            batch_size=args.batch_size,
        )
        result["test_scores"] = scores
        model.record_results(args.evaluate_on, scores)
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.save_pretrained(args.output_dir, is_main_process=accelerator.is_main_process)
    if accelerator.is_main_process:
        tmp = Path(args.output_dir) / "fit_result.json.tmp"
        tmp.write_text(json.dumps(result, indent=2, default=float))
        os.replace(tmp, Path(args.output_dir) / "fit_result.json")
        print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=2, default=float))


if __name__ == "__main__":
    main()
