"""GDA: training-free CLIP adaptation with Gaussian discriminant analysis (ICLR 2024)."""

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

__all__ = [
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
