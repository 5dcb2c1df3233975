"""Set-up mistakes that train silently but uselessly, caught when the optimizer is built."""

from __future__ import annotations

import warnings

from torch import nn

__all__ = ["warn_if_classifier_frozen"]

# Names transformers gives the new head of *ForSequenceClassification models
# (BERT/RoBERTa: classifier, Llama/GPT-2/SmolLM: score, T5/BART: classification_head).
HEAD_NAMES = ("classifier", "score", "classification_head")


def _base_model(model: nn.Module) -> nn.Module:
    get_base = getattr(model, "get_base_model", None)  # PeftModel
    return get_base() if callable(get_base) else model


def warn_if_classifier_frozen(model: nn.Module) -> bool:
    """Warn (and return True) when `model` is a *ForSequenceClassification whose classifier
    head is neither trained in full nor in PEFT's modules_to_save: the head of a freshly
    loaded classifier is random, and a LoRA set-up without task_type="SEQ_CLS" (or
    modules_to_save=[head]) leaves it frozen, so the model never learns the labels."""
    base = _base_model(model)
    if not type(base).__name__.endswith("ForSequenceClassification"):
        return False
    head = [
        (n, p) for n, p in model.named_parameters() if any(h in n.split(".") for h in HEAD_NAMES) and "lora_" not in n
    ]
    if not head or any(p.requires_grad for _, p in head):
        return False
    warnings.warn(
        f"{type(base).__name__}: its classifier head ({head[0][0].rsplit('.', 1)[0]}) is frozen and not in "
        "modules_to_save, so a newly initialised head will never be trained. Build the adapter with "
        'task_type="SEQ_CLS" (PEFT then adds the head to modules_to_save) or pass modules_to_save=["classifier"] '
        '(or "score", whichever your model uses).',
        UserWarning,
        stacklevel=3,
    )
    return True
