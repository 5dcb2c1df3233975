"""The one training path of hf_clipadapt: a `transformers.Trainer` subclass and its arguments.

    from hf_clipadapt.training import AdaptationTrainingArguments, train_model

    args = AdaptationTrainingArguments(num_train_epochs=10, learning_rate=2e-3, per_device_train_batch_size=32,
                                       optim="sgd", momentum=0.9, weight_decay=5e-4, lr_scheduler_type="cosine")
    history = train_model(model, train_dataset, args)   # rows with "labels": loss = model(**batch).loss
"""

from .arguments import AdaptationTrainingArguments, progress_bars_enabled, sgd_arguments
from .collate import stack_collate
from .trainer import AdaptationTrainer, train_model

__all__ = [
    "AdaptationTrainer",
    "AdaptationTrainingArguments",
    "progress_bars_enabled",
    "sgd_arguments",
    "stack_collate",
    "train_model",
]
