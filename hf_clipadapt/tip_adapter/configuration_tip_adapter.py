"""Configuration of [`TipAdapterForImageClassification`]."""

from __future__ import annotations

from ..configuration_utils import CLIPAdaptedConfig, check_number
from .functional import tip_search_grid

# Tip-Adapter's per-dataset settings (gaopengcuhk/Tip-Adapter configs/<dataset>.yaml):
# search_scale = the upper bounds of the β and α grids, alpha = init_alpha (Tip-Adapter-F's
# starting α; init_beta is 1 everywhere), epochs = train_epoch of Tip-Adapter-F.
_TIP = {
    "caltech101": ((12, 5), 3.0, 20),
    "dtd": ((13, 13), 2.0, 20),
    "eurosat": ((12, 10), 2.0, 100),
    "fgvc": ((30, 30), 5.0, 20),
    "food101": ((10, 10), 1.17, 20),
    "imagenet": ((7, 3), 1.17, 20),
    "oxford_flowers": ((50, 50), 10.0, 20),
    "oxford_pets": ((7, 3), 1.17, 20),
    "stanford_cars": ((20, 10), 3.0, 20),
    "sun397": ((12, 10), 1.17, 20),
    "ucf101": ((7, 3), 3.0, 20),
}
# How a key averages its image's views: over normalised features (ours) or raw ones (official).
KEY_AVERAGING = ("normalized", "raw")
TIP_PRESETS = {
    name: dict(search_scale=list(scale), alpha=alpha, beta=1.0, epochs=epochs)
    for name, (scale, alpha, epochs) in _TIP.items()
}


class TipAdapterConfig(CLIPAdaptedConfig):
    r"""A Tip-Adapter cache on a CLIP: logits = logit_scale·x·Tᵀ + α·exp(−β(1 − x·Fᵀ))·L.

    Args:
        alpha / beta: the cache weight and sharpness. Tip-Adapter-F trains at these
            (its starting α and β: `init_alpha`, `init_beta` of the official configs, per
            dataset through the presets), then `fit` chooses both on the few-shot
            validation split from `alphas` × `betas`.
        alphas / betas: the grid; None: Tip-Adapter's, `search_step` values from 0.1 up to
            `search_scale` (β first, then α; `tip_search_grid`).
        search_scale / search_step: the grid's upper bounds and sizes for (β, α); the
            defaults are the ImageNet config's [7, 3] and the official [200, 20].
        epochs: Tip-Adapter-F's epochs of freshly augmented images (20; EuroSAT 100).
        cache_size: N, the number of cache entries (one per training image; set by `fit`).
        train_keys: Tip-Adapter-F: the keys F are a trained parameter (False: the
            training-free Tip-Adapter, keys are fixed buffers).
        views: augmented encodings averaged into each key (10: `augment_epoch` of the official configs).
        key_averaging: how `fit` averages an image's views into its key. "normalized"
            (default): the mean of the L2-normalised view features, then normalised.
            "raw": the official cache (`utils.py` L46-60 `build_cache_model`): the mean of
            the unnormalised CLIP image features, then normalised; `fit` then encodes the
            training views without normalising (cached apart from the normalised ones).
            The two differ as much as the feature norms of an image's crops differ.
        param_scores: validation accuracy of the 10 best "α,β" of the search, recorded by `fit`.
    """

    model_type = "tip_adapter"
    PRESETS = TIP_PRESETS

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 1.0,
        alphas: list[float] | None = None,
        betas: list[float] | None = None,
        cache_size: int = 0,
        train_keys: bool = False,
        views: int = 10,
        param_scores: dict | None = None,
        search_scale: list[float] | tuple[float, float] = (7.0, 3.0),
        search_step: list[int] | tuple[int, int] = (200, 20),
        epochs: int = 20,
        key_averaging: str = "normalized",
        **kwargs,
    ):
        alpha = check_number(type(self).__name__, "alpha", alpha, minimum=0)
        beta = check_number(type(self).__name__, "beta", beta, minimum=0)
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.alpha, self.beta = float(alpha), float(beta)
        if int(epochs) < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        self.search_scale = [float(v) for v in search_scale]
        self.search_step = [int(v) for v in search_step]
        grid_betas, grid_alphas = tip_search_grid(self.search_scale, self.search_step)
        self.alphas = None if alphas is None else [float(a) for a in alphas]
        self.betas = None if betas is None else [float(b) for b in betas]
        self.epochs = int(epochs)
        del grid_betas, grid_alphas  # validated here, built again by search_grid()
        self.cache_size, self.train_keys = int(cache_size), bool(train_keys)
        self.param_scores = {str(k): float(v) for k, v in (param_scores or {}).items()}
        if key_averaging not in KEY_AVERAGING:
            raise ValueError(
                f"key_averaging must be one of {KEY_AVERAGING} ('raw': the official cache keys, averaged before "
                f"normalising), got {key_averaging!r}"
            )
        self.key_averaging = key_averaging
        super().__init__(views=views, **kwargs)

    def search_grid(self) -> tuple[list[float], list[float]]:
        """(αs, βs) that `fit` searches: `alphas`/`betas` if given, else Tip-Adapter's grid."""
        betas, alphas = tip_search_grid(self.search_scale, self.search_step)
        return (list(alphas) if self.alphas is None else self.alphas), (
            list(betas) if self.betas is None else self.betas
        )
