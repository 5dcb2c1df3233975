"""Base-to-new with SHIP: classes that have only a name get synthesized image features.

    accelerate launch examples/ship_base_to_new.py --dataset tanganke/eurosat --method tip_adapter_f \
        --shots 16 --seed 1 --output_dir ship-eurosat

    # offline, on the package's own testbed CLIP and its base-to-new suite:
    python examples/ship_base_to_new.py --model testbed --dataset testbed:base_to_new --no_flip --views 4 \
        --method coop --epochs 50 --output_dir ship-testbed

Steps (Zhou et al., CVPR 2022 protocol): the first half of the sorted class names are
"base" (K shots each), the rest "new" (names only; the testbed suite brings its own
split). A SHIP generator (Wang et al., ICCV 2023) is fitted on the base features for a
fixed schedule, synthesizes features of the new classes, and --method (CoOp,
CLIP-Adapter or Tip-Adapter-F) trains one base+new model on real + synthesized
features. Scores: base accuracy within the base classes, new within the new ones, and
their harmonic mean H, next to zero-shot CLIP and the method without SHIP. Saves the
base+new model (with its card) to --output_dir and the generator to
--output_dir/generator.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from accelerate.utils import set_seed
from example_utils import add_clip_data_arguments, encode_kwargs, finish, make_accelerator

from hf_clipadapt.clip import get_templates
from hf_clipadapt.clip_adapter import CLIPAdapterForImageClassification
from hf_clipadapt.coop import CoOpForImageClassification
from hf_clipadapt.data import (
    base_new_class_split,
    class_names,
    dataset_display_name,
    load_image_dataset,
    select_classes,
)
from hf_clipadapt.metrics import harmonic_mean
from hf_clipadapt.ship import SHIPGenerator, fit_with_synthesized
from hf_clipadapt.tip_adapter import TipAdapterForImageClassification

METHODS = {
    "coop": (CoOpForImageClassification, {}),
    "clip_adapter": (CLIPAdapterForImageClassification, {}),
    "tip_adapter_f": (TipAdapterForImageClassification, {"train_keys": True}),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_clip_data_arguments(p)
    p.add_argument("--method", choices=sorted(METHODS), default="tip_adapter_f")
    p.add_argument("--epochs", type=int, default=None, help="epochs for --method (default: the paper's)")
    p.add_argument("--generator_epochs", type=int, default=50, help="SHIP generator epochs (the paper's 50)")
    p.add_argument(
        "--synthesis",
        choices=["fixed", "per_batch"],
        default=None,
        help="fresh features for every batch, as the official code (default for coop and clip_adapter), or one "
        "fixed synthesized set (default for tip_adapter_f, whose cache keys need one)",
    )
    return p.parse_args(argv)


def base_new_data(args):
    """(train on base, test on base, test on new, base names, new names)."""
    data = load_image_dataset(args.dataset, args.dataset_config)
    if {"test_base", "test_new"} <= set(data):  # a suite that brings its own split (the testbed's)
        base, new = class_names(data["test_base"]), class_names(data["test_new"])
        return data[args.train_split], data["test_base"], data["test_new"], base, new
    base, new = base_new_class_split(class_names(data[args.train_split], args.label_column))
    train, test = data[args.train_split], data[args.test_split]
    sel = lambda d, names: select_classes(d, names, args.label_column)  # noqa: E731
    return sel(train, base), sel(test, base), sel(test, new), base, new


def scores(model, test_base, test_new, new, encode, record_as=None) -> dict:
    """Base accuracy within the base classes, new within the new ones, and H."""
    new_model = model if set(new) <= set(model.class_names()) else model.for_classes(new)
    b = model.evaluate(test_base, record_as=record_as and f"{record_as} (base)", **encode)["accuracy"]
    n = new_model.evaluate(test_new, record_as=record_as and f"{record_as} (new)", **encode)["accuracy"]
    if record_as:
        model.record_result(record_as, "harmonic_mean_base_new", harmonic_mean(b, n))
    return {"base": b, "new": n, "H": harmonic_mean(b, n)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    accelerator = make_accelerator(args)
    set_seed(args.seed)
    name = dataset_display_name(args.dataset)
    train, test_base, test_new, base, new = base_new_data(args)
    encode = encode_kwargs(args, accelerator)
    common = dict(
        templates=get_templates(args.templates or name), view_flip=False if args.no_flip else None, views=args.views
    )
    fit = dict(shots=args.shots, seed=args.seed, views=args.views, dataset_name=name, **encode)
    cls, kw = METHODS[args.method]
    zero_shot = scores(
        TipAdapterForImageClassification.from_clip(args.model, base + new, **common), test_base, test_new, new, encode
    )
    plain = cls.from_clip(args.model, base, **common, **kw)
    # --epochs counts epochs of augmented images, as the papers do: passes over the cached views
    method_args = {} if args.epochs is None else {"num_train_epochs": plain.passes(args.epochs)}
    without = scores(plain.fit(train, args=method_args, **fit), test_base, test_new, new, encode)
    generator = SHIPGenerator.from_clip(args.model, base, **common)
    generator.fit(train, args={"num_train_epochs": generator.passes(args.generator_epochs)}, **fit)
    model = cls.from_clip(args.model, base + new, **common, **kw)
    fit_with_synthesized(model, train, generator, synthesis=args.synthesis, args=method_args, **fit)
    with_ship = scores(model, test_base, test_new, new, encode, record_as=name)
    results = {
        "model": args.model,
        "dataset": name,
        "method": args.method,
        "shots": args.shots,
        "seed": args.seed,
        "views": args.views,
        "synthesis": "fixed" if model.config.synthesized_per_class else "per_batch",
        "base_classes": len(base),
        "new_classes": len(new),
        "zero_shot": zero_shot,
        args.method: without,
        f"{args.method}+ship": with_ship,
        "world_size": accelerator.num_processes,
    }
    generator.save_pretrained(Path(args.output_dir) / "generator", is_main_process=accelerator.is_main_process)
    finish(model, args, accelerator, results)
    return results


if __name__ == "__main__":
    main()
