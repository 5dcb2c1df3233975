"""GDA's functional core: closed-form Gaussian discriminant analysis on features.

Everything here is plain tensors in, tensors out, so it runs on CLIP embeddings,
on any other backbone's features, under Accelerate, or inside a notebook.

The model (Wang et al., ICLR 2024, "A Hard-to-Beat Baseline for Training-free
CLIP-based Adaptation"): class-conditional Gaussians N(μ_k, Σ) with one shared
covariance and a uniform prior, which gives the linear classifier

    w_k = Σ⁻¹ μ_k,        b_k = log(1/K) − ½ μ_kᵀ Σ⁻¹ μ_k.

The precision is the Kubokawa–Srivastava estimator Σ⁻¹ = D·((N−1)·S + tr(S)·I)⁻¹,
with S the sample covariance of the class-centred features pooled over all
classes. Writing W = (N−1)·S for the within-class scatter Σ_n (x_n − μ_{y_n})(…)ᵀ,
this is D·(W + tr(W)/(N−1)·I)⁻¹: it needs only W and N, which is what the
streaming accumulator `GDAStatistics` keeps.

The official code uses a second estimator in its base-to-new script
(mrflogs/ICLR24, main_base2new.py, lines 55-57): the average over classes of each
class's sample covariance, pseudo-inverted without shrinkage
(`covariance="class_mean_pinv"`). Its new-class heads (lines 85-111) are built by
`hf_clipadapt.gda.new_classes.new_class_classifier` (``head="official"``); unsupervised
GDA (EM from the zero-shot posteriors) is `hf_clipadapt.gda.em.fit_gda_em`.

Degenerate case. With one sample per class (1-shot without augmentation views),
every class-centred feature is zero, W = 0 and the estimator is 0⁻¹: undefined.
The paper's answer is to encode each shot under several augmentations, which
gives every class a scatter. When the scatter is still zero we warn
(`GDADegenerateCovarianceWarning`) and fall back to Σ = I: w_k = μ_k,
b_k = log(1/K) − ½‖μ_k‖², the Euclidean nearest-class-mean classifier, which is
what the Gaussian model gives under an isotropic unit covariance. We never return
NaN.

Numerics: statistics are accumulated in float64 (`dtype=`), the precision is
applied with a Cholesky solve (the matrix is symmetric positive definite by
construction), never an explicit inverse, and the outputs come back in the
features' floating dtype.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch

__all__ = [
    "ALPHAS",
    "COVARIANCES",
    "NEW_CLASS_HEADS",
    "class_mean_covariance",
    "GDADegenerateCovarianceWarning",
    "GDAStatistics",
    "ensemble_logits",
    "fit_gda",
    "gda_logits",
    "ks_precision_solve",
    "pinv_psd",
    "select_alpha",
]

#: The official grid for the ensemble weight α (mrflogs/ICLR24, main_few_shots.py, line 70, and
#: main_base2new.py, line 67); `select_alpha` keeps the smaller on ties, as their strict ">" does.
ALPHAS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0)


#: Shared-covariance estimators: "ks" (Kubokawa–Srivastava, the few-shot script
#: main_few_shots.py:58-60) and "class_mean_pinv" (mean of the per-class sample
#: covariances, pseudo-inverse, no shrinkage: the base head of main_base2new.py:55-57).
COVARIANCES: tuple[str, ...] = ("ks", "class_mean_pinv")

#: New-class heads for base-to-new: "official" (main_base2new.py:85-111: k nearest base
#: features plus `text_copies` copies of the text embedding as the mean, the KS precision
#: of the neighbours about the text embedding averaged over new classes) and "knn_mean"
#: (this library's earlier head: mean of the k nearest base features, the base classes' KS
#: precision).
NEW_CLASS_HEADS: tuple[str, ...] = ("official", "knn_mean")


class GDADegenerateCovarianceWarning(UserWarning):
    """The within-class scatter is zero (one sample per class): GDA falls back to Σ = I."""


# --------------------------------------------------------------------------- checks


def _check_features(features: torch.Tensor, name: str = "features") -> None:
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(features).__name__}")
    if features.ndim != 2:
        raise ValueError(f"{name} must be 2-D [num_samples, dim], got shape {tuple(features.shape)}")
    if not features.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {features.dtype}")
    if features.shape[0] == 0:
        raise ValueError(f"{name} is empty: GDA needs at least one sample per class")
    if torch.isfinite(features.sum(0)).all():  # one cheap reduction; NaN/inf anywhere poisons a column sum
        return
    bad = ~torch.isfinite(features).all(dim=1)
    if bad.any():
        rows = bad.nonzero().flatten()[:5].tolist()
        raise ValueError(
            f"{name} contain NaN or infinite values in {int(bad.sum())} row(s) (first: {rows}); "
            "check the encoder's output (e.g. fp16 overflow) before fitting"
        )
    raise ValueError(
        f"{name} are too large to sum in {features.dtype}; normalise them (GDA expects L2-normalised features)"
    )


def _check_labels(labels: torch.Tensor, num_samples: int, num_classes: int) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.shape[0] != num_samples:
        raise ValueError(
            f"labels must be 1-D with one entry per feature row ({num_samples}), got shape {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be integer class ids, got {labels.dtype}")
    out = (labels < 0) | (labels >= num_classes)
    if out.any():
        raise ValueError(
            f"labels must lie in [0, {num_classes}) for num_classes={num_classes}; found "
            f"{sorted(set(labels[out].tolist()))[:10]}. Remap the labels or pass the right num_classes"
        )
    return labels.long()


def _check_num_classes(num_classes: int) -> None:
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")


def _check_nonempty_classes(counts: torch.Tensor) -> None:
    empty = (counts == 0).nonzero().flatten()
    if empty.numel():
        raise ValueError(
            f"class(es) {empty[:10].tolist()} have no samples: GDA needs at least one sample per class "
            "to estimate its mean. Drop those classes (and remap the labels) or add samples"
        )


# --------------------------------------------------------------------------- solve


def _is_degenerate(scatter: torch.Tensor, num_samples: int, total_energy: float) -> bool:
    """W is zero up to rounding: tr(W) is tiny next to Σ‖x‖² (`total_energy`)."""
    trace = float(torch.diagonal(scatter).sum())
    return num_samples < 2 or trace <= 100 * torch.finfo(scatter.dtype).eps * max(total_energy, 1e-300)


def ks_precision_solve(
    scatter: torch.Tensor, num_samples: int, rhs: torch.Tensor, total_energy: float
) -> torch.Tensor:
    """Σ⁻¹ · rhs for the Kubokawa–Srivastava precision Σ⁻¹ = D·(W + tr(W)/(N−1)·I)⁻¹.

    `scatter` is the within-class scatter W = (N−1)·S [D, D], `rhs` is [D, M],
    `total_energy` is Σ_n ‖x_n‖², the yardstick for "W is zero up to rounding".
    Falls back to Σ⁻¹ = I, with a `GDADegenerateCovarianceWarning`, when W is zero
    (one sample per class) or N = 1.
    """
    dim = scatter.shape[0]
    trace = torch.diagonal(scatter).sum()
    if _is_degenerate(scatter, num_samples, total_energy):
        warnings.warn(
            "GDA: the within-class scatter is zero (every class has a single, unaugmented sample), so the "
            "shared covariance cannot be estimated. Falling back to Σ = I (Euclidean nearest class mean). "
            "Encode each shot under several augmentation views (the paper uses 10) to get a real estimate.",
            GDADegenerateCovarianceWarning,
            stacklevel=3,
        )
        return rhs.clone()
    shrunk = scatter.clone()
    shrunk.diagonal().add_(trace / (num_samples - 1))
    chol = torch.linalg.cholesky(shrunk)  # reads the lower triangle only
    return dim * torch.cholesky_solve(rhs, chol)


def _classifier_from_moments(means: torch.Tensor, scatter: torch.Tensor, num_samples: int, total_energy: float):
    """(weight [K, D], bias [K]) from class means, within-class scatter, N and Σ‖x‖²."""
    num_classes = means.shape[0]
    weight = ks_precision_solve(scatter, num_samples, means.T, total_energy).T  # [K, D] = (Σ⁻¹ μ_k)_k
    bias = math.log(1.0 / num_classes) - 0.5 * (means * weight).sum(dim=1)
    return weight, bias


def _check_covariance(covariance: str) -> None:
    if covariance not in COVARIANCES:
        raise ValueError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")


def pinv_psd(matrix: torch.Tensor, rtol: float | None = None) -> torch.Tensor:
    """Pseudo-inverse of a symmetric positive semi-definite matrix, by eigendecomposition.

    Eigenvalues at or below `rtol`·max|λ| count as zero, which is the cut-off
    `torch.linalg.pinv` applies by default. The default `rtol` is D·ε(float32), the
    cut-off of the official code, which calls `torch.linalg.pinv` on float32
    matrices (mrflogs/ICLR24, main_base2new.py, line 57): computing in float64 with
    float64's far smaller cut-off would keep directions the official run discards.
    """
    dim = matrix.shape[0]
    rtol = dim * torch.finfo(torch.float32).eps if rtol is None else rtol
    evals, evecs = torch.linalg.eigh(0.5 * (matrix + matrix.T))
    keep = evals.abs() > rtol * evals.abs().max()
    inv = torch.where(keep, 1.0 / torch.where(keep, evals, torch.ones_like(evals)), torch.zeros_like(evals))
    return (evecs * inv) @ evecs.T


def class_mean_covariance(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(1/K) Σ_k S_k, S_k the unbiased sample covariance of class k's features [D, D].

    The covariance of the official base-to-new base head (mrflogs/ICLR24,
    main_base2new.py, line 56: `vecs[labels == i].T.cov()` per class, then the mean
    over classes). Every class needs at least 2 samples (augmented views count).
    """
    _check_num_classes(num_classes)
    _check_features(features)
    labels = _check_labels(labels, features.shape[0], num_classes).to(features.device)
    counts = torch.bincount(labels, minlength=num_classes)
    _check_nonempty_classes(counts)
    if (counts < 2).any():
        raise ValueError(
            f"class(es) {(counts < 2).nonzero().flatten()[:10].tolist()} have a single sample: the per-class covariance "
            "of covariance='class_mean_pinv' needs >= 2 per class. Encode each shot under several views or use 'ks'"
        )
    sums = torch.zeros(num_classes, features.shape[1], dtype=features.dtype, device=features.device)
    means = sums.index_add_(0, labels, features) / counts.unsqueeze(1).to(features.dtype)
    centred = (features - means[labels]) / (num_classes * (counts[labels] - 1).to(features.dtype)).sqrt().unsqueeze(1)
    return centred.T @ centred


def _classifier_from_precision(means: torch.Tensor, precision: torch.Tensor):
    """(weight [K, D], bias [K]) = (P μ_k, log(1/K) − ½ μ_kᵀ P μ_k) for an explicit precision P."""
    weight = means @ precision
    bias = math.log(1.0 / means.shape[0]) - 0.5 * (means * weight).sum(dim=1)
    return weight, bias


# --------------------------------------------------------------------------- batch fit


def fit_gda(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    covariance: str = "ks",
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit GDA in closed form: returns (weight [K, D], bias [K]) with logits = x·Wᵀ + b.

    `covariance="ks"` (default) is the Kubokawa–Srivastava precision of the official
    few-shot script (mrflogs/ICLR24, main_few_shots.py, lines 56-64);
    `"class_mean_pinv"` is the base head of its base-to-new script
    (main_base2new.py, lines 55-61): the mean of the per-class sample covariances,
    pseudo-inverted (`pinv_psd`), no shrinkage.

    Features are used exactly as given (for CLIP, pass L2-normalised embeddings,
    as the paper does). Statistics are computed in `dtype` (float64 by default)
    and the result is returned in the features' dtype. This is one
    `GDAStatistics.update` followed by `solve`: a single pass of O(N·D²) for
    Σ x xᵀ, then a D×D Cholesky factorisation and a solve with K right-hand sides.
    """
    _check_num_classes(num_classes)
    _check_covariance(covariance)
    if not isinstance(features, torch.Tensor) or features.ndim != 2:
        _check_features(features)  # raises the descriptive error
    if covariance == "class_mean_pinv":
        x = features.to(dtype)
        labels = _check_labels(labels, x.shape[0], num_classes).to(x.device)
        cov = class_mean_covariance(x, labels, num_classes)
        means = torch.zeros(num_classes, x.shape[1], dtype=dtype, device=x.device).index_add_(0, labels, x)
        means /= torch.bincount(labels, minlength=num_classes).unsqueeze(1).to(dtype)
        weight, bias = _classifier_from_precision(means, pinv_psd(cov))
        return weight.to(features.dtype), bias.to(features.dtype)
    stats = GDAStatistics(num_classes, features.shape[1], dtype=dtype, device=features.device)
    return stats.update(features, labels).solve(out_dtype=features.dtype)


def gda_logits(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x·Wᵀ + b."""
    return torch.addmm(bias.to(features.dtype), features, weight.to(features.dtype).T)


# --------------------------------------------------------------------------- streaming


class GDAStatistics:
    """Streaming, mergeable sufficient statistics for GDA, kept in float64.

    Holds the per-class counts and feature sums and the uncentred second moment
    Σ x xᵀ. The within-class scatter is recovered at solve time as
    Σ x xᵀ − Σ_k n_k μ_k μ_kᵀ. Because everything is a plain sum, batches can be
    added in any order and processes combine with one all-reduce:

        stats = GDAStatistics(num_classes, dim)
        for batch in loader:
            stats.update(encode(batch["pixel_values"]), batch["labels"])
        stats.all_reduce(accelerator)      # no-op on one process
        weight, bias = stats.solve()
    """

    def __init__(self, num_classes: int, dim: int, *, dtype: torch.dtype = torch.float64, device=None):
        _check_num_classes(num_classes)
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        self.num_classes, self.dim, self.dtype = num_classes, dim, dtype
        self.counts = torch.zeros(num_classes, dtype=torch.float64, device=device)
        self.sums = torch.zeros(num_classes, dim, dtype=dtype, device=device)
        self.second_moment = torch.zeros(dim, dim, dtype=dtype, device=device)

    @property
    def num_samples(self) -> int:
        return int(self.counts.sum().item())

    def update(self, features: torch.Tensor, labels: torch.Tensor) -> GDAStatistics:
        _check_features(features)
        if features.shape[1] != self.dim:
            raise ValueError(f"features have dim {features.shape[1]}, the statistics were created for dim {self.dim}")
        labels = _check_labels(labels, features.shape[0], self.num_classes).to(self.sums.device)
        x = features.to(device=self.sums.device, dtype=self.dtype)
        self.counts += torch.bincount(labels, minlength=self.num_classes).to(self.counts.dtype)
        self.sums.index_add_(0, labels, x)
        self.second_moment.addmm_(x.T, x)
        return self

    def merge(self, other: GDAStatistics) -> GDAStatistics:
        """Add another accumulator's statistics into this one (same classes and dim)."""
        if (other.num_classes, other.dim) != (self.num_classes, self.dim):
            raise ValueError(
                f"cannot merge statistics for {other.num_classes} classes × dim {other.dim} into "
                f"{self.num_classes} classes × dim {self.dim}"
            )
        self.counts += other.counts.to(self.counts)
        self.sums += other.sums.to(self.sums)
        self.second_moment += other.second_moment.to(self.second_moment)
        return self

    def all_reduce(self, accelerator=None) -> GDAStatistics:
        """Sum the statistics over every process (`accelerator.reduce(t, "sum")`, exact for sums)."""
        if accelerator is None or accelerator.num_processes == 1:
            return self
        device = accelerator.device
        for name in ("counts", "sums", "second_moment"):
            t = getattr(self, name)
            setattr(self, name, accelerator.reduce(t.to(device), reduction="sum").to(t.device))
        return self

    @property
    def total_energy(self) -> float:
        """Σ_n ‖x_n‖² = tr(Σ x xᵀ)."""
        return float(torch.diagonal(self.second_moment).sum())

    def means(self) -> torch.Tensor:
        _check_nonempty_classes(self.counts)
        return self.sums / self.counts.unsqueeze(1).to(self.dtype)

    def scatter(self) -> torch.Tensor:
        """Within-class scatter W = Σ x xᵀ − Σ_k n_k μ_k μ_kᵀ = Σ xxᵀ − Sᵀ diag(1/n) S."""
        _check_nonempty_classes(self.counts)
        scaled = self.sums / self.counts.sqrt().unsqueeze(1).to(self.dtype)
        return torch.addmm(self.second_moment, scaled.T, scaled, alpha=-1.0)

    def solve(
        self, out_dtype: torch.dtype = torch.float32, covariance: str = "ks"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight [K, D], bias [K]) in `out_dtype`, exactly as `fit_gda` on all the updates.

        `covariance="class_mean_pinv"` needs equal class counts (the K-shot protocol:
        every class has K shots × views): the mean of per-class covariances is then the
        scatter over K·(n − 1); with unequal counts it needs per-class second moments,
        which these sums do not keep, so call `fit_gda` on the features instead.
        """
        _check_covariance(covariance)
        if covariance == "ks":
            weight, bias = _classifier_from_moments(self.means(), self.scatter(), self.num_samples, self.total_energy)
            return weight.to(out_dtype), bias.to(out_dtype)
        counts = self.counts
        _check_nonempty_classes(counts)
        if not bool((counts == counts[0]).all()) or float(counts[0]) < 2:
            raise ValueError(
                "covariance='class_mean_pinv' from streaming statistics needs the same number (>= 2) of samples in "
                f"every class, got counts {counts[:10].long().tolist()}...; call fit_gda(features, labels, "
                "num_classes, covariance='class_mean_pinv') on the features instead"
            )
        cov = self.scatter() / (self.num_classes * (float(counts[0]) - 1))
        weight, bias = _classifier_from_precision(self.means(), pinv_psd(cov))
        return weight.to(out_dtype), bias.to(out_dtype)


# --------------------------------------------------------------------------- ensemble


def ensemble_logits(
    features: torch.Tensor,
    text_weights: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor,
    alpha: float,
    logit_scale: float = 100.0,
) -> torch.Tensor:
    """logit_scale·x·Tᵀ + α·(x·Wᵀ + b); the GDA logits alone when `text_weights` is None."""
    gda = gda_logits(features, weight, bias)
    if text_weights is None:
        return gda
    if text_weights.shape != weight.shape:
        raise ValueError(
            f"text classifier {tuple(text_weights.shape)} and GDA weight {tuple(weight.shape)} differ in shape"
        )
    return torch.addmm(alpha * gda, features, text_weights.to(features.dtype).T, alpha=logit_scale)


def select_alpha(
    features: torch.Tensor,
    labels: torch.Tensor,
    text_weights: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor,
    alphas: Sequence[float] = ALPHAS,
    logit_scale: float = 100.0,
) -> tuple[float, dict[float, float]]:
    """Pick α by accuracy on held-out (validation) features: returns (α, {α: accuracy %}).

    Ties keep the smaller α, i.e. the one closer to zero-shot CLIP, and when every α
    scores 0 the result is 0.1: both as in the official search (mrflogs/ICLR24,
    main_few_shots.py, lines 67-76: a strict ">" from a start of 0.1 at accuracy 0).
    Never pass test features here: the official code picks α on the full
    validation split (on the test set for ImageNet); this library's protocol picks
    it on held-out shots of the few-shot training data, which reads no test label.
    """
    if len(alphas) == 0:
        raise ValueError("alphas is empty")
    _check_features(features, "validation features")
    labels = _check_labels(labels, features.shape[0], weight.shape[0]).to(features.device)
    zero_shot = None if text_weights is None else logit_scale * features @ text_weights.to(features.dtype).T
    gda = gda_logits(features, weight, bias)
    scores = {}
    for a in sorted(float(a) for a in alphas):
        logits = gda if zero_shot is None else zero_shot + a * gda
        scores[a] = 100.0 * (logits.argmax(1) == labels).double().mean().item()
    best = max(scores.values())
    if best <= 0.0:  # nothing right at any α: the official search keeps its starting 0.1 (main_few_shots.py:69)
        return 0.1, scores
    return next(a for a, s in scores.items() if s == best), scores


# --------------------------------------------------------------------------- base-to-new
