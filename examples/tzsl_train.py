#!/usr/bin/env python
"""Transductive zero-shot learning with an attribute decoder, leak-free.

Trains `TZSLModel` on seen-class features + class semantic vectors (and, in
transductive mode, the unlabelled unseen-class features), then reports ZSL accuracy
and GZSL u / s / H, and saves the model (generator, decoder and classifiers
together) with a model card and a results JSON.

Data, either
  --xlsa17 DIR     a folder of the xlsa17 release (res101.mat + att_splits.mat), or
  --features FILE  a file written by `hf_clipadapt.tzsl.save_features_file`
                   (e.g. `benchmarks/tzsl/make_features.py`: Fashion-MNIST through
                   EfficientNet-Lite0, MiniLM embeddings of class descriptions), or
  --dataset testbed:zsl  the testbed's compositional suite, built offline
                   (`hf_clipadapt.testbed.load_zsl_data`: the testbed CLIP's image
                   features, 26-d attributes or --semantics text).

    accelerate launch examples/tzsl_train.py --dataset testbed:zsl --preset fast --output_dir runs/tzsl-testbed

    accelerate launch --cpu --num_processes 1 examples/tzsl_train.py \
        --features ~/.cache/hf_clipadapt/tzsl/fashion_mnist_effnet112_minilm.safetensors \
        --preset fast --output_dir runs/tzsl-fmnist

    accelerate launch examples/tzsl_train.py --xlsa17 data/xlsa17/data/AWA2 --preset awa2 --output_dir runs/awa2

No peeking: the number of epochs comes from the preset (or --epochs). With
--select_epochs a,b,c the epoch count is chosen on a validation split carved
from the *seen* classes (some held out as pseudo-unseen), then the model is
retrained on the full data; test labels are read only by the final evaluation.
Training runs on the shared training path (a `transformers.Trainer`): under
`accelerate launch --num_processes N` every phase runs data-parallel (DDP), each
process drawing batch_size / N samples per step.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.tracking import GeneralTracker
from accelerate.utils import set_seed

from hf_clipadapt.tzsl import PRESETS, TZSLModel, load_features_file, load_xlsa17, pseudo_unseen_split


class JSONLinesTracker(GeneralTracker):
    """A dependency-free Accelerate tracker: one JSON object per `log` call."""

    name = "jsonl"
    requires_logging_directory = True

    def __init__(self, run_name: str, logging_dir: str | os.PathLike):
        super().__init__()
        self.path = Path(logging_dir) / f"{run_name}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def tracker(self):
        return self.path

    def store_init_configuration(self, values: dict):
        self._write({"config": values})

    def log(self, values: dict, step: int | None = None, **kwargs):
        self._write({"step": step, **values})

    def _write(self, record: dict):
        with self.path.open("a") as f:
            f.write(json.dumps(record, default=str) + "\n")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--xlsa17", help="folder with res101.mat and att_splits.mat")
    src.add_argument("--features", help="a TZSL features file (safetensors)")
    src.add_argument("--dataset", choices=["testbed:zsl"], help="the testbed's zsl suite, offline")
    p.add_argument(
        "--semantics",
        default="attributes",
        choices=["attributes", "text"],
        help="class vectors for --dataset testbed:zsl",
    )
    p.add_argument(
        "--per_class",
        type=int,
        nargs=2,
        metavar=("TRAIN", "TEST"),
        default=(32, 50),
        help="testbed:zsl images per class in train and in each test split",
    )
    p.add_argument("--preset", default="fast", choices=sorted(PRESETS))
    p.add_argument("--mode", default="transductive", choices=["transductive", "inductive"])
    p.add_argument("--unconditional_d2", action="store_true", help="f-VAEGAN-D2-style D2(x) (ablation)")
    p.add_argument("--unseen_prior", default="uniform", choices=["uniform", "pseudo"])
    p.add_argument("--epochs", type=int, help="override the preset's fixed number of epochs")
    p.add_argument("--steps_per_epoch", type=int)
    p.add_argument("--hidden_dim", type=int)
    p.add_argument("--syn_num", type=int, help="override the synthesized features per unseen class")
    p.add_argument("--cls_epochs", type=int, help="override the final classifier's epochs")
    p.add_argument("--decoder_pretrain_epochs", type=int, help="override the decoder's pre-training epochs")
    p.add_argument(
        "--select_epochs", help="comma-separated epoch counts to choose from on a pseudo-unseen seen-class split"
    )
    p.add_argument(
        "--val_holdout", type=int, default=2, help="seen classes held out as pseudo-unseen for --select_epochs"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--base_model", default=None, help="the backbone that produced the features (for the card)")
    p.add_argument("--dataset_name", default=None)
    p.add_argument("--output_dir", required=True)
    return p.parse_args(argv)


def build(data, args):
    overrides = {"hidden_dim": args.hidden_dim} if args.hidden_dim is not None else {}
    return TZSLModel.from_data(
        data,
        args.preset,
        mode=args.mode,
        conditional_d2=not args.unconditional_d2,
        unseen_prior=args.unseen_prior,
        **overrides,
    )


def load_data(args):
    """(ZSLData, dataset name) from --xlsa17, --features or --dataset testbed:zsl."""
    if args.dataset:
        from hf_clipadapt.testbed import load_zsl_data

        data = load_zsl_data(
            args.semantics, seed=args.seed, n_train_per_class=args.per_class[0], n_test_per_class=args.per_class[1]
        )
        args.base_model = args.base_model or "testbed"
        return data, args.dataset_name or f"{args.dataset}-{args.semantics}"
    data = load_xlsa17(args.xlsa17) if args.xlsa17 else load_features_file(args.features)
    return data, args.dataset_name or Path(args.xlsa17 or args.features).stem


def training_overrides(args, **extra) -> dict:
    """fit(args=...): TZSLTrainingArguments fields over the preset's."""
    given = {
        "num_train_epochs": args.epochs,
        "steps_per_epoch": args.steps_per_epoch,
        "syn_num": args.syn_num,
        "cls_epochs": args.cls_epochs,
        "decoder_pretrain_epochs": args.decoder_pretrain_epochs,
        **extra,
    }
    return {k: v for k, v in given.items() if v is not None}


def training_record(settings) -> dict:
    """The run's TZSLTrainingArguments: the fields TZSL sets (its defaults, presets and overrides)."""
    return {k: getattr(settings, k) for k in type(settings).method_defaults()}


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.output_dir)
    # cpu=True without a GPU: otherwise each process of a CPU `accelerate launch` thinks it is alone
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(), log_with=[JSONLinesTracker("tzsl", out / "logs")], project_dir=str(out)
    )
    accelerator.print(f"world size: {accelerator.num_processes} ({accelerator.distributed_type.value})")
    set_seed(args.seed)
    data, dataset_name = load_data(args)
    accelerator.print(data)

    selection = None
    if args.select_epochs:
        # Model selection on seen classes only: a few of them play the unseen role.
        val = pseudo_unseen_split(data, args.val_holdout, seed=args.seed)
        candidates = [int(e) for e in args.select_epochs.split(",")]
        scores = {}
        for e in candidates:
            m = build(val, args)
            m.fit(
                val,
                seed=args.seed,
                args=training_overrides(args, num_train_epochs=e),
                progress=accelerator.is_main_process,
            )
            scores[e] = m.evaluate(val)
            accelerator.print(f"validation (pseudo-unseen {val.unseen_classes}), {e} epochs: {scores[e]}")
        best = max(candidates, key=lambda e: scores[e]["h_score"])
        selection = {"pseudo_unseen_classes": val.unseen_classes, "scores": scores, "chosen_epochs": best}
        args.epochs = best

    model = build(data, args)
    accelerator.init_trackers(
        "tzsl", config={k: v for k, v in model.config.to_dict().items() if isinstance(v, (int, float, str, bool))}
    )
    t0 = time.perf_counter()
    history = model.fit(
        data,
        seed=args.seed,
        args=training_overrides(args),
        accelerator=accelerator,
        progress=accelerator.is_main_process,
    ).history_
    epochs = model.training_args_.num_train_epochs
    train_s = time.perf_counter() - t0
    model.config.dataset_name, model.config.base_model_name_or_path = dataset_name, args.base_model
    scores = model.evaluate(data, record_as=dataset_name)  # the results go onto the model card
    accelerator.log({f"test/{k}": v for k, v in scores.items()}, step=int(epochs))
    accelerator.print({k: round(v, 2) for k, v in scores.items()})

    if accelerator.is_main_process:
        # The model folder is output_dir itself, so AutoModel.from_pretrained(output_dir) works.
        model.save_pretrained(out)
        record = {
            "scores": scores,
            "train_seconds": train_s,
            "seconds_per_epoch": train_s / max(1, epochs),
            "config": model.config.to_dict(),
            "training": training_record(model.training_args_),
            "selection": selection,
            "history": history,
            "args": vars(args),
        }
        tmp = out / f"results.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(record, indent=2, default=str))
        os.replace(tmp, out / "results.json")
    accelerator.end_training()


if __name__ == "__main__":
    main()
