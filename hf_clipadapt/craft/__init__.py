"""CraFT: collaborative fine-tuning of black-box vision-language models (ICML 2024).

The black-box protocol (`BlackBoxVLM`, `LocalBlackBox`) and, older, `BlackBoxCLIP`
exposes any CLIP as a query-only API (scores out, no weights, no gradients, a query
budget). The prompt search, the refinement module and `CraFTModel` come next.
"""

from .._lazy import exports_of, lazy_exports

_EXPORTS = {
    **exports_of(".blackbox", "BlackBoxCLIP", "QueryBudgetExceeded"),
    **exports_of(".protocol", "BlackBoxVLM", "BlackBoxError"),
    **exports_of(".local", "LocalBlackBox"),
    **exports_of(".arguments", "CraFTTrainingArguments"),
    **exports_of(".loop", "CollaborativeLoop"),
}  # fmt: skip
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
