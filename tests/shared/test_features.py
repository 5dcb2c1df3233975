import numpy as np
import pytest
import torch

from hf_clipadapt.features import extract_features
from hf_clipadapt.testing_utils import tiny_image_dataset


def _transform(images, indices, view):
    # mean colour per image plus the view number, so views are distinguishable
    arr = torch.tensor(np.stack([np.asarray(im.convert("RGB"), dtype=np.float32).mean((0, 1)) for im in images]))
    return arr + view


class CountingEncoder:
    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return x * 2


def test_rows_are_view_major_and_match_labels():
    ds = tiny_image_dataset(num_classes=3, per_class=4)
    feats, labels = extract_features(CountingEncoder(), ds, _transform, views=2, batch_size=5)
    assert feats.shape == (24, 3) and labels.tolist() == list(ds["label"]) * 2
    assert torch.allclose(feats[12:] - feats[:12], torch.full((12, 3), 2.0))


def test_cache_hit_skips_encoder(tmp_path):
    ds = tiny_image_dataset()
    enc = CountingEncoder()
    first = extract_features(enc, ds, _transform, cache_dir=tmp_path, cache_name="toy", batch_size=4)
    calls = enc.calls
    second = extract_features(enc, ds, _transform, cache_dir=tmp_path, cache_name="toy", batch_size=4)
    assert enc.calls == calls, "a cache hit must not run the encoder"
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    # another split is another cache entry
    extract_features(enc, ds, _transform, cache_dir=tmp_path, cache_name="toy", split="test")
    assert enc.calls > calls
    assert not list(tmp_path.glob("*.tmp")), "no temporary file may be left behind"


def test_bad_arguments_raise(tmp_path):
    ds = tiny_image_dataset()
    with pytest.raises(ValueError, match="views"):
        extract_features(CountingEncoder(), ds, _transform, views=0)
    with pytest.raises(ValueError, match="cache_name"):
        extract_features(CountingEncoder(), ds, _transform, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="empty"):
        extract_features(CountingEncoder(), ds.select([]), _transform)


def _two_process_extract(out_dir):
    from accelerate import Accelerator

    acc = Accelerator(cpu=True)
    ds = tiny_image_dataset(num_classes=3, per_class=5)  # 15 rows: uneven across 2 ranks
    feats, labels = extract_features(lambda x: x * 2, ds, _transform, batch_size=4, accelerator=acc)
    if acc.is_main_process:
        torch.save((feats, labels), f"{out_dir}/dist.pt")


def test_two_processes_equal_one(tmp_path):
    from hf_clipadapt.testing_utils import run_distributed

    run_distributed(_two_process_extract, args=(str(tmp_path),), num_processes=2)
    dist_feats, dist_labels = torch.load(tmp_path / "dist.pt")
    ds = tiny_image_dataset(num_classes=3, per_class=5)
    feats, labels = extract_features(lambda x: x * 2, ds, _transform, batch_size=4)
    assert torch.equal(dist_labels, labels)
    assert torch.allclose(dist_feats, feats)
