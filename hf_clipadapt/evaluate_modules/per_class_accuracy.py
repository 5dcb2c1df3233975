"""Mean per-class accuracy, as an `evaluate` module.

A thin wrapper over `hf_clipadapt.metrics.per_class_accuracy`; load it offline with
`hf_clipadapt.metrics.load_metric("per_class_accuracy")`.
"""

import evaluate

from hf_clipadapt.evaluate_modules.common import XIAN2018_CITATION, classification_info
from hf_clipadapt.metrics import per_class_accuracy

_DESCRIPTION = """Mean over classes of the per-class recall (top-1 accuracy within each class), in percent:
the zero-shot learning protocol of Xian et al. (TPAMI 2018), which keeps frequent classes from
dominating the score. Classes with no sample in `references` are skipped."""

_CITATION = XIAN2018_CITATION

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
    classes (list of int, optional): restrict the mean to these classes (default: those present).
Returns:
    per_class_accuracy (float), in percent.
Example:
    >>> metric = PerClassAccuracy()
    >>> metric.compute(predictions=[0, 0, 0, 1], references=[0, 0, 0, 0])
    {'per_class_accuracy': 75.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PerClassAccuracy(evaluate.Metric):
    def _info(self):
        return classification_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION)

    def _compute(self, predictions, references, classes=None):
        return {"per_class_accuracy": per_class_accuracy(predictions, references, classes)}
