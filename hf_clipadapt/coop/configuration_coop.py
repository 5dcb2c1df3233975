"""Configuration of [`CoOpForImageClassification`]."""

from __future__ import annotations

from ..configuration_utils import CLIPAdaptedConfig


class CoOpConfig(CLIPAdaptedConfig):
    r"""Learnable prompt context for a frozen CLIP (Zhou et al., IJCV 2022).

    Args:
        n_ctx: number of context tokens M. None: the token count of `ctx_init` (4 for
            "a photo of a" with the CLIP tokenizer), or 4 for random initialisation.
        ctx_init: phrase whose word embeddings initialise the context, or None for
            N(0, 0.02²) random initialisation. The default ("a photo of a", M = 4) is
            CoOp's `*_ctxv1` configs and the CoOp that SHIP trains (`main_coop_vae.py`
            L50-51); CoOp's few-shot headline setting, 16 random tokens (`train.py` L91-93),
            is the preset "rand16" (it needs a text tower of 16 + name + 3 positions).
        epochs: epochs of freshly augmented images to train for; None: CoOp's rule by shot
            count (1 shot 50, 2-4 shots 100, 8-16 shots 200; `COOP.md` L18-22). The
            preset "imagenet" sets 50, CoOp's ImageNet schedule at every shot count.
        class_specific: one context per class (CoOp-CSC) instead of a shared one.
        suffix: text after the class name (".").
        class_token_position: where the class name sits among the context tokens, CoOp's
            `CLASS_TOKEN_POSITION` (`trainers/coop.py` L126-180): "end" ("[v1 … vM] {class}.",
            the default of every official config), "middle" ("[v1 … v(M/2)] {class} [… vM].",
            the first M // 2 tokens before the name) or "front" ("{class} [v1 … vM].").
        views: augmented encodings of each training image that `fit` trains on (encoded
            once and cached, never recomputed per epoch): random crops of area
            `view_scale` = (0.08, 1) and flips, as Dassl draws them. The official code
            draws fresh crops every epoch; `views=` the epoch count reproduces that
            sampling exactly (one pass, every image under E distinct crops).
    """

    model_type = "coop"
    # Official per-setting values (KaiyangZhou/CoOp COOP.md L13 and configs/trainers/CoOp/).
    PRESETS = {
        "imagenet": dict(epochs=50),
        "rand16": dict(n_ctx=16, ctx_init=None),
        "imagenet_rand16": dict(epochs=50, n_ctx=16, ctx_init=None),
    }

    def __init__(
        self,
        n_ctx: int | None = None,
        ctx_init: str | None = "a photo of a",
        class_specific: bool = False,
        suffix: str = ".",
        views: int = 10,
        epochs: int | None = None,
        class_token_position: str = "end",
        **kwargs,
    ):
        from ..clip.soft_prompt import CLASS_TOKEN_POSITIONS

        if class_token_position not in CLASS_TOKEN_POSITIONS:
            raise ValueError(
                f"class_token_position must be one of {CLASS_TOKEN_POSITIONS} (CoOp's "
                f"CLASS_TOKEN_POSITION), got {class_token_position!r}"
            )
        if n_ctx is not None and n_ctx < 1:
            raise ValueError(f"n_ctx must be >= 1, got {n_ctx}")
        if epochs is not None and int(epochs) < 1:
            raise ValueError(f"epochs must be >= 1 (or None for CoOp's rule by shot count), got {epochs}")
        self.epochs = None if epochs is None else int(epochs)
        self.n_ctx, self.ctx_init, self.class_specific, self.suffix = n_ctx, ctx_init, bool(class_specific), suffix
        self.class_token_position = class_token_position
        # Dassl's random_resized_crop keeps its default area (0.08, 1) in CoOp's configs
        # (dassl/config/defaults.py L40, configs/trainers/CoOp/*.yaml L13), plus random flips.
        kwargs.setdefault("view_scale", (0.08, 1.0))
        super().__init__(views=views, **kwargs)
