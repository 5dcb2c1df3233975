"""Does the testbed carry prompt learning? A minimal CoOp loop on its few-shot suite.

    python benchmarks/testbed/prompt_learning_check.py [--seeds 0 1 2] [--steps 200]

The shared soft-prompt layer (`hf_clipadapt.clip.PromptLearner`) learns the context
of "a photo of a {class}." on 16 shots per class with cross-entropy, the CLIP towers
frozen, as CoOp does, on the shared training path (`hf_clipadapt.training`). The image tower is frozen, so the shots' features are encoded
once and every step runs only the text tower over the 16 class prompts. Shared
("CoOp") and class-specific ("CoOp-CSC") contexts, initialised from "a photo of a".

This is a readiness check for the SHIP, UEO and CraFT work that builds on the layer,
not the package's CoOp: no augmentation, a fixed step budget, no validation. It
writes `prompt_learning.json` next to this script.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hf_clipadapt.clip import PromptLearner, get_templates
from hf_clipadapt.data import sample_few_shot
from hf_clipadapt.features import extract_features
from hf_clipadapt.metrics import accuracy
from hf_clipadapt.testbed import load_suite, load_testbed_clip
from hf_clipadapt.training import AdaptationTrainingArguments, TensorRows, sgd_arguments, train_model

HERE = Path(__file__).resolve().parent


class ContextObjective(torch.nn.Module):
    """CoOp's loss on cached image features: cross-entropy of the scaled cosine logits
    against the prompt learner's class embeddings (only `learner.ctx` requires grad)."""

    def __init__(self, learner: PromptLearner, logit_scale: float):
        super().__init__()
        self.learner, self.logit_scale = learner, logit_scale

    def forward(self, features, labels):
        return {"loss": F.cross_entropy(self.logit_scale * features @ self.learner().T, labels)}


def train_context(backbone, names, x, y, class_specific: bool, steps: int, lr: float, seed: int) -> PromptLearner:
    """Full-batch steps on the shared training path: CoOp's SGD (momentum 0.9), cosine schedule."""
    torch.manual_seed(seed)
    learner = PromptLearner(backbone, names, ctx_init="a photo of a", class_specific=class_specific)
    args = AdaptationTrainingArguments(
        max_steps=steps,
        per_device_train_batch_size=len(x),
        learning_rate=lr,
        max_grad_norm=0.0,
        seed=seed,
        **sgd_arguments(weight_decay=0.0),
        logging_strategy="no",
    )
    train_model(ContextObjective(learner, backbone.logit_scale), TensorRows(x, y), args)
    return learner


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    backbone = load_testbed_clip()
    t0 = time.time()
    runs = []
    for seed in args.seeds:
        suite = load_suite("few_shot", seed=seed)
        names = suite["train"].features["label"].names
        few = sample_few_shot(suite["train"], shots=args.shots, seed=seed, val_shots=0)["train"]
        encode = lambda ds: extract_features(backbone.encode_images, ds, backbone.image_transform())  # noqa: E731
        (x, y), (xt, yt) = encode(few), encode(suite["test"])
        x, xt = F.normalize(x, dim=-1), F.normalize(xt, dim=-1)
        scale = backbone.logit_scale
        with torch.no_grad():
            row = {
                "zero-shot": accuracy(
                    scale * xt @ backbone.zero_shot_classifier(names, get_templates("testbed")).T, yt
                )
            }
            row["zero-shot, 'a photo of a' only"] = accuracy(scale * xt @ PromptLearner(backbone, names)().T, yt)
        for label, csc in (("CoOp", False), ("CoOp-CSC", True)):
            learner = train_context(backbone, names, x, y, csc, args.steps, args.lr, seed)
            with torch.no_grad():
                row[label] = accuracy(scale * xt @ learner().T, yt)
        runs.append(row)
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()), flush=True)
    summary = {
        k: {"mean": float(np.mean([r[k] for r in runs])), "std": float(np.std([r[k] for r in runs]))} for k in runs[0]
    }
    summary["_meta"] = {
        "seeds": args.seeds,
        "shots": args.shots,
        "steps": args.steps,
        "lr": args.lr,
        "wall_time_s": round(time.time() - t0, 1),
    }
    (HERE / "prompt_learning.json").write_text(json.dumps(summary, indent=1))
    for k, v in summary.items():
        if not k.startswith("_"):
            print(f"{k:32s} {v['mean']:5.1f} ± {v['std']:.1f}")


if __name__ == "__main__":
    main()
