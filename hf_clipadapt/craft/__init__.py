"""CraFT: collaborative fine-tuning of black-box vision-language models (ICML 2024).

So far this package holds the black-box protocol CraFT is built on: `BlackBoxCLIP`
exposes any CLIP as a query-only API (scores out, no weights, no gradients, a query
budget). The prompt search, the refinement module and `CraFTModel` come next.
"""

from .blackbox import BlackBoxCLIP, QueryBudgetExceeded

__all__ = ["BlackBoxCLIP", "QueryBudgetExceeded"]
