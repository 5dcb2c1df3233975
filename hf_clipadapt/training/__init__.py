"""The one training path of hf_clipadapt: a `transformers.Trainer` subclass and its arguments.

    from hf_clipadapt.training import AdaptationTrainingArguments, train_model

    args = AdaptationTrainingArguments(num_train_epochs=10, learning_rate=2e-3, per_device_train_batch_size=32,
                                       optim="sgd", momentum=0.9, weight_decay=5e-4, lr_scheduler_type="cosine")
    history = train_model(model, train_dataset, args)   # rows with "labels": loss = model(**batch).loss

Names load on first use (the trainer imports `transformers.Trainer`).
"""

from .._lazy import exports_of, lazy_exports

_EXPORTS = {
    **exports_of(
        ".arguments",
        "AdaptationTrainingArguments",
        "FeatureTrainingArguments",
        "check_overrides",
        "progress_bars_enabled",
        "resolve_training_arguments",
        "sgd_arguments",
        "split_global_batch",
    ),
    **exports_of(".collate", "TensorRows", "stack_collate"),
    **exports_of(".extra_samples", "ExtraSamplesTrainer"),
    **exports_of(
        ".samplers", "ClassBalancedSampler", "ShardedDrawSampler", "ShardedRandomSampler", "class_balanced_weights"
    ),
    **exports_of(".trainer", "AdaptationTrainer", "last_complete_checkpoint", "train_model"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
