"""Few-shot adaptation of a black-box CLIP with CraFT: prompts and images in, scores out.

    # a CLIP on this machine behind the black-box protocol (the owner side runs in-process):
    python examples/craft_black_box.py --model openai/clip-vit-base-patch16 --dataset tanganke/eurosat \
        --shots 16 --budget 8000 --output_dir craft-eurosat-16shot

    # a CLIP served elsewhere (python -c "from hf_clipadapt.craft import LocalBlackBox, serve_black_box; serve_black_box(LocalBlackBox('...'), token='...')"):
    HF_CLIPADAPT_BLACK_BOX_TOKEN=... python examples/craft_black_box.py --url http://127.0.0.1:8000 \
        --model openai/clip-vit-base-patch16 --dataset tanganke/eurosat --output_dir craft-eurosat

    # offline, on the package's own testbed CLIP:
    python examples/craft_black_box.py --model testbed --dataset testbed:few_shot --budget 2000 --output_dir craft-testbed

Steps: draw the K-shot split (seeded), connect to the black box (--url, or --model run
locally), score the test split zero-shot (the initial prompt "a photo of a {class}."),
run CraFT's collaborative loop within --budget queries (CMA-ES on the prompt, Adam on
the refinement module, the official settings or a dataset's with --preset; a checkpoint
per generation in <output_dir>/run, resumed with --resume), score the test split again, save results.json and the model (z and R,
kilobytes) with its card. With --url, --model only names the image processor the
images are prepared with (the owner's). The loop is sequential: run one process.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import torch
from example_utils import add_clip_data_arguments, finish, load_train_test, make_accelerator

from hf_clipadapt.craft import CraFTForImageClassification, CraFTTrainingArguments, LocalBlackBox, RemoteBlackBox
from hf_clipadapt.craft.modeling_craft import TOKEN_ENV
from hf_clipadapt.data import class_names, dataset_display_name, sample_few_shot


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_clip_data_arguments(p)
    p.add_argument("--url", default=None, help="a served black box (hf_clipadapt.craft.serve); default: --model here")
    p.add_argument("--token", default=None, help=f"its bearer token (default: ${TOKEN_ENV})")
    p.add_argument("--budget", type=int, default=8000, help="training queries (one = one prompt set scored)")
    p.add_argument("--population", type=int, default=40, help="CMA-ES population")
    p.add_argument("--sigma", type=float, default=None, help="CMA-ES step size (default: the preset's or 1)")
    p.add_argument(
        "--preset",
        default=None,
        help="official per-dataset settings, e.g. eurosat, dtd, oxford_pets "
        "(hf_clipadapt.craft.arguments.PRESETS); default: the official majority config",
    )
    p.add_argument("--intrinsic_dim", type=int, default=512, help="d0, the dimension of z")
    p.add_argument("--resume", action="store_true", help="continue the run checkpointed in <output_dir>/run")
    return p.parse_args(argv)


def connect(args):
    if args.url:
        return RemoteBlackBox(args.url, token=args.token or os.environ.get(TOKEN_ENV))
    return LocalBlackBox(args.model)


def image_processor(args, box):
    if getattr(box, "image_processor", None) is not None:
        return box.image_processor
    from transformers import AutoImageProcessor

    from hf_clipadapt.checkpoints import resolve_alias

    return AutoImageProcessor.from_pretrained(resolve_alias(args.model))


def main(argv=None) -> dict:
    args = parse_args(argv)
    accelerator = make_accelerator(args)
    dataset_name = dataset_display_name(args.dataset)
    train, test = load_train_test(args)
    shots = sample_few_shot(train, args.shots, seed=args.seed, label_column=args.label_column, val_shots=0)["train"]
    box = connect(args)
    model = CraFTForImageClassification.from_black_box(
        box,
        class_names(train, args.label_column),
        projection_seed=args.seed,
        intrinsic_dim=args.intrinsic_dim,
        dataset_name=dataset_name,
        preset=args.preset,
    )
    processor = image_processor(args, box)
    evaluate = dict(image_processor=processor, image_column=args.image_column, label_column=args.label_column)
    with warnings.catch_warnings():  # scoring the untrained model is the point here: no "not fitted" warning
        warnings.simplefilter("ignore", UserWarning)
        zero_shot = model.evaluate(test, **evaluate)  # z = 0, R = 0: the black box with "a photo of a {class}."
    eval_queries = box.queries
    settings = dict(
        budget=args.budget,
        population=args.population,
        seed=args.seed,
        output_dir=str(Path(args.output_dir) / "run"),
        **({"sigma": args.sigma} if args.sigma else {}),
    )
    training = (
        CraFTTrainingArguments.from_preset(args.preset, **settings)
        if args.preset
        else CraFTTrainingArguments(**settings)
    )
    start = time.perf_counter()
    x = model.pixel_values(shots, processor, args.image_column)
    y = torch.as_tensor(shots[args.label_column])
    history = model.fit_pixels(
        x, y, training, shots=args.shots, resume_from_checkpoint=training.output_dir if args.resume else None
    ).history_
    seconds = time.perf_counter() - start
    model.config.queries_spent = box.queries - eval_queries
    craft = model.evaluate(test, record_as=dataset_name, **evaluate)
    results = {
        "model": args.model,
        "black_box": box.name,
        "dataset": dataset_name,
        "shots": args.shots,
        "seed": args.seed,
        "budget": args.budget,
        "training_queries": model.config.queries_spent,
        "generations": len(history),
        "zero_shot_accuracy": zero_shot["accuracy"],
        "craft_accuracy": craft["accuracy"],
        "craft_per_class_accuracy": craft["per_class_accuracy"],
        "final_train_accuracy": history[-1]["train_accuracy"] if history else None,
        "train_seconds": seconds,
        "test_images": len(test),
        "world_size": accelerator.num_processes,
    }
    finish(model, args, accelerator, results)
    return results


if __name__ == "__main__":
    main()
