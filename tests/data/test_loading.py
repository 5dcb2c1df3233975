from datasets import Dataset

from hf_clipadapt.data import dataset_display_name, load_image_dataset


def test_image_folder(tmp_path):
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (i * 50, 0, 0)).save(tmp_path / "train" / cls / f"{i}.png")
    data = load_image_dataset(str(tmp_path))
    assert isinstance(data["train"], Dataset) and data["train"].features["label"].names == ["cat", "dog"]
    assert dataset_display_name(str(tmp_path)) == tmp_path.name


def test_display_names():
    assert dataset_display_name("testbed:few_shot@1") == "testbed-few_shot"
    assert dataset_display_name("tanganke/eurosat") == "tanganke/eurosat"
