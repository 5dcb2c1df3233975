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
`new_class_classifier` (``head="official"``).

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

from ..configuration_utils import DEFAULT_SEED

__all__ = [
    "ALPHAS",
    "COVARIANCES",
    "NEW_CLASS_HEADS",
    "class_mean_covariance",
    "GDADegenerateCovarianceWarning",
    "GDAStatistics",
    "ensemble_logits",
    "fit_gda",
    "fit_gda_em",
    "gda_logits",
    "ks_precision_solve",
    "new_class_classifier",
    "pinv_psd",
    "pseudo_new_splits",
    "select_alpha",
    "select_new_class_alpha",
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
    raise ValueError(f"{name} are too large to sum in {features.dtype}; normalise them (GDA expects L2-normalised features)")


def _check_labels(labels: torch.Tensor, num_samples: int, num_classes: int) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.shape[0] != num_samples:
        raise ValueError(f"labels must be 1-D with one entry per feature row ({num_samples}), got shape {tuple(labels.shape)}")
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


def ks_precision_solve(scatter: torch.Tensor, num_samples: int, rhs: torch.Tensor, total_energy: float) -> torch.Tensor:
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

    def solve(self, out_dtype: torch.dtype = torch.float32, covariance: str = "ks") -> tuple[torch.Tensor, torch.Tensor]:
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
        raise ValueError(f"text classifier {tuple(text_weights.shape)} and GDA weight {tuple(weight.shape)} differ in shape")
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


def _official_new_heads(x: torch.Tensor, text: torch.Tensor, k: int, text_copies: int):
    """The new-class heads of mrflogs/ICLR24, main_base2new.py, lines 85-111.

    For new class j with text embedding t_j, V_j = the k base features with the
    largest x·t_j (line 88). Mean (lines 86-92): the average of V_j and
    `text_copies` copies of t_j, (Σ V_j + c·t_j) / (k + c). Precision (lines
    94-107): for each class, D·(S_j + tr(S_j)/(k − 1)·I)⁻¹ with S_j = Σ_{v∈V_j}
    (v − t_j)(v − t_j)ᵀ the scatter about the text embedding (their
    (k − 1)·cov + tr(cov)·I with cov = S_j/(k − 1); the official code writes the
    dimension as the literal 512 of ViT-B/16), averaged over the new classes.
    Weight and bias follow with a uniform prior over the new classes (lines 109-111).
    """
    dim = x.shape[1]
    nearest = (text @ x.T).topk(k, dim=1).indices  # [K_new, k]
    means = (x[nearest].sum(dim=1) + text_copies * text) / (k + text_copies)
    precision = torch.zeros(dim, dim, dtype=x.dtype, device=x.device)
    eye = torch.eye(dim, dtype=x.dtype, device=x.device)
    for j in range(text.shape[0]):
        dev = x[nearest[j]] - text[j]
        scatter = dev.T @ dev
        shrunk = scatter + torch.diagonal(scatter).sum() / (k - 1) * eye
        precision += dim * torch.cholesky_inverse(torch.linalg.cholesky(shrunk))
    return _classifier_from_precision(means, precision / text.shape[0])


def new_class_classifier(
    base_features: torch.Tensor,
    base_labels: torch.Tensor | None,
    new_text_weights: torch.Tensor,
    k: int = 64,
    *,
    head: str = "official",
    text_copies: int = 16,
    num_base_classes: int | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GDA classifier for classes that have only a text embedding (base-to-new).

    Returns (weight [K_new, D], bias [K_new]) with a uniform prior over the new
    classes; the ensemble with the text classifier reuses the base α in the
    official code. Pass L2-normalised features and text embeddings, as the
    official code does: similarities are plain dot products.

    * ``head="official"`` (default; mrflogs/ICLR24, main_base2new.py, lines 85-111):
      each new class's mean averages its `k` nearest base features and
      `text_copies` (16) copies of its text embedding; the precision is the
      Kubokawa–Srivastava estimate from each class's neighbours about its text
      embedding, averaged over the new classes (`_official_new_heads`).
      `base_labels` are not used. The official code takes the neighbours among
      all augmented views of the base shots (lines 42-53): pass those features.
    * ``head="knn_mean"``: this library's earlier head, kept to reproduce its
      results: the mean of the `k` nearest base features (cosine) and the base
      classes' KS precision from `base_labels`. It is not the official head.
    """
    if head not in NEW_CLASS_HEADS:
        raise ValueError(f"head must be one of {NEW_CLASS_HEADS}, got {head!r}")
    _check_features(base_features, "base_features")
    _check_features(new_text_weights, "new_text_weights")
    if new_text_weights.shape[1] != base_features.shape[1]:
        raise ValueError(f"text embeddings have dim {new_text_weights.shape[1]}, base features {base_features.shape[1]}")
    min_k = 2 if head == "official" else 1  # the official scatter about the text divides by k − 1
    if not isinstance(k, int) or k < min_k:
        raise ValueError(f"k must be an int >= {min_k} for head={head!r}, got {k!r}")
    if k > base_features.shape[0]:
        raise ValueError(f"k={k} exceeds the {base_features.shape[0]} base features available")
    x = base_features.to(dtype)
    if head == "official":
        if not isinstance(text_copies, int) or text_copies < 0:
            raise ValueError(f"text_copies must be an int >= 0, got {text_copies!r}")
        weight, bias = _official_new_heads(x, new_text_weights.to(dtype), k, text_copies)
        return weight.to(base_features.dtype), bias.to(base_features.dtype)
    if base_labels is None:
        raise ValueError('head="knn_mean" estimates the base classes\' covariance: pass base_labels')
    num_base = int(base_labels.max()) + 1 if num_base_classes is None else num_base_classes
    stats = GDAStatistics(num_base, base_features.shape[1], dtype=dtype, device=base_features.device)
    stats.update(base_features, base_labels)
    t = torch.nn.functional.normalize(new_text_weights.to(dtype), dim=1)
    sims = t @ torch.nn.functional.normalize(x, dim=1).T  # [K_new, N]
    new_means = x[sims.topk(k, dim=1).indices].mean(dim=1)
    weight, bias = _classifier_from_moments(new_means, stats.scatter(), stats.num_samples, stats.total_energy)
    return weight.to(base_features.dtype), bias.to(base_features.dtype)


def pseudo_new_splits(num_classes: int, num_folds: int = 4, *, seed: int = DEFAULT_SEED) -> list[torch.Tensor]:
    """Disjoint groups of base classes to hold out as pseudo-new classes, one group per fold.

    A seeded permutation of the `num_classes` base classes cut into `num_folds`
    near-equal groups, so every base class is pseudo-new exactly once. Each group
    needs at least 2 classes (accuracy among one class says nothing) and must leave
    at least one class behind as pseudo-base, so the folds are capped at
    ⌊num_classes / 2⌋; with 3 classes the single fold holds out 2 of them.
    Returns sorted class-index tensors.
    """
    if not isinstance(num_classes, int) or num_classes < 3:
        raise ValueError(
            f"pseudo-new splits need at least 3 base classes (2 held out, 1 left to build from), got {num_classes!r}"
        )
    if not isinstance(num_folds, int) or num_folds < 1:
        raise ValueError(f"num_folds must be a positive int, got {num_folds!r}")
    folds = min(num_folds, num_classes // 2)
    order = torch.randperm(num_classes, generator=torch.Generator().manual_seed(seed))
    if folds == 1:  # a single group must leave a pseudo-base class behind
        return [order[: num_classes - 1].sort().values]
    return [group.sort().values for group in order.tensor_split(folds)]


def select_new_class_alpha(
    base_features: torch.Tensor,
    base_labels: torch.Tensor,
    base_text_weights: torch.Tensor,
    *,
    k: int = 64,
    alphas: Sequence[float] = ALPHAS,
    num_folds: int = 4,
    seed: int = DEFAULT_SEED,
    logit_scale: float = 100.0,
    head: str = "official",
    text_copies: int = 16,
) -> tuple[float, dict[float, float]]:
    """α for new-class heads (base-to-new) chosen on base classes only: (α, {α: pseudo-new accuracy %}).

    The official code (mrflogs/ICLR24, main_base2new.py, line 113) reuses the base α
    for the new classes, whose heads come from k nearest base features and the text
    embedding instead of their own images; nothing says the same weight suits them.
    This rule is this library's addition, not part of the official code. This rule simulates base-to-new inside the
    labelled base data: for each fold of `pseudo_new_splits`, the held-out classes
    get heads exactly as new classes do (`new_class_classifier` with the same
    `head`, `k` and `text_copies`, on the remaining classes' features and the
    held-out classes' text embeddings), and their own
    features are classified among themselves by the ensemble
    logit_scale·x·Tᵀ + α·(x·Wᵀ + b). α maximises the accuracy pooled over folds;
    ties keep the smaller α (closer to zero-shot). The base heads keep their own α,
    so for the harmonic mean of base and new accuracy on the pseudo split this is
    also the H-maximising α. No new-class data enters.
    """
    if len(alphas) == 0:
        raise ValueError("alphas is empty")
    _check_features(base_features, "base_features")
    num_classes = base_text_weights.shape[0]
    labels = _check_labels(base_labels, base_features.shape[0], num_classes).to(base_features.device)
    _check_nonempty_classes(torch.bincount(labels, minlength=num_classes))
    grid = sorted(float(a) for a in alphas)
    correct = torch.zeros(len(grid), dtype=torch.float64)
    total = 0
    for held in pseudo_new_splits(num_classes, num_folds, seed=seed):
        held = held.to(labels.device)
        is_held = torch.isin(labels, held)
        kept = torch.ones(num_classes, dtype=torch.bool, device=labels.device)
        kept[held] = False
        remap = torch.cumsum(kept, 0) - 1  # base id -> pseudo-base id
        x_base, y_base = base_features[~is_held], remap[labels[~is_held]]
        text = base_text_weights[held].to(base_features.dtype)
        weight, bias = new_class_classifier(
            x_base, y_base, text, k=min(k, x_base.shape[0]), head=head, text_copies=text_copies,
            num_base_classes=int(kept.sum()),
        )  # fmt: skip
        x_new = base_features[is_held]
        y_new = torch.searchsorted(held, labels[is_held])  # base id -> position among the held-out
        zero_shot = logit_scale * x_new @ text.T
        gda = gda_logits(x_new, weight, bias)
        for i, a in enumerate(grid):
            correct[i] += ((zero_shot + a * gda).argmax(1) == y_new).sum().item()
        total += x_new.shape[0]
    scores = {a: 100.0 * c / total for a, c in zip(grid, correct.tolist())}
    best = max(scores.values())
    return next(a for a, s in scores.items() if s == best), scores


# --------------------------------------------------------------------------- unsupervised EM


def _mixture_log_likelihood(x: torch.Tensor, means: torch.Tensor, prec_means: torch.Tensor, scatter, energy) -> float:
    """Mean per-sample log-likelihood of x under the uniform-prior Gaussian mixture
    with means μ_k and the KS precision P (up to the constant −D/2·log 2π)."""
    num_samples, dim = x.shape
    num_classes = means.shape[0]
    if _is_degenerate(scatter, num_samples, energy):
        px, logdet_p = x, 0.0  # the Σ = I fallback
    else:
        shrunk = scatter.clone()
        shrunk.diagonal().add_(torch.diagonal(scatter).sum() / (num_samples - 1))
        chol = torch.linalg.cholesky(shrunk)
        px = dim * torch.cholesky_solve(x.T, chol).T  # [N, D] = P x
        logdet_p = dim * math.log(dim) - 2 * torch.log(torch.diagonal(chol)).sum().item()  # log det(D·A⁻¹)
    quad = (x * px).sum(1, keepdim=True) - 2 * x @ prec_means.T + (means * prec_means).sum(1)  # (x−μ)ᵀP(x−μ)
    comp = -0.5 * quad + 0.5 * logdet_p + math.log(1.0 / num_classes)
    return torch.logsumexp(comp, dim=1).mean().item()


@torch.no_grad()
def fit_gda_em(
    features: torch.Tensor,
    text_weights: torch.Tensor,
    *,
    alpha: float = 1.0,
    logit_scale: float = 100.0,
    max_iter: int = 20,
    tol: float = 1e-4,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Unsupervised GDA: EM on a Gaussian mixture with a shared covariance.

    * Initialisation: responsibilities = zero-shot posteriors softmax(logit_scale·x·Tᵀ).
    * M-step: μ_k = Σ_n r_nk x_n / Σ_n r_nk; the shared covariance averages the
      per-class weighted covariances, S = (1/K) Σ_k Σ_n r_nk (x_n − μ_k)(…)ᵀ / Σ_n r_nk,
      turned into the KS precision with N = number of samples.
    * E-step: responsibilities = softmax of the ensemble logits
      logit_scale·x·Tᵀ + α·(x·Wᵀ + b).
    * Stops when the mixture's mean log-likelihood changes by less than
      `tol`·(1 + |LL|) or after `max_iter` iterations.

    Returns (weight, bias, info) with info = {"iterations", "converged", "log_likelihood": [...]}.
    """
    _check_features(features)
    _check_features(text_weights, "text_weights")
    if text_weights.shape[1] != features.shape[1]:
        raise ValueError(f"text_weights have dim {text_weights.shape[1]}, features {features.shape[1]}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    x = features.to(dtype)
    t = text_weights.to(dtype)
    num_samples, dim = x.shape
    num_classes = t.shape[0]
    energy = float(x.square().sum())
    zero_shot = logit_scale * x @ t.T
    resp = zero_shot.softmax(dim=1)
    history: list[float] = []
    converged = False
    for _ in range(max_iter):
        # M-step
        mass = resp.sum(0).clamp_min(torch.finfo(dtype).tiny)  # [K]
        means = (resp.T @ x) / mass.unsqueeze(1)
        row_weight = (resp / mass).sum(1)  # Σ_k r_nk / N_k
        per_class_avg = (x * row_weight.unsqueeze(1)).T @ x - means.T @ means  # Σ_k weighted cov_k
        cov = 0.5 * (per_class_avg + per_class_avg.T) / num_classes
        scatter = (num_samples - 1) * cov  # the KS estimator takes (N−1)·S
        weight, bias = _classifier_from_moments(means, scatter, num_samples, energy)
        ll = _mixture_log_likelihood(x, means, weight, scatter, energy)
        history.append(ll)
        # E-step
        resp = (zero_shot + alpha * (x @ weight.T + bias)).softmax(dim=1)
        if len(history) > 1 and abs(history[-1] - history[-2]) < tol * (1.0 + abs(history[-2])):
            converged = True
            break
    info = {"iterations": len(history), "converged": converged, "log_likelihood": history}
    return weight.to(features.dtype), bias.to(features.dtype), info
