"""The package's `evaluate` metrics inside `transformers.Trainer(compute_metrics=...)`.

    python examples/trainer_open_set_metrics.py --output_dir open-set-probe [--epochs 3 --seed 0]

A linear probe is trained with Trainer on features of the known classes only; the
evaluation set also holds samples of classes never seen in training, labelled
`unknown_index`. `compute_metrics` reads the logits Trainer gathers and reports the
open-set scores (known-class accuracy, AUROC of the maximum softmax probability for
known vs. unknown, and their H) through `load_metric("open_set")`, an `evaluate`
module that runs offline, plus the mean per-class accuracy through
`load_metric("per_class_accuracy")`. The features are synthetic class clusters, so
the script runs in seconds on a CPU; with real data, pass CLIP image features
(`hf_clipadapt.extract_features`) the same way.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from hf_clipadapt.metrics import load_metric


class LinearProbe(torch.nn.Module):
    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.linear = torch.nn.Linear(dim, num_classes)

    def forward(self, features, labels=None):
        logits = self.linear(features)
        out = {"logits": logits}
        if labels is not None:
            # evaluation batches hold unknown samples (label = num_classes): no loss term for them
            known = labels.masked_fill(labels >= logits.shape[-1], -100)
            out["loss"] = torch.nn.functional.cross_entropy(logits, known, ignore_index=-100)
        return out


def make_data(num_known: int, dim: int, seed: int):
    """Known classes and a few unknown ones as Gaussian clusters; the unknown ones
    appear only in evaluation, all labelled `num_known`."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 0.6, size=(num_known + 3, dim))

    def draw(classes, per_class):
        x = np.concatenate([centres[c] + rng.normal(0, 1, size=(per_class, dim)) for c in classes])
        y = np.repeat([min(c, num_known) for c in classes], per_class)
        return Dataset.from_dict({"features": x.astype(np.float32), "labels": y})

    return draw(range(num_known), 40), draw(range(num_known + 3), 20)


def compute_metrics_fn(unknown_index: int):
    open_set, per_class = load_metric("open_set"), load_metric("per_class_accuracy")

    def compute_metrics(eval_pred):
        logits, labels = torch.as_tensor(eval_pred.predictions), torch.as_tensor(eval_pred.label_ids)
        probs = logits.softmax(-1)
        preds, scores = probs.argmax(-1), probs.max(-1).values
        out = open_set.compute(predictions=preds, references=labels, scores=scores, unknown_index=unknown_index)
        known = labels != unknown_index
        out.update(per_class.compute(predictions=preds[known], references=labels[known]))
        return out

    return compute_metrics


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--num_known", type=int, default=5)
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--epochs", type=float, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    train, evaluation = make_data(args.num_known, args.dim, args.seed)
    training_args = TrainingArguments(
        output_dir=args.output_dir,
        num_train_epochs=args.epochs,
        per_device_train_batch_size=16,
        learning_rate=5e-2,
        seed=args.seed,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=LinearProbe(args.dim, args.num_known),
        args=training_args,
        train_dataset=train,
        eval_dataset=evaluation,
        compute_metrics=compute_metrics_fn(unknown_index=args.num_known),
    )
    print(f"world size: {trainer.args.world_size} ({trainer.args.parallel_mode.value})", flush=True)
    trainer.train()
    results = trainer.evaluate()
    print(json.dumps({k: round(v, 2) for k, v in results.items() if isinstance(v, float)}, indent=1))
    Path(args.output_dir, "results.json").write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
