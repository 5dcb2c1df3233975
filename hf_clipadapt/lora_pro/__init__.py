"""LoRA-Pro (Wang et al., ICLR 2025): LoRA whose updates best match full fine-tuning.

- `functional`: the pure-tensor closed form (equivalent gradient, projection, Sylvester).
- `LoraProAdamW` (modes "full" and "efficient"), `LoraProSGD`, `create_lorapro_optimizer`.
- `LoraProConfig`: a LoraConfig carrying the optimizer settings; saves as plain LoRA.
- `LoraProTrainer`, `LoraProOptimizerFactory`: transformers.Trainer integration.
"""

from . import functional
from .configuration_lora_pro import LoraProConfig
from .factory import create_lorapro_optimizer
from .functional import equivalent_gradient, lorapro_project, solve_sylvester_spd
from .optimizer import LoraProAdamW, LoraProSGD
from .pairs import LoraPair, find_lora_pairs
from .trainer import LoraProOptimizerFactory, LoraProTrainer

__all__ = [
    "functional",
    "LoraProConfig",
    "LoraProAdamW",
    "LoraProSGD",
    "create_lorapro_optimizer",
    "LoraProTrainer",
    "LoraProOptimizerFactory",
    "equivalent_gradient",
    "lorapro_project",
    "solve_sylvester_spd",
    "LoraPair",
    "find_lora_pairs",
]
