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
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import ImageClassifierOutput

from ..clip import CLIPBackbone
from ..features import extract_features
from ..hub import ModelCardMixin, build_model_card
from .configuration_gda import GDAConfig
from .functional import GDAStatistics, ensemble_logits, select_alpha

BACKBONE_PREFIX = "backbone."


class GDAForImageClassification(ModelCardMixin, PreTrainedModel):
    """A GDA head on a frozen CLIP: logits = logit_scale·x·Tᵀ + α·(x·Wᵀ + b).

    `x` is CLIP's L2-normalised image embedding. Without a text classifier
    (`config.use_text_classifier=False`) the logits are x·Wᵀ + b alone.
    """

    config_class = GDAConfig
    base_model_prefix = "gda"
    main_input_name = "pixel_values"
    _keys_to_ignore_on_load_unexpected = [r"^backbone\."]

    def __init__(self, config: GDAConfig, backbone: CLIPBackbone | None = None):
        super().__init__(config)
        k, d = config.num_labels, config.embed_dim
        self.register_buffer("weight", torch.zeros(k, d, dtype=torch.float32))
        self.register_buffer("bias", torch.zeros(k, dtype=torch.float32))
        self.register_buffer("text_weights", torch.zeros(k, d, dtype=torch.float32))
        if backbone is None and config.save_backbone:
            # The CLIP weights come from this checkpoint: build the empty module to receive them.
            clip_config = AutoConfig.for_model(**config.backbone_config)
            backbone = CLIPBackbone(AutoModel.from_config(clip_config))
        self.backbone = backbone
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        # An unfitted head predicts nothing in particular: all statistics start at zero.
        if module is self:
            init.zeros_(self.weight)
            init.zeros_(self.bias)
            init.zeros_(self.text_weights)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_clip(
        cls,
        backbone: CLIPBackbone | str,
        class_names: Sequence[str] | None = None,
        templates: Sequence[str] | None = None,
        **config_kwargs,
    ) -> GDAForImageClassification:
        """A fresh head on `backbone` (a `CLIPBackbone` or a checkpoint name).

        With `class_names`, the zero-shot text classifier is built from them and the
        templates (default "a photo of a {}."; see `hf_clipadapt.clip.get_templates`).
        `class_names=None` with `num_labels=` in `config_kwargs` gives a GDA-only head.
        The zero-shot logits use the backbone's own learned temperature (100 for
        OpenAI CLIP, as in the paper); pass `logit_scale=` to override.
        """
        if isinstance(backbone, str):
            backbone = CLIPBackbone.from_pretrained(backbone)
        if not isinstance(backbone, CLIPBackbone):
            raise TypeError(f"backbone must be a CLIPBackbone or a checkpoint name, got {type(backbone).__name__}")
        if class_names is not None:
            class_names = list(class_names)
            text = backbone.zero_shot_classifier(class_names, list(templates) if templates else None)
            config_kwargs.setdefault("id2label", dict(enumerate(class_names)))
            config_kwargs.setdefault("label2id", {c: i for i, c in enumerate(class_names)})
        else:
            text = None
            config_kwargs["use_text_classifier"] = False
            if "num_labels" not in config_kwargs and "id2label" not in config_kwargs:
                raise ValueError("pass class_names (for the text classifier) or num_labels= (a GDA-only head)")
        # The ensemble weighs zero-shot logits against GDA's by α; a CLIP trained to
        # another temperature (the testbed's is 18) would shift the whole α grid.
        config_kwargs.setdefault("logit_scale", backbone.logit_scale)
        config = GDAConfig(
            base_model_name_or_path=backbone.name_or_path,
            embed_dim=backbone.embed_dim,
            templates=list(templates) if templates else None,
            **config_kwargs,
        )
        model = cls(config, backbone=backbone).to(backbone.device)
        if text is not None:
            model.text_weights.copy_(text.float())
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, backbone=None, load_backbone: bool = True, **kwargs):
        """Load the head; then attach the CLIP it was fitted on.

        The CLIP comes from `backbone=` if given, from the checkpoint itself when it was
        saved with `include_backbone=True`, or else from `config.base_model_name_or_path`
        (`load_backbone=False` skips that: `forward(image_features=...)` still works).
        """
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        if backbone is not None:
            model.backbone = backbone
        elif model.backbone is not None:
            _attach_processors(model.backbone, pretrained_model_name_or_path)
        elif load_backbone and model.config.base_model_name_or_path:
            ref = model.config.base_model_name_or_path
            try:
                model.backbone = CLIPBackbone.from_pretrained(ref)
            except (OSError, ValueError) as e:
                raise OSError(
                    f"could not load the base CLIP {ref!r} this GDA head refers to ({e}). Pass backbone=CLIPBackbone(...), "
                    "or load_backbone=False to use forward(image_features=...) only."
                ) from e
        return model

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        image_features: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutput:
        """`pixel_values` [B, 3, H, W] (encoded by the CLIP backbone) or precomputed
        `image_features` [B, D] (normalised here) -> `ImageClassifierOutput`."""
        features = self.get_image_features(pixel_values=pixel_values, image_features=image_features)
        logits = self.logits_from_features(features)
        loss = F.cross_entropy(logits, labels.to(logits.device)) if labels is not None else None
        return ImageClassifierOutput(loss=loss, logits=logits)

    def get_image_features(self, pixel_values=None, image_features=None) -> torch.Tensor:
        if (pixel_values is None) == (image_features is None):
            raise ValueError("pass exactly one of pixel_values or image_features")
        if image_features is None:
            if self.backbone is None:
                raise ValueError(
                    "this GDA head has no CLIP backbone attached, so it cannot encode pixel_values. Load it with "
                    "from_pretrained(..., backbone=CLIPBackbone(...)) or pass image_features="
                )
            image_features = self.backbone.encode_images(pixel_values)
        if image_features.ndim != 2 or image_features.shape[1] != self.config.embed_dim:
            raise ValueError(f"image_features must be [batch, {self.config.embed_dim}], got {tuple(image_features.shape)}")
        return F.normalize(image_features.float(), dim=-1)

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
        shots: int | None = None,
        seed: int = 1,
        views: int | None = None,
        batch_size: int = 64,
        accelerator=None,
        cache_dir: str | Path | None = None,
        alphas: Sequence[float] | None = None,
        image_column: str = "image",
        label_column: str = "label",
        dataset_name: str | None = None,
    ) -> GDAForImageClassification:
        """Fit W and b in closed form and pick α on validation data.

        `train` is one of:
        * a `datasets.Dataset`; with `shots=K` the CoOp K-shot train/validation split
          is drawn from it first (`hf_clipadapt.data.sample_few_shot`, seeded);
        * a `DatasetDict` with "train" and "validation" (what `sample_few_shot` returns);
        * a `DataLoader` yielding {"pixel_values", "labels"} batches, augmented by you;
          it is iterated `views` times and the statistics are summed across processes.

        Training images are encoded under `views` random-resized-crop (+ flip) views
        (`AugmentedViews`, `config.view_scale` / `config.view_flip`), each view a sample. α is chosen from `alphas` by accuracy
        on the validation split (never test data); without one, `config.alpha` stays.
        """
        from datasets import Dataset, DatasetDict

        from ..data import AugmentedViews, sample_few_shot

        backbone = self._require_backbone()
        views = self.config.views if views is None else views
        alphas = self.config.alphas if alphas is None else list(alphas)
        if shots is not None:
            if not isinstance(train, Dataset):
                raise TypeError("shots= samples a few-shot split from a datasets.Dataset; got " + type(train).__name__)
            train = sample_few_shot(train, shots=shots, seed=seed, label_column=label_column)
        if isinstance(train, DatasetDict):
            if validation is None and "validation" in train and len(train["validation"]) > 0:
                validation = train["validation"]
            if "train" not in train:
                raise ValueError(f"a DatasetDict passed to fit needs a 'train' split, got {list(train)}")
            train = train["train"]

        stats = GDAStatistics(self.config.num_labels, self.config.embed_dim, device=self.weight.device)
        if isinstance(train, torch.utils.data.DataLoader):
            num_images = self._accumulate_loader(stats, train, views, accelerator)
            val_feats = self._loader_features(validation, accelerator) if validation is not None else None
        else:
            self._check_dataset_labels(train, label_column)
            crop = _crop_size(backbone)
            augment = AugmentedViews(
                backbone.preprocess, size=crop, scale=tuple(self.config.view_scale), flip=self.config.view_flip, seed=seed
            )
            common = dict(
                batch_size=batch_size, accelerator=accelerator, image_column=image_column, label_column=label_column,
                cache_dir=cache_dir, cache_name=f"{backbone.cache_name}@{crop}" if cache_dir else None,
            )  # fmt: skip
            feats, labels = extract_features(
                backbone.encode_images, train, augment, views=views, split="train", desc="GDA train views", **common
            )
            stats.update(feats, labels)  # every process holds the gathered features: no reduce needed
            num_images = len(train)
            val_feats = None
            if validation is not None:
                self._check_dataset_labels(validation, label_column)
                val_feats = extract_features(
                    backbone.encode_images, validation, backbone.image_transform(), split="validation",
                    desc="GDA validation", **common,
                )  # fmt: skip
        weight, bias = stats.solve()
        self.weight.copy_(weight)
        self.bias.copy_(bias)

        if val_feats is not None and self.config.use_text_classifier:
            x = F.normalize(val_feats[0].to(self.weight.device).float(), dim=-1)
            alpha, scores = select_alpha(x, val_feats[1], self.text_weights, self.weight, self.bias, alphas, self.config.logit_scale)
            self.config.alpha = alpha
            self.config.alpha_scores = {str(a): s for a, s in scores.items()}
        elif self.config.use_text_classifier:
            warnings.warn(
                f"GDA.fit got no validation data, so alpha stays at config.alpha={self.config.alpha}. Pass shots= or a "
                "DatasetDict with a 'validation' split to choose it (never choose it on test data).",
                stacklevel=2,
            )
        self.config.views = views
        self.config.shots = shots if shots is not None else self.config.shots
        self.config.seed = seed
        self.config.num_train_images = num_images
        self.config.dataset_name = dataset_name or self.config.dataset_name or _dataset_name(train)
        return self

    def _accumulate_loader(self, stats, loader, views, accelerator) -> int:
        backbone = self._require_backbone()
        seen = 0
        for _ in range(views):
            for batch in loader:
                pixel_values, labels = _unpack(batch)
                stats.update(backbone.encode_images(pixel_values).float(), labels)
                seen += len(labels)
        stats.all_reduce(accelerator)
        total = seen if accelerator is None else int(accelerator.reduce(torch.tensor(seen, device=accelerator.device), "sum"))
        return total // views

    def _loader_features(self, loader, accelerator):
        if not isinstance(loader, torch.utils.data.DataLoader):
            raise TypeError(f"with a DataLoader for training, validation must be a DataLoader too, got {type(loader).__name__}")
        backbone = self._require_backbone()
        feats, labels = [], []
        for batch in loader:
            pixel_values, y = _unpack(batch)
            x = backbone.encode_images(pixel_values).float()
            if accelerator is not None:
                x, y = accelerator.gather_for_metrics((x, y.to(x.device)))
            feats.append(x.cpu())
            labels.append(y.cpu())
        return torch.cat(feats), torch.cat(labels)

    def _check_dataset_labels(self, dataset, label_column: str) -> None:
        """The dataset's classes must be this head's classes, in the same order."""
        from datasets import ClassLabel

        feature = dataset.features.get(label_column) if hasattr(dataset, "features") else None
        ours = [self.config.id2label[i] for i in range(self.config.num_labels)]
        if isinstance(feature, ClassLabel):
            generic = ours == [f"LABEL_{i}" for i in range(len(ours))]
            if generic and feature.num_classes == len(ours) and not self.config.use_text_classifier:
                # A GDA-only head built from num_labels takes its label names from the data.
                self.config.id2label = dict(enumerate(feature.names))
                self.config.label2id = {n: i for i, n in enumerate(feature.names)}
            elif list(feature.names) != ours:
                diff = [(i, a, b) for i, (a, b) in enumerate(zip(feature.names, ours)) if a != b][:5]
                raise ValueError(
                    f"the dataset's class names do not match this model's labels: the dataset has {feature.num_classes} "
                    f"classes, the model {len(ours)}; first differences (id, dataset, model): {diff}. Build the model "
                    "with class_names=hf_clipadapt.data.class_names(dataset)."
                )

    def _require_backbone(self) -> CLIPBackbone:
        if self.backbone is None:
            raise ValueError("fitting needs the CLIP backbone: build the model with from_clip(...) or pass backbone=")
        return self.backbone

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
    ) -> dict:
        """Unsupervised GDA: EM on unlabelled images, started from the zero-shot posteriors.

        Needs the text classifier (it provides the initial responsibilities and the
        ensemble in the E-step). `alpha` defaults to `config.alpha`. Returns the EM info
        (iterations, converged, log-likelihood per iteration).
        """
        from .functional import fit_gda_em

        if not self.config.use_text_classifier:
            raise ValueError("fit_unlabeled starts from zero-shot CLIP, so the model needs a text classifier (class_names)")
        backbone = self._require_backbone()
        alpha = self.config.alpha if alpha is None else float(alpha)
        feats, _ = extract_features(
            backbone.encode_images, dataset, backbone.image_transform(), batch_size=batch_size, accelerator=accelerator,
            image_column=image_column, label_column=None, cache_dir=cache_dir, split="unlabeled",
            cache_name=f"{backbone.cache_name}@{_crop_size(backbone)}" if cache_dir else None, desc="GDA unlabeled",
        )  # fmt: skip
        x = F.normalize(feats.to(self.weight.device).double(), dim=-1)
        weight, bias, info = fit_gda_em(
            x, self.text_weights.double(), alpha=alpha, logit_scale=self.config.logit_scale, max_iter=max_iter, tol=tol
        )
        self.weight.copy_(weight)
        self.bias.copy_(bias)
        self.config.alpha = alpha
        self.config.num_train_images = len(dataset)
        return info

    @torch.no_grad()
    def new_classes_head(
        self,
        class_names: Sequence[str],
        base_features: torch.Tensor,
        base_labels: torch.Tensor,
        templates: Sequence[str] | None = None,
        k: int = 64,
    ) -> GDAForImageClassification:
        """Base-to-new: a head for classes that have no images, only names.

        Each new class's mean is the mean of the `k` base-training features (e.g. the
        augmented views `fit` encoded, from `extract_features`) closest to its text
        embedding; the shared covariance is the base classes' one and α is reused, as
        in the paper. Returns a new model on the same backbone.
        """
        from .functional import new_class_classifier

        backbone = self._require_backbone()
        templates = list(templates) if templates else self.config.templates
        head = type(self).from_clip(
            backbone, list(class_names), templates, alpha=self.config.alpha, logit_scale=self.config.logit_scale,
            views=self.config.views, dataset_name=self.config.dataset_name,
        )  # fmt: skip
        x = F.normalize(base_features.to(self.weight.device).double(), dim=-1)
        weight, bias = new_class_classifier(
            x, base_labels.to(x.device), head.text_weights.double(), k=k, num_base_classes=self.config.num_labels
        )
        head.weight.copy_(weight)
        head.bias.copy_(bias)
        return head

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(
        self,
        dataset,
        *,
        batch_size: int = 64,
        accelerator=None,
        cache_dir=None,
        image_column: str = "image",
        label_column: str = "label",
        split: str = "test",
        record_as: str | None = None,
    ) -> dict[str, float]:
        """Top-1 and per-class accuracy (%) on a labelled dataset. `record_as="<dataset name>"`
        stores the result in `config.eval_results`, so it appears on the model card."""
        from ..metrics import accuracy, per_class_accuracy

        backbone = self._require_backbone()
        self._check_dataset_labels(dataset, label_column)
        crop = _crop_size(backbone)
        feats, labels = extract_features(
            backbone.encode_images, dataset, backbone.image_transform(), batch_size=batch_size, accelerator=accelerator,
            image_column=image_column, label_column=label_column, cache_dir=cache_dir, split=split,
            cache_name=f"{backbone.cache_name}@{crop}" if cache_dir else None, desc="GDA eval",
        )  # fmt: skip
        logits = self.logits_from_features(F.normalize(feats.to(self.weight.device).float(), dim=-1)).cpu()
        result = {"accuracy": accuracy(logits, labels), "per_class_accuracy": per_class_accuracy(logits, labels)}
        if record_as:
            self.config.eval_results = [
                r for r in self.config.eval_results if (r["dataset_name"], r.get("dataset_split")) != (record_as, split)
            ] + [{"dataset_name": record_as, "dataset_split": split, "metric_type": "accuracy", "metric_value": result["accuracy"]}]
        return result

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, save_directory, *args, include_backbone: bool | None = None, **kwargs):
        """Save the head (default: kilobytes to megabytes, CLIP referenced by name), or with
        `include_backbone=True` the CLIP weights too. The image processor and tokenizer are
        saved alongside when the backbone has them, so `pipeline(model=dir)` works."""
        include = self.config.save_backbone if include_backbone is None else include_backbone
        if include and self.backbone is None:
            raise ValueError("include_backbone=True but no CLIP backbone is attached")
        previous = (self.config.save_backbone, self.config.backbone_config)
        self.config.save_backbone = include
        self.config.backbone_config = self.backbone.model.config.to_dict() if include else None
        try:
            if not include and "state_dict" not in kwargs:
                kwargs["state_dict"] = {k: v for k, v in self.state_dict().items() if not k.startswith(BACKBONE_PREFIX)}
            out = super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            self.config.save_backbone, self.config.backbone_config = previous
        if kwargs.get("is_main_process", True) and self.backbone is not None:
            for part in (self.backbone.image_processor, self.backbone.tokenizer):
                if part is not None:
                    part.save_pretrained(save_directory)
        return out

    def create_model_card(self, **kwargs):
        c = self.config
        alpha_rows = "\n".join(f"| {a} | {s:.2f} |" for a, s in c.alpha_scores.items()) or "| - | - |"
        return build_model_card(
            template="gda.md",
            model_name=kwargs.pop("model_name", None) or f"GDA-{c.dataset_name or 'clip'}",
            base_model=c.base_model_name_or_path,
            datasets=[c.dataset_name] if c.dataset_name else None,
            eval_results=c.eval_results,
            tags=["gda", "clip", "few-shot", "training-free"],
            num_classes=c.num_labels,
            shots=c.shots,
            views=c.views,
            view_scale=c.view_scale,
            view_flip=c.view_flip,
            seed=c.seed,
            alpha=c.alpha,
            logit_scale=c.logit_scale,
            alpha_rows=alpha_rows,
            templates=c.templates or ["a photo of a {}."],
            use_text_classifier=c.use_text_classifier,
            save_backbone=c.save_backbone,
            **kwargs,
        )


# ---------------------------------------------------------------------- helpers


def _unpack(batch):
    if isinstance(batch, dict):
        try:
            return batch["pixel_values"], batch["labels"]
        except KeyError as e:
            raise KeyError(f"DataLoader batches must have 'pixel_values' and 'labels', got keys {list(batch)}") from e
    pixel_values, labels = batch
    return pixel_values, labels


def _crop_size(backbone: CLIPBackbone) -> int:
    processor = backbone.image_processor
    crop = getattr(processor, "crop_size", None)
    if isinstance(crop, dict) and "height" in crop:
        return int(crop["height"])
    size = getattr(processor, "size", None) or {}
    if "height" in size:
        return int(size["height"])
    if "shortest_edge" in size:
        return int(size["shortest_edge"])
    return int(backbone.config.vision_config.image_size)


def _dataset_name(dataset) -> str | None:
    info = getattr(dataset, "info", None)
    name = getattr(info, "dataset_name", None) or getattr(info, "builder_name", None)
    return name or None


def _attach_processors(backbone: CLIPBackbone, path) -> None:
    """Give a backbone rebuilt from a full checkpoint the processor/tokenizer saved next to it."""
    from transformers import AutoImageProcessor, AutoTokenizer

    if backbone.image_processor is None:
        try:
            backbone.image_processor = AutoImageProcessor.from_pretrained(path)
        except (OSError, ValueError):
            pass
    if backbone.tokenizer is None:
        try:
            backbone.tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError, TypeError):
            pass


AutoConfig.register(GDAConfig.model_type, GDAConfig)
AutoModel.register(GDAConfig, GDAForImageClassification)
AutoModelForImageClassification.register(GDAConfig, GDAForImageClassification)
