"""Few-shot CLIP with CoOp: learn the prompt context, keep CLIP frozen.

    accelerate launch examples/coop.py --dataset tanganke/eurosat --shots 16 --seed 1 \
        --output_dir coop-eurosat-16shot [--push_to_hub --hub_model_id me/coop-eurosat-16shot]

    # offline, on the package's own testbed CLIP and one of its suites:
    python examples/coop.py --model testbed --dataset testbed:few_shot --views 4 --no_flip \
        --epochs 50 --output_dir coop-testbed

Steps: draw the CoOp K-shot split (seeded), encode each training image under
--views augmented views once, train the context (SGD lr 2e-3, momentum 0.9, cosine,
batch 32; the paper's epochs by shot count unless --epochs) through the shared
Trainer path, evaluate zero-shot CLIP and CoOp on the test split, save results.json
and the model (the context vectors only, kilobytes) with its card.
"""

from __future__ import annotations

import argparse

from accelerate.utils import set_seed
from example_utils import add_clip_data_arguments, encode_kwargs, finish, load_train_test, make_accelerator

from hf_clipadapt.coop import CoOpForImageClassification
from hf_clipadapt.data import class_names, dataset_display_name


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_clip_data_arguments(p)
    p.add_argument("--n_ctx", type=int, default=None, help="context tokens (default: those of --ctx_init)")
    p.add_argument("--ctx_init", default="a photo of a", help="initial context phrase ('none': random, N(0, 0.02²))")
    p.add_argument("--class_specific", action="store_true", help="one context per class (CoOp-CSC)")
    p.add_argument("--epochs", type=int, default=None, help="epochs of augmented images (default: the paper's)")
    p.add_argument("--learning_rate", type=float, default=None, help="default: the paper's 2e-3")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    accelerator = make_accelerator(args)
    set_seed(args.seed)
    dataset_name = dataset_display_name(args.dataset)
    train, test = load_train_test(args)
    ctx_init = None if str(args.ctx_init).lower() == "none" else args.ctx_init
    model = CoOpForImageClassification.from_clip(
        args.model,
        class_names(train, args.label_column),
        n_ctx=args.n_ctx,
        ctx_init=ctx_init,
        class_specific=args.class_specific,
        view_flip=False if args.no_flip else None,
        views=args.views,
    ).to(accelerator.device)
    encode = encode_kwargs(args, accelerator)
    zero_shot = model.evaluate(test, **encode)  # the initial context is the "a photo of a" prompt
    overrides = {"report_to": args.report_to or "none"}
    if args.epochs is not None:
        overrides["num_train_epochs"] = model.passes(args.epochs)  # epochs of images = passes over the cached views
    if args.learning_rate is not None:
        overrides["learning_rate"] = args.learning_rate
    model.fit(
        train, shots=args.shots, seed=args.seed, views=args.views, args=overrides, dataset_name=dataset_name, **encode
    )
    coop = model.evaluate(test, record_as=dataset_name, **encode)
    results = {
        "model": args.model,
        "dataset": dataset_name,
        "shots": args.shots,
        "seed": args.seed,
        "views": args.views,
        "n_ctx": model.config.n_ctx,
        "class_specific": args.class_specific,
        "zero_shot_accuracy": zero_shot["accuracy"],
        "coop_accuracy": coop["accuracy"],
        "coop_per_class_accuracy": coop["per_class_accuracy"],
        "final_train_loss": model.history_[-1].get("train_loss"),
        "test_images": len(test),
        "world_size": accelerator.num_processes,
    }
    finish(model, args, accelerator, results)
    return results


if __name__ == "__main__":
    main()
