"""UEO on the testbed CLIP's open-set suite: zero-shot, information maximisation, UEO,
in the four settings (closed, partial, open, open_partial).

    python benchmarks/ueo/run_benchmark.py [--seeds 0 1 2] [--epochs 10] [--learning_rate 1e-4]

Data (per seed, `load_suite("open_set", seed)`): 16 known objects, 4 unknown ones never
shown nor named in pretraining. The unlabelled pool is the suite's train split (known
objects) plus half of the unknown test images; evaluation is every known test image and
the other half of the unknowns (all 4 unknown classes, in every setting, as the official
code evaluates). `hf_clipadapt.ueo.make_setting` then keeps the setting's classes in the
pool (partial: the first 12 known; open: + 2 of the 4 unknown classes) and drops labels.

Methods: zero-shot CLIP with "a photo of a {class}."; information maximisation
(`no_weight=True`); UEO with its defaults (the official code's weights: softmax of unscaled
cosines); UEO with weights from the scaled logits (`weights_from="logits"`). Every trained
method uses the same schedule (SGD, cosine, batch 64, no gradient clipping, `--epochs`,
`--learning_rate`), fixed in advance: no test label is read before the final scores.
Metrics: per-class accuracy on the known classes, AUROC (known = positive) of the official
score (max softmax of the unscaled cosines) and H, plus `auroc_scaled` / `H_scaled` (max
softmax of the scaled logits, the AUROC reported before). Also written: the weight
temperature check (w from scaled
logits vs unscaled cosines on each pool, with the AUROC of w itself for known-vs-unknown,
using the pool's labels for reporting only) and the speed ratio of a UEO training step to
a bare `CLIPModel` forward+backward on the same batch.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from argparse import Namespace
from pathlib import Path

import torch

from hf_clipadapt.metrics import auroc
from hf_clipadapt.ueo import SETTINGS, UEOForImageClassification
from hf_clipadapt.ueo.training import CheckedImages, zero_shot_pass

METHODS = ("zero_shot", "information_maximization", "ueo", "ueo_logit_weights")
HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parents[1] / "examples" / "ueo_unsupervised.py"


def example():
    spec = importlib.util.spec_from_file_location("ueo_unsupervised", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_data(seed: int, setting: str, keep_labels: bool = False):
    args = Namespace(
        dataset=f"testbed:open_set@{seed}",
        dataset_config=None,
        train_split="train",
        test_split="test",
        image_column="image",
        label_column="label",
        unknown_name_column="object",
        seed=seed,
        num_known=None,
        setting=setting,
        oracle=keep_labels,
    )
    return example().load_setting(args)


def weight_check(backbone, seed: int) -> dict:
    """w from scaled logits (ours) and from unscaled cosines (official code) on the open pool."""
    data = load_data(seed, "open", keep_labels=True)
    known = data["test"].features["label"].names
    model = UEOForImageClassification.from_clip(backbone, known)
    scaled = zero_shot_pass(model, CheckedImages(data["train"]), weights_from="logits")
    raw = zero_shot_pass(model, CheckedImages(data["train"]), weights_from="cosine")
    is_known = torch.tensor(data["train"]["label"]) >= 0
    row = {}
    for name, w in (("scaled", scaled), ("unscaled", raw)):
        row[name] = {
            "mean": w.mean().item(),
            "std": w.std().item(),
            "min": w.min().item(),
            "max": w.max().item(),
            "ratio_max_min": (w.max() / w.min()).item(),
            "auroc_known_vs_unknown": auroc(w, is_known),
            "uniform": 1 / len(known),
        }
    return row


def run_one(backbone, data, method: str, seed: int, epochs: int, lr: float) -> dict:
    known = data["test"].features["label"].names
    model = UEOForImageClassification.from_clip(backbone, known)
    start = time.perf_counter()
    if method != "zero_shot":
        args = dict(
            num_train_epochs=epochs,
            learning_rate=lr,
            dataloader_drop_last=False,
            no_weight=method == "information_maximization",
            weights_from="logits" if method == "ueo_logit_weights" else "cosine",
        )
        model.fit(data["train"], seed=seed, args=args)
    else:
        model.config.is_fitted = True
    result = model.evaluate(data["test"])
    result["train_seconds"] = time.perf_counter() - start
    return result


def speed_ratio(backbone, repeats: int = 5) -> dict:
    """Median seconds of a UEO training step vs a bare CLIPModel forward+backward, batch 64, 16 classes."""
    from transformers import CLIPModel

    from hf_clipadapt.testbed import KNOWN_OBJECTS
    from hf_clipadapt.ueo import ueo_loss

    model = UEOForImageClassification.from_clip(backbone, list(KNOWN_OBJECTS)).train()
    pixels = torch.randn(64, 3, backbone.crop_size, backbone.crop_size, generator=torch.Generator().manual_seed(0))
    weights = torch.rand(64) * 0.9 + 0.1
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    bare = CLIPModel.from_pretrained(backbone.name_or_path).train()
    tokens = backbone.tokenize([f"a photo of a {c}." for c in KNOWN_OBJECTS])

    def ueo_step():
        opt.zero_grad()
        ueo_loss(model(pixel_values=pixels).logits, weights).backward()
        opt.step()

    def bare_step():
        bare.zero_grad()
        out = bare(pixel_values=pixels, input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        ueo_loss(out.logits_per_image, weights).backward()

    times = {}
    for name, step in (("ueo_step", ueo_step), ("bare_clip_forward_backward", bare_step)):
        step()  # warm-up
        samples = []
        for _ in range(repeats):
            t = time.perf_counter()
            step()
            samples.append(time.perf_counter() - t)
        times[name] = sorted(samples)[len(samples) // 2]
    times["ratio"] = times["ueo_step"] / times["bare_clip_forward_backward"]
    return times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--settings", nargs="+", default=list(SETTINGS))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--learning_rate", type=float, default=1e-4)
    p.add_argument("--out", default=str(HERE / "results.json"))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--skip_speed", action="store_true")
    p.add_argument("--skip_weights", action="store_true", help="no weight temperature check")
    args = p.parse_args(argv)
    from hf_clipadapt.testbed import load_testbed_clip

    backbone = load_testbed_clip()
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    results.setdefault("config", {}).update(epochs=args.epochs, learning_rate=args.learning_rate)
    runs = results.setdefault("runs", [])
    done = {(r["seed"], r["setting"], r["method"]) for r in runs}
    if not args.skip_speed:
        results["speed"] = speed_ratio(backbone)
        print("speed", results["speed"], flush=True)
    for seed in args.seeds:
        if not args.skip_weights and str(seed) not in results.setdefault("weights", {}):
            results["weights"][str(seed)] = weight_check(backbone, seed)
        for setting in args.settings:
            data = load_data(seed, setting)
            for method in args.methods:
                if (seed, setting, method) in done:
                    continue
                row = {
                    "seed": seed,
                    "setting": setting,
                    "method": method,
                    "train_images": len(data["train"]),
                    **run_one(backbone, data, method, seed, args.epochs, args.learning_rate),
                }
                runs.append(row)
                print(json.dumps(row), flush=True)
                out.write_text(json.dumps(results, indent=1))
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
