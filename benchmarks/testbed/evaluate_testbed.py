"""Zero-shot and linear-probe numbers of the testbed CLIP on every suite.

    python benchmarks/testbed/evaluate_testbed.py [--checkpoint DIR] [--seeds 0 1 2]

For each suite seed: encode the suite with `CLIPBackbone` (features cached by
`hf_clipadapt.features.extract_features`), classify zero-shot with the testbed
templates (ensemble and the single "a photo of a {}."), and adapt on 16 shots per
class (plus 4 per class of validation shots for the methods' hyper-parameters):

* linear probe: scikit-learn LogisticRegression, C=10, on L2-normalised features,
  on the 16 shots and on the whole pool (32 per class) as references;
* ZS-init head: a linear head initialised at the zero-shot weights (see below);
* Tip-Adapter (training-free; α, β picked on the validation shots);
* GDA (training-free; closed form on the 16 shots' plain features, no augmented
  views, α picked on the validation shots), `hf_clipadapt.gda.functional`.

Writes a JSON next to this script and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hf_clipadapt.clip import CLIPBackbone
from hf_clipadapt.features import extract_features
from hf_clipadapt.gda.functional import ensemble_logits, fit_gda, select_alpha
from hf_clipadapt.metrics import accuracy, auroc, harmonic_mean
from hf_clipadapt.testbed import TESTBED_TEMPLATES, UNKNOWN_LABEL, load_suite, testbed_checkpoint_path
from hf_clipadapt.testbed.world import WEB_NAMES

# examples/ holds the offline assets and baselines the benchmarks share (not in the wheel)
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from baselines import select_tip_params, tip_adapter_logits  # noqa: E402

HERE = Path(__file__).resolve().parent


def probe(train_x, train_y, seed: int, C: float = 10.0):
    """Multinomial logistic regression on L2-normalised features (as CLIP's probes)."""
    from sklearn.linear_model import LogisticRegression

    return _Normalised(LogisticRegression(C=C, max_iter=1000, tol=1e-4).fit(_l2(train_x), train_y))


def _l2(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)


class _Normalised:
    def __init__(self, clf):
        self.clf = clf

    def score(self, x, y):
        return self.clf.score(_l2(x), y)

    def predict_proba(self, x):
        return self.clf.predict_proba(_l2(x))


def zs_init_head(train_x, train_y, zs_weights, logit_scale, steps: int = 300, lr: float = 1e-3, reg: float = 1.0):
    """A few-shot adaptation reference (in the spirit of CLIP-Adapter / LP++): a linear
    head on normalised features initialised at the zero-shot classifier, trained with
    cross-entropy plus an L2 pull towards that initialisation. Fixed hyper-parameters."""
    x = torch.nn.functional.normalize(torch.as_tensor(train_x), dim=-1)
    y = torch.as_tensor(train_y).long()
    w0 = zs_weights.detach().clone()
    w = torch.nn.Parameter(w0.clone())
    opt = torch.optim.Adam([w], lr=lr)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(logit_scale * x @ w.t(), y) + reg * (w - w0).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w.detach()


def k_shot_indices(labels: np.ndarray, k: int, seed: int, skip: int = 0) -> np.ndarray:
    """k per class, after skipping the first `skip` of each class's seeded order (so
    `skip=16` gives validation shots disjoint from the 16 training shots)."""
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(labels == c))[skip : skip + k] for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


class TrainingFree:
    """Tip-Adapter and GDA fitted on the few-shot features, hyper-parameters on validation."""

    def __init__(self, train_x, train_y, val_x, val_y, zs_weights, logit_scale):
        norm = lambda a: torch.nn.functional.normalize(torch.as_tensor(a).float(), dim=-1)  # noqa: E731
        self.keys, self.keys_y = norm(train_x), torch.as_tensor(train_y).long()
        val_x, val_y = norm(val_x), torch.as_tensor(val_y).long()
        self.zs, self.scale, self.k = zs_weights.float(), logit_scale, zs_weights.shape[0]
        self.tip_alpha, self.tip_beta = select_tip_params(
            val_x, val_y, self.keys, self.keys_y, self.k, zero_shot_logits=self.scale * val_x @ self.zs.T
        )
        self.gda_w, self.gda_b = fit_gda(self.keys, self.keys_y, self.k)
        self.gda_alpha, _ = select_alpha(val_x, val_y, self.zs, self.gda_w, self.gda_b, logit_scale=self.scale)

    def tip(self, x):
        x = torch.nn.functional.normalize(torch.as_tensor(x).float(), dim=-1)
        zero_shot = self.scale * x @ self.zs.T
        return tip_adapter_logits(x, self.keys, self.keys_y, self.k, self.tip_beta, self.tip_alpha, zero_shot)

    def gda(self, x):
        x = torch.nn.functional.normalize(torch.as_tensor(x).float(), dim=-1)
        return ensemble_logits(x, self.zs, self.gda_w, self.gda_b, self.gda_alpha, self.scale)


def evaluate_suite(backbone, name: str, seed: int, cache_dir) -> dict:
    suite = load_suite(name, seed=seed)
    transform = backbone.image_transform()
    feats = {}
    for split, ds in suite.items():
        x, y = extract_features(
            backbone.encode_images,
            ds,
            transform,
            batch_size=256,
            cache_dir=cache_dir,
            cache_name=backbone.cache_name,
            split=f"{name}/{split}",
        )
        feats[split] = (x.numpy(), y.numpy())

    def zero_shot(split, templates, w=None):
        names = suite[split].features["label"].names
        w = backbone.zero_shot_classifier(names, templates) if w is None else w
        return backbone.logit_scale * torch.nn.functional.normalize(torch.from_numpy(feats[split][0]), dim=-1) @ w.t()

    out = {}
    xtr, ytr = feats["train"]
    few, val = k_shot_indices(ytr, 16, seed), k_shot_indices(ytr, 4, seed, skip=16)
    probe16, probe_all = probe(xtr[few], ytr[few], seed), probe(xtr, ytr, seed)
    w_zs = backbone.zero_shot_classifier(suite["train"].features["label"].names, TESTBED_TEMPLATES)
    w_head = zs_init_head(xtr[few], ytr[few], w_zs, backbone.logit_scale)
    free = TrainingFree(xtr[few], ytr[few], xtr[val], ytr[val], w_zs, backbone.logit_scale)
    if name in ("few_shot", "domain_shift"):
        tests = ["test"] + (["target_test"] if name == "domain_shift" else [])
        for split in tests:
            xs, ys = feats[split]
            out[f"zs_{split}"] = accuracy(zero_shot(split, TESTBED_TEMPLATES), ys)
            out[f"zs1_{split}"] = accuracy(zero_shot(split, TESTBED_TEMPLATES[:1]), ys)
            out[f"probe16_{split}"] = 100 * probe16.score(xs, ys)
            out[f"zsinit16_{split}"] = accuracy(zero_shot(split, None, w_head), ys)
            out[f"tip16_{split}"] = accuracy(free.tip(xs), ys)
            out[f"gda16_{split}"] = accuracy(free.gda(xs), ys)
            out[f"probe_{split}"] = 100 * probe_all.score(xs, ys)
        if name == "few_shot":  # the same classifier, prompted with the names the captions used
            web = [WEB_NAMES.get(n, n) for n in suite["test"].features["label"].names]
            w_web = backbone.zero_shot_classifier(web, TESTBED_TEMPLATES)
            out["zs_web_names_test"] = accuracy(zero_shot("test", None, w_web), feats["test"][1])
        if name == "domain_shift":  # oracle: a probe trained on labelled target data
            xt, yt = feats["target_train"]
            out["probe_target_oracle"] = 100 * probe(xt, yt, seed).score(*feats["target_test"])
    elif name == "base_to_new":
        for split in ("test_base", "test_new"):
            out[f"zs_{split}"] = accuracy(zero_shot(split, TESTBED_TEMPLATES), feats[split][1])
            out[f"zs1_{split}"] = accuracy(zero_shot(split, TESTBED_TEMPLATES[:1]), feats[split][1])
        out["zs_H"] = harmonic_mean(out["zs_test_base"], out["zs_test_new"])
        out["probe16_test_base"] = 100 * probe16.score(*feats["test_base"])
        out["zsinit16_test_base"] = accuracy(zero_shot("test_base", None, w_head), feats["test_base"][1])
        out["tip16_test_base"] = accuracy(free.tip(feats["test_base"][0]), feats["test_base"][1])
        out["gda16_test_base"] = accuracy(free.gda(feats["test_base"][0]), feats["test_base"][1])
        out["probe_test_base"] = 100 * probe_all.score(*feats["test_base"])
    elif name == "open_set":
        xs, ys = feats["test"]
        known = ys != UNKNOWN_LABEL
        logits = zero_shot("test", TESTBED_TEMPLATES)
        out["zs_known_acc"] = accuracy(logits[known], ys[known])
        out["zs_auroc_msp"] = auroc(logits.softmax(-1).max(-1).values, known)
        out["probe16_known_acc"] = 100 * probe16.score(xs[known], ys[known])
        out["zsinit16_known_acc"] = accuracy(zero_shot("test", None, w_head)[known], ys[known])
        out["tip16_known_acc"] = accuracy(free.tip(xs[known]), ys[known])
        out["gda16_known_acc"] = accuracy(free.gda(xs[known]), ys[known])
        out["probe_known_acc"] = 100 * probe_all.score(xs[known], ys[known])
        out["probe_auroc_msp"] = auroc(probe_all.predict_proba(xs).max(-1), known)
    out["num_classes"] = len(suite["train"].features["label"].names)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="default: the committed testbed checkpoint")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--suites", nargs="+", default=["few_shot", "base_to_new", "open_set", "domain_shift"])
    p.add_argument("--output", type=Path, default=HERE / "results.json")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    backbone = CLIPBackbone.from_pretrained(args.checkpoint or testbed_checkpoint_path())
    t0 = time.time()
    results = {}
    for name in args.suites:
        runs = [evaluate_suite(backbone, name, s, args.cache_dir) for s in args.seeds]
        results[name] = {
            k: {"mean": float(np.mean([r[k] for r in runs])), "std": float(np.std([r[k] for r in runs]))}
            for k in runs[0]
        }
        print(f"## {name} ({runs[0]['num_classes']} classes, seeds {args.seeds})")
        for k, v in results[name].items():
            if k != "num_classes":
                print(f"  {k:24s} {v['mean']:6.1f} ± {v['std']:.1f}")
    results["_meta"] = {
        "checkpoint": args.checkpoint or "committed",
        "seeds": args.seeds,
        "eval_wall_time_s": round(time.time() - t0, 1),
    }
    args.output.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.output} in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
