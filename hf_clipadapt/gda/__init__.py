"""GDA: training-free CLIP adaptation with Gaussian discriminant analysis (ICLR 2024)."""

from .._lazy import exports_of, lazy_exports

_EXPORTS = {
    **exports_of(".configuration_gda", "GDAConfig", "GDA_PRESETS", "NEW_CLASS_ALPHA_RULES"),
    **exports_of(".modeling_gda", "GDAForImageClassification"),
    **exports_of(
        ".functional",
        "ALPHAS",
        "COVARIANCES",
        "GDADegenerateCovarianceWarning",
        "GDAStatistics",
        "NEW_CLASS_HEADS",
        "class_mean_covariance",
        "ensemble_logits",
        "pinv_psd",
        "fit_gda",
        "gda_logits",
        "select_alpha",
    ),
    **exports_of(".new_classes", "new_class_classifier", "pseudo_new_splits", "select_new_class_alpha"),
    **exports_of(".em", "fit_gda_em"),
    "functional": ".functional",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
