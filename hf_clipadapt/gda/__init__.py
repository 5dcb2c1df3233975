"""GDA: training-free CLIP adaptation with Gaussian discriminant analysis (ICLR 2024)."""

from .configuration_gda import GDAConfig
from .functional import (
    ALPHAS,
    GDADegenerateCovarianceWarning,
    GDAStatistics,
    ensemble_logits,
    fit_gda,
    fit_gda_em,
    gda_logits,
    new_class_classifier,
    select_alpha,
)
from .modeling_gda import GDAForImageClassification

__all__ = [
    "GDAConfig",
    "GDAForImageClassification",
    "ALPHAS",
    "GDADegenerateCovarianceWarning",
    "GDAStatistics",
    "ensemble_logits",
    "fit_gda",
    "fit_gda_em",
    "gda_logits",
    "new_class_classifier",
    "select_alpha",
]
