"""hf_clipadapt: recent adaptation methods for the Hugging Face stack.

Importing the package registers every model with the transformers Auto classes
(`hf_clipadapt.auto`), so `AutoModel.from_pretrained(path)` works after
`import hf_clipadapt`, and registers the offline testbed (the "testbed" CLIP,
its templates and its "testbed:<suite>" datasets). Everything else loads on first
use: `hf_clipadapt.GDAForImageClassification` imports GDA's modelling code then.
"""

from ._lazy import exports_of, lazy_exports
from .auto import register_all as _register_all
from .version import __version__

_EXPORTS = {
    **exports_of(".metrics", "metrics"),
    **exports_of(".features", "extract_features"),
    **exports_of(".hub", "ModelCardMixin", "build_model_card"),
    **exports_of(".auto", "register_auto"),
    **exports_of(".configuration_utils", "AdaptedConfig", "CLIPAdaptedConfig"),
    **exports_of(".modeling_utils", "AdaptedPreTrainedModel", "CLIPAdaptedModel"),
    **exports_of(".clip", "CLIPBackbone", "PromptLearner", "SoftPromptTextEncoder", "get_templates"),
    **exports_of(".data", "AugmentedViews", "class_names", "sample_few_shot"),
    **exports_of(".gda", "GDAConfig", "GDAForImageClassification"),
    **exports_of(
        ".tip_adapter", "TipAdapterConfig", "TipAdapterForImageClassification", "TipAdapterTrainingArguments"
    ),
    **exports_of(".coop", "CoOpConfig", "CoOpForImageClassification", "CoOpTrainingArguments"),
    **exports_of(
        ".clip_adapter", "CLIPAdapterConfig", "CLIPAdapterForImageClassification", "CLIPAdapterTrainingArguments"
    ),
    **exports_of(".ship", "SHIPConfig", "SHIPGenerator", "SHIPTrainingArguments"),
    **exports_of(".tzsl", "TZSLConfig", "TZSLModel", "TZSLTrainingArguments"),
    **exports_of(".sfda", "SFDAConfig", "SFDAForImageClassification", "SFDATrainingArguments"),
    **exports_of(".ueo", "UEOConfig", "UEOForImageClassification", "UEOTrainingArguments"),
    **exports_of(".craft", "CraFTConfig", "CraFTForImageClassification", "CraFTTrainingArguments"),
    **exports_of(
        ".lora_pro",
        "LoraProAdamW",
        "LoraProConfig",
        "LoraProOptimizerFactory",
        "LoraProSGD",
        "LoraProTrainer",
        "create_lorapro_optimizer",
    ),
    # subpackages, importable as attributes too (hf_clipadapt.gda, ...)
    **{
        name: f".{name}"
        for name in (
            "clip",
            "data",
            "gda",
            "tip_adapter",
            "coop",
            "clip_adapter",
            "ship",
            "tzsl",
            "sfda",
            "ueo",
            "lora_pro",
            "craft",
            "testbed",
        )
    },
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS) + ["__version__"]

_register_all()
from . import testbed as _testbed  # noqa: E402,F401  (registers the testbed's name, templates and datasets)
