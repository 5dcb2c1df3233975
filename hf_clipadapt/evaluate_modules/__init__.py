"""The package's metrics as `evaluate` modules, usable offline.

Each file here is a self-contained `evaluate` module script and a thin wrapper
over one function of `hf_clipadapt.metrics` (the single implementation):

* `accuracy.py`: top-1 accuracy in percent (the Hub's `accuracy` needs the network);
* `h_score.py`: universal domain adaptation H-score (known, unknown, H);
* `gzsl.py`: generalized zero-shot u, s and H;
* `open_set.py`: open-set known accuracy, AUROC and their H;
* `per_class_accuracy.py`: mean per-class accuracy;
* `base_to_new.py`: base-to-new accuracy and H.

`load("h_score")` is `evaluate.load(<path of h_score.py>)`: evaluate copies the
script into its module cache and imports it, with no Hub access. The classes can
also be instantiated directly (`from hf_clipadapt.evaluate_modules.h_score import
HScore; HScore()`).

evaluate's `evaluator("image-classification")` takes these modules as `metric=`; the
settings of `h_score` and `open_set` are then given at load (`load("h_score",
unknown_index=9)`), and `open_set`, which needs a confidence score per sample, goes
through `evaluator.image_classification_evaluator()` (docs/progress_and_metrics.md).
"""

from __future__ import annotations

from pathlib import Path

NAMES = ("accuracy", "h_score", "gzsl", "open_set", "per_class_accuracy", "base_to_new")


def path(name: str) -> str:
    """The module script for `name`, for `evaluate.load(path(name))`."""
    if name not in NAMES:
        raise ValueError(f"unknown hf_clipadapt metric {name!r}; choose one of {', '.join(NAMES)}")
    return str(Path(__file__).with_name(f"{name}.py"))


def load(name: str, **kwargs):
    import evaluate

    return evaluate.load(path(name), **kwargs)
