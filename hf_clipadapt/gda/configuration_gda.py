"""Configuration of [`GDAForImageClassification`]."""

from __future__ import annotations

from ..configuration_utils import CLIPAdaptedConfig
from .functional import ALPHAS

#: How `GDAForImageClassification.new_classes_head` sets a new-class head's α:
#: "reuse" the base α (the paper) or choose it on "pseudo_new" base classes.
NEW_CLASS_ALPHA_RULES = ("reuse", "pseudo_new")


class GDAConfig(CLIPAdaptedConfig):
    r"""Configuration of a GDA head on a CLIP-family backbone.

    The head is small: a GDA classifier (W [K, D], b [K]), the zero-shot text
    classifier T [K, D] and the ensemble weight α, with
    logits = logit_scale·x·Tᵀ + α·(x·Wᵀ + b). By default the CLIP weights are not
    saved with it; `base_model_name_or_path` names the checkpoint to load them from.

    The CLIP reference, embedding width, logit scale, templates, recorded results
    and run provenance are the fields every CLIP-adapted model shares
    (`hf_clipadapt.modeling_utils.CLIPAdaptedConfig`).

    Args:
        alpha: weight of the GDA logits in the ensemble, chosen by `fit` on the
            few-shot validation split from `alphas`.
        alphas: the grid α is chosen from (the paper's {1e-4, ..., 100}).
        use_text_classifier: False for a GDA-only head (no zero-shot term).
        views: augmented views per training image used by `fit` (10 in the paper; each
            view is a sample). On the testbed's scenes of digits and clothes the flip of
            those views cost 3.5 points at 16 shots (77.3 → 73.8): pass view_flip=False there.
        alpha_scores: validation accuracy per α, recorded by `fit` (for a new-class head
            built with the "pseudo_new" rule: the pseudo-new accuracy per α).
        new_class_alpha_rule: None for a head fitted on its own classes; for a head from
            `new_classes_head`, the rule that set its α ("reuse" or "pseudo_new").
    """

    model_type = "gda"

    def __init__(
        self,
        alpha: float = 1.0,
        alphas: list[float] | None = None,
        use_text_classifier: bool = True,
        views: int = 10,
        alpha_scores: dict | None = None,
        new_class_alpha_rule: str | None = None,
        **kwargs,
    ):
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.alpha = float(alpha)
        self.alphas = [float(a) for a in (ALPHAS if alphas is None else alphas)]
        if new_class_alpha_rule is not None and new_class_alpha_rule not in NEW_CLASS_ALPHA_RULES:
            raise ValueError(f"new_class_alpha_rule must be None or one of {NEW_CLASS_ALPHA_RULES}, got {new_class_alpha_rule!r}")
        self.use_text_classifier = use_text_classifier
        self.new_class_alpha_rule = new_class_alpha_rule
        # JSON turns float keys into strings; keep them as strings throughout.
        self.alpha_scores = {str(k): float(v) for k, v in (alpha_scores or {}).items()}
        super().__init__(views=views, **kwargs)
