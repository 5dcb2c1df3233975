"""Loading SFDA domains as `datasets.Dataset`s with an `image` and a `label` column.

Three sources, one function (`load_domain`):
* an image-list text file, GeoNet's format: one `relative/or/absolute/path label`
  per line (paths resolved against `root`, default: the list file's folder);
* an image folder (`<dir>/<class>/<image>`), through `datasets`' imagefolder;
* a Hub dataset id (needs the network), `split` selecting the split.

Target labels are optional (unlabelled target data); when present, universal
evaluation maps every label outside the source classes to "unknown".
"""

from __future__ import annotations

from pathlib import Path

from datasets import ClassLabel, Dataset, Features, Image, Value, load_dataset


def load_image_list(path: str | Path, root: str | Path | None = None, class_names: list[str] | None = None) -> Dataset:
    """Read a GeoNet-style list file (`path label` per line; blank lines skipped).

    Every image path is checked; a missing one raises with its line number. Labels
    are kept as integers (a `ClassLabel` when `class_names` is given).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image list {path} does not exist")
    root = Path(root) if root is not None else path.parent
    images, labels = [], []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{path}, line {lineno}: expected '<image path> <integer label>', got {line!r}")
        image_path = Path(parts[0])
        image_path = image_path if image_path.is_absolute() else root / image_path
        if not image_path.is_file():
            raise FileNotFoundError(f"{path}, line {lineno}: image {image_path} does not exist")
        images.append(str(image_path))
        labels.append(int(parts[1]))
    if not images:
        raise ValueError(f"image list {path} has no entries")
    label_feature = ClassLabel(names=class_names) if class_names else Value("int64")
    if class_names and max(labels) >= len(class_names):
        raise ValueError(f"{path}: label {max(labels)} but only {len(class_names)} class names were given")
    return Dataset.from_dict(
        {"image": images, "label": labels}, features=Features({"image": Image(), "label": label_feature})
    )


def load_domain(
    spec: str | Path, *, split: str = "train", root: str | Path | None = None, class_names: list[str] | None = None
) -> Dataset:
    """A domain from a list file (`*.txt`), an image folder, or a Hub dataset id."""
    p = Path(spec)
    if p.is_file():
        return load_image_list(p, root=root, class_names=class_names)
    if p.is_dir():
        return load_dataset("imagefolder", data_dir=str(p), split=split)
    if str(spec).endswith(".txt"):
        raise FileNotFoundError(f"image list {spec} does not exist")
    return load_dataset(str(spec), split=split)
