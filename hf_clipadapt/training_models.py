"""`FeatureTrainedCLIPModel`: the base of CLIP-adapted models trained by gradient on
cached CLIP image features (CoOp, CLIP-Adapter, Tip-Adapter-F and their SHIP variants).

The images are encoded once, under `config.views` augmented views, and the model
trains on those features through the shared training path; the image tower never
runs again during training.
"""

from __future__ import annotations

from .modeling_utils import CLIPAdaptedModel


class FeatureTrainedCLIPModel(CLIPAdaptedModel):
    """A `CLIPAdaptedModel` whose `fit` trains its parts on cached image features."""
