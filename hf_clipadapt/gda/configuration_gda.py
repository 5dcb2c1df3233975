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
        views: augmented views per training image used by `fit` (10 in the paper).
        view_scale: the area range of the views' random resized crops ((0.5, 1) in the paper).
        view_flip: flip views horizontally at random (the paper does). Turn it off
            where a mirror image is another class, e.g. digits: on the testbed's
            scenes of digits and clothes it cost 3.5 points at 16 shots (77.3 → 73.8).
        shots / num_train_images: what `fit` saw, for the model card.
        alpha_scores: validation accuracy per α, recorded by `fit`.
    """

    model_type = "gda"

    def __init__(
        self,
        alpha: float = 1.0,
        alphas: list[float] | None = None,
        use_text_classifier: bool = True,
        views: int = 10,
        view_scale: tuple[float, float] | list[float] = (0.5, 1.0),
        view_flip: bool = True,
        shots: int | None = None,
        num_train_images: int | None = None,
        alpha_scores: dict | None = None,
        **kwargs,
    ):
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if views < 1:
            raise ValueError(f"views must be >= 1, got {views}")
        view_scale = [float(v) for v in view_scale]
        if len(view_scale) != 2 or not 0 < view_scale[0] <= view_scale[1] <= 1:
            raise ValueError(f"view_scale must be (lo, hi) with 0 < lo <= hi <= 1, got {view_scale}")
        self.alpha = float(alpha)
        self.alphas = [float(a) for a in (ALPHAS if alphas is None else alphas)]
        self.use_text_classifier = use_text_classifier
        self.views = views
        self.view_scale = view_scale
        self.view_flip = bool(view_flip)
        self.shots = shots
        self.num_train_images = num_train_images
        # JSON turns float keys into strings; keep them as strings throughout.
        self.alpha_scores = {str(k): float(v) for k, v in (alpha_scores or {}).items()}
        super().__init__(**kwargs)
