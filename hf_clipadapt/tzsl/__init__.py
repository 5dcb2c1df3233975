"""Transductive zero-shot learning with an attribute decoder (ICASSP 2023), leak-free.

From the xlsa17 release::

    from hf_clipadapt.tzsl import TZSLModel, load_xlsa17

    data = load_xlsa17("xlsa17/data/AWA2")          # res101.mat + att_splits.mat
    model = TZSLModel.from_data(data, preset="awa2")
    model.fit(data)                                   # unlabelled pool: test-unseen features
    print(model.evaluate(data))                       # ZSL acc, GZSL u / s / H
    model.save_pretrained("tzsl-awa2")

From any features and semantic vectors (e.g. CLIP image features and CLIP or
MiniLM text embeddings of class descriptions), build a `ZSLData` directly::

    data = ZSLData(train_features, train_labels, test_seen_features, test_seen_labels,
                   test_unseen_features, test_unseen_labels, attributes=text_embeddings,
                   seen_classes=seen_ids, unseen_classes=unseen_ids, class_names=names)

Leak-free by construction: the epoch count is fixed by the preset, min-max scaling
is fitted on seen-train features, unseen-class conditions are uniform (or a
label-free estimate, `unseen_prior="pseudo"`), and `pseudo_unseen_split` carves a
validation split from seen classes for any model selection.
"""

from .._lazy import exports_of, lazy_exports

_EXPORTS = {
    **exports_of(".arguments", "TZSLTrainingArguments"),
    **exports_of(".configuration_tzsl", "PRESETS", "TZSLConfig"),
    **exports_of(".data", "ZSLData", "load_features_file", "load_xlsa17", "pseudo_unseen_split", "save_features_file"),
    **exports_of(".modeling_tzsl", "TZSLModel", "TZSLOutput"),
    "functional": ".functional",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
