"""One local-adapter query (K prompts against cached image features) vs a bare text-tower
forward over the same K prompts plus the score matmul, on the testbed CLIP.

    OMP_NUM_THREADS=1 python benchmarks/craft/query_speed.py

--repeat adjacent (bare, query) timing pairs of --number calls each; the median of the
per-pair ratios and the ratio of the best times are reported. Writes query_speed.json.
"""

from __future__ import annotations

import argparse
import json
import timeit
from pathlib import Path

import torch

from hf_clipadapt.craft import CraFTForImageClassification, LocalBlackBox
from hf_clipadapt.testbed import load_suite, load_testbed_clip


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--number", type=int, default=10)
    p.add_argument("--repeat", type=int, default=30)
    args = p.parse_args()
    torch.set_num_threads(1)
    clip = load_testbed_clip()
    suite = load_suite("few_shot", 0)
    names = suite["train"].features["label"].names
    box = LocalBlackBox(clip)
    model = CraFTForImageClassification.from_black_box(box, names)
    x = model.pixel_values(suite["train"].select(range(256)))
    handle = box.upload_images(x)
    features = clip.encode_images(x).detach()
    context = model.prompt.context()
    texts = [f"a photo of a {c}." for c in names]

    @torch.no_grad()
    def bare():
        return clip.logit_scale * features @ clip.encode_texts(texts).T

    def query():
        return box.query(context, handle, names)

    bare(), query()
    # Adjacent pairs, many times: on a shared machine load drifts over seconds, so each
    # ratio compares two timings taken under the same load; the median ratio is reported.
    pairs = [
        (timeit.timeit(bare, number=args.number), timeit.timeit(query, number=args.number)) for _ in range(args.repeat)
    ]
    ratios = sorted(q / b for b, q in pairs)
    out = {
        "classes": len(names),
        "images": len(x),
        "pairs": len(pairs),
        "number": args.number,
        "best_seconds": {
            "bare": min(b for b, _ in pairs) / args.number,
            "query": min(q for _, q in pairs) / args.number,
        },
        "median_ratio": ratios[len(ratios) // 2],
        "ratio_of_best": min(q for _, q in pairs) / min(b for b, _ in pairs),
        "target": 1.2,
    }
    print(json.dumps(out, indent=1))
    (Path(__file__).parent / "query_speed.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
