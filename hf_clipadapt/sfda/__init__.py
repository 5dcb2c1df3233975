"""Two-stage source-free domain adaptation (the GeoNet 2023 winning recipe: Swin backbone, class-balanced source training, pseudo-label target adaptation; ICCV 2023 workshop).

Stage 1 trains backbone + bottleneck + classifier on labelled source data; stage 2
adapts backbone + bottleneck to unlabelled target data with the classifier frozen
(strategies "universal", "shot", "topk", "centroid", "topk_ce"). The official per-dataset
settings ship as named presets (`PRESETS`: "geounida", "geoimnet", "geoplace";
`SFDAConfig.from_preset`, `SFDATrainingArguments.from_preset`). Importing registers the Auto classes.
"""

from .._lazy import exports_of, lazy_exports

_EXPORTS = {
    **exports_of(".configuration_sfda", "PRESETS", "SFDAConfig"),
    **exports_of(".data", "load_domain", "load_image_list"),
    **exports_of(
        ".modeling_sfda", "SFDAForImageClassification", "SFDAOutput", "SFDAPreTrainedModel", "TorchModuleBackbone"
    ),
    **exports_of(".torch_backbones", "register_torch_backbone", "registered_torch_backbones"),
    **exports_of("..training.samplers", "ClassBalancedSampler", "ShardedRandomSampler"),
    **exports_of(".arguments", "SFDATrainingArguments"),
    **exports_of(".evaluation", "evaluate", "predict_logits"),
    **exports_of(".training", "SFDATrainer", "fit"),
    **exports_of(".transforms", "SFDAImageTransform"),
    "functional": ".functional",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
