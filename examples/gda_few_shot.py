"""Few-shot CLIP adaptation with GDA: no training, a closed-form head on CLIP features.

    accelerate launch examples/gda_few_shot.py --dataset tanganke/eurosat --shots 16 --seed 1 \
        --output_dir gda-eurosat-16shot [--push_to_hub --hub_model_id me/gda-eurosat-16shot]

    # any imagefolder (one sub-folder per class, optional train/ and test/ splits):
    accelerate launch examples/gda_few_shot.py --dataset path/to/images --shots 4

    # offline, on the package's own pretrained testbed CLIP and one of its suites:
    accelerate launch examples/gda_few_shot.py --model testbed --dataset testbed:few_shot --views 4 --no_flip

Steps: draw the CoOp K-shot train/validation split (seeded), encode each training
image under 10 random-resized-crop + flip views, fit W and b in closed form, pick α
on the validation split, and evaluate zero-shot CLIP and GDA on the test split.
Prints and saves results.json, saves the (small) GDA head with its model card, and
optionally pushes both to the Hub. Features are cached, so a re-run with another
seed or shot count only encodes what it has not seen.
"""

from __future__ import annotations

import argparse

from accelerate.utils import set_seed
from example_utils import finish, make_accelerator

import hf_clipadapt  # noqa: F401  (registers GDA with the Auto classes)
from hf_clipadapt.clip import CLIPBackbone, get_templates
from hf_clipadapt.data import class_names, dataset_display_name, load_image_dataset
from hf_clipadapt.features import DEFAULT_CACHE_DIR
from hf_clipadapt.gda import GDAForImageClassification
from hf_clipadapt.testbed import resolve_model_name


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model",
        default="openai/clip-vit-base-patch16",
        help="CLIP checkpoint: Hub id, path, or 'testbed' (the offline testbed CLIP)",
    )
    p.add_argument(
        "--dataset", required=True, help="Hub dataset id, an imagefolder directory, or 'testbed:<suite>' (offline)"
    )
    p.add_argument("--dataset_config", default=None, help="Hub dataset configuration name")
    p.add_argument("--train_split", default="train")
    p.add_argument("--test_split", default="test")
    p.add_argument("--image_column", default="image")
    p.add_argument("--label_column", default="label")
    p.add_argument(
        "--templates", default=None, help="template set name (e.g. eurosat, imagenet); default: from --dataset"
    )
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--views", type=int, default=10, help="augmented views per training image")
    p.add_argument(
        "--no_flip",
        action="store_true",
        help="no horizontally flipped views (for classes a mirror image changes: digits, text); "
        "default: flips unless the dataset is registered without them (the testbed suites are)",
    )
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--cache_dir", default=str(DEFAULT_CACHE_DIR), help="feature cache ('none' to disable)")
    p.add_argument("--output_dir", default="gda-output")
    p.add_argument("--include_backbone", action="store_true", help="save the CLIP weights in the checkpoint too")
    p.add_argument("--push_to_hub", action="store_true")
    p.add_argument("--hub_model_id", default=None, help="repo id for --push_to_hub (default: output_dir's name)")
    p.add_argument("--report_to", default=None, help="Accelerate tracker, e.g. tensorboard, wandb")
    return p.parse_args(argv)


def load_splits(args):
    data = load_image_dataset(args.dataset, args.dataset_config)
    if args.train_split not in data:
        raise ValueError(f"--train_split {args.train_split!r} not in the dataset's splits {list(data)}")
    test_split = args.test_split if args.test_split in data else None
    if test_split is None:
        raise ValueError(
            f"--test_split {args.test_split!r} not in the dataset's splits {list(data)}; GDA picks α on a split of the "
            "training shots, and reports on a test split it never saw"
        )
    return data[args.train_split], data[test_split]


def main(argv=None) -> dict:
    args = parse_args(argv)
    accelerator = make_accelerator(args)
    set_seed(args.seed)
    accelerator.init_trackers("gda_few_shot", config={k: v for k, v in vars(args).items() if v is not None})
    cache_dir = None if args.cache_dir.lower() == "none" else args.cache_dir
    dataset_name = dataset_display_name(args.dataset)

    train, test = load_splits(args)
    backbone = CLIPBackbone.from_pretrained(resolve_model_name(args.model)).to(accelerator.device)
    templates = get_templates(args.templates or dataset_name)
    names = class_names(train, args.label_column)
    # "_" in the names is read as a space by the shared text path (hf_clipadapt.clip.prompt_name).
    model = GDAForImageClassification.from_clip(backbone, names, templates, view_flip=False if args.no_flip else None)

    common = dict(
        batch_size=args.batch_size,
        accelerator=accelerator,
        cache_dir=cache_dir,
        image_column=args.image_column,
        label_column=args.label_column,
    )
    alpha = model.config.alpha
    model.config.alpha = 0.0  # zero-shot CLIP alone, for reference (same cached test features)
    zero_shot = model.evaluate(test, **common)
    model.config.alpha = alpha

    model.fit(train, shots=args.shots, seed=args.seed, views=args.views, dataset_name=dataset_name, **common)
    gda = model.evaluate(test, record_as=dataset_name, **common)
    results = {
        "model": args.model,
        "dataset": dataset_name,
        "shots": args.shots,
        "seed": args.seed,
        "views": args.views,
        "alpha": model.config.alpha,
        "alpha_validation_accuracy": model.config.alpha_scores,
        "zero_shot_accuracy": zero_shot["accuracy"],
        "gda_accuracy": gda["accuracy"],
        "gda_per_class_accuracy": gda["per_class_accuracy"],
        "test_images": len(test),
        "world_size": accelerator.num_processes,
    }
    finish(model, args, accelerator, results, include_backbone=args.include_backbone)
    return results


if __name__ == "__main__":
    main()
