"""Generalized zero-shot learning u, s and H, as an `evaluate` module.

A thin wrapper over `hf_clipadapt.metrics.gzsl_scores`; load it offline with
`hf_clipadapt.metrics.load_metric("gzsl")`.
"""

import evaluate

from hf_clipadapt.evaluate_modules.common import XIAN2018_CITATION, classification_info
from hf_clipadapt.metrics import gzsl_scores

_DESCRIPTION = """Generalized zero-shot learning scores (Xian et al., "Zero-Shot Learning - A Comprehensive
Evaluation of the Good, the Bad and the Ugly", TPAMI 2018): mean per-class accuracy on the
test samples of seen classes (s) and of unseen classes (u), both predicted over the full label
space, and their harmonic mean H = 2us/(u+s), in percent."""

_CITATION = XIAN2018_CITATION

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted class ids over seen + unseen classes.
    references (list of int): true class ids.
    seen_classes (list of int): ids of the seen classes.
    unseen_classes (list of int): ids of the unseen classes (disjoint from the seen ones).
Returns:
    seen (float), unseen (float), H (float), in percent.
Example:
    >>> metric = GZSL()
    >>> metric.compute(predictions=[0, 1, 2, 0], references=[0, 1, 2, 2], seen_classes=[0, 1], unseen_classes=[2])
    {'seen': 100.0, 'unseen': 50.0, 'H': 66.66666666666667}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class GZSL(evaluate.Metric):
    def _info(self):
        return classification_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION)

    def _compute(self, predictions, references, seen_classes, unseen_classes):
        return gzsl_scores(predictions, references, seen_classes=seen_classes, unseen_classes=unseen_classes)
