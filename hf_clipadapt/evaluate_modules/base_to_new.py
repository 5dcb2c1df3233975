"""Base-to-new generalization accuracy and H, as an `evaluate` module.

A thin wrapper over `hf_clipadapt.metrics.base_to_new_scores`; load it offline with
`hf_clipadapt.metrics.load_metric("base_to_new")`.
"""

import evaluate

from hf_clipadapt.evaluate_modules.common import classification_info
from hf_clipadapt.metrics import base_to_new_scores

_DESCRIPTION = """Base-to-new generalization (Zhou et al., "Conditional Prompt Learning for Vision-Language
Models", CVPR 2022): top-1 accuracy on test samples of the base classes (those trained on) and
of the new classes, each predicted within its own label space, and their harmonic mean, in
percent. Each sample says with `is_new` which of the two sets it belongs to."""

_CITATION = """@inproceedings{zhou2022conditional,
  title={Conditional Prompt Learning for Vision-Language Models},
  author={Zhou, Kaiyang and Yang, Jingkang and Loy, Chen Change and Liu, Ziwei},
  booktitle={CVPR}, year={2022}}"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted class ids, within the sample's own label space.
    references (list of int): true class ids, within the same space.
    is_new (list of bool): True for samples of the new classes, False for base ones.
Returns:
    base (float), new (float), H (float), in percent.
Example:
    >>> metric = BaseToNew()
    >>> metric.compute(predictions=[0, 1, 0, 0], references=[0, 1, 0, 1], is_new=[False, False, True, True])
    {'base': 100.0, 'new': 50.0, 'H': 66.66666666666667}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class BaseToNew(evaluate.Metric):
    def _info(self):
        return classification_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, is_new="bool")

    def _compute(self, predictions, references, is_new):
        new = [bool(n) for n in is_new]
        if all(new) or not any(new):
            raise ValueError(
                "base-to-new needs samples of both the base (is_new=False) and the new classes (is_new=True)"
            )
        base_p = [p for p, n in zip(predictions, new) if not n]
        base_r = [r for r, n in zip(references, new) if not n]
        new_p = [p for p, n in zip(predictions, new) if n]
        new_r = [r for r, n in zip(references, new) if n]
        return base_to_new_scores(base_p, base_r, new_p, new_r)
