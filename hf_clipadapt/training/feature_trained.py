"""`FeatureTrainedCLIPModel`: the base of CLIP-adapted models trained by gradient on
cached CLIP image features (CoOp, CLIP-Adapter, Tip-Adapter-F, SHIP's generator).

`fit` encodes the training images once, under `config.views` augmented views, and
trains on those features through the shared training path
(`hf_clipadapt.training.AdaptationTrainer`, a `transformers.Trainer`): the image
tower never runs again during training; checkpoints, exact resume, trackers and
DDP come from there. The loss is the model's own: `model(image_features=...,
labels=...).loss`, as for any transformers model. Each model names its
`FeatureTrainingArguments` subclass (`training_arguments_class`), whose defaults are its paper's
optimiser and schedule; `fit(args=...)` takes one, or a dict overriding any of its fields.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from ..configuration_utils import DEFAULT_SEED
from ..data.few_shot import train_validation_split
from ..data.labels import dataset_name_of
from ..modeling_utils import CLIPAdaptedModel


class FeatureDataset(torch.utils.data.Dataset):
    """(image feature, label) pairs as the dicts a `Trainer` collates."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, i: int) -> dict:
        return {"image_features": self.features[i], "labels": self.labels[i]}


class FeatureTrainedCLIPModel(CLIPAdaptedModel):
    """A `CLIPAdaptedModel` whose `fit` trains its parts on cached image features."""

    # Whether `fit_features` chooses hyper-parameters on validation features (Tip-Adapter's
    # α, β); the others never read them, so `fit` does not encode them.
    uses_validation = False

    # Whether `extra_features` may be a sampler drawn afresh for every training batch (SHIP's
    # official synthesis, `ExtraSamplesTrainer`): true where the extra samples only ever enter
    # the training batches; a model that keeps them (Tip-Adapter's cache keys) needs one fixed set.
    extra_features_per_batch = True

    # The method's `FeatureTrainingArguments` subclass: its official optimiser and schedule.
    # Default: CoOp's (`hf_clipadapt.coop.arguments.CoOpTrainingArguments`).
    training_arguments_class = None

    def arguments_class(self):
        """The method's `FeatureTrainingArguments` subclass (CoOp's when the model names none)."""
        if self.training_arguments_class is not None:
            return self.training_arguments_class
        from ..coop.arguments import CoOpTrainingArguments

        return CoOpTrainingArguments

    def schedule_defaults(self, epochs: int | None = None, passes: float | None = None, warmup: bool = True) -> dict:
        """The settings that depend on this model: the passes over the cached views
        (`num_train_epochs`) and the epochs the warm-up + cosine schedule counts.

        Args:
            epochs: the paper's epochs of fresh images (None: `paper_epochs()`).
            passes: passes asked for directly; the schedule then counts `passes × views` epochs.
            warmup: whether the method's schedule has the constant warm-up (which counts epochs).
        """
        if passes is None:
            epochs = self.paper_epochs() if epochs is None else int(epochs)
            out = dict(num_train_epochs=self.passes(epochs))
        else:
            epochs, out = max(1, round(passes * max(1, self.config.views))), {}
        return {**out, "schedule_epochs": epochs} if warmup else out

    def paper_epochs(self) -> int:
        """Epochs of freshly augmented images the paper trains for: `config.epochs` when
        set (a preset, e.g. "imagenet": 50), else CoOp's rule by shot count."""
        epochs = getattr(self.config, "epochs", None)
        return int(epochs) if epochs is not None else coop_epochs(self.config.shots or 16)

    def passes(self, paper_epochs: int) -> int:
        """Passes over the cached views that match `paper_epochs` epochs of freshly
        augmented images: each image has `config.views` cached views, so one pass over
        them sees as many augmented images as `views` epochs."""
        return max(1, round(paper_epochs / max(1, self.config.views)))

    def training_arguments(self, num_samples: int, seed: int, args=None):
        """The method's arguments class (its official defaults), the settings that depend on
        this model (`schedule_defaults`), then `args` on top: an instance (used as it
        is, its passes filled in when left None) or a dict of overrides of its fields (an unknown
        key is refused); the batch never exceeds the data.

        Args:
            num_samples: the training set's size.
            seed: the run's seed (a dict's "seed" wins; an instance keeps its own).
            args: an `AdaptationTrainingArguments`, a dict, or None.
        """
        import copy

        from .arguments import AdaptationTrainingArguments, check_overrides, resolve_training_arguments

        cls = self.arguments_class()
        if isinstance(args, AdaptationTrainingArguments):
            if getattr(args, "num_train_epochs", 0) is not None:
                return args
            warmup = getattr(args, "constant_warmup_lr", None) is not None
            derived = self.schedule_defaults(getattr(args, "epochs", None), None, warmup)
            args = copy.copy(args)
            for key, value in derived.items():
                if getattr(args, key, None) is None or key == "num_train_epochs":
                    setattr(args, key, value)
            return args
        given = check_overrides(args, cls)
        epochs = given.get("epochs", cls.method_defaults().get("epochs"))
        warmup = given.get("constant_warmup_lr", cls.method_defaults().get("constant_warmup_lr")) is not None
        derived = self.schedule_defaults(epochs, given.get("num_train_epochs"), warmup)
        derived = {k: v for k, v in derived.items() if k not in given}
        return resolve_training_arguments(derived, given, seed=seed, num_samples=num_samples, arguments_class=cls)

    def train_on_features(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        *,
        seed: int = DEFAULT_SEED,
        args=None,
        resume_from_checkpoint=None,
        callbacks=None,
        draw_extra=None,
    ) -> list[dict]:
        """Train on features [N, D] (normalised here) with labels [N]; returns the log history.
        `draw_extra`: a sampler of extra samples appended to every batch (`ExtraSamplesTrainer`)."""
        from .trainer import train_model

        if features.shape[0] == 0:
            raise ValueError("no training features: the training split is empty")
        if not torch.isfinite(features).all():
            raise ValueError("the training features contain NaN or inf; check the images and the encoder")
        data = FeatureDataset(F.normalize(features.float(), dim=-1), labels.long())
        per_batch = {}
        if draw_extra is not None:
            from .extra_samples import ExtraSamplesTrainer

            per_batch = dict(trainer_class=ExtraSamplesTrainer, draw_extra=draw_extra)
        was_training = self.training
        history = train_model(
            self,
            data,
            self.training_arguments(len(data), seed, args),
            callbacks=callbacks,
            resume_from_checkpoint=resume_from_checkpoint,
            **per_batch,
        )
        self.train(was_training)
        return history

    def encode_training_views(self, train, *, seed: int, views: int, **encode) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and labels of `views` augmented views of every training image (cached)."""
        return self.encode_dataset(train, self.training_views(seed, train), views=views, split="train", **encode)

    def encode_labelled(self, dataset, *, label_column: str, **encode) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and labels (as this model's class indices) of a labelled split."""
        remap = self.dataset_label_map(dataset, label_column)
        features, labels = self.encode_dataset(dataset, label_column=label_column, **encode)
        return features, remap[labels]

    def fit(
        self,
        train,
        validation=None,
        *,
        shots: int | None = None,
        seed: int = DEFAULT_SEED,
        views: int | None = None,
        args=None,
        extra_features=None,
        resume_from_checkpoint=None,
        batch_size: int = 64,
        accelerator=None,
        cache_dir=None,
        image_column: str = "image",
        label_column: str = "label",
        dataset_name: str | None = None,
    ):
        """Encode the training images under augmented views once, then `fit_features`; returns self.

        `train`: a `datasets.Dataset` (with `shots=K` the CoOp K-shot split is drawn from
        it) or a `DatasetDict` with "train" (and "validation"). Its classes may be a subset
        of the model's (e.g. the base classes of a base+new model); `extra_features`, a
        (features [M, D], labels [M] indexing this model's classes) pair, is trained on
        alongside, e.g. SHIP's synthesized features of the label-only classes. It may instead
        be a sampler drawn afresh for every training batch (where `extra_features_per_batch`):
        `sampler(n, rng, device) -> (features [n, D], labels [n])`, with `sampler.class_ids`
        the classes it draws (`hf_clipadapt.ship.PerBatchSynthesis`). `args`: `AdaptationTrainingArguments`,
        or a dict of overrides of the paper's defaults. Validation data is only used where the
        method chooses hyper-parameters on it (Tip-Adapter's α, β), never to pick a checkpoint.
        """
        self.require_backbone("fitting")
        c = self.config
        views = c.views if views is None else views
        train, validation = train_validation_split(
            train, validation, shots=shots, seed=seed, label_column=label_column
        )
        encode = dict(batch_size=batch_size, accelerator=accelerator, cache_dir=cache_dir, image_column=image_column)
        remap = self.adopt_dataset_labels(train, label_column, subset=True)
        c.views, c.shots = views, shots if shots is not None else c.shots  # the schedule reads them
        features, labels = self.encode_training_views(
            train, seed=seed, views=views, label_column=label_column, **encode
        )
        val = None
        if validation is not None and self.uses_validation:
            val = self.encode_labelled(validation, label_column=label_column, split="validation", **encode)
        self.fit_features(
            features,
            remap[labels],
            views=views,
            validation=val,
            extra_features=extra_features,
            seed=seed,
            args=args,
            resume_from_checkpoint=resume_from_checkpoint,
        )
        self.record_provenance(
            seed=seed, dataset_name=dataset_name or dataset_name_of(train), num_train_images=len(train)
        )
        return self

    def fit_features(
        self,
        features,
        labels,
        *,
        views: int = 1,
        validation=None,
        extra_features=None,
        seed: int = DEFAULT_SEED,
        args=None,
        resume_from_checkpoint=None,
    ) -> None:
        """Fit on cached features: `features` [views·N, D] (view-major, as `encode_dataset`
        returns them) with `labels` (this model's class indices), plus `extra_features`;
        `validation` is a (features, labels) pair or None. Default: train on all of it
        with the model's loss; a sampler as `extra_features` (see `fit`) adds its draws to
        every batch instead."""
        sampler = extra_features if callable(extra_features) else None
        features, labels = with_extra(features, labels, None if sampler else extra_features, self.config.num_labels)
        self.warn_uncovered_classes(labels if sampler is None else torch.cat([labels, sampler.class_ids.to(labels)]))
        self.history_ = self.train_on_features(
            features, labels, seed=seed, args=args, resume_from_checkpoint=resume_from_checkpoint, draw_extra=sampler
        )
        self.config.is_fitted = True

    def warn_uncovered_classes(self, labels: torch.Tensor) -> None:
        """Warn when some classes have no training sample at all (real or synthesized)."""
        missing = sorted(set(range(self.config.num_labels)) - set(labels.unique().tolist()))
        if missing:
            names = [self.config.id2label[i] for i in missing[:5]]
            warnings.warn(
                f"{len(missing)} of {self.config.num_labels} classes have no training sample "
                f"(e.g. {names}); they keep their zero-shot text weights only. For label-only classes, "
                "pass synthesized features (hf_clipadapt.ship.fit_with_synthesized).",
                stacklevel=3,
            )


def coop_epochs(shots: int) -> int:
    """CoOp's epochs by shot count: 1 shot 50, 2 and 4 shots 100, 8 and 16 shots 200
    (KaiyangZhou/CoOp `COOP.md` L18-22: configs `*_ep50`, `*_ep100` and the 200-epoch
    default; ImageNet uses `*_ep50` at every shot count, the "imagenet" preset). Shot
    counts between those follow the next smaller listed one."""
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    return 50 if shots < 2 else 100 if shots < 8 else 200


def with_extra(features, labels, extra, num_labels: int):
    """Append (features, labels) of synthesized or otherwise extra training samples."""
    if extra is None:
        return features, labels
    if callable(extra):
        raise ValueError(
            "extra_features must be one fixed (features, labels) set here: this model keeps them (e.g. as "
            "Tip-Adapter's cache keys), so samples drawn afresh for every batch cannot stand in for them"
        )
    x, y = extra
    if x.ndim != 2 or x.shape[1] != features.shape[1] or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"extra_features must be ([M, {features.shape[1]}], [M]); got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    if y.numel() and (y.min() < 0 or y.max() >= num_labels):
        raise ValueError(f"extra labels must index this model's {num_labels} classes; got {y.min()}..{y.max()}")
    if not torch.isfinite(x).all():
        raise ValueError("extra_features contain NaN or inf")
    return torch.cat([features, x.to(features)]), torch.cat([labels, y.to(labels)])
