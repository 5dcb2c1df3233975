"""Training UEO on unlabelled images through the shared training path (`AdaptationTrainer`).

1. One pass of the initial (zero-shot) model over the unlabelled images gives each image
   its fixed weight w_i (max softmax probability; `functional.zero_shot_weights`).
2. `UEOTrainer` (an `AdaptationTrainer`) minimises `functional.ueo_loss` on batches of
   augmented images; each row carries its `sample_index`, which looks up its weight.
   The weights are written beside every checkpoint (`ueo_weights.pt`), so a resumed
   run uses the weights of the initial model, not of the checkpoint.

The loss of a batch is not a sum over images (a ratio of sums, and the entropy of the
batch's mean prediction), so under several processes each one gathers the logits and
weights of the global batch and computes the loss of the whole batch; its own rows keep
their gradient. DDP averages the processes' gradients, so the loss is multiplied by the
number of processes: the step equals one process on the same global batch.

Bad input: no image column or no rows raise; a label column is ignored with a warning
(oracle=True is the only switch that reads it); an image that fails to decode raises an
error naming its row index (we do not skip: a silently shrunken dataset changes w).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import TrainerCallback

from ..data.labels import known_label_map
from ..features import extract_features
from ..training import AdaptationTrainer, AdaptationTrainingArguments, train_model
from ..training.arguments import resolve_training_arguments
from .arguments import UEOTrainingArguments, method_settings
from .evaluation import to_model_labels
from .functional import (
    OFFICIAL_LOG_EPSILON,
    information_maximization_loss,
    oracle_weights,
    ueo_loss,
    zero_shot_weights,
)

WEIGHTS_FILE = "ueo_weights.pt"


class CheckedImages(torch.utils.data.Dataset):
    """Rows of a dataset with an image column; an image that fails to decode raises with its index."""

    def __init__(self, dataset, image_column: str = "image"):
        self.dataset, self.image_column = dataset, image_column

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        try:
            image = self.dataset[int(i)][self.image_column]
            if image is None:
                raise ValueError("the image is missing (None)")
            if hasattr(image, "load"):
                image.load()
        except Exception as e:  # PIL raises many types for broken files
            raise ValueError(
                f"image at row {i} of the unlabelled dataset could not be decoded ({e}); "
                "remove or repair it (e.g. dataset.select(...) without that row)."
            ) from e
        return {self.image_column: image}


class UnlabelledViews(torch.utils.data.Dataset):
    """{"pixel_values", "sample_index"} rows; augmentation view = the epoch (set by `EpochView`)."""

    def __init__(self, images: CheckedImages, transform):
        self.images, self.transform, self.view = images, transform, 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        image = self.images[i][self.images.image_column]
        pixel_values = self.transform([image], torch.tensor([i]), self.view)[0]
        return {"pixel_values": pixel_values, "sample_index": i}


class EpochView(TrainerCallback):
    """Each epoch sees fresh augmentations (view = epoch), also after a resume."""

    def __init__(self, data: UnlabelledViews):
        self.data = data

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.data.view = int(math.floor((state.epoch or 0.0) + 1e-6))


class SaveWeights(TrainerCallback):
    """Writes the fixed weights into every checkpoint folder."""

    def __init__(self, weights: torch.Tensor):
        self.weights = weights

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                torch.save(self.weights.cpu(), folder / WEIGHTS_FILE)


def load_initial_weights(folder: Path) -> torch.Tensor:
    """The fixed UEO weights saved in a checkpoint folder: a tensor read as data only
    (`weights_only=True`, whatever torch's default), never an arbitrary pickle."""
    path = Path(folder) / WEIGHTS_FILE
    try:
        weights = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch's UnpicklingError on anything but plain data
        raise OSError(
            f"{path} is not a data-only weights file; it is refused, since unpickling it could run code "
            f"({e}). Resume from a checkpoint this version wrote."
        ) from e
    if not isinstance(weights, torch.Tensor) or weights.ndim != 1 or not torch.isfinite(weights).all():
        raise OSError(
            f"{path} does not hold the finite 1-d tensor of UEO sample weights; resume from another checkpoint"
        )
    return weights


def _global_batch(logits: torch.Tensor, weights: torch.Tensor):
    """(logits, weights, processes) of the global batch; this process's rows keep their gradient."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return logits, weights, 1
    world, rank = dist.get_world_size(), dist.get_rank()
    sizes = [torch.zeros(1, dtype=torch.long, device=logits.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([logits.shape[0]], device=logits.device))
    if len({int(s) for s in sizes}) > 1:
        raise RuntimeError(
            f"UEO's batch loss needs equal per-process batches, got {[int(s) for s in sizes]}; "
            "keep Accelerate's even_batches (the default) or drop the last batch"
        )
    parts = [torch.empty_like(logits) for _ in range(world)]
    dist.all_gather(parts, logits.detach().contiguous())
    parts[rank] = logits
    w_parts = [torch.empty_like(weights) for _ in range(world)]
    dist.all_gather(w_parts, weights.contiguous())
    return torch.cat(parts), torch.cat(w_parts), world


class UEOTrainer(AdaptationTrainer):
    """`AdaptationTrainer` whose loss is UEO's, with fixed per-sample weights looked up by
    `sample_index` (uniform weights with `no_weight`: information maximisation)."""

    def __init__(
        self,
        *args,
        sample_weights: torch.Tensor | None = None,
        trade: float = 1.0,
        log_epsilon: float = OFFICIAL_LOG_EPSILON,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.sample_weights, self.trade, self.log_epsilon = sample_weights, float(trade), float(log_epsilon)

    def parameter_groups(self, model):
        # Two groups, as in the paper (context, vision LayerNorms), each at args.learning_rate.
        return [{"params": [model.prompt_learner.ctx]}, {"params": model.layernorm_parameters()}]

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        inputs = dict(inputs)
        index = inputs.pop("sample_index")
        outputs = model(pixel_values=inputs["pixel_values"])
        logits = outputs.logits
        if self.sample_weights is None:
            weights = torch.ones(logits.shape[0], device=logits.device, dtype=logits.dtype)
        else:
            weights = self.sample_weights.to(logits.device)[index.to(logits.device)].to(logits.dtype)
        logits_all, weights_all, processes = _global_batch(logits, weights)
        if self.sample_weights is None:
            loss = information_maximization_loss(logits_all, self.trade, self.log_epsilon)
        else:
            loss = ueo_loss(logits_all, weights_all, self.trade, self.log_epsilon)
        # DDP averages the processes' gradients; each process holds only its rows' share of the batch loss.
        loss = loss * processes
        return (loss, outputs) if return_outputs else loss

    def training_step(self, *args, **kwargs):
        processes = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        return super().training_step(*args, **kwargs) / processes  # log the batch loss itself


# ---------------------------------------------------------------------- fit


def check_unlabelled(train, image_column: str, label_column: str, oracle: bool) -> None:
    """Refuse data without images; warn that labels are ignored (unless the oracle reads them)."""
    names = getattr(train, "column_names", None)
    if names is None:
        raise TypeError(f"UEO trains on a datasets.Dataset of images, got {type(train).__name__}")
    if image_column not in names:
        raise ValueError(
            f"the unlabelled dataset has no image column {image_column!r} (columns: {names}); "
            "pass image_column= naming the column that holds the images"
        )
    if len(train) == 0:
        raise ValueError("the unlabelled dataset has no images (0 rows): UEO needs target images to adapt to")
    if oracle and label_column not in names:
        raise ValueError(f"oracle=True reads ground-truth labels from {label_column!r}, which the dataset lacks")
    if label_column in names and not oracle:
        warnings.warn(
            f"the unlabelled dataset has a {label_column!r} column: UEO is unsupervised and ignores it "
            "(it is never read; drop it to silence this warning)",
            stacklevel=4,
        )


@torch.no_grad()
def zero_shot_pass(
    model, images: CheckedImages, *, batch_size: int = 64, accelerator=None, weights_from: str = "cosine"
) -> torch.Tensor:
    """[N] weights w_i = max softmax of the model's current (initial) unscaled cosine
    similarities (`weights_from="cosine"`, the official code's choice: tim-learn/UEO demo.py
    lines 425 and 453-454, on the training images under the test transform), or of its
    scaled logits (`weights_from="logits"`)."""
    if weights_from not in ("logits", "cosine"):
        raise ValueError(f"weights_from must be 'logits' or 'cosine', got {weights_from!r}")
    was_training = model.training
    model.eval()

    def logits(pixel_values):
        return model.logits_from_features(model.get_image_features(pixel_values=pixel_values))

    try:
        out, _ = extract_features(
            logits,
            images,
            model.backbone.image_transform(),
            batch_size=batch_size,
            accelerator=accelerator,
            image_column=images.image_column,
            label_column=None,
            desc="ueo zero-shot weights",
        )
    finally:
        model.train(was_training)
    return zero_shot_weights(out, scale=1.0 / model.config.logit_scale if weights_from == "cosine" else 1.0)


def oracle_pass(model, train, label_column: str) -> torch.Tensor:
    """[N] the oracle ablation's weights from ground-truth known/unknown membership."""
    labels = torch.as_tensor(list(train[label_column]), dtype=torch.long)
    known = (
        to_model_labels(labels, known_label_map(train, label_column, model.class_names()), model.config.num_labels)
        >= 0
    )
    return oracle_weights(known)


def _checkpoint_folder(resume, args) -> Path | None:
    if resume is None or resume is False:
        return None
    if resume is True:
        from ..training import last_complete_checkpoint

        given = args if isinstance(args, AdaptationTrainingArguments) else None
        output_dir = given.output_dir if given is not None else (args or {}).get("output_dir")
        last = last_complete_checkpoint(output_dir) if output_dir else None
        return Path(last) if last else None
    return Path(resume)


def training_arguments(num_samples: int, seed: int, args=None) -> UEOTrainingArguments:
    """`UEOTrainingArguments` (the official defaults), then `args` (an instance, used as it is, or
    a dict of overrides: `hf_clipadapt.training.arguments.resolve_training_arguments`)."""
    return resolve_training_arguments(
        None, args, seed=seed, num_samples=num_samples, arguments_class=UEOTrainingArguments
    )


def _initial_weights(model, train, images, folder, settings, *, label_column, batch_size, accelerator):
    """`fit_ueo`'s objective name and per-sample weights, before training: none for the
    information-maximization ablation, those saved with a resumed checkpoint (the initial
    model's, not the checkpoint's), the oracle's from the labels, or UEO's from a zero-shot
    pass. Kept apart so `fit_ueo` reads as the training run. Returns (objective, weights or None).
    """
    if settings["no_weight"]:
        return "information_maximization", None
    if folder is not None and (folder / WEIGHTS_FILE).is_file():
        return ("oracle" if settings["oracle"] else "ueo"), load_initial_weights(folder)
    if settings["oracle"]:
        return "oracle", oracle_pass(model, train, label_column)
    weights = zero_shot_pass(
        model, images, batch_size=batch_size, accelerator=accelerator, weights_from=settings["weights_from"]
    )
    return "ueo", weights


def fit_ueo(
    model,
    train,
    validation=None,
    *,
    seed: int,
    args=None,
    resume_from_checkpoint=None,
    batch_size: int = 64,
    accelerator=None,
    image_column: str = "image",
    label_column: str = "label",
    callbacks=None,
    dataset_name: str | None = None,
    trainer_class=None,
):
    """`UEOForImageClassification.fit` (see there); UEO's switches come from `args`."""
    settings = method_settings(args)
    trade = settings["trade"]
    check_unlabelled(train, image_column, label_column, settings["oracle"])
    if validation is not None:
        warnings.warn("UEO selects no model: the validation data are not used", stacklevel=3)
    model.require_backbone("fitting UEO")
    images = CheckedImages(train, image_column)
    folder = _checkpoint_folder(resume_from_checkpoint, args)
    objective, weights = _initial_weights(
        model,
        train,
        images,
        folder,
        settings,
        label_column=label_column,
        batch_size=batch_size,
        accelerator=accelerator,
    )
    # After the weight pass: building TrainingArguments resets Accelerate's state, which that pass may use.
    training_args = training_arguments(len(images), seed, args)
    transform = model.training_views(seed, train) if settings["augment"] else model.backbone.image_transform()
    data = UnlabelledViews(images, transform)
    extra = [EpochView(data)] + ([SaveWeights(weights)] if weights is not None else [])
    trainer_kwargs = dict(sample_weights=weights, trade=trade, log_epsilon=settings["log_epsilon"])
    was_training = model.training
    model.history_ = train_model(
        model,
        data,
        training_args,
        trainer_class=trainer_class or UEOTrainer,
        callbacks=extra + list(callbacks or []),
        resume_from_checkpoint=resume_from_checkpoint,
        **trainer_kwargs,
    )
    model.train(was_training)
    model.sample_weights_ = weights
    model.forget_feature_cache()
    model.config.objective, model.config.trade = objective, float(trade)
    model.record_provenance(seed=seed, dataset_name=dataset_name, num_train_images=len(images))
    return model
