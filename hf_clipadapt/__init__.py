"""hf_clipadapt: recent adaptation methods for the Hugging Face stack.

Importing the package registers every model with the transformers Auto classes,
so `AutoModel.from_pretrained(path)` works after `import hf_clipadapt`.
"""

from .version import __version__
from . import metrics
from .features import extract_features
from .hub import ModelCardMixin, build_model_card

# Each method's public names. Methods register their Auto classes when imported.
# --- clip (shared CLIP layer) ---
from . import clip, data
from .clip import CLIPBackbone, PromptLearner, SoftPromptTextEncoder, get_templates
from .data import AugmentedViews, class_names, sample_few_shot
# --- end clip ---
# --- gda ---
from . import gda
from .gda import GDAConfig, GDAForImageClassification
# --- end gda ---
# --- lora_pro ---
from .lora_pro import (
    LoraProAdamW,
    LoraProConfig,
    LoraProOptimizerFactory,
    LoraProSGD,
    LoraProTrainer,
    create_lorapro_optimizer,
)
# --- end lora_pro ---
# --- tzsl ---
from . import tzsl
from .tzsl import TZSLConfig, TZSLModel
# --- end tzsl ---
# --- sfda ---
from .sfda import SFDAConfig, SFDAModelForImageClassification  # noqa: E402
# --- end sfda ---
