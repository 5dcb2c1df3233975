"""Few-shot CLIP with Tip-Adapter: a cache of the training features next to zero-shot CLIP.

    accelerate launch examples/tip_adapter.py --dataset tanganke/eurosat --shots 16 --seed 1 \
        --output_dir tip-eurosat-16shot [--push_to_hub --hub_model_id me/tip-eurosat-16shot]

    # offline, on the package's own testbed CLIP and one of its suites:
    accelerate launch examples/tip_adapter.py --model testbed --dataset testbed:few_shot --views 4 --no_flip \
        --output_dir tip-testbed

Steps: draw the CoOp K-shot train/validation split (seeded), average each training
image's features over augmented views into a cache key, pick α and β on the
validation split, evaluate zero-shot CLIP and Tip-Adapter on the test split, save
results.json and the model (cache + text classifier, kilobytes) with its card.
"""

from __future__ import annotations

import argparse

from accelerate.utils import set_seed
from example_utils import add_clip_data_arguments, encode_kwargs, finish, load_train_test, make_accelerator

from hf_clipadapt.clip import get_templates
from hf_clipadapt.data import class_names, dataset_display_name
from hf_clipadapt.tip_adapter import TipAdapterForImageClassification


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_clip_data_arguments(p)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    accelerator = make_accelerator(args)
    set_seed(args.seed)
    accelerator.init_trackers("tip_adapter", config={k: v for k, v in vars(args).items() if v is not None})
    dataset_name = dataset_display_name(args.dataset)
    train, test = load_train_test(args)
    names = class_names(train, args.label_column)
    model = TipAdapterForImageClassification.from_clip(
        args.model, names, get_templates(args.templates or dataset_name), view_flip=False if args.no_flip else None
    ).to(accelerator.device)
    encode = encode_kwargs(args, accelerator)
    zero_shot = model.evaluate(test, **encode)  # the empty cache is plain zero-shot CLIP
    model.fit(train, shots=args.shots, seed=args.seed, views=args.views, dataset_name=dataset_name, **encode)
    tip = model.evaluate(test, record_as=dataset_name, **encode)
    results = {
        "model": args.model,
        "dataset": dataset_name,
        "shots": args.shots,
        "seed": args.seed,
        "views": args.views,
        "alpha": model.config.alpha,
        "beta": model.config.beta,
        "zero_shot_accuracy": zero_shot["accuracy"],
        "tip_adapter_accuracy": tip["accuracy"],
        "tip_adapter_per_class_accuracy": tip["per_class_accuracy"],
        "test_images": len(test),
        "world_size": accelerator.num_processes,
    }
    finish(model, args, accelerator, results)
    return results


if __name__ == "__main__":
    main()
