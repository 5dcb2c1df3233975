"""Configuration of [`GDAForImageClassification`]."""

from __future__ import annotations

from ..configuration_utils import CLIPAdaptedConfig
from .functional import ALPHAS


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
        alpha_scores: validation accuracy per α, recorded by `fit`.
    """

    model_type = "gda"

    def __init__(
        self,
        alpha: float = 1.0,
        alphas: list[float] | None = None,
        use_text_classifier: bool = True,
        views: int = 10,
        alpha_scores: dict | None = None,
        **kwargs,
    ):
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.alpha = float(alpha)
        self.alphas = [float(a) for a in (ALPHAS if alphas is None else alphas)]
        self.use_text_classifier = use_text_classifier
        # JSON turns float keys into strings; keep them as strings throughout.
        self.alpha_scores = {str(k): float(v) for k, v in (alpha_scores or {}).items()}
        super().__init__(views=views, **kwargs)
