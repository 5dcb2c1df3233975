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
    return evaluate.MetricInfo(
        description=description,
        citation=citation,
        inputs_description=inputs_description,
        features=datasets.Features({k: datasets.Value(v) for k, v in columns.items()}),
    )


class LoadTimeArguments:
    """Lets a module take its `compute()` keyword arguments once, when it is loaded:
    `load_metric("h_score", unknown_index=9)`. evaluate's `evaluator(...).compute(...)`
    calls `metric.compute(predictions=..., references=...)` and nothing else, so this is
    how a metric that needs a setting (the unknown id) works there. An argument given to
    `compute()` wins over the one given at load. A plain mixin, not an `evaluate.Metric`,
    so `evaluate.load` still finds the module's own class as its main class."""

    load_time_arguments: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        self._load_time = {k: kwargs.pop(k) for k in self.load_time_arguments if k in kwargs}
        super().__init__(*args, **kwargs)

    def _argument(self, name: str, value, required: bool = True):
        if value is None:
            value = self._load_time.get(name)
        if value is None and required:
            raise ValueError(
                f"{self.name} needs {name}=: pass it to compute(), or, for evaluate's evaluator (which calls "
                f"compute(predictions=, references=) only), when loading: load_metric({self.name!r}, {name}=...)"
            )
        return value
