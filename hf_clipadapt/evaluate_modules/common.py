"""What every module here shares: the `MetricInfo` of integer predictions and references
(plus any extra per-sample columns). The module scripts import it by absolute name,
because `evaluate.load` runs each script from its own cache folder."""

from __future__ import annotations

import datasets
import evaluate


# The zero-shot evaluation protocol (per-class mean accuracy, GZSL u/s/H) both modules follow.
XIAN2018_CITATION = """@article{xian2018zero,
  title={Zero-Shot Learning - A Comprehensive Evaluation of the Good, the Bad and the Ugly},
  author={Xian, Yongqin and Lampert, Christoph H. and Schiele, Bernt and Akata, Zeynep},
  journal={IEEE TPAMI}, year={2018}}"""


def classification_info(description: str, citation: str, inputs_description: str, **extra: str) -> evaluate.MetricInfo:
    """`MetricInfo` with int64 `predictions` and `references` and `extra` columns
    (name → datasets value type, e.g. scores="float64")."""
    columns = {"predictions": "int64", "references": "int64", **extra}
    return evaluate.MetricInfo(description=description, citation=citation, inputs_description=inputs_description,
                               features=datasets.Features({k: datasets.Value(v) for k, v in columns.items()}))  # fmt: skip
