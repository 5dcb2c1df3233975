"""Tiny, randomly initialised CLIP pieces for tests and docs, built without the Hub.

Used by the test suite of every method and handy for users writing their own
tests. Nothing here is pretrained: it proves that code runs and that invariants
hold, not that a method helps (the testbed CLIP does that).
"""

from __future__ import annotations

import string

import numpy as np
import torch

TINY_IMAGE_SIZE = 30


def tiny_clip_config(**overrides):
    from transformers import CLIPConfig

    kwargs = dict(
        text_config=dict(
            vocab_size=99, hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
            max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
            image_size=TINY_IMAGE_SIZE, patch_size=2,
        ),
        projection_dim=16,
    )  # fmt: skip
    kwargs.update(overrides)
    return CLIPConfig(**kwargs)


def tiny_clip_model(seed: int = 0, **overrides):
    from transformers import CLIPModel

    torch.manual_seed(seed)
    return CLIPModel(tiny_clip_config(**overrides)).eval()


def tiny_clip_vocab() -> dict[str, int]:
    """Character-level BPE vocabulary (no merges): every word splits into letters,
    the last one carrying CLIP's end-of-word marker. 2 specials + 2×40 symbols < 99."""
    symbols = list(string.ascii_lowercase) + list(string.digits) + [".", ",", "-", "'"]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for s in symbols:
        vocab[s] = len(vocab)
        vocab[s + "</w>"] = len(vocab)
    return vocab


def tiny_clip_tokenizer(tmp_dir=None):
    """A working CLIPTokenizer over `tiny_clip_vocab`; ids stay below the tiny vocab size (99)."""
    from transformers import CLIPTokenizer

    vocab = tiny_clip_vocab()
    tok = CLIPTokenizer(vocab=vocab, merges=[], unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    return tok


def tiny_image_processor(size: int = TINY_IMAGE_SIZE):
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def tiny_image_dataset(num_classes: int = 3, per_class: int = 6, size: int = 16, seed: int = 0, class_names=None):
    """A `datasets.Dataset` of small RGB images whose class is visible in the pixels
    (a class-specific colour plus noise), with an `image` and a `label` column."""
    from datasets import ClassLabel, Dataset, Features, Image

    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, size=(num_classes, 3))
    images, labels = [], []
    for c in range(num_classes):
        for _ in range(per_class):
            noise = rng.normal(0, 25, size=(size, size, 3))
            images.append(np.clip(palette[c] + noise, 0, 255).astype(np.uint8))
            labels.append(c)
    names = class_names or [f"class{c}" for c in range(num_classes)]
    features = Features({"image": Image(), "label": ClassLabel(names=names)})
    return Dataset.from_dict({"image": images, "label": labels}, features=features)


_LAUNCH = """
import pickle, runpy, sys
from accelerate import debug_launcher

path, name, args_file, num_processes = sys.argv[1:5]
sys.path.insert(0, str(__import__("pathlib").Path(path).parent))
function = runpy.run_path(path)[name]
with open(args_file, "rb") as f:
    args = pickle.load(f)
debug_launcher(function, args=args, num_processes=int(num_processes))
"""


def run_distributed(function, args=(), num_processes: int = 2, timeout: float = 300):
    """Run `function(*args)` in `num_processes` CPU processes (gloo) through
    `accelerate.debug_launcher`, from a fresh Python interpreter.

    debug_launcher forks the calling process. Inside a long test session that parent
    has already run BLAS/OpenMP work, whose thread pools do not survive a fork: a
    child that then calls, say, `torch.linalg.cholesky` waits forever. The parent
    may also hold Accelerate's state singletons, which would make each child think
    it is a lone process. So the launch happens in a new interpreter that only loads
    the module defining `function` (a module-level function) and forks from there.
    `args` are pickled; failures raise with the workers' output.
    """
    import inspect
    import pickle
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    if function.__qualname__ != function.__name__:
        raise ValueError(f"run_distributed needs a module-level function, got {function.__qualname__}")
    with tempfile.TemporaryDirectory() as tmp:
        args_file = Path(tmp) / "args.pkl"
        args_file.write_bytes(pickle.dumps(tuple(args)))
        cmd = [sys.executable, "-c", _LAUNCH, inspect.getfile(function), function.__name__, str(args_file), str(num_processes)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(
            f"distributed run of {function.__name__} failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
