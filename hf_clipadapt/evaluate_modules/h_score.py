"""H-score for universal domain adaptation, as an `evaluate` module.

A thin wrapper over `hf_clipadapt.metrics.h_score`; load it offline with
`hf_clipadapt.metrics.load_metric("h_score")`.
"""

import evaluate

from hf_clipadapt.evaluate_modules.common import LoadTimeArguments, classification_info
from hf_clipadapt.metrics import h_score

_DESCRIPTION = """Universal domain adaptation H-score (Fu et al., "Learning to Detect Open Classes for
Universal Domain Adaptation", ECCV 2020): the harmonic mean of the mean per-class accuracy on
the shared (known) classes and the accuracy on target-private samples pooled as one "unknown"
class, in percent."""

_CITATION = """@inproceedings{fu2020learning,
  title={Learning to Detect Open Classes for Universal Domain Adaptation},
  author={Fu, Bo and Cao, Zhangjie and Long, Mingsheng and Wang, Jianmin},
  booktitle={ECCV}, year={2020}}"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted class ids; `unknown_index` for "unknown".
    references (list of int): true class ids; every target-private sample is `unknown_index`.
    unknown_index (int): the id that stands for "unknown".
    known_classes (list of int, optional): the shared classes (default: the known ids present).
    Both may also be given once at load, `load_metric("h_score", unknown_index=...)`, which is how
    evaluate's `evaluator("image-classification")` (it passes predictions and references only) uses it.
Returns:
    known (float), unknown (float), H (float), in percent.
Example:
    >>> metric = HScore()
    >>> metric.compute(predictions=[0, 1, 2, 2], references=[0, 1, 2, 1], unknown_index=2)
    {'known': 75.0, 'unknown': 100.0, 'H': 85.71428571428571}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class HScore(LoadTimeArguments, evaluate.Metric):
    load_time_arguments = ("unknown_index", "known_classes")

    def _info(self):
        return classification_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION)

    def _compute(self, predictions, references, unknown_index=None, known_classes=None):
        unknown_index = self._argument("unknown_index", unknown_index)
        known_classes = self._argument("known_classes", known_classes, required=False)
        return h_score(predictions, references, unknown_index=unknown_index, known_classes=known_classes)
