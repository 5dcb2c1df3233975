"""Configuration of [`GDAForImageClassification`]."""

from __future__ import annotations

from transformers import PreTrainedConfig

from .functional import ALPHAS


class GDAConfig(PreTrainedConfig):
    r"""Configuration of a GDA head on a CLIP-family backbone.

    The head is small: a GDA classifier (W [K, D], b [K]), the zero-shot text
    classifier T [K, D] and the ensemble weight α, with
    logits = logit_scale·x·Tᵀ + α·(x·Wᵀ + b). By default the CLIP weights are not
    saved with it; `base_model_name_or_path` names the checkpoint to load them from.

    Args:
        base_model_name_or_path: Hub id or local path of the CLIP checkpoint the head
            was fitted on (e.g. "openai/clip-vit-base-patch16"). `from_pretrained`
            loads it unless the checkpoint carries the CLIP weights itself.
        embed_dim: dimension of CLIP's joint embedding space (D).
        alpha: weight of the GDA logits in the ensemble, chosen by `fit` on the
            few-shot validation split from `alphas`.
        alphas: the grid α is chosen from (the paper's {1e-4, ..., 100}).
        logit_scale: scale of the zero-shot logits (100 for OpenAI CLIP, as in the
            paper; `from_clip` takes the backbone's own).
        use_text_classifier: False for a GDA-only head (no zero-shot term).
        views: augmented views per training image used by `fit` (10 in the paper).
        view_scale: the area range of the views' random resized crops ((0.5, 1) in the paper).
        view_flip: flip views horizontally at random (the paper does). Turn it off
            where a mirror image is another class, e.g. digits: on the testbed's
            scenes of digits and clothes it cost 3.5 points at 16 shots (77.3 → 73.8).
        save_backbone: the checkpoint holds the CLIP weights too (`save_pretrained(...,
            include_backbone=True)`); `backbone_config` then describes that model.
        backbone_config: the CLIP config as a dict (only with `save_backbone`).
        templates: the prompt templates of the text classifier.
        dataset_name / shots / seed / num_train_images: what `fit` saw, for the model card.
        alpha_scores: validation accuracy per α, recorded by `fit`.
        eval_results: measured results for the model card, dicts with dataset_name,
            dataset_split, metric_type and metric_value.
    """

    model_type = "gda"

    def __init__(
        self,
        base_model_name_or_path: str | None = None,
        embed_dim: int = 512,
        alpha: float = 1.0,
        alphas: list[float] | None = None,
        logit_scale: float = 100.0,
        use_text_classifier: bool = True,
        views: int = 10,
        view_scale: tuple[float, float] | list[float] = (0.5, 1.0),
        view_flip: bool = True,
        save_backbone: bool = False,
        backbone_config: dict | None = None,
        templates: list[str] | None = None,
        dataset_name: str | None = None,
        shots: int | None = None,
        seed: int | None = None,
        num_train_images: int | None = None,
        alpha_scores: dict | None = None,
        eval_results: list[dict] | None = None,
        **kwargs,
    ):
        if not isinstance(embed_dim, int) or embed_dim < 1:
            raise ValueError(f"embed_dim must be a positive int, got {embed_dim!r}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if views < 1:
            raise ValueError(f"views must be >= 1, got {views}")
        view_scale = [float(v) for v in view_scale]
        if len(view_scale) != 2 or not 0 < view_scale[0] <= view_scale[1] <= 1:
            raise ValueError(f"view_scale must be (lo, hi) with 0 < lo <= hi <= 1, got {view_scale}")
        if save_backbone and backbone_config is None:
            raise ValueError("save_backbone=True needs backbone_config (the CLIP config as a dict)")
        self.base_model_name_or_path = base_model_name_or_path
        self.embed_dim = embed_dim
        self.alpha = float(alpha)
        self.alphas = [float(a) for a in (ALPHAS if alphas is None else alphas)]
        self.logit_scale = float(logit_scale)
        self.use_text_classifier = use_text_classifier
        self.views = views
        self.view_scale = view_scale
        self.view_flip = bool(view_flip)
        self.save_backbone = save_backbone
        self.backbone_config = backbone_config
        self.templates = list(templates) if templates is not None else None
        self.dataset_name = dataset_name
        self.shots = shots
        self.seed = seed
        self.num_train_images = num_train_images
        # JSON turns float keys into strings; keep them as strings throughout.
        self.alpha_scores = {str(k): float(v) for k, v in (alpha_scores or {}).items()}
        self.eval_results = list(eval_results or [])
        kwargs.setdefault("problem_type", "single_label_classification")
        super().__init__(**kwargs)
