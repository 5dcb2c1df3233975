"""Open-set known accuracy, AUROC and H, as an `evaluate` module.

A thin wrapper over `hf_clipadapt.metrics.open_set_scores`; load it offline with
`hf_clipadapt.metrics.load_metric("open_set")`.
"""

import evaluate

from hf_clipadapt.evaluate_modules.common import LoadTimeArguments, classification_info
from hf_clipadapt.metrics import open_set_scores

_DESCRIPTION = """Open-set recognition scores as reported by UEO (Liang et al., "Realistic Unsupervised CLIP
Fine-tuning with Universal Entropy Optimization", ICML 2024): mean per-class accuracy on the
known classes, AUROC of a per-sample confidence score for telling known (positive) from unknown
samples, and their harmonic mean, in percent."""

_CITATION = """@inproceedings{liang2024realistic,
  title={Realistic Unsupervised CLIP Fine-tuning with Universal Entropy Optimization},
  author={Liang, Jian and Sheng, Lijun and Wang, Zhengbo and He, Ran and Tan, Tieniu},
  booktitle={ICML}, year={2024}}"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted known-class ids.
    references (list of int): true class ids; every unknown-class sample is `unknown_index`.
    scores (list of float): confidence that the sample is known (e.g. max softmax probability).
    unknown_index (int): the id that marks unknown samples in `references`.
    known_classes (list of int, optional): the known classes (default: the known ids present).
    unknown_index and known_classes may also be given once at load, `load_metric("open_set",
    unknown_index=...)`. evaluate's own image-classification evaluator drops the scores: use
    `hf_clipadapt.evaluate_modules.evaluator.image_classification_evaluator()`, which passes the
    pipeline's top probability as `scores`.
Returns:
    known (float), auroc (float), H (float), in percent.
Example:
    >>> metric = OpenSet()
    >>> metric.compute(predictions=[0, 1, 0], references=[0, 1, 9], scores=[0.9, 0.8, 0.2], unknown_index=9)
    {'known': 100.0, 'auroc': 100.0, 'H': 100.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class OpenSet(LoadTimeArguments, evaluate.Metric):
    load_time_arguments = ("unknown_index", "known_classes")

    def _info(self):
        return classification_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, scores="float64")

    def _compute(self, predictions, references, scores, unknown_index=None, known_classes=None):
        unknown_index = self._argument("unknown_index", unknown_index)
        known_classes = self._argument("known_classes", known_classes, required=False)
        return open_set_scores(
            predictions, references, scores, unknown_index=unknown_index, known_classes=known_classes
        )
