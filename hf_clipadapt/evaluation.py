"""Evaluation, result recording and run provenance, shared by every model of the package.

`EvaluationMixin` is mixed into `AdaptedPreTrainedModel`, so GDA, CoOp, CLIP-Adapter,
Tip-Adapter, SHIP, UEO, CraFT, TZSL and SFDA evaluate, record and describe their runs
the same way:

* `evaluate(dataset, *, record_as=None, split="test", **kwargs) -> dict`: the model's
  `compute_metrics` (percent), written to `config.eval_results` with `record_as`;
* one metric vocabulary, `METRICS`; a method reports its own extra numbers besides them
  under names of its own (`extra_metrics`);
* `record_result(s)`: the one place measured results live (`config.eval_results`, read
  by the model card);
* `record_provenance(seed=..., dataset_name=..., shots=..., num_train_images=...)`: what
  `fit` ran on, recorded the same way by every `fit`; the run's history is `history_`.

`CLIPEvaluationMixin` adds what a model around a CLIP needs: `encode_dataset` (batched,
cached CLIP features of a dataset), label matching by class name (`hf_clipadapt.data.labels`),
`predict_features`, and closed-set metrics (top-1 and mean per-class accuracy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .data import labels as label_matching

# The names every `evaluate` reports its scores under, in percent (Nones are left out).
METRICS = ("accuracy", "per_class_accuracy", "auroc", "h_score", "seen_accuracy", "unseen_accuracy")


class EvaluationMixin:
    """`evaluate`, result recording and run provenance (see the module docstring).

    A model implements `compute_metrics(dataset, *, split, **kwargs) -> dict` (names from
    `METRICS`, plus `extra_metrics` of its own), or overrides `evaluate` keeping its signature.
    """

    # Names a method reports besides `METRICS` (e.g. UEO's AUROC under another OOD score).
    extra_metrics: tuple[str, ...] = ()
    # The log of the last `fit` (per epoch, step or generation); None before `fit`.
    history_ = None

    @torch.no_grad()
    def evaluate(self, dataset, *, record_as: str | None = None, split: str = "test", **kwargs) -> dict:
        """Scores (percent) of this model on a labelled `dataset`.

        Args:
            dataset: the labelled evaluation data (a `datasets.Dataset`; TZSL: a `ZSLData`).
            record_as: a dataset name; the scores are then written to `config.eval_results`
                (and so onto the model card) under it.
            split: the split the scores are recorded under.
            **kwargs: the method's evaluation options (batch size, columns, transform, ...).

        Returns:
            A dict whose keys come from `METRICS` (and the method's `extra_metrics`).
        """
        result = self.compute_metrics(dataset, split=split, **kwargs)
        if record_as:
            self.record_results(record_as, result, split=split)
        return result

    def compute_metrics(self, dataset, *, split: str = "test", **kwargs) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement compute_metrics (or evaluate)")

    # ------------------------------------------------------------------ results
    def record_result(
        self, dataset_name: str, metric_type: str, value: float, *, split: str = "test", **extra
    ) -> None:
        """Store one measured result in `config.eval_results` (replacing an earlier one
        for the same dataset, split and metric); the model card lists them."""
        key = (dataset_name, split, metric_type)
        kept = [
            r for r in self.config.eval_results if (r["dataset_name"], r.get("dataset_split"), r["metric_type"]) != key
        ]
        entry = {
            "dataset_name": dataset_name,
            "dataset_split": split,
            "metric_type": metric_type,
            "metric_value": float(value),
        }
        self.config.eval_results = kept + [{**entry, **extra}]

    def record_results(self, dataset_name: str, metrics: dict, *, split: str = "test") -> None:
        """`record_result` for every scalar in `metrics` (e.g. what `evaluate` returned)."""
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.record_result(dataset_name, name, value, split=split)

    @property
    def eval_results(self) -> list[dict]:
        return self.config.eval_results

    # ------------------------------------------------------------------ provenance
    def record_provenance(
        self,
        *,
        seed: int | None,
        dataset_name: str | None = None,
        shots: int | None = None,
        num_train_images: int | None = None,
        history=None,
    ) -> None:
        """What `fit` ran on, for the card: marks the model fitted and records `seed`, the data's
        name (kept when None), the shots and image count (where the config has those fields)
        and the run's `history` (`history_`)."""
        c = self.config
        c.is_fitted, c.seed = True, seed
        c.dataset_name = dataset_name or c.dataset_name
        if shots is not None and hasattr(c, "shots"):
            c.shots = shots
        if num_train_images is not None and hasattr(c, "num_train_images"):
            c.num_train_images = int(num_train_images)
        if history is not None:
            self.history_ = history

    def class_names(self) -> list[str]:
        """The model's class names, in id order."""
        return [self.config.id2label[i] for i in range(self.config.num_labels)]


class CLIPEvaluationMixin(EvaluationMixin):
    """Dataset encoding, label matching and closed-set metrics of a model around a CLIP."""

    def encode_dataset(
        self,
        dataset,
        transform=None,
        *,
        views: int = 1,
        split: str = "test",
        desc: str | None = None,
        batch_size: int = 64,
        accelerator=None,
        cache_dir=None,
        image_column: str = "image",
        label_column: str | None = "label",
    ):
        """CLIP image features (and labels) of a `datasets.Dataset`, batched, gathered
        across processes and cached on disk under `cache_dir` (keyed by the CLIP's
        weights, the crop size, the transform and the data)."""
        from .features import extract_features

        backbone = self.require_backbone("encoding a dataset")
        transform = transform if transform is not None else backbone.image_transform()
        return extract_features(
            backbone.encode_images,
            dataset,
            transform,
            views=views,
            split=split,
            batch_size=batch_size,
            accelerator=accelerator,
            image_column=image_column,
            label_column=label_column,
            cache_dir=cache_dir,
            cache_name=f"{backbone.cache_name}@{backbone.crop_size}" if cache_dir else None,
            desc=desc or f"{self.config.model_type} {split}",
        )

    def check_dataset_labels(self, dataset, label_column: str = "label") -> None:
        """The dataset's class names (a `ClassLabel` column) must be this model's labels, in order."""
        label_matching.check_class_names(dataset, label_column, self.class_names())

    def adopt_dataset_labels(self, dataset, label_column: str, *, subset: bool = False) -> torch.Tensor:
        """A model built from `num_labels` alone (generic LABEL_i names, no text classifier)
        takes its label names from the data's `ClassLabel`; otherwise the data's classes
        must be the model's (with `subset=True`: some of the model's, matched by name).
        Returns `dataset_label_map`: the data's label ids as this model's."""
        label_matching.adopt_class_names(self.config, dataset, label_column)
        if not subset:
            self.check_dataset_labels(dataset, label_column)
        return self.dataset_label_map(dataset, label_column)

    def dataset_label_map(self, dataset, label_column: str = "label") -> torch.Tensor:
        """[C_data] tensor: the dataset's label ids → this model's, matched by class name
        (the identity when the data carry no `ClassLabel`). Refuses names the model lacks."""
        return label_matching.label_map(dataset, label_column, self.class_names())

    @torch.no_grad()
    def predict_features(self, features: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """Logits for precomputed image features, in chunks, on the CPU."""
        chunks = [
            self.logits_from_features(F.normalize(features[i : i + batch_size].to(self.device).float(), dim=-1)).cpu()
            for i in range(0, features.shape[0], batch_size)
        ]
        return torch.cat(chunks) if chunks else torch.empty(0, self.config.num_labels)

    def encode_for_evaluation(
        self,
        dataset,
        *,
        split: str,
        batch_size: int = 64,
        accelerator=None,
        cache_dir=None,
        image_column: str = "image",
        label_column: str = "label",
    ):
        """Features and labels of `dataset` encoded in eval mode (the mode is restored after)."""
        was_training = self.training
        self.eval()
        try:
            return self.encode_dataset(
                dataset,
                split=split,
                batch_size=batch_size,
                accelerator=accelerator,
                cache_dir=cache_dir,
                image_column=image_column,
                label_column=label_column,
            )
        finally:
            self.train(was_training)

    def compute_metrics(
        self,
        dataset,
        *,
        split: str = "test",
        batch_size: int = 64,
        accelerator=None,
        cache_dir=None,
        image_column: str = "image",
        label_column: str = "label",
    ) -> dict:
        """Top-1 and mean per-class accuracy (%) on a labelled dataset. A dataset whose
        classes are some of the model's (matched by name, e.g. the new classes of a
        base-to-new model) is scored within its own label space, as the base-to-new
        protocol does (Zhou et al., CVPR 2022)."""
        from .metrics import accuracy, per_class_accuracy

        columns = self.dataset_label_map(dataset, label_column)
        feats, labels = self.encode_for_evaluation(
            dataset,
            split=split,
            batch_size=batch_size,
            accelerator=accelerator,
            cache_dir=cache_dir,
            image_column=image_column,
            label_column=label_column,
        )
        logits = self.predict_features(feats)[:, columns]
        return {"accuracy": accuracy(logits, labels), "per_class_accuracy": per_class_accuracy(logits, labels)}


__all__ = ["CLIPEvaluationMixin", "EvaluationMixin", "METRICS"]
