"""Writes that never leave a half-written file behind.

A crash or a full disk during a save must leave the previous file (or nothing),
never a truncated checkpoint that loads as garbage later.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def save_safetensors_atomic(tensors: dict, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """`safetensors.torch.save_file` to a temporary name in the same folder, then rename."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_directory_atomic(directory: str | os.PathLike, write) -> None:
    """Call `write(tmp_dir)` on a fresh sibling folder, then move each file it wrote
    into `directory` with `os.replace`.

    If `write` fails, `directory` is untouched. Each file then switches from its old
    to its new version in one step, so a reader never sees a truncated file.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
    try:
        write(tmp)
        directory.mkdir(exist_ok=True)
        for src in sorted(tmp.rglob("*")):
            dst = directory / src.relative_to(tmp)
            if src.is_dir():
                dst.mkdir(exist_ok=True)
            else:
                os.replace(src, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
