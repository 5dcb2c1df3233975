"""LoRA-Pro tests: make the shared helpers (lorapro_helpers, lorapro_reference)
importable under pytest's importlib import mode, and keep to 2 threads."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(2)
