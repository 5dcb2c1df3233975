"""Configuration of [`CraFTForImageClassification`]."""

from __future__ import annotations

from ..configuration_utils import AdaptedConfig, check_sizes


class CraFTConfig(AdaptedConfig):
    r"""A CraFT model (Wang et al., ICML 2024): a prompt z for a black-box VLM and a refinement module.

    It derives from `AdaptedConfig`, not `CLIPAdaptedConfig`: the user side holds no CLIP,
    only the address of the black box it queries.

    Args:
        black_box: where the black box lives: a CLIP name, alias or folder (served by a
            `LocalBlackBox` in this process) or an http(s) URL of `hf_clipadapt.craft.serve`.
        ctx_init: the initial phrase whose owner-side embedding is p0 ("a photo of a").
        n_ctx / text_width: the shape [n, W] of p0 (filled from the black box).
        intrinsic_dim: d0, the dimension of z (512).
        projection_seed / projection_std: regenerate the projection A. std: the official
            `std` of craft_configs/<dataset>.yaml (mrflogs/CraFT): 0.2, or 1 on dtd and
            eurosat (imagenet's script ignores its std: 0.0255). None = the preset's, else
            0.02: with σ = 0.1 the library's search scale, measured better on the testbed
            than the official 0.2 (see `hf_clipadapt.craft.arguments`); preset="official"
            restores 0.2.
        refine_hidden: hidden width of the refinement MLP (256; 512 on ImageNet,
            main_craft_imagenet.py); None = the preset's, else 256.
        preset: an official dataset preset (`hf_clipadapt.craft.arguments.PRESETS`, e.g.
            "eurosat") that fills projection_std and refine_hidden when they are None; train
            with `CraFTTrainingArguments.from_preset` of the same name.
        shots / num_train_images / queries_spent: what training used, for the card.
    """

    model_type = "craft"

    def __init__(
        self,
        black_box: str | None = None,
        ctx_init: str = "a photo of a",
        n_ctx: int = 4,
        text_width: int = 512,
        intrinsic_dim: int = 512,
        projection_seed: int = 0,
        projection_std: float | None = None,
        refine_hidden: int | None = None,
        shots: int | None = None,
        num_train_images: int | None = None,
        queries_spent: int | None = None,
        preset: str | None = None,
        **kwargs,
    ):
        from .arguments import preset_values

        official = {"projection_std": 0.02, "refine_hidden": 256, **(preset_values(preset) if preset else {})}
        projection_std = official["projection_std"] if projection_std is None else projection_std
        refine_hidden = official["refine_hidden"] if refine_hidden is None else refine_hidden
        # z is [d0], the projection A [n_ctx * width, d0]: bounded before anything is allocated
        sizes = dict(n_ctx=n_ctx, text_width=text_width, intrinsic_dim=intrinsic_dim, refine_hidden=refine_hidden)
        check_sizes("CraFTConfig", sizes)
        check_sizes("CraFTConfig", sizes, parameters=n_ctx * text_width * intrinsic_dim)
        if projection_std <= 0:
            raise ValueError(f"projection_std must be > 0, got {projection_std}")
        self.black_box, self.ctx_init, self.n_ctx, self.text_width = black_box, ctx_init, n_ctx, text_width
        self.intrinsic_dim, self.projection_seed, self.projection_std = intrinsic_dim, projection_seed, projection_std
        self.refine_hidden, self.shots, self.num_train_images = refine_hidden, shots, num_train_images
        self.queries_spent, self.preset = queries_spent, preset and preset.lower()
        kwargs.setdefault("problem_type", "single_label_classification")
        kwargs.setdefault("base_model_name_or_path", None if _is_url(black_box) else black_box)
        super().__init__(**kwargs)
        check_sizes(
            "CraFTConfig",
            {"refine_hidden": refine_hidden, "num_labels": self.num_labels},
            parameters=2 * self.num_labels * refine_hidden,
            maximum=1 << 17,
        )


def _is_url(ref) -> bool:
    return isinstance(ref, str) and ref.startswith(("http://", "https://"))
