"""`GDAForImageClassification`: training-free CLIP adaptation as a transformers model.

    import hf_clipadapt
    from hf_clipadapt.clip import CLIPBackbone, get_templates
    from hf_clipadapt.data import class_names
    from hf_clipadapt.gda import GDAForImageClassification

    clip = CLIPBackbone.from_pretrained("openai/clip-vit-base-patch16")
    model = GDAForImageClassification.from_clip(clip, class_names(train), get_templates("eurosat"))
    model.fit(train, shots=16, seed=1)       # 10 augmented views, W and b in closed form, α on validation
    model.evaluate(test)                     # {"accuracy": ...}
    model.save_pretrained("gda-eurosat")     # kilobytes: the head + a reference to the CLIP checkpoint
    AutoModelForImageClassification.from_pretrained("gda-eurosat")   # loads the CLIP it refers to

The fitted statistics (W, b, T) are persistent float32 buffers; the arithmetic is
the functional core in `hf_clipadapt.gda.functional`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import initialization as init

from ..configuration_utils import DEFAULT_SEED
from ..data.few_shot import train_validation_split
from ..modeling_utils import CLIPAdaptedModel, register_auto
from .configuration_gda import NEW_CLASS_ALPHA_RULES, GDAConfig
from .functional import GDAStatistics, ensemble_logits, fit_gda, select_alpha


def _reject_training_run(args, resume_from_checkpoint) -> None:
    """GDA's `fit` keeps the shared fit signature but has no training run to configure or resume."""
    if args is not None or resume_from_checkpoint is not None:
        raise ValueError(
            "GDA is fitted in closed form, with no training run: it takes no args and nothing to "
            "resume. Its settings are config fields (covariance, alphas, views: see GDAConfig)"
        )


class GDAForImageClassification(CLIPAdaptedModel):
    """A GDA head on a frozen CLIP: logits = logit_scale·x·Tᵀ + α·(x·Wᵀ + b).

    `x` is CLIP's L2-normalised image embedding. Without a text classifier
    (`config.use_text_classifier=False`) the logits are x·Wᵀ + b alone.
    Construction, forward, evaluation, saving and loading are the shared
    `CLIPAdaptedModel` contract; this class adds the closed-form `fit`.
    """

    config_class = GDAConfig
    card_template = "gda.md"
    card_tags = ("gda", "clip", "few-shot", "training-free")
    _unfitted_behaviour = "plain zero-shot CLIP (W = 0, b = 0)"

    def __init__(self, config: GDAConfig, backbone=None):
        super().__init__(config, backbone)
        k, d = config.num_labels, config.embed_dim
        self.register_buffer("weight", torch.zeros(k, d, dtype=torch.float32))
        self.register_buffer("bias", torch.zeros(k, dtype=torch.float32))
        self.register_text_classifier()
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        # An unfitted head predicts nothing in particular: all statistics start at zero.
        super()._init_weights(module)
        if module is self:
            init.zeros_(self.weight)
            init.zeros_(self.bias)

    def prepare_config_for_classes(self, config) -> None:
        raise ValueError(
            "GDA's W and b are the statistics of its own classes: nothing of them carries over to other "
            "class names. For new classes, build their heads with new_classes_head(class_names, "
            "base_features) (the official base-to-new protocol), or fit a new model on them"
        )

    @classmethod
    def from_clip(
        cls,
        backbone,
        class_names: Sequence[str] | None = None,
        templates: Sequence[str] | None = None,
        *,
        preset: str | None = None,
        **config_kwargs,
    ) -> GDAForImageClassification:
        """A fresh head on `backbone`; see `CLIPAdaptedModel.from_clip`. `class_names=None`
        with `num_labels=` gives a GDA-only head (no zero-shot term). The zero-shot logits
        use the backbone's own temperature (100 for OpenAI CLIP; the official code writes
        100, mrflogs/ICLR24 main_few_shots.py:71). `preset` ("imagenet", "base_to_new",
        "imagenet_base_to_new"; `GDA_PRESETS`) applies the official code's dataset- or
        protocol-specific settings; explicit keyword arguments win over it."""
        if class_names is None:
            config_kwargs["use_text_classifier"] = False
        return super().from_clip(backbone, class_names, templates, preset=preset, **config_kwargs)

    def logits_from_features(self, features: torch.Tensor) -> torch.Tensor:
        text = self.text_weights if self.config.use_text_classifier else None
        return ensemble_logits(features, text, self.weight, self.bias, self.config.alpha, self.config.logit_scale)

    # ------------------------------------------------------------------ fitting
    @torch.no_grad()
    def fit(
        self,
        train,
        validation=None,
        *,
        seed: int = DEFAULT_SEED,
        args=None,
        resume_from_checkpoint=None,
        shots: int | None = None,
        views: int | None = None,
        batch_size: int = 64,
        accelerator=None,
        cache_dir: str | Path | None = None,
        alphas: Sequence[float] | None = None,
        image_column: str = "image",
        label_column: str = "label",
        dataset_name: str | None = None,
    ) -> GDAForImageClassification:
        """Fit W and b in closed form and pick α on validation data; returns self.

        Training images are encoded under `views` random-resized-crop (+ flip) views (`AugmentedViews`,
        `config.view_scale` / `config.view_flip`), each view a sample. The covariance estimator is `config.covariance`
        ("ks" for few-shot; the "base_to_new" preset gives the official base-to-new script's base head). The official
        code picks α on the dataset's full validation split (on the test set for ImageNet); `shots=` holds out
        min(K, 4) images per class of the training data instead.

        Args:
            train: a `datasets.Dataset` (with `shots=K` the CoOp K-shot train/validation split is drawn from it
                first, `hf_clipadapt.data.sample_few_shot`, seeded); a `DatasetDict` with "train" and "validation"
                (what `sample_few_shot` returns); or a `DataLoader` yielding {"pixel_values", "labels"} batches,
                augmented by you, iterated `views` times, its statistics summed across processes.
            validation: data on which α is chosen from `alphas` by accuracy (never test data); without
                any, `config.alpha` stays. seed: the few-shot draw and the augmented views.
            args, resume_from_checkpoint: refused (no training run). shots, views, alphas: see above.
            batch_size, accelerator, cache_dir, image_column, label_column: encoding (`encode_dataset`).
            dataset_name: recorded in the provenance (default: the config's, else the dataset's).
        """
        _reject_training_run(args, resume_from_checkpoint)
        self.require_backbone("fitting")
        views = self.config.views if views is None else views
        train, validation = train_validation_split(
            train, validation, shots=shots, seed=seed, label_column=label_column
        )
        common = dict(
            batch_size=batch_size,
            accelerator=accelerator,
            cache_dir=cache_dir,
            image_column=image_column,
            label_column=label_column,
        )
        num_images, val_feats = self._fit_weights(train, validation, seed, views, common)
        self._select_alpha(val_feats, self.config.alphas if alphas is None else list(alphas))
        self.config.views = views
        self.record_provenance(
            seed=seed,
            dataset_name=dataset_name or self.config.dataset_name or _dataset_name(train),
            shots=shots,
            num_train_images=num_images,
        )
        return self

    def _fit_weights(self, train, validation, seed, views, common):
        """`fit`'s closed-form solve of W and b (copied into the model), for a DataLoader or
        for datasets.

        Kept apart from `fit` (which resolves its inputs and records the result) so the
        two input paths read side by side. Returns (number of training images,
        validation features or None).
        """
        stats = GDAStatistics(self.config.num_labels, self.config.embed_dim, device=self.weight.device)
        accelerator = common["accelerator"]
        if isinstance(train, torch.utils.data.DataLoader):
            num_images = self._accumulate_loader(stats, train, views, accelerator)
            val_feats = self._loader_features(validation, accelerator) if validation is not None else None
            weight, bias = stats.solve(covariance=self.config.covariance)
        else:
            num_images = len(train)
            weight, bias, val_feats = self._fit_datasets(train, validation, seed, views, stats.dtype, common)
        self.weight.copy_(weight)
        self.bias.copy_(bias)
        return num_images, val_feats

    def _fit_datasets(self, train, validation, seed, views, dtype, common):
        """The dataset path of `_fit_weights`: encode the augmented training views, solve
        W and b in `dtype` (float64 statistics), and encode the validation split for
        choosing α. Returns (weight, bias, validation features or None).
        """
        label_column = common["label_column"]
        self.adopt_dataset_labels(train, label_column)
        x, y = self.encode_dataset(train, self.training_views(seed, train), views=views, split="train", **common)
        weight, bias = fit_gda(
            x.to(self.weight.device),
            y.to(self.weight.device),
            self.config.num_labels,
            covariance=self.config.covariance,
            dtype=dtype,
        )
        val_feats = None
        if validation is not None:
            self.adopt_dataset_labels(validation, label_column)
            val_feats = self.encode_dataset(validation, split="validation", **common)
        return weight.float(), bias.float(), val_feats

    def _select_alpha(self, val_feats, alphas) -> None:
        if not self.config.use_text_classifier:
            return
        if val_feats is None:
            warnings.warn(
                f"GDA.fit got no validation data, so alpha stays at config.alpha={self.config.alpha}. Pass shots= or a "
                "DatasetDict with a 'validation' split to choose it (never choose it on test data).",
                stacklevel=3,
            )
            return
        x = F.normalize(val_feats[0].to(self.weight.device).float(), dim=-1)
        alpha, scores = select_alpha(
            x, val_feats[1], self.text_weights, self.weight, self.bias, alphas, self.config.logit_scale
        )
        self.config.alpha = alpha
        self.config.alpha_scores = {str(a): s for a, s in scores.items()}

    def _accumulate_loader(self, stats, loader, views, accelerator) -> int:
        seen = 0
        for _ in range(views):
            for batch in loader:
                pixel_values, labels = _unpack(batch)
                stats.update(self.backbone.encode_images(pixel_values).float(), labels)
                seen += len(labels)
        stats.all_reduce(accelerator)
        total = (
            seen
            if accelerator is None
            else int(accelerator.reduce(torch.tensor(seen, device=accelerator.device), "sum"))
        )
        return total // views

    def _loader_features(self, loader, accelerator):
        if not isinstance(loader, torch.utils.data.DataLoader):
            raise TypeError(
                f"with a DataLoader for training, validation must be a DataLoader too, got {type(loader).__name__}"
            )
        feats, labels = [], []
        for batch in loader:
            pixel_values, y = _unpack(batch)
            x = self.backbone.encode_images(pixel_values).float()
            if accelerator is not None:
                x, y = accelerator.gather_for_metrics((x, y.to(x.device)))
            feats.append(x.cpu())
            labels.append(y.cpu())
        return torch.cat(feats), torch.cat(labels)

    @torch.no_grad()
    def fit_unlabeled(
        self,
        dataset,
        *,
        alpha: float | None = None,
        max_iter: int = 20,
        tol: float = 1e-4,
        batch_size: int = 64,
        accelerator=None,
        cache_dir=None,
        image_column: str = "image",
    ) -> GDAForImageClassification:
        """Unsupervised GDA: EM on unlabelled images, started from the zero-shot posteriors;
        returns self, the EM info (iterations, converged, log-likelihood per iteration) in `history_`.

        Needs the text classifier (it provides the initial responsibilities and the
        ensemble in the E-step). `alpha` defaults to `config.alpha`.
        """
        from .em import fit_gda_em

        if not self.config.use_text_classifier:
            raise ValueError(
                "fit_unlabeled starts from zero-shot CLIP, so the model needs a text classifier (class_names)"
            )
        alpha = self.config.alpha if alpha is None else float(alpha)
        feats, _ = self.encode_dataset(
            dataset,
            split="unlabeled",
            batch_size=batch_size,
            accelerator=accelerator,
            cache_dir=cache_dir,
            image_column=image_column,
            label_column=None,
        )
        x = F.normalize(feats.to(self.weight.device).double(), dim=-1)
        weight, bias, info = fit_gda_em(
            x, self.text_weights.double(), alpha=alpha, logit_scale=self.config.logit_scale, max_iter=max_iter, tol=tol
        )
        self.weight.copy_(weight)
        self.bias.copy_(bias)
        self.config.alpha, self.config.num_train_images, self.config.is_fitted = alpha, len(dataset), True
        self.history_ = info
        return self

    def _check_new_classes_request(self, alpha_rule: str, head: str, base_labels) -> None:
        if alpha_rule not in NEW_CLASS_ALPHA_RULES:
            raise ValueError(f"alpha_rule must be one of {NEW_CLASS_ALPHA_RULES}, got {alpha_rule!r}")
        if alpha_rule == "pseudo_new" and not self.config.use_text_classifier:
            raise ValueError(
                'alpha_rule="pseudo_new" gives held-out base classes text heads, so the model needs its base class '
                'names (a text classifier); build it with class_names or use alpha_rule="reuse"'
            )
        if base_labels is None and (alpha_rule == "pseudo_new" or head == "knn_mean"):
            raise ValueError(
                f"alpha_rule={alpha_rule!r} with head={head!r} needs base_labels (the base features' classes)"
            )

    @torch.no_grad()
    def new_classes_head(
        self,
        class_names: Sequence[str],
        base_features: torch.Tensor,
        base_labels: torch.Tensor | None = None,
        templates: Sequence[str] | None = None,
        k: int = 64,
        *,
        alpha_rule: str = "reuse",
        head: str = "official",
        text_copies: int = 16,
        alphas: Sequence[float] | None = None,
        num_folds: int = 4,
        seed: int = DEFAULT_SEED,
    ) -> GDAForImageClassification:
        """Base-to-new: a head for classes that have no images, only names; returns a new model on the
        same backbone, built by `new_class_classifier` with `head`.

        Args:
            class_names: the new classes. templates: their prompt templates (default: the config's).
            base_features: the base classes' training features; the official code (mrflogs/ICLR24,
                main_base2new.py, lines 42-53 and 85-111) uses every augmented view `fit` encoded, e.g.
                ``model.encode_dataset(shots, model.training_views(seed, shots), views=c.views, split="train")``.
            base_labels: their labels, needed only for ``alpha_rule="pseudo_new"``.
            k: nearest base features per new class. text_copies: copies of the text embedding in the mean.
            head: ``"official"`` (default): mean = the `k` nearest base features and `text_copies` copies
                of the class's text embedding; precision = the KS estimate of each new class's neighbours
                about its text embedding, averaged over the new classes. ``"knn_mean"``: this library's
                earlier head (mean of the `k` nearest base features, the base classes' KS precision).
            alpha_rule: ``"reuse"`` (the official code, line 113): the base α. ``"pseudo_new"`` (this
                library's rule, not in the official code): chosen on the base data alone by
                `select_new_class_alpha`: `num_folds` groups of base classes are held out in turn, given
                heads the way new classes are (same `head`, `k`, `text_copies`, from the remaining base
                features), and α from `alphas` (default `config.alphas`) maximises their accuracy. It reads
                no new-class images or labels; the scores go to the head's `config.alpha_scores`.
            alphas, num_folds, seed: the ``"pseudo_new"`` search (see `select_new_class_alpha`).
        """
        from .new_classes import fill_new_head, new_head_model, set_pseudo_new_alpha

        self._check_new_classes_request(alpha_rule, head, base_labels)
        templates = list(templates) if templates else self.config.templates
        new = new_head_model(self, list(class_names), templates, alpha_rule, head)
        x = F.normalize(base_features.to(self.weight.device).double(), dim=-1)
        labels = None if base_labels is None else base_labels.to(x.device)
        fill_new_head(new, x, labels, k, head, text_copies, num_base_classes=self.config.num_labels)
        if alpha_rule == "pseudo_new":
            alphas = self.config.alphas if alphas is None else alphas
            set_pseudo_new_alpha(new, self, x, labels, k, alphas, num_folds, seed, head, text_copies)
        new.config.is_fitted = True
        return new

    # ------------------------------------------------------------------ card
    def card_vars(self) -> dict:
        c = self.config
        return dict(
            num_classes=c.num_labels,
            shots=c.shots,
            views=c.views,
            view_scale=c.view_scale,
            view_flip=c.views_flipped,
            seed=c.seed,
            alpha=c.alpha,
            logit_scale=c.logit_scale,
            templates=c.templates or ["a photo of a {}."],
            alpha_rows="\n".join(f"| {a} | {s:.2f} |" for a, s in c.alpha_scores.items()) or "| - | - |",
            use_text_classifier=c.use_text_classifier,
            save_backbone=c.save_backbone,
            new_class_alpha_rule=c.new_class_alpha_rule,
            covariance=c.covariance,
            new_class_head=c.new_class_head,
            preset=c.preset,
        )

    def create_model_card(self, **kwargs):
        kwargs.setdefault("model_name", f"GDA-{self.config.dataset_name or 'clip'}")
        return super().create_model_card(**kwargs)


# ---------------------------------------------------------------------- helpers


def _unpack(batch):
    if isinstance(batch, dict):
        try:
            return batch["pixel_values"], batch["labels"]
        except KeyError as e:
            raise KeyError(f"DataLoader batches must have 'pixel_values' and 'labels', got keys {list(batch)}") from e
    pixel_values, labels = batch
    return pixel_values, labels


def _dataset_name(dataset) -> str | None:
    info = getattr(dataset, "info", None)
    name = getattr(info, "dataset_name", None) or getattr(info, "builder_name", None)
    return name or None


register_auto(GDAConfig, GDAForImageClassification)
