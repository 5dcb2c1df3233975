"""Top-1 accuracy, as an `evaluate` module that needs no Hub.

A thin wrapper over `hf_clipadapt.metrics.accuracy`; load it offline with
`hf_clipadapt.metrics.load_metric("accuracy")`. Unlike the Hub's `accuracy` module
(a fraction in [0, 1]), it returns percent, as every metric of this package does.
"""

import evaluate

from hf_clipadapt.evaluate_modules.common import classification_info
from hf_clipadapt.metrics import accuracy

_DESCRIPTION = """Top-1 accuracy: the share of samples whose predicted class id equals the reference id,
in percent (0 to 100). Unlike the Hub's `accuracy` module, which returns a fraction, this one
follows the percent convention of the rest of hf_clipadapt and loads without network access."""

_CITATION = ""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
Returns:
    accuracy (float), in percent.
Example:
    >>> metric = Accuracy()
    >>> metric.compute(predictions=[0, 1, 1, 2], references=[0, 1, 2, 2])
    {'accuracy': 75.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    def _info(self):
        return classification_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION)

    def _compute(self, predictions, references):
        return {"accuracy": accuracy(predictions, references)}
