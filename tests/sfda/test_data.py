"""Data loading and the bad-input errors of `fit`."""

import numpy as np
import pytest
from PIL import Image

from hf_clipadapt.sfda import fit, load_domain, load_image_list


def _write_images(folder, n):
    paths = []
    for i in range(n):
        p = folder / f"img{i}.png"
        Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_image_list_round_trip(tmp_path):
    paths = _write_images(tmp_path, 3)
    (tmp_path / "list.txt").write_text(f"{paths[0].name} 0\n\n{paths[1]} 2\nimg2.png 1\n")  # relative, absolute
    ds = load_domain(tmp_path / "list.txt")
    assert list(ds["label"]) == [0, 2, 1]
    assert ds[1]["image"].size == (8, 8)
    named = load_image_list(tmp_path / "list.txt", class_names=["a", "b", "c"])
    assert named.features["label"].names == ["a", "b", "c"]


def test_image_list_missing_path_names_the_line(tmp_path):
    _write_images(tmp_path, 1)
    (tmp_path / "list.txt").write_text("img0.png 0\nmissing/cat.jpg 1\n")
    with pytest.raises(FileNotFoundError, match=r"line 2: image .*missing/cat.jpg does not exist"):
        load_image_list(tmp_path / "list.txt")


def test_image_list_malformed_and_empty(tmp_path):
    _write_images(tmp_path, 1)
    (tmp_path / "bad.txt").write_text("img0.png zero\n")
    with pytest.raises(ValueError, match="line 1: expected '<image path> <integer label>'"):
        load_image_list(tmp_path / "bad.txt")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="no entries"):
        load_image_list(tmp_path / "empty.txt")


def test_imagefolder(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        _write_images(tmp_path / cls, 2)
    ds = load_domain(tmp_path)
    assert len(ds) == 4 and ds.features["label"].names == ["cat", "dog"]


def test_closed_set_target_labels_outside_source_classes(make_model, tiny_dataset, to_pixels):
    model = make_model(num_labels=2, strategy="shot")  # dataset has labels 0, 1, 2
    with pytest.raises(ValueError, match=r"target labels \[2\] fall outside the 2 source classes"):
        fit(model, tiny_dataset, stage="target", transform=to_pixels)
    # the same data is fine in universal mode (label 2 is a target-private class)
    out = fit(
        make_model(num_labels=2, strategy="universal"),
        tiny_dataset,
        stage="target",
        transform=to_pixels,
        max_steps=1,
        batch_size=4,
    )
    assert out["global_step"] == 1


def test_empty_target_set_and_other_bad_fits(make_model, tiny_dataset, to_pixels):
    model = make_model()
    with pytest.raises(ValueError, match="target dataset is empty"):
        fit(model, tiny_dataset.select([]), stage="target", transform=to_pixels)
    with pytest.raises(ValueError, match="stage must be one of"):
        fit(model, tiny_dataset, stage="both", transform=to_pixels)
    with pytest.raises(ValueError, match="needs a label for every source sample"):
        fit(model, tiny_dataset.remove_columns("label"), stage="source", transform=to_pixels)
    with pytest.raises(ValueError, match="must divide by"):
        fit(
            model, tiny_dataset, stage="source", transform=to_pixels, batch_size=3, accelerator=_two_step_accumulator()
        )
    with pytest.raises(ValueError, match="needs validation_dataset"):
        fit(
            make_model(),
            tiny_dataset,
            stage="target",
            transform=to_pixels,
            model_selection="labelled_target_validation",
        )


def _two_step_accumulator():
    from accelerate import Accelerator

    return Accelerator(cpu=True, gradient_accumulation_steps=2)
