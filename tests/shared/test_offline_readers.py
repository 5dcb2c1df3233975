import gzip
import struct

import numpy as np
from offline_assets.datasets import frame_like_mnist, read_idx


def test_read_idx_roundtrip(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, 3) + struct.pack(">III", 2, 3, 4) + data.tobytes())
    assert np.array_equal(read_idx(path), data)


def test_frame_like_mnist_centres_digit_with_margin():
    digits = np.full((2, 8, 8), 255, dtype=np.uint8)
    out = frame_like_mnist(digits)
    assert out.shape == (2, 28, 28)
    assert out[:, :4, :].max() == 0 and out[:, -4:, :].max() == 0  # 4-pixel black margin
    assert out[:, 4:24, 4:24].min() == 255  # the digit fills the 20x20 box
