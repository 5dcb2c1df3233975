"""GDA with a text tower: the testbed CLIP, zero-shot vs GDA, over shots and base-to-new.

    python benchmarks/gda/testbed_gda.py [--shots 1 2 4 8 16] [--seeds 1 2 3] [--views 10]

The EfficientNet benchmark (run_gda_benchmark.py) has no text encoder. Here GDA runs
as the paper does, on the package's own pretrained CLIP (`hf_clipadapt.testbed`):
the closed-form head on 10 augmented views per shot, ensembled with the zero-shot
classifier, α picked on the validation shots.

* few_shot suite: the demo's protocol (examples/demo.py `run_testbed`: zero-shot,
  GDA, Tip-Adapter, linear probe on the same K-shot draw), over more shots and seeds;
* base_to_new suite: GDA fitted on 16 shots of the 32 base classes with the official
  base-to-new protocol (mrflogs/ICLR24 main_base2new.py: the "base_to_new" preset's
  base head, then `new_classes_head` with the official heads built from the augmented
  views of the base shots, base α reused) for the 32 held-out (colour, object) classes,
  which have names but no images; reported as base / new accuracy and their harmonic
  mean. `base_to_new_alpha.py` compares this with the pseudo-new α and the earlier heads.

Writes `testbed_gda.json` and `TESTBED.md` next to this script.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from hf_clipadapt.clip import get_templates
from hf_clipadapt.data import sample_few_shot
from hf_clipadapt.features import DEFAULT_CACHE_DIR
from hf_clipadapt.gda import GDAForImageClassification
from hf_clipadapt.metrics import accuracy, harmonic_mean
from hf_clipadapt.testbed import load_suite, load_testbed_clip

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def demo_module():
    """examples/demo.py, whose `run_testbed` is the few-shot protocol used here too."""
    spec = importlib.util.spec_from_file_location("hf_clipadapt_demo", ROOT / "examples" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def base_to_new(backbone, seed: int, shots: int, views: int, encode) -> dict[str, float]:
    """`encode(dataset, split)` -> normalised features and labels (the demo's `encode_split`)."""
    suite = load_suite("base_to_new", seed=0)
    templates = get_templates("testbed")
    base_names = suite["train"].features["label"].names
    new_names = suite["test_new"].features["label"].names
    base_x, base_y = encode(suite["test_base"], "base_to_new/test_base")
    new_x, new_y = encode(suite["test_new"], "base_to_new/test_new")
    gda = GDAForImageClassification.from_clip(backbone, base_names, templates, preset="base_to_new", view_flip=False)
    gda.fit(suite["train"], shots=shots, seed=seed, views=views, cache_dir=DEFAULT_CACHE_DIR)
    c = gda.config  # the official new heads take their neighbours among the augmented views `fit` encoded
    view_x, view_y = gda.encode_dataset(
        sample_few_shot(suite["train"], shots=shots, seed=seed)["train"],
        gda.augmented_views(seed, c.view_scale, c.view_flip),
        views=views,
        split="train",
        cache_dir=DEFAULT_CACHE_DIR,
    )
    new_head = gda.new_classes_head(new_names, view_x, view_y, k=min(64, len(view_y)))

    zs_base = accuracy(backbone.logit_scale * base_x @ gda.text_weights.T, base_y)
    zs_new = accuracy(backbone.logit_scale * new_x @ new_head.text_weights.T, new_y)
    gda_base = accuracy(gda(image_features=base_x).logits, base_y)
    gda_new = accuracy(new_head(image_features=new_x).logits, new_y)
    return {
        "zero-shot base": zs_base,
        "zero-shot new": zs_new,
        "zero-shot H": harmonic_mean(zs_base, zs_new),
        "GDA base": gda_base,
        "GDA new": gda_new,
        "GDA H": harmonic_mean(gda_base, gda_new),
        "alpha": gda.config.alpha,
    }


def mean_std(runs: list[dict]) -> dict:
    return {
        k: {"mean": float(np.mean([r[k] for r in runs])), "std": float(np.std([r[k] for r in runs]))} for k in runs[0]
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shots", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--views", type=int, default=10, help="augmented views per shot (the paper's 10)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    demo = demo_module()
    per_seed = [demo.run_testbed(args.shots, [s], args.views)[0] for s in args.seeds]
    few_shot = {k: mean_std([dict(rows)[k] for rows in per_seed]) for k in args.shots}
    backbone = load_testbed_clip()
    encode = partial(demo.encode_split, backbone)
    b2n = mean_std([base_to_new(backbone, s, 16, args.views, encode) for s in args.seeds])
    results = {
        "few_shot": few_shot,
        "base_to_new_16_shots": b2n,
        "_meta": {"seeds": args.seeds, "views": args.views, "wall_time_s": round(time.time() - t0, 1)},
    }
    (HERE / "testbed_gda.json").write_text(json.dumps(results, indent=1))

    cell = lambda d: f"{d['mean']:.1f} ± {d['std']:.1f}"  # noqa: E731
    methods = list(few_shot[args.shots[0]])
    lines = [
        "# GDA on the testbed CLIP (generated by testbed_gda.py)",
        "",
        f"Few-shot suite, 16 objects, 800 test scenes; mean ± std over seeds {args.seeds}; "
        f"GDA on {args.views} augmented views per shot, α on the validation shots.",
        "",
        "| shots | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    lines += [f"| {k} | " + " | ".join(cell(few_shot[k][m]) for m in methods) + " |" for k in args.shots]
    lines += [
        "",
        "Base-to-new suite, 16 shots of the 32 base classes; the 32 new classes have names only. GDA: the "
        "official base-to-new protocol (base head without shrinkage, official new heads, base α reused).",
        "",
        "| | base | new | H |",
        "|---|---|---|---|",
    ]
    for who in ("zero-shot", "GDA"):
        lines.append(f"| {who} | {cell(b2n[who + ' base'])} | {cell(b2n[who + ' new'])} | {cell(b2n[who + ' H'])} |")
    lines += ["", f"Wall time {results['_meta']['wall_time_s']:.0f} s on the 2-core CPU machine."]
    (HERE / "TESTBED.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
