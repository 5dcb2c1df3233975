"""Unsupervised CLIP fine-tuning with UEO: better known-class accuracy and an OOD score, no labels.

    accelerate launch examples/ueo_unsupervised.py --dataset tanganke/dtd --num_known 35 \
        --setting open_partial --output_dir ueo-dtd [--push_to_hub --hub_model_id me/ueo-dtd]

    # offline, on the package's own testbed CLIP and its open-set suite:
    python examples/ueo_unsupervised.py --model testbed --dataset testbed:open_set --setting open \
        --epochs 10 --output_dir ueo-testbed

Steps: split the dataset's classes into known and unknown (`--num_known`, or an open-set
dataset's own split), build the unlabelled training set of `--setting` (closed, partial,
open, open_partial; labels dropped) and the evaluation split (every class, unknown = -1)
with `hf_clipadapt.ueo.make_setting`; score zero-shot CLIP; train UEO (SGD lr 1e-4,
cosine, batch 64 unless overridden) through the shared Trainer path; score it; save
results.json and the model (context + vision LayerNorms, kilobytes) with its card.

An open-set dataset whose unknown test images are labelled -1 and named in another column
(`--unknown_name_column`, "object" for the testbed) gets its unknown classes back from that
column; the training pool is then the labelled train split plus half of the unknown test
images (seeded), the evaluation split the other half and every known test image.
"""

from __future__ import annotations

import argparse

from accelerate import Accelerator
from accelerate.utils import set_seed
from datasets import concatenate_datasets
from example_utils import add_clip_data_arguments, encode_kwargs, finish, load_train_test

from hf_clipadapt.data import class_names, dataset_display_name
from hf_clipadapt.ueo import SETTINGS, UEOForImageClassification, make_setting
from hf_clipadapt.ueo.settings import name_unknown_classes, split_rows


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_clip_data_arguments(p, seed=0)
    p.add_argument("--setting", choices=SETTINGS, default="open", help="which classes the unlabelled data hold")
    p.add_argument(
        "--num_known",
        type=int,
        default=None,
        help="known classes (the first ones); default: an open-set dataset's own, else 3/4 of the classes",
    )
    p.add_argument("--unknown_name_column", default="object", help="column naming the classes of -1 test rows")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--learning_rate", type=float, default=1e-4)
    p.add_argument("--train_batch_size", type=int, default=64, help="per-device training batch")
    p.add_argument("--trade", type=float, default=1.0, help="weight of the marginal-entropy term")
    p.add_argument("--no_weight", action="store_true", help="information maximisation (uniform weights)")
    p.add_argument("--oracle", action="store_true", help="ablation: weights from ground-truth known/unknown")
    p.add_argument(
        "--ood_score", choices=("max_softmax_cosine", "max_softmax", "energy"), default="max_softmax_cosine"
    )
    return p.parse_args(argv)


def open_set_pool(train, test, args):
    """(train, test) labelled over every class, for a dataset whose unknown test rows are -1."""
    label, column = args.label_column, args.unknown_name_column
    if min(test[label]) >= 0 or column not in test.column_names:
        return train, test, None
    known = class_names(train, label)
    test = name_unknown_classes(test, column, label)
    train = train.cast_column(label, test.features[label])  # known ids unchanged, unknown names appended
    unknown_rows = test.filter(lambda ys: [y >= len(known) for y in ys], input_columns=label, batched=True)
    pool, held_out = split_rows(unknown_rows, 0.5, seed=args.seed, label_column=label)
    known_test = test.filter(lambda ys: [y < len(known) for y in ys], input_columns=label, batched=True)
    columns = [args.image_column, label]
    train = concatenate_datasets([train.select_columns(columns), pool.select_columns(columns)])
    return train, concatenate_datasets([known_test.select_columns(columns), held_out.select_columns(columns)]), known


def load_setting(args):
    train, test = load_train_test(args)
    train, test, known = open_set_pool(train, test, args)
    num_known = args.num_known or (None if known else round(0.75 * len(class_names(train, args.label_column))))
    return make_setting(
        train,
        test,
        args.setting,
        known=None if args.num_known else known,
        num_known=num_known,
        image_column=args.image_column,
        label_column=args.label_column,
        keep_labels=args.oracle,
    )  # only the oracle ablation reads training labels


def main(argv=None) -> dict:
    args = parse_args(argv)
    accelerator = Accelerator(log_with=args.report_to, project_dir=args.output_dir)
    accelerator.print(f"world size: {accelerator.num_processes}")
    set_seed(args.seed)
    dataset_name = dataset_display_name(args.dataset)
    data = load_setting(args)
    known = data["test"].features[args.label_column].names
    model = UEOForImageClassification.from_clip(
        args.model, known, ood_score=args.ood_score, view_flip=False if args.no_flip else None
    ).to(accelerator.device)
    encode = encode_kwargs(args, accelerator)
    zero_shot = model.evaluate(data["test"], **encode)
    overrides = {
        "num_train_epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "per_device_train_batch_size": args.train_batch_size,
        "report_to": args.report_to or "none",
        "trade": args.trade,
        "no_weight": args.no_weight,
        "oracle": args.oracle,
    }
    model.fit(
        data["train"],
        seed=args.seed,
        args=overrides,
        batch_size=args.batch_size,
        accelerator=accelerator,
        image_column=args.image_column,
        label_column=args.label_column,
        dataset_name=f"{dataset_name}-{args.setting}",
    )
    ueo = model.evaluate(data["test"], record_as=f"{dataset_name}-{args.setting}", **encode)
    results = {
        "model": args.model,
        "dataset": dataset_name,
        "setting": args.setting,
        "seed": args.seed,
        "objective": model.config.objective,
        "known_classes": len(known),
        "train_images": len(data["train"]),
        "test_images": len(data["test"]),
        "zero_shot": zero_shot,
        "ueo": ueo,
        "final_train_loss": next((h["train_loss"] for h in reversed(model.history_) if "train_loss" in h), None),
        "world_size": accelerator.num_processes,
    }
    finish(model, args, accelerator, results)
    return results


if __name__ == "__main__":
    main()
